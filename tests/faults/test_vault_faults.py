"""Vault faults on a real OpenBao server, directly and through the fault proxy.

Each fault is checked in the three documented outcomes at once: a value cached before keeps
being served (one WARNING), nothing cached and ``skip`` lets the next provider answer, nothing
cached and ``raise`` raises `ProviderError`; always within ``provider_timeout`` plus a margin.
Then recovery: once the fault is gone, a new value written to Vault is seen by itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest

from simpletuner_secrets import SecretsManager
from simpletuner_secrets.providers.vault import HashiCorpVaultProvider
from tests.faults import (
    KEY,
    MARGIN,
    PAST_TTL,
    STALE_WARNING,
    TIMEOUT,
    TTL,
    Fault,
    Stopwatch,
    check_all_outcomes,
    library_warnings,
    record,
)
from tests.faults.proxy import FaultProxy
from tests.servers.bao import BaoServer

pytestmark = pytest.mark.integration

VALUE = "vault-fault-value-9f8e7d6c"
ROTATED = "vault-fault-rotated-5b4a3c2d"
#: hvac's own request timeout: an abandoned worker thread is freed within this.
HVAC_TIMEOUT = 2.0
#: Longest wait for a new value once a fault is gone (backoff after one failure is <= 1 s).
RECOVERY_LIMIT = 3.0
TIMED_OUT = ("no answer within 1 s",)


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


def providers_on(url: str, token: str, path: str) -> Callable[[], HashiCorpVaultProvider]:
    return lambda: vault(url, token, path)


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

PROXY_FAULTS: dict[str, tuple[Callable[[FaultProxy], None], tuple[str, ...], float, bool]] = {
    # name: (inject, failure text, least time a warm lookup takes, must be immediate)
    "slow": (lambda p: p.latency(1500), TIMED_OUT, TIMEOUT * 0.9, False),
    "stall": (lambda p: p.stall(), TIMED_OUT, TIMEOUT * 0.9, False),
    "blackhole": (lambda p: p.blackhole(), TIMED_OUT, TIMEOUT * 0.9, False),
    "reset": (lambda p: p.reset(), ("ConnectionError",), 0.0, True),
}


@pytest.mark.parametrize("name", list(PROXY_FAULTS))
async def test_proxy_fault(
    name: str, bao: BaoServer, proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """Slow (latency > timeout), stalled, blackholed or reset: stale/skip/raise in time."""
    inject, messages, min_s, fast = PROXY_FAULTS[name]
    fault = Fault(name, lambda: inject(proxy), messages, min_s=min_s, fast=fast)
    make = providers_on(proxy.url, bao.token, seed(bao))
    await check_all_outcomes("vault", fault, make, VALUE, caplog, (VALUE, bao.token))


# -- faults of the server itself ---------------------------------------------------------


async def test_vault_killed(bao_fresh: BaoServer, caplog: pytest.LogCaptureFixture) -> None:
    """The server process stopped: connection refused; stale, skip and raise at once."""
    fault = Fault("killed", bao_fresh.stop, ("ConnectionError",), fast=True)
    make = providers_on(bao_fresh.url, bao_fresh.token, seed(bao_fresh))
    await check_all_outcomes("vault", fault, make, VALUE, caplog, (VALUE, bao_fresh.token))


async def test_vault_sealed(bao_fresh: BaoServer, caplog: pytest.LogCaptureFixture) -> None:
    """The server sealed (``bao operator seal``): HTTP 503; stale, skip and raise at once."""
    fault = Fault("sealed", lambda: bao_fresh.cli("operator", "seal"), ("HTTP 503",), fast=True)
    make = providers_on(bao_fresh.url, bao_fresh.token, seed(bao_fresh))
    await check_all_outcomes("vault", fault, make, VALUE, caplog, (VALUE, bao_fresh.token))


async def test_token_revoked(bao: BaoServer, caplog: pytest.LogCaptureFixture) -> None:
    """The manager's token revoked (``bao token revoke``): HTTP 403, no KV v1 fallback."""
    token = read_token(bao)
    fault = Fault("token revoked", lambda: bao.cli("token", "revoke", token), ("HTTP 403",))
    fault.fast = True
    made: list[HashiCorpVaultProvider] = []

    def make() -> HashiCorpVaultProvider:
        made.append(vault(bao.url, token, path))
        return made[-1]

    path = seed(bao)
    await check_all_outcomes("vault", fault, make, VALUE, caplog, (VALUE, token, bao.token))
    assert all(p.kv_version in (None, 2) for p in made)  # a 403 never switched to KV v1


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
    inject = PROXY_FAULTS[name][0]
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
        while watch.elapsed < 2.0:
            assert await manager.get(KEY) == VALUE
            lookups += 1
            await asyncio.sleep(0.02)
        calls = manager.stats()["providers"]["vault"]["calls"]
    warnings = library_warnings(caplog)
    assert len(warnings) == 1, warnings
    # One load, then retries 0.5-1 s and 1-2 s apart: at most 3 more calls in 2 s.
    assert calls <= 4, f"{calls} Vault calls for {lookups} lookups"
