"""Faults leave nothing behind: tasks, threads, file descriptors and sockets after aclose.

Each test runs one fault cycle as a warm-up (lazy imports, SDK models, thread pools), takes a
baseline, runs more cycles, and then requires every count back at the baseline. The only
tolerance is for idle pooled threads (the library's worker threads, asyncio's default
executor): they may stay after a cycle, never more than `POOL_TOLERANCE` above the baseline,
never over `POOL_LIMIT`, and they end after ten idle seconds or with the event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from simpletuner_secrets import FileSecretProvider, ProviderError, SecretProvider, SecretsManager
from simpletuner_secrets.providers.aws import AWSSecretsManagerProvider
from simpletuner_secrets.providers.vault import HashiCorpVaultProvider
from simpletuner_secrets.testing import InMemorySecretProvider
from tests.faults import PAST_TTL, TIMEOUT, TTL, Stopwatch, record
from tests.faults.proxy import FaultProxy
from tests.servers.bao import BaoServer, run_bao
from tests.servers.moto import MotoServer

pytestmark = pytest.mark.integration

KEY = "LEAK_KEY"
VALUE = "leak-check-value-4f5a6b7c"
FALLBACK = "leak-fallback-value-8d9e"
CYCLES = 2  # after the warm-up
#: Idle pooled threads allowed above the baseline (one Vault limiter's worth).
POOL_TOLERANCE = 4
#: Idle pooled threads allowed at all.
POOL_LIMIT = 16
SETTLE_S = 3.0
_POOLED = ("simpletuner-secrets worker", "asyncio_")


@dataclass(frozen=True)
class Snapshot:
    """What the process holds at one moment."""

    tasks: int
    threads: tuple[str, ...]  # names of threads that are not pooled workers
    pooled: int
    fds: int
    sockets: int

    @classmethod
    def take(cls) -> Snapshot:
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        names = [t.name for t in threading.enumerate()]
        others = tuple(sorted(n for n in names if not n.startswith(_POOLED)))
        fds = 0
        sockets = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue  # the listing's own descriptor, already closed
            fds += 1
            sockets += target.startswith("socket:")
        return cls(len(tasks), others, len(names) - len(others), fds, sockets)

    def problems(self, baseline: Snapshot) -> list[str]:
        found = []
        if self.tasks > baseline.tasks:
            found.append(f"tasks {baseline.tasks} -> {self.tasks}")
        if self.threads != baseline.threads:
            found.append(f"threads {baseline.threads} -> {self.threads}")
        if self.pooled > min(baseline.pooled + POOL_TOLERANCE, POOL_LIMIT):
            found.append(f"pooled threads {baseline.pooled} -> {self.pooled}")
        if self.fds > baseline.fds:
            found.append(f"fds {baseline.fds} -> {self.fds}")
        if self.sockets > baseline.sockets:
            found.append(f"sockets {baseline.sockets} -> {self.sockets}")
        return found


async def settled(baseline: Snapshot) -> tuple[Snapshot, float]:
    """Wait (at most SETTLE_S) until nothing is held above ``baseline``; fail with the excess."""
    watch = Stopwatch()
    while True:
        now = Snapshot.take()
        problems = now.problems(baseline)
        if not problems:
            return now, watch.elapsed
        if watch.elapsed > SETTLE_S:
            pytest.fail(f"still held {SETTLE_S} s after aclose: {'; '.join(problems)}")
        await asyncio.sleep(0.05)


async def check_no_growth(name: str, cycle: Callable[[], Awaitable[None]]) -> None:
    """Warm up with one cycle, then run CYCLES more: nothing may stay above the baseline."""
    await cycle()
    baseline, _ = await settled(Snapshot.take())  # lets the warm-up's stragglers finish
    for _ in range(CYCLES):
        await cycle()
    after, waited = await settled(baseline)
    record(
        f"leaks {name}",
        settle_s=waited,
        pooled_before=baseline.pooled,
        pooled_after=after.pooled,
        fds_before=baseline.fds,
        fds_after=after.fds,
    )


def managers(
    provider: SecretProvider, fallback: SecretProvider
) -> tuple[SecretsManager, SecretsManager]:
    """A manager with the provider alone (for stale), one with it above a fallback (skip)."""
    alone = SecretsManager([provider], cache_ttl=TTL, provider_timeout=TIMEOUT)
    chained = SecretsManager([provider, fallback], cache_ttl=TTL, provider_timeout=TIMEOUT)
    return alone, chained


async def stale_and_skip(
    alone: SecretsManager, chained: SecretsManager, inject: Callable[[], None]
) -> None:
    """Prime ``alone``; inject the fault; one stale lookup and one skipped cold lookup at once,
    plus a cold lookup abandoned by its caller mid-flight."""
    assert await alone.get(KEY) == VALUE
    inject()
    await asyncio.sleep(PAST_TTL)
    abandoned = asyncio.ensure_future(chained.get("OTHER_KEY"))
    stale, skipped = await asyncio.gather(alone.get(KEY), chained.get(KEY))
    assert (stale, skipped) == (VALUE, FALLBACK)
    abandoned.cancel()
    await asyncio.gather(abandoned, return_exceptions=True)
    await alone.aclose()
    await chained.aclose()


def seed(server: BaoServer) -> str:
    path = f"leaks-{secrets.token_hex(4)}"
    server.request("POST", f"secret/data/{path}", {"data": {KEY: VALUE}})
    return path


async def test_vault_killed_leaves_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """Vault killed mid-run (a real server per cycle): no task, thread, fd or socket left."""

    async def cycle() -> None:
        with run_bao(kv1_mount=None, audit=False) as server:
            provider = HashiCorpVaultProvider(
                url=server.url, token=server.token, path=seed(server), environ={}, timeout=2.0
            )
            alone, chained = managers(provider, InMemorySecretProvider({KEY: FALLBACK}))
            await stale_and_skip(alone, chained, server.stop)

    await check_no_growth("vault killed", cycle)


async def test_vault_stalled_past_the_timeout_leaves_nothing(bao: BaoServer) -> None:
    """Vault stalled (lookups cut by provider_timeout, worker threads abandoned): nothing left
    once the connections end."""
    port = urlsplit(bao.url).port
    assert port is not None

    async def cycle() -> None:
        with FaultProxy("127.0.0.1", port) as proxy:
            provider = HashiCorpVaultProvider(
                url=proxy.url, token=bao.token, path=seed(bao), environ={}, timeout=2.0
            )
            alone, chained = managers(provider, InMemorySecretProvider({KEY: FALLBACK}))
            await stale_and_skip(alone, chained, proxy.stall)

    await check_no_growth("vault stall", cycle)


async def test_aws_blackholed_leaves_nothing(moto_env: MotoServer, moto_secret: str) -> None:
    """AWS blackholed with botocore's default timeouts (requests cancelled by
    provider_timeout mid-flight): no task, client, fd or socket left after aclose."""
    moto_env.create_secret(moto_secret, string=json.dumps({KEY: VALUE}))

    async def cycle() -> None:
        with FaultProxy("127.0.0.1", moto_env.port) as proxy:
            provider = AWSSecretsManagerProvider(
                moto_secret, "us-east-1", endpoint_url=proxy.url, environ={}
            )
            alone, chained = managers(provider, InMemorySecretProvider({KEY: FALLBACK}))
            await stale_and_skip(alone, chained, proxy.blackhole)
            assert provider.open_clients == 0

    await check_no_growth("aws blackhole", cycle)


async def test_file_corrupted_leaves_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A secrets file corrupted, repaired and deleted, many times: no fd or thread left."""
    path = tmp_path / "secrets.json"

    def put(body: str) -> None:
        path.write_text(body)
        path.chmod(0o600)

    async def cycle() -> None:
        put(json.dumps({KEY: VALUE}))
        provider = FileSecretProvider(path)
        async with SecretsManager(
            [provider, InMemorySecretProvider({KEY: FALLBACK})], on_provider_error="raise"
        ) as manager:
            for round_ in range(20):
                assert await manager.get(KEY) == VALUE
                put('{"LEAK_KEY": ' + "x" * round_)  # corrupt, a new state each time
                provider.invalidate()  # re-read now rather than at the next re-check
                assert await manager.get(KEY) == VALUE  # the last good document
                put(json.dumps({KEY: VALUE}))
                provider.invalidate()
            path.unlink()
            provider.invalidate()
            assert await manager.get(KEY) == FALLBACK
            put('{"LEAK_KEY": ')
            provider.invalidate()
            with pytest.raises(ProviderError):
                await manager.get(KEY)  # no last good document after a deletion
        assert len([r for r in caplog.records if "last good document" in r.getMessage()]) >= 20

    await check_no_growth("file corrupt", cycle)
