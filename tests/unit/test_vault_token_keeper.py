"""The Vault token keeper's decisions on a fake clock, with a small stand-in for hvac's
adapter (the real server cases are in tests/integration/test_vault_auth*.py): the 403
backoff window, tokens replaced meanwhile, a wrapped secret id unwrapped once, and which
requests carry a token."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from simpletuner_secrets import VaultAgentAuth, VaultAppRoleAuth
from simpletuner_secrets._events import EventKind
from simpletuner_secrets.providers._vault_http import Deadline
from simpletuner_secrets.providers._vault_token import BACKOFF_MIN_S, Action, TokenKeeper
from tests.clock import FakeClock

SECRET_ID = "secret-id-unit-3b9f0a77"
WRAPPING_SECRET = "wrapping-unit-71c4e2a9"


class Response:
    """What `request` reads of a requests response."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status_code = status
        self._body = json.dumps(body).encode()
        self.headers = {"Content-Length": str(len(self._body))}

    def iter_content(self, size: int) -> list[bytes]:
        return [self._body]

    def close(self) -> None:
        pass


class Adapter:
    """Answers logins with numbered tokens, the unwrap with the secret id; records calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool, dict[str, Any] | None]] = []
        self.issued = 0
        self.refuse_renewal = False

    def request(self, method: str, url: str, *, headers: dict[str, str], **kwargs: Any) -> Response:
        path = url.removeprefix("/v1/")
        self.calls.append((path, "X-Vault-Token" in headers, kwargs.get("json")))
        if path == "sys/wrapping/unwrap":
            if headers.get("X-Vault-Token") != WRAPPING_SECRET:
                return Response(400, {"errors": ["wrapping token is not valid or does not exist"]})
            return Response(200, {"data": {"secret_id": SECRET_ID}})
        if path == "auth/token/renew-self" and self.refuse_renewal:
            return Response(403, {"errors": ["permission denied"]})
        self.issued += 1
        auth = {
            "client_token": f"token-{self.issued:04d}-unit",
            "lease_duration": 30,
            "renewable": True,
            "token_policies": ["default", "reader"],
        }
        return Response(200, {"auth": auth})


class Client:
    def __init__(self) -> None:
        self.adapter = Adapter()


def keeper_for(
    auth: Any, clock: FakeClock, events: list[EventKind] | None = None
) -> tuple[TokenKeeper, Adapter]:
    client = Client()
    keeper = TokenKeeper(
        auth,
        lambda: client,
        url="http://127.0.0.1:8200",
        timeout=5.0,
        timer=clock,
        events=None if events is None else events.append,
    )
    return keeper, client.adapter


def logins(adapter: Adapter) -> int:
    return sum(1 for path, _, _ in adapter.calls if path.endswith("/login"))


def test_403_backoff_window_allows_one_login_and_doubles_while_refused() -> None:
    """After a 403: one new login; another 403 inside the window gets none; after the window
    one more, and the window doubles since the new token was refused too."""
    clock = FakeClock()
    keeper, adapter = keeper_for(VaultAppRoleAuth("role", SECRET_ID), clock)
    deadline = Deadline(5.0)
    keeper._renewer = object()  # type: ignore[assignment]  # no background thread in this test
    _, first = keeper.token(deadline)
    assert logins(adapter) == 1
    assert keeper.refused(deadline, first) is True
    _, second = keeper.token(deadline)
    assert logins(adapter) == 2 and second != first
    clock.tick(BACKOFF_MIN_S / 2)
    assert keeper.refused(deadline, second) is False  # inside the window: no login
    clock.tick(BACKOFF_MIN_S)
    assert keeper.refused(deadline, second) is True
    _, third = keeper.token(deadline)
    assert logins(adapter) == 3
    clock.tick(BACKOFF_MIN_S * 1.5)
    assert keeper.refused(deadline, third) is False  # the window is 2 s now
    clock.tick(BACKOFF_MIN_S)
    assert keeper.refused(deadline, third) is True
    assert keeper.status()["forced_logins"] == 3


def test_a_token_replaced_meanwhile_is_retried_without_a_login() -> None:
    """A 403 with a token of an older generation: retry with the current one, no login."""
    clock = FakeClock()
    keeper, adapter = keeper_for(VaultAppRoleAuth("role", SECRET_ID), clock)
    keeper._renewer = object()  # type: ignore[assignment]
    deadline = Deadline(5.0)
    _, first = keeper.token(deadline)
    keeper.refused(deadline, first)
    before = logins(adapter)
    assert keeper.refused(deadline, first) is True
    assert logins(adapter) == before


def test_an_expired_token_is_replaced_before_use() -> None:
    """Past its lease (30 s here), the next request logs in first instead of sending it."""
    clock = FakeClock()
    keeper, adapter = keeper_for(VaultAppRoleAuth("role", SECRET_ID), clock)
    keeper._renewer = object()  # type: ignore[assignment]
    deadline = Deadline(5.0)
    token, _ = keeper.token(deadline)
    clock.tick(29)
    assert keeper.token(deadline)[0] is token
    clock.tick(2)
    assert keeper.token(deadline)[0] is not token
    assert logins(adapter) == 2
    assert keeper.remaining_s() == 30.0


def test_wrapped_secret_id_is_unwrapped_once() -> None:
    """The wrapping token is sent once (to sys/wrapping/unwrap, as the token); both logins
    carry the unwrapped secret id and no token."""
    clock = FakeClock()
    keeper, adapter = keeper_for(VaultAppRoleAuth("role", WRAPPING_SECRET, wrapped=True), clock)
    keeper._renewer = object()  # type: ignore[assignment]
    deadline = Deadline(5.0)
    _, generation = keeper.token(deadline)
    keeper.refused(deadline, generation)
    paths = [path for path, _, _ in adapter.calls]
    assert paths == ["sys/wrapping/unwrap", "auth/approle/login", "auth/approle/login"]
    assert [carried for _, carried, _ in adapter.calls] == [True, False, False]
    bodies = [body for path, _, body in adapter.calls if path.endswith("/login")]
    assert bodies == [{"role_id": "role", "secret_id": SECRET_ID}] * 2
    assert "(policies: default, reader)" in keeper.who(Client(), deadline)


def test_agent_mode_never_logs_in_and_sends_no_token() -> None:
    """Agent mode: no token, no login, and a 403 is not retried."""
    keeper, adapter = keeper_for(VaultAgentAuth(), FakeClock())
    deadline = Deadline(5.0)
    assert keeper.token(deadline) == (None, 0)
    assert keeper.refused(deadline, 0) is False
    assert adapter.calls == []


def test_logins_and_renewals_are_reported_as_events_without_a_token() -> None:
    """The first login, a renewal, a refused renewal's new login and a forced login after a
    403 each report their kind (and nothing else); a failed renewal reports nothing."""
    clock = FakeClock()
    events: list[EventKind] = []
    keeper, adapter = keeper_for(VaultAppRoleAuth("role", SECRET_ID), clock, events)
    keeper._renewer = object()  # type: ignore[assignment]
    deadline = Deadline(5.0)
    keeper.token(deadline)
    assert events == ["login"]
    keeper.token(deadline)  # the token is still good: no login, no event
    assert events == ["login"]
    assert keeper._act(Action("renew", 0.0), keeper.generation) is True
    assert events == ["login", "token_renewed"]
    adapter.refuse_renewal = True
    assert keeper._act(Action("renew", 0.0), keeper.generation) is True
    assert events == ["login", "token_renewed", "login"]
    assert keeper.refused(deadline, keeper.generation) is True
    assert events == ["login", "token_renewed", "login", "login"]
    assert keeper.status()["renewals"] == 1 and keeper.status()["logins"] == 3


def test_a_failing_event_listener_never_fails_a_login(caplog: pytest.LogCaptureFixture) -> None:
    """An events callback that raises is logged by type; the login still succeeds."""

    def broken(kind: EventKind) -> None:
        raise RuntimeError(f"listener broke on {kind}")

    client = Client()
    keeper = TokenKeeper(
        VaultAppRoleAuth("role", SECRET_ID),
        lambda: client,
        url="http://127.0.0.1:8200",
        timeout=5.0,
        timer=FakeClock(),
        events=broken,
    )
    keeper._renewer = object()  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger="simpletuner_secrets.providers.vault"):
        token, _ = keeper.token(Deadline(5.0))
    assert token is not None and keeper.status()["logins"] == 1
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["vault: reporting a login event failed: RuntimeError"]
