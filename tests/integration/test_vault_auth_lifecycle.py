"""The token's life on a real OpenBao server (SPEC 8): a role issuing tokens with ttl=2s and
max_ttl=8s, looked up every 0.1 s for 20 s through a manager with a 0.5 s cache TTL."""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from pathlib import Path

import pytest

from simpletuner_secrets import SecretsEvent, SecretsManager, VaultAppRoleAuth
from simpletuner_secrets.providers.vault import HashiCorpVaultProvider
from tests.heartbeat import max_gap_during
from tests.leak_audit import register_secret
from tests.servers.bao import BaoServer

pytestmark = pytest.mark.integration

LOGGER = "simpletuner_secrets.providers.vault"
RUN_S = 20.0
EVERY_S = 0.1
#: A wide hang guard per lookup: the machine is shared.
LOOKUP_GUARD_S = 10.0


def short_lived_approle(
    bao: BaoServer, tmp_path: Path, prefix: str, *, ttl: str = "2s", max_ttl: str
) -> tuple[HashiCorpVaultProvider, tuple[str, str, str, str]]:
    """A Vault provider logging in by AppRole to a role of its own (tokens of ``ttl`` and
    ``max_ttl``), reading a path holding ``HF_TOKEN=hf_<prefix>`` with a read-only policy;
    and the role as `short_lived_role` gives it (mount, path, role id, secret id)."""
    role = short_lived_role(bao, f"hf_{prefix}", ttl, max_ttl)
    mount, path, role_id, secret_id = role
    home = tmp_path / "home"
    home.mkdir()
    vault = HashiCorpVaultProvider(
        bao.url,
        path=path,
        auth=VaultAppRoleAuth(role_id, secret_id, mount=mount),
        environ={"HOME": str(home)},
    )
    return vault, role


async def test_short_lived_tokens_never_fail_a_lookup(
    bao: BaoServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """20 s of lookups every 0.1 s over tokens of ttl=2s, max_ttl=8s: no lookup fails, none
    is served stale, the keeper both renews and logs in again; a revocation of every token
    of the role at 10 s is repaired within 3 s with at most one WARNING."""
    vault, (mount, *_) = short_lived_approle(bao, tmp_path, "life", max_ttl="8s")
    manager = SecretsManager(providers=[vault], cache_ttl=0.5, on_provider_error="raise")
    answers: list[str | None] = []
    revoked_at: float | None = None
    repaired_at: float | None = None
    generation_before = -1
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        start = time.monotonic()
        while (now := time.monotonic()) - start < RUN_S:
            answers.append(await asyncio.wait_for(manager.get("HF_TOKEN"), LOOKUP_GUARD_S))
            if revoked_at is None and now - start >= RUN_S / 2:
                generation_before = vault.auth_status()["logins"]
                await asyncio.to_thread(bao.cli, "token", "revoke", "-mode=path", f"auth/{mount}/")
                revoked_at = time.monotonic()
            elif (
                revoked_at is not None
                and repaired_at is None
                and vault.auth_status()["logins"] > generation_before
            ):
                repaired_at = time.monotonic()
            await asyncio.sleep(EVERY_S)
        stats = manager.stats()["providers"]["vault"]
        status = vault.auth_status()
        await manager.aclose()
    assert len(answers) > 50
    assert answers == ["hf_life"] * len(answers)
    assert stats["errors"] == 0 and stats["timeouts"] == 0
    assert stats["stale_served"] == 0, stats
    assert status["renewals"] >= 2, status
    assert status["logins"] >= 3, status  # the first, at least one near max TTL, the repair
    assert revoked_at is not None and repaired_at is not None
    assert repaired_at - revoked_at < 3.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) <= 1, warnings


async def test_renewals_and_relogins_never_block_the_loop(bao: BaoServer, tmp_path: Path) -> None:
    """6 s of lookups over ttl=2s, max_ttl=4s tokens (renewals and a new login on the way),
    measured by a 5 ms heartbeat: the loop never stalls 0.1 s."""
    vault, _ = short_lived_approle(bao, tmp_path, "beat", max_ttl="4s")
    manager = SecretsManager(providers=[vault], cache_ttl=0.5, on_provider_error="raise")

    async def lookups() -> list[str | None]:
        got = []
        start = time.monotonic()
        while time.monotonic() - start < 6.0:
            got.append(await asyncio.wait_for(manager.get("HF_TOKEN"), LOOKUP_GUARD_S))
            await asyncio.sleep(EVERY_S)
        return got

    stall, answers = await max_gap_during(lookups())
    status = vault.auth_status()
    await manager.aclose()
    assert set(answers) == {"hf_beat"}
    assert status["renewals"] >= 1 and status["logins"] >= 2, status
    assert stall < 0.1, f"the event loop stalled {stall * 1000:.0f} ms"


def short_lived_role(
    bao: BaoServer, value: str, ttl: str, max_ttl: str
) -> tuple[str, str, str, str]:
    """A KV secret and an AppRole reading it with short-lived tokens: (mount, path, role id,
    secret id), the secret id registered with the leak audit."""
    mount = f"approle-{secrets.token_hex(4)}"
    path = f"events-{secrets.token_hex(4)}"
    bao.cli("kv", "put", f"secret/{path}", f"HF_TOKEN={value}")
    policy = f"events-{secrets.token_hex(4)}"
    hcl = f'path "secret/data/{path}" {{ capabilities = ["read"] }}'
    bao.cli("policy", "write", policy, "-", input=hcl)
    bao.cli("auth", "enable", f"-path={mount}", "approle")
    bao.cli(
        "write",
        f"auth/{mount}/role/app",
        f"token_policies={policy}",
        f"token_ttl={ttl}",
        f"token_max_ttl={max_ttl}",
    )
    role_id = bao.cli("read", "-field=role_id", f"auth/{mount}/role/app/role-id").stdout.strip()
    secret_id = bao.cli(
        "write", "-f", "-field=secret_id", f"auth/{mount}/role/app/secret-id"
    ).stdout.strip()
    register_secret(secret_id)
    return mount, path, role_id, secret_id


async def test_login_and_renewal_are_events_on_the_managers_loop(
    bao: BaoServer, tmp_path: Path
) -> None:
    """on_event gets `login` on first use and `token_renewed` after the keeper's background
    renewal (ttl=2s tokens), on the manager's loop thread, with no value, secret id or token
    in any field."""
    vault, (_, _, role_id, secret_id) = short_lived_approle(bao, tmp_path, "events", max_ttl="60s")
    events: list[SecretsEvent] = []
    threads: set[int] = set()
    tokens: set[str] = set()

    def listener(event: SecretsEvent) -> None:
        events.append(event)
        threads.add(threading.get_ident())
        token = vault._keeper._token  # to check that no event holds it
        if token is not None:
            tokens.add(token.reveal())

    manager = SecretsManager(
        providers=[vault], cache_ttl=60, on_provider_error="raise", on_event=listener
    )
    try:
        assert await asyncio.wait_for(manager.get("HF_TOKEN"), LOOKUP_GUARD_S) == "hf_events"
        deadline = time.monotonic() + 20.0  # a wide hang guard: a renewal is due after ~1.5 s
        while not any(e.kind == "token_renewed" for e in events):
            assert time.monotonic() < deadline, f"no token_renewed event: {events}"
            await asyncio.sleep(0.05)
        status = vault.auth_status()
    finally:
        await manager.aclose()
    kinds = [e.kind for e in events]
    assert kinds[0] == "login" and "token_renewed" in kinds, kinds
    assert status["renewals"] >= 1
    assert threads == {threading.get_ident()}
    assert {(e.provider, e.key, e.age_s) for e in events} == {("vault", None, None)}
    for event in events:
        text = repr(event)
        assert "hf_events" not in text and secret_id not in text and role_id not in text
        assert all(token not in text for token in tokens)
    assert tokens


def test_the_sync_facade_gets_login_events_on_its_own_loop(bao: BaoServer, tmp_path: Path) -> None:
    """Through `m.sync.get` the login is an event too, delivered on the facade's loop thread,
    never in the worker thread that logged in."""
    vault, _ = short_lived_approle(bao, tmp_path, "sync_events", ttl="60s", max_ttl="120s")
    got: list[tuple[SecretsEvent, str]] = []
    manager = SecretsManager(
        providers=[vault],
        cache_ttl=60,
        on_provider_error="raise",
        on_event=lambda event: got.append((event, threading.current_thread().name)),
    )
    try:
        assert manager.sync.get("HF_TOKEN") == "hf_sync_events"
        deadline = time.monotonic() + LOOKUP_GUARD_S
        while not got:
            assert time.monotonic() < deadline, "no login event"
            time.sleep(0.01)
    finally:
        manager.sync.close()
    assert got[0][0] == SecretsEvent("login", "vault")
    assert {name for _, name in got} == {"simpletuner-secrets-sync"}  # the facade's loop
