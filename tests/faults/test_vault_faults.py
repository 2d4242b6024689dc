"""Vault faults on a real OpenBao server, directly and through the fault proxy.

Each fault is checked in the three documented outcomes: a value cached before keeps being
served (one WARNING), nothing cached and ``skip`` lets the next provider answer, nothing cached
and ``raise`` raises `ProviderError`; always within ``provider_timeout`` plus a margin. Then
recovery: once the fault is gone, a new value written to Vault is seen by itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from simpletuner_secrets import ProviderError, SecretsManager
from simpletuner_secrets.providers.vault import HashiCorpVaultProvider
from simpletuner_secrets.testing import InMemorySecretProvider
from tests.faults import MARGIN, PAST_TTL, TIMEOUT, TTL, Stopwatch, library_warnings, record
from tests.faults.proxy import FaultProxy
from tests.servers.bao import BaoServer

pytestmark = pytest.mark.integration

KEY = "FAULT_KEY"
VALUE = "vault-fault-value-9f8e7d6c"
ROTATED = "vault-fault-rotated-5b4a3c2d"
FALLBACK = "memory-fallback-value-1a2b"
#: hvac's own request timeout: an abandoned worker thread is freed within this.
HVAC_TIMEOUT = 2.0
#: Longest wait for a new value once a fault is gone (backoff after one failure is <= 1 s).
RECOVERY_LIMIT = 3.0
STALE_WARNING = "serving the last good answer"
SKIP_WARNING = "failed and is skipped"
OUTCOMES = ("stale", "skip", "raise")


def port_of(server: BaoServer) -> int:
    port = urlsplit(server.url).port
    assert port is not None
    return port


def seed(server: BaoServer, value: str = VALUE) -> str:
    """Write ``KEY=value`` at a new path of the server's ``secret/`` mount; return the path."""
    path = f"faults-{secrets.token_hex(4)}"
    write(server, path, value)
    return path


def write(server: BaoServer, path: str, value: str) -> None:
    server.request("POST", f"secret/data/{path}", {"data": {KEY: value}})


def vault(url: str, token: str, path: str) -> HashiCorpVaultProvider:
    return HashiCorpVaultProvider(url=url, token=token, path=path, environ={}, timeout=HVAC_TIMEOUT)


def manager_for(provider: HashiCorpVaultProvider, outcome: str) -> SecretsManager:
    """``stale``: Vault alone; ``skip``/``raise``: Vault above an in-memory provider."""
    chain: list[object] = [provider]
    if outcome != "stale":
        chain.append(InMemorySecretProvider({KEY: FALLBACK}))
    return SecretsManager(
        providers=chain,  # type: ignore[arg-type]
        cache_ttl=TTL,
        provider_timeout=TIMEOUT,
        on_provider_error="raise" if outcome == "raise" else "skip",
    )


@dataclass
class Fault:
    """How to break Vault for one case, and what the failure looks like."""

    name: str
    inject: Callable[[], None]
    message: str  # a fragment of the ProviderError's message
    slow: bool  # detected by provider_timeout rather than by an error answer


async def check_outcome(
    fault: Fault,
    outcome: str,
    provider: HashiCorpVaultProvider,
    caplog: pytest.LogCaptureFixture,
    secrets_in_play: tuple[str, ...],
) -> float:
    """Run one fault in one outcome; assert the documented result and timing; return it."""
    caplog.set_level(logging.WARNING)
    async with manager_for(provider, outcome) as manager:
        if outcome == "stale":
            assert await manager.get(KEY) == VALUE
        await asyncio.to_thread(fault.inject)
        if outcome == "stale":
            await asyncio.sleep(PAST_TTL)
        watch = Stopwatch()
        if outcome == "raise":
            with pytest.raises(ProviderError) as info:
                await manager.get(KEY)
            elapsed = watch.elapsed
            assert fault.message in str(info.value)
            assert info.value.provider == "vault"
        else:
            got = await manager.get(KEY)
            elapsed = watch.elapsed
            assert got == (VALUE if outcome == "stale" else FALLBACK)
        assert elapsed < TIMEOUT + MARGIN, f"{fault.name}/{outcome} took {elapsed:.2f} s"
        if fault.slow:
            assert elapsed >= TIMEOUT * 0.9  # it was the timeout that decided
            assert manager.stats()["providers"]["vault"]["timeouts"] >= 1
        if outcome == "stale":
            # Retries back off: the next lookups are answered from the stale value at once.
            for _ in range(3):
                watch = Stopwatch()
                assert await manager.get(KEY) == VALUE
                assert watch.elapsed < 0.1
            info_ = await manager.explain(KEY)
            assert info_["provider"] == "vault" and info_["stale"] is True
            assert len(library_warnings(caplog, STALE_WARNING)) == 1
        elif outcome == "skip":
            assert len(library_warnings(caplog, SKIP_WARNING)) == 1
        else:
            assert library_warnings(caplog) == []  # raised, not logged
    assert library_warnings(caplog) == library_warnings(
        caplog, STALE_WARNING if outcome == "stale" else SKIP_WARNING
    ), "unexpected warnings"
    for secret in secrets_in_play:
        assert secret not in caplog.text
    record(f"vault {fault.name} -> {outcome}", detect_s=elapsed)
    return elapsed


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def proxy(bao: BaoServer) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session's OpenBao server."""
    with FaultProxy("127.0.0.1", port_of(bao)) as running:
        yield running


def unseal_key(server: BaoServer) -> str:
    """The unseal key the dev server prints (shortly after it reports healthy)."""
    deadline = time.monotonic() + 10
    while True:
        found = re.search(r"Unseal Key: (\S+)", server.log_path.read_text(errors="replace"))
        if found:
            return found.group(1)
        assert time.monotonic() < deadline, "no unseal key in the dev server's log"
        time.sleep(0.05)


def read_token(server: BaoServer) -> str:
    """A child token whose policy only reads ``secret/data/faults-*``."""
    server.cli(
        "policy",
        "write",
        "faults-read",
        "-",
        input='path "secret/data/faults-*" { capabilities = ["read"] }\n',
    )
    done = server.cli("token", "create", "-policy=faults-read", "-format=json")
    return str(json.loads(done.stdout)["auth"]["client_token"])


# -- faults through the proxy ------------------------------------------------------------

PROXY_FAULTS = {
    "slow": (lambda p: p.latency(1500), "no answer within 1 s", True),
    "stall": (lambda p: p.stall(), "no answer within 1 s", True),
    "blackhole": (lambda p: p.blackhole(), "no answer within 1 s", True),
    "reset": (lambda p: p.reset(), "ConnectionError", False),
}


@pytest.mark.parametrize("outcome", OUTCOMES)
@pytest.mark.parametrize("name", list(PROXY_FAULTS))
async def test_proxy_fault(
    name: str,
    outcome: str,
    bao: BaoServer,
    proxy: FaultProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Slow, stalled, blackholed or reset Vault: stale/skip/raise within the timeout."""
    inject, message, slow = PROXY_FAULTS[name]
    fault = Fault(name, lambda: inject(proxy), message, slow)
    provider = vault(proxy.url, bao.token, seed(bao))
    await check_outcome(fault, outcome, provider, caplog, (VALUE, bao.token))


# -- faults of the server itself ---------------------------------------------------------


@pytest.mark.parametrize("outcome", OUTCOMES)
async def test_vault_killed(
    outcome: str, bao_fresh: BaoServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The server process stopped: connection refused, stale/skip/raise at once."""
    fault = Fault("killed", bao_fresh.stop, "ConnectionError", False)
    provider = vault(bao_fresh.url, bao_fresh.token, seed(bao_fresh))
    elapsed = await check_outcome(fault, outcome, provider, caplog, (VALUE, bao_fresh.token))
    assert elapsed < 0.5


@pytest.mark.parametrize("outcome", OUTCOMES)
async def test_vault_sealed(
    outcome: str, bao_fresh: BaoServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The server sealed (``bao operator seal``): HTTP 503, stale/skip/raise at once."""
    fault = Fault("sealed", lambda: bao_fresh.cli("operator", "seal"), "HTTP 503", False)
    provider = vault(bao_fresh.url, bao_fresh.token, seed(bao_fresh))
    elapsed = await check_outcome(fault, outcome, provider, caplog, (VALUE, bao_fresh.token))
    assert elapsed < 0.5


@pytest.mark.parametrize("outcome", OUTCOMES)
async def test_token_revoked(
    outcome: str, bao: BaoServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The manager's token revoked (``bao token revoke``): HTTP 403, no KV v1 fallback."""
    token = read_token(bao)
    fault = Fault("token revoked", lambda: bao.cli("token", "revoke", token), "HTTP 403", False)
    provider = vault(bao.url, token, seed(bao))
    elapsed = await check_outcome(fault, outcome, provider, caplog, (VALUE, token, bao.token))
    assert elapsed < 0.5
    assert provider.kv_version in (None, 2)


# -- recovery ----------------------------------------------------------------------------


async def wait_for_value(manager: SecretsManager, wanted: str, limit: float) -> float:
    """Poll every 20 ms until ``KEY`` reads ``wanted``; return the seconds it took."""
    watch = Stopwatch()
    while (got := await manager.get(KEY)) != wanted:
        assert got in (VALUE, ROTATED), "a lookup during recovery lost the value"
        assert watch.elapsed < limit, f"{wanted!r} not seen within {limit} s"
        await asyncio.sleep(0.02)
    return watch.elapsed


@pytest.mark.parametrize("name", ["slow", "stall", "blackhole", "reset"])
async def test_recovers_after_a_proxy_fault(
    name: str, bao: BaoServer, proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """Fault on, stale served; fault off, a value rotated meanwhile is seen by itself."""
    inject, _, _ = PROXY_FAULTS[name]
    path = seed(bao)
    caplog.set_level(logging.WARNING)
    async with SecretsManager(
        [vault(proxy.url, bao.token, path)], cache_ttl=TTL, provider_timeout=TIMEOUT
    ) as manager:
        assert await manager.get(KEY) == VALUE
        inject(proxy)
        await asyncio.sleep(PAST_TTL)
        watch = Stopwatch()
        assert await manager.get(KEY) == VALUE
        detect = watch.elapsed
        assert detect < TIMEOUT + MARGIN
        write(bao, path, ROTATED)
        proxy.passthrough()
        recover = await wait_for_value(manager, ROTATED, RECOVERY_LIMIT)
    assert len(library_warnings(caplog, STALE_WARNING)) == 1
    record(f"vault {name} recovery", detect_s=detect, recover_s=recover)


async def test_recovers_after_unseal(
    bao_fresh: BaoServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Sealed, then unsealed with the dev server's key: the rotated value is seen by itself."""
    key = unseal_key(bao_fresh)
    path = seed(bao_fresh)
    caplog.set_level(logging.WARNING)
    async with SecretsManager(
        [vault(bao_fresh.url, bao_fresh.token, path)], cache_ttl=TTL, provider_timeout=TIMEOUT
    ) as manager:
        assert await manager.get(KEY) == VALUE
        write(bao_fresh, path, ROTATED)  # written before the seal: seen only once unsealed
        await asyncio.to_thread(bao_fresh.cli, "operator", "seal")
        await asyncio.sleep(PAST_TTL)
        watch = Stopwatch()
        assert await manager.get(KEY) == VALUE
        detect = watch.elapsed
        await asyncio.to_thread(bao_fresh.cli, "operator", "unseal", key)
        recover = await wait_for_value(manager, ROTATED, RECOVERY_LIMIT)
    assert detect < 0.5
    assert len(library_warnings(caplog, STALE_WARNING)) == 1
    assert key not in caplog.text
    record("vault sealed recovery", detect_s=detect, recover_s=recover)


async def test_a_polling_client_during_an_outage_gets_one_warning_and_backoff(
    bao_fresh: BaoServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Lookups every 20 ms through an outage that starts before expiry: one WARNING in all,
    and the dead server is retried with backoff, not once per lookup."""
    path = seed(bao_fresh)
    caplog.set_level(logging.WARNING)
    ttl = 1.0
    async with SecretsManager(
        [vault(bao_fresh.url, bao_fresh.token, path)], cache_ttl=ttl, provider_timeout=TIMEOUT
    ) as manager:
        assert await manager.get(KEY) == VALUE
        await asyncio.to_thread(bao_fresh.stop)
        watch = Stopwatch()
        lookups = 0
        # From before the refresh-ahead point (80% of the TTL) to well past expiry.
        while watch.elapsed < 2.5:
            assert await manager.get(KEY) == VALUE
            lookups += 1
            await asyncio.sleep(0.02)
        calls = manager.stats()["providers"]["vault"]["calls"]
    warnings = library_warnings(caplog)
    assert len(warnings) == 1, warnings
    # One load, then retries 0.5-1 s and 1-2 s apart: at most 3 more calls in 2.5 s.
    assert calls <= 4, f"{calls} Vault calls for {lookups} lookups"
