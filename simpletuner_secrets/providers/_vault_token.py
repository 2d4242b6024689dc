"""The Vault token's life: login on first use (once for every thread), background renewal
at about two thirds of the TTL, a new login when renewal is refused or the max TTL is near,
and at most one new login per backoff window after a 403.

Everything here runs in worker threads (a load's, or the keeper's own renewal thread): the
event loop never waits on a login or a renewal. `plan` is the pure decision; `TokenKeeper`
is its driver.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import _fork
from .._events import EventKind
from ..errors import ProviderError
from ._common import Masked, WarnOnce, display_url
from ._vault_auth import VaultAppRoleAuth, VaultAuth, VaultTokenAuth, read_secret_file
from ._vault_http import ERROR_BODY_LIMIT, Deadline, Refusal, decode, guarded, request

__all__ = ["Action", "Login", "TokenKeeper", "plan"]

# One logger for the whole provider: a user filters "simpletuner_secrets.providers.vault".
logger = logging.getLogger("simpletuner_secrets.providers.vault")

#: A renewal whose new lease is shorter than this share of the login's TTL was cut short by
#: the max TTL: the next step is a new login (at two thirds of that lease), not a renewal.
NEAR_MAX_SHARE = 0.9
#: The first backoff window after a 403: at most one new login (and one retry) per window.
BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 60.0
#: When a background renewal or login fails, the next try comes after this (doubling).
RETRY_MIN_S = 0.5
RETRY_MAX_S = 30.0


@dataclass(frozen=True)
class Action:
    """What the keeper does next, and when (monotonic seconds)."""

    kind: str  # "renew", "login" or "none"
    at: float


def plan(
    *,
    now: float,
    issued_at: float,
    lease_s: float,
    login_ttl_s: float,
    renewable: bool,
    rand: float,
) -> Action:
    """Decide the next step for a token issued at ``issued_at`` for ``lease_s`` seconds.

    Rule (SPEC 8): act at about two thirds of the lease, jittered by ``rand`` (0..1) over
    0.6-0.73 of it so that a fleet does not renew together; renew a renewable token whose
    lease still reaches `NEAR_MAX_SHARE` of the login's TTL, else log in again (not
    renewable, or the max TTL cuts the lease short). A token without a lease never expires:
    nothing to do.
    """
    if lease_s <= 0:
        return Action("none", float("inf"))
    at = issued_at + lease_s * (0.6 + 0.133 * rand)
    near_max = lease_s < login_ttl_s * NEAR_MAX_SHARE
    kind = "renew" if renewable and not near_max else "login"
    return Action(kind, max(at, now))


@dataclass(frozen=True)
class Login:
    """A token and its lease, as a login or a renewal answered."""

    token: Masked
    lease_s: float
    renewable: bool
    policies: tuple[str, ...]


def _parse_auth(body: bytes, source: str) -> tuple[Login | None, str]:
    """The ``auth`` block of a login or renewal answer; the answer ends with this frame."""
    answer, problem = decode(body, source, 0)
    if problem:
        return None, problem
    auth = answer.get("auth") if isinstance(answer, Mapping) else None
    token = auth.get("client_token") if isinstance(auth, Mapping) else None
    if not isinstance(auth, Mapping) or not isinstance(token, str) or not token:
        return None, f"vault: unexpected response for {source}: no auth.client_token"
    try:
        lease = float(auth.get("lease_duration") or 0)
    except (TypeError, ValueError):
        lease = 0.0
    policies = auth.get("token_policies") or auth.get("policies") or ()
    return (
        Login(
            Masked(token),
            lease,
            bool(auth.get("renewable")),
            tuple(str(p) for p in policies if isinstance(p, str)),
        ),
        "",
    )


class TokenKeeper:
    """Holds the provider's current token and keeps it alive.

    Args:
        auth: The auth method.
        client: Returns the provider's hvac client (created on first use).
        url: The Vault address, for messages.
        timeout: Seconds one login or renewal may take in all.
        timer: The monotonic clock.
        rand: The random source of the jitter.
        events: Called with ``"login"`` after each login and ``"token_renewed"`` after each
            renewal that worked, in the thread that did it; it must return at once (the
            provider's `LoopRelay` hands the event to a loop). Never given a token.
    """

    def __init__(
        self,
        auth: VaultAuth,
        client: Callable[[], Any],
        *,
        url: str,
        timeout: float,
        timer: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        events: Callable[[EventKind], None] | None = None,
    ) -> None:
        self.auth = auth
        self._events = events
        self._client = client
        self._url = url
        self._timeout = timeout
        self._timer = timer
        self._rand = rand
        self._token: Masked | None = auth.token if isinstance(auth, VaultTokenAuth) else None
        self.from_login = False
        self.generation = 0
        self.issued_at = 0.0
        self.lease_s = 0.0
        self.login_ttl_s = 0.0
        self.renewable = False
        self.policies: tuple[str, ...] = ()
        self.logins = 0
        self.renewals = 0
        self.renewal_failures = 0
        self.forced_logins = 0
        self._file_stamp: tuple[int, int, int] | None = None
        self._backoff_s = BACKOFF_MIN_S
        self._forced_at = float("-inf")
        self._forced_generation = -1
        self._warned = WarnOnce()
        self._reset_threads()
        _fork.track(self)

    def _reset_threads(self) -> None:
        self._login_lock = threading.Lock()
        self._state = threading.Condition()
        self._renewer: threading.Thread | None = None
        # Each renewal thread runs while this equals the run it was started for: a thread of
        # a stopped run ends even if a new run started before it woke up.
        self._run = 0
        self._next: Action = Action("none", float("inf"))

    def reset_after_fork(self) -> None:
        """In a forked child: fresh locks, no renewal thread (one starts with the next use,
        keeping the parent's schedule: the token itself is still good)."""
        planned = self._next
        self._reset_threads()
        self._next = planned

    # -- what callers see ------------------------------------------------------------------

    def remaining_s(self) -> float | None:
        """Seconds the current token has left (None: unknown, or it never expires)."""
        if not self.from_login or self.lease_s <= 0:
            return None
        return round(max(0.0, self.issued_at + self.lease_s - self._timer()), 3)

    def status(self) -> dict[str, Any]:
        """Method, mount, remaining TTL and counters: no token, no secret."""
        return {
            "method": self.auth.method,
            "mount": self.auth.mount or None,
            "ttl_remaining_s": self.remaining_s(),
            "logins": self.logins,
            "renewals": self.renewals,
            "renewal_failures": self.renewal_failures,
            "forced_logins": self.forced_logins,
        }

    def who(self, client: Any, deadline: Deadline) -> str:
        """The token in words for a 403 message: its source and policies, never itself.

        A given token's policies are asked of ``auth/token/lookup-self`` (allowed by the
        default policy) the first time they are needed.
        """
        token = self._token
        if not self.policies and token is not None and not self.from_login:
            source = "auth/token/lookup-self"
            answer = request(client, source, deadline, ERROR_BODY_LIMIT, token=token)
            if isinstance(answer, bytes):
                data, problem = decode(answer, source, 1)
                found = data.get("policies") if isinstance(data, Mapping) else None
                if not problem and isinstance(found, list):
                    self.policies = tuple(str(p) for p in found if isinstance(p, str))
            del answer
        del token
        policies = f" (policies: {', '.join(self.policies)})" if self.policies else ""
        auth = self.auth
        if not auth.logs_in and not isinstance(auth, VaultTokenAuth):
            return "the request without a token (agent mode: the Agent or Proxy adds its own)"
        if isinstance(auth, VaultTokenAuth) and auth.token_file is None:
            return f"the given token{policies}"
        return f"the token from {auth.describe()}{policies}"

    # -- the token for a request (in a worker thread) -----------------------------------------

    def token(self, deadline: Deadline) -> tuple[Masked | None, int]:
        """The token to send now and its generation, logging in first when there is none
        yet (or it has expired): once for every thread that needs it.

        Raises:
            ProviderError: The login failed (the message names the method, never a secret).
        """
        auth = self.auth
        if isinstance(auth, VaultTokenAuth) and auth.token_file is not None:
            self._read_token_file(force=False)
        elif auth.logs_in and (self._token is None or self._expired()):
            self._login_once(deadline, seen=self.generation, reason="")
        self._ensure_renewer()
        return self._token, self.generation

    def refused(self, deadline: Deadline, generation: int) -> bool:
        """A request with the token of ``generation`` got a 403: get a new token when the
        rules allow, and say whether to retry once.

        A token already replaced meanwhile (by another thread, or the renewer) is retried
        at once; a token file is re-read; a login method logs in again at most once per
        backoff window, the window doubling while new tokens are refused too.
        """
        if generation != self.generation:
            return True
        auth = self.auth
        if isinstance(auth, VaultTokenAuth) and auth.token_file is not None:
            return self._read_token_file(force=True)
        if not auth.logs_in:
            return False
        now = self._timer()
        with self._state:
            if now - self._forced_at < self._backoff_s:
                return False
            if generation == self._forced_generation:
                self._backoff_s = min(self._backoff_s * 2, BACKOFF_MAX_S)
            self._forced_at = now
        self.forced_logins += 1
        self._login_once(deadline, seen=generation, reason="refused")
        with self._state:
            self._forced_generation = self.generation
        return True

    def succeeded(self) -> None:
        """A request with the current token worked: the 403 backoff starts small again."""
        if self._backoff_s != BACKOFF_MIN_S:
            with self._state:
                self._backoff_s = BACKOFF_MIN_S

    def _expired(self) -> bool:
        return self.lease_s > 0 and self._timer() >= self.issued_at + self.lease_s

    def _read_token_file(self, *, force: bool) -> bool:
        auth = self.auth
        assert isinstance(auth, VaultTokenAuth) and auth.token_file is not None
        path = auth.token_file
        try:
            status = os.stat(path)
            stamp = (status.st_mtime_ns, status.st_size, status.st_ino)
        except OSError:
            stamp = None
        if not force and stamp is not None and stamp == self._file_stamp:
            return False
        token, problem = read_secret_file(path, "token")
        if token is None:
            raise ProviderError(f"vault: {problem}", provider="vault")
        if problem and self._warned.first(("mode", path)):
            logger.warning(
                "vault: the token file %s can be read or changed by group or others "
                "(mode %s); make it 0600",
                path,
                problem.partition(":")[2],
            )
        with self._state:
            changed = self._token is None or token.reveal() != self._token.reveal()
            self._file_stamp = stamp
            if changed:
                self._token = token
                self.generation += 1
        return changed

    # -- logins ----------------------------------------------------------------------------

    def _login_once(self, deadline: Deadline, *, seen: int, reason: str) -> None:
        """Log in unless another thread already replaced the token of generation ``seen``."""
        with self._login_lock:
            if self.generation != seen and self._token is not None and not self._expired():
                return
            login = self._login(deadline)
            now = self._timer()
            with self._state:
                old = self._token if self.from_login else None
                self._token = login.token
                self.from_login = True
                self.generation += 1
                self.issued_at = now
                self.lease_s = self.login_ttl_s = login.lease_s
                self.renewable = login.renewable
                self.policies = login.policies
                self.logins += 1
                self._schedule_locked()
            del old  # the replaced token simply expires: revoking it could race its reads
        if reason == "refused" and self._warned.first(("refused", seen)):
            logger.warning(
                "vault: the token from %s was refused (HTTP 403: revoked or expired); "
                "logged in again",
                self.auth.describe(),
            )
        else:
            logger.info("vault: logged in with %s", self.auth.describe())
        self._report("login")

    def _login(self, deadline: Deadline) -> Login:
        """One login request (two for a wrapped secret id, the first time)."""
        client = self._client()
        auth = self.auth
        if isinstance(auth, VaultAppRoleAuth) and auth.wrapped and auth.unwrapped is None:
            self._unwrap(client, auth, deadline)
        body, problem = auth.login_body()
        if body is None:
            raise ProviderError(f"vault: {auth.describe()}: {problem}", provider="vault")
        path = auth.login_path()
        answer = request(client, path, deadline, ERROR_BODY_LIMIT, method="POST", body=body)
        del body
        login, problem = self._answer_of(answer, path)
        del answer
        if login is None:
            raise ProviderError(
                f"vault: {auth.describe()} on {display_url(self._url)} failed: {problem}",
                provider="vault",
            )
        return login

    def _unwrap(self, client: Any, auth: VaultAppRoleAuth, deadline: Deadline) -> None:
        wrapping, problem = auth.secret()
        if wrapping is None:
            raise ProviderError(
                f"vault: {auth.describe()}: {problem or 'no wrapped secret id given'}",
                provider="vault",
            )
        source = "sys/wrapping/unwrap"
        answer = request(client, source, deadline, ERROR_BODY_LIMIT, method="POST", token=wrapping)
        del wrapping
        problem = self._unwrapped(auth, answer, source)
        del answer
        if problem:
            raise ProviderError(
                f"vault: unwrapping the secret id on {display_url(self._url)} failed: {problem}"
                " (a wrapping token is valid once: was it unwrapped already?)",
                provider="vault",
            )

    @staticmethod
    def _unwrapped(auth: VaultAppRoleAuth, answer: bytes | Refusal, source: str) -> str:
        if isinstance(answer, Refusal):
            return _cause(answer)
        data, problem = decode(answer, source, 1)
        secret_id = data.get("secret_id") if isinstance(data, Mapping) else None
        if problem or not isinstance(secret_id, str) or not secret_id:
            return problem or f"unexpected response for {source}: no data.secret_id"
        auth.unwrapped = Masked(secret_id)
        return ""

    @staticmethod
    def _answer_of(answer: bytes | Refusal, source: str) -> tuple[Login | None, str]:
        if isinstance(answer, Refusal):
            return None, _cause(answer)
        return _parse_auth(answer, source)

    # -- background renewal ------------------------------------------------------------------

    def _schedule_locked(self) -> None:
        self._next = plan(
            now=self._timer(),
            issued_at=self.issued_at,
            lease_s=self.lease_s,
            login_ttl_s=self.login_ttl_s,
            renewable=self.renewable,
            rand=self._rand(),
        )
        self._state.notify_all()

    def _ensure_renewer(self) -> None:
        if not self.from_login or self._renewer is not None:
            return
        with self._state:
            if self._renewer is None and self.from_login:
                self._renewer = threading.Thread(
                    target=self._renew_loop,
                    args=(self._run,),
                    name="simpletuner-vault-renewal",
                    daemon=True,
                )
                self._renewer.start()

    def _renew_loop(self, run: int) -> None:
        retry_s = RETRY_MIN_S
        while True:
            with self._state:
                while self._run == run:
                    wait = self._next.at - self._timer()
                    if wait <= 0:
                        break
                    self._state.wait(min(wait, 60.0))
                if self._run != run:
                    return
                action, generation = self._next, self.generation
                self._next = Action("none", float("inf"))
            ok = self._act(action, generation)
            with self._state:
                if ok:
                    retry_s = RETRY_MIN_S
                elif self._next.kind == "none" and self._run == run:
                    # Try again soon, but never past the token's end.
                    self._next = Action(action.kind, self._timer() + retry_s)
                    retry_s = min(retry_s * 2, RETRY_MAX_S)

    def _act(self, action: Action, generation: int) -> bool:
        deadline = Deadline(self._timeout)
        try:
            with guarded(deadline):
                if action.kind == "renew":
                    return self._renew(deadline, generation)
                if action.kind == "login":
                    self._login_once(deadline, seen=generation, reason="")
                    return True
        except ProviderError as exc:
            logger.warning("vault: background %s failed: %s", action.kind, exc)
        except Exception as exc:  # a bug here must not end the thread silently
            logger.warning("vault: background %s failed: %s", action.kind, type(exc).__name__)
        return False

    def _renew(self, deadline: Deadline, generation: int) -> bool:
        token = self._token
        if token is None or generation != self.generation:
            return True  # replaced meanwhile: its own schedule applies
        started = self._timer()
        source = "auth/token/renew-self"
        answer = request(
            self._client(), source, deadline, ERROR_BODY_LIMIT, method="POST", token=token
        )
        del token
        if isinstance(answer, Refusal) and answer.status is not None:
            # Refused (revoked, expired, past its max TTL, or the server failing on it): a
            # new login now. Logged at INFO: a WARNING comes only if that login fails.
            self.renewal_failures += 1
            logger.info(
                "vault: renewing the token from %s was refused (%s); logging in again",
                self.auth.describe(),
                _cause(answer),
            )
            self._login_once(deadline, seen=generation, reason="")
            return True
        login, problem = self._answer_of(answer, source)
        del answer
        if login is None:
            self.renewal_failures += 1
            level = logging.WARNING if self._warned.first(("renew", generation)) else logging.DEBUG
            logger.log(level, "vault: renewing the token failed: %s; retrying", problem)
            return False
        with self._state:
            renewed = generation == self.generation
            if renewed:
                self.issued_at = started
                self.lease_s = login.lease_s
                self.renewable = login.renewable
                self.renewals += 1
                self._schedule_locked()
        logger.debug("vault: token renewed for %.0f s", login.lease_s)
        if renewed:
            self._report("token_renewed")
        return True

    def _report(self, kind: EventKind) -> None:
        """Tell the manager's listeners (``events``); a failure there never fails a login."""
        events = self._events
        if events is None:
            return
        try:
            events(kind)
        except Exception as exc:  # the relay only schedules; a bug there must not stop renewal
            logger.warning("vault: reporting a %s event failed: %s", kind, type(exc).__name__)

    # -- the end -----------------------------------------------------------------------------

    def stop(self) -> Masked | None:
        """Stop the renewal thread; return the login token to revoke (None: none, or given)."""
        with self._state:
            self._run += 1
            self._next = Action("none", float("inf"))
            self._state.notify_all()
            token = self._token if self.from_login else None
            if self.from_login:
                self._token = None
                self.from_login = False
                self.lease_s = 0.0
                self.generation += 1
            self._renewer = None
        return token

    def revoke(self, token: Masked) -> None:
        """Revoke a login token (blocking, in a worker thread); failures are logged only."""
        deadline = Deadline(min(self._timeout, 5.0))
        with guarded(deadline):
            answer = request(
                self._client(),
                "auth/token/revoke-self",
                deadline,
                ERROR_BODY_LIMIT,
                method="POST",
                token=token,
            )
        del token
        if isinstance(answer, Refusal):
            logger.warning("vault: revoking the login token failed: %s", _cause(answer))

    def __repr__(self) -> str:
        return f"TokenKeeper(auth={self.auth!r}, generation={self.generation})"


def _cause(refusal: Refusal) -> str:
    cause = refusal.describe()
    if refusal.errors:
        cause = f"{cause}: {'; '.join(refusal.errors)}"
    return cause
