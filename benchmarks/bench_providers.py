"""Providers: a warm file lookup against a live environment read, and cold stampedes on the
real AWS (moto) and Vault (OpenBao) servers, counted request by request.

Run: `nox -s bench` or `python benchmarks/bench_providers.py [--rounds N] [--quick] [--check]`.
The remote part starts `moto_server` and `bao server -dev` on loopback ports itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from _harness import Target, finish, machine, on_loop, parse_args, print_table, round_robin

from simpletuner_secrets import EnvironmentSecretProvider, FileSecretProvider, SecretProvider

OPS = 20_000
KEYS = [f"BENCH_PROVIDER_KEY_{i}" for i in range(20)]
VALUE = "bench-provider-value-0123456789"


def bench_file_vs_env(rounds: int) -> float:
    loop = asyncio.new_event_loop()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "secrets.json"
        path.write_text(json.dumps({k: VALUE for k in KEYS}))
        path.chmod(0o600)
        file_provider = FileSecretProvider(path)
        env_provider = EnvironmentSecretProvider()
        for k in KEYS:
            os.environ[k] = VALUE
        try:
            loop.run_until_complete(file_provider.get(KEYS[0]))

            def runner(provider: SecretProvider) -> Callable[[int], float]:
                async def body(ops: int) -> None:
                    get = provider.get
                    for _ in range(ops // len(KEYS)):
                        for k in KEYS:
                            await get(k)

                return on_loop(loop, body)

            results = round_robin(
                {
                    "await FileSecretProvider.get (warm)": runner(file_provider),
                    "await EnvironmentSecretProvider.get": runner(env_provider),
                },
                rounds,
                OPS // 4,
            )
        finally:
            for k in KEYS:
                os.environ.pop(k, None)
            loop.run_until_complete(file_provider.aclose())
            loop.close()
    print_table(
        "Warm get: file provider vs environment provider",
        results,
        "await EnvironmentSecretProvider.get",
    )
    return results.median("await FileSecretProvider.get (warm)") / results.median(
        "await EnvironmentSecretProvider.get"
    )


@dataclass
class Stampede:
    """One round of the stampede measurements on one back-end (seconds)."""

    requests: int  # back-end requests for 200 concurrent gets, counted below the provider
    one: float  # one get on a warm client, document forgotten: one request's latency
    wall: float  # 200 concurrent gets of 20 keys on the same warm client
    floor: float  # asyncio.gather of 200 no-op coroutines: the event loop's own share
    one_fresh: float  # one get on a new provider (client creation included)
    wall_fresh: float  # 200 concurrent gets on a new provider


async def stampede(
    make: Callable[[], SecretProvider], count_requests: Callable[[], int]
) -> Stampede:
    """Measure 200 concurrent cold gets against one request, on a warm and a new client."""

    async def noop() -> None:
        return None

    probe = make()
    try:
        await probe.get(KEYS[0])
        singles = []
        for _ in range(7):
            probe.invalidate()  # type: ignore[attr-defined]
            start = time.perf_counter()
            await probe.get(KEYS[0])
            singles.append(time.perf_counter() - start)
        probe.invalidate()  # type: ignore[attr-defined]
        before = count_requests()
        start = time.perf_counter()
        values = await asyncio.gather(*(probe.get(KEYS[i % 20]) for i in range(200)))
        wall = time.perf_counter() - start
        requests = count_requests() - before
        assert values == [VALUE] * 200, "wrong values"
        start = time.perf_counter()
        await asyncio.gather(*(noop() for _ in range(200)))
        floor = time.perf_counter() - start
    finally:
        await probe.aclose()

    fresh = make()
    start = time.perf_counter()
    await fresh.get(KEYS[0])
    one_fresh = time.perf_counter() - start
    await fresh.aclose()
    fresh = make()
    start = time.perf_counter()
    await asyncio.gather(*(fresh.get(KEYS[i % 20]) for i in range(200)))
    wall_fresh = time.perf_counter() - start
    await fresh.aclose()
    return Stampede(requests, statistics.median(singles), wall, floor, one_fresh, wall_fresh)


def bench_remote(rounds: int) -> dict[str, tuple[int, float, float]]:
    """Start both servers, seed one document each, measure the stampede on each."""
    out: dict[str, tuple[int, float, float]] = {}
    stack = contextlib.ExitStack()
    with stack:
        _bench_remote(remote_contenders(stack), rounds, out)
    return out


def _bench_remote(
    runs: dict[str, Callable[[], Awaitable[Stampede]]],
    rounds: int,
    out: dict[str, tuple[int, float, float]],
) -> None:
    print("\n### 200 concurrent cold gets of 20 keys, one back-end each\n")
    print(
        "| back-end | requests | one request | 200 gets | ratio | asyncio floor for 200 tasks "
        "| ratio less the floor | new provider: one get | new provider: 200 gets | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, run in runs.items():
        samples = [asyncio.run(run()) for _ in range(max(5, rounds // 2))]

        def med(field: str, samples: list[Stampede] = samples) -> float:
            return statistics.median(getattr(s, field) for s in samples)

        requests = max(s.requests for s in samples)
        one, wall, floor = med("one"), med("wall"), med("floor")
        one_fresh, wall_fresh = med("one_fresh"), med("wall_fresh")
        print(
            f"| {name} | {requests} | {one * 1e3:.1f} ms | {wall * 1e3:.1f} ms "
            f"| {wall / one:.2f}x | {floor * 1e3:.1f} ms | {(wall - floor) / one:.2f}x "
            f"| {one_fresh * 1e3:.1f} ms | {wall_fresh * 1e3:.1f} ms "
            f"| {wall_fresh / one_fresh:.2f}x |"
        )
        out[name] = (requests, wall / one, wall_fresh / one_fresh)


def remote_contenders(
    stack: contextlib.ExitStack,
) -> dict[str, Callable[[], Awaitable[Stampede]]]:
    """Start moto and OpenBao, seed the same 20 keys in each, and return their stampedes."""
    from aiobotocore.endpoint import AioEndpoint

    from simpletuner_secrets import AWSSecretsManagerProvider, HashiCorpVaultProvider
    from tests.servers.bao import run_bao
    from tests.servers.moto import run_moto

    document = {k: VALUE for k in KEYS}
    moto = stack.enter_context(run_moto())
    moto.create_secret("bench/providers", string=json.dumps(document))
    for name, value in moto.env().items():
        os.environ[name] = value
    bao = stack.enter_context(run_bao(kv1_mount=None))
    bao.request("POST", "secret/data/bench-providers", {"data": document})

    # AWS requests are counted where botocore sends them, below the provider.
    sent = [0]
    original = AioEndpoint._send

    async def counting_send(self: Any, request: Any) -> Any:
        sent[0] += 1
        return await original(self, request)

    AioEndpoint._send = counting_send
    stack.callback(setattr, AioEndpoint, "_send", original)

    def aws() -> SecretProvider:
        return AWSSecretsManagerProvider("bench/providers", endpoint_url=moto.endpoint_url)

    def vault() -> SecretProvider:
        return HashiCorpVaultProvider(bao.url, bao.token, "bench-providers", environ={})

    # Vault requests are counted by the server's own audit log.
    audit_start = bao.audit_mark()

    def vault_count() -> int:
        return len(audit_start.responses("secret/data/bench-providers"))

    # The same back-ends 20 ms of round trip away (10 ms each way through a loopback proxy),
    # as a cloud service in the same region is.
    from urllib.parse import urlsplit

    from tests.faults.proxy import FaultProxy

    def delayed(url: str) -> str:
        parts = urlsplit(url)
        proxy = stack.enter_context(FaultProxy(parts.hostname or "127.0.0.1", parts.port or 80))
        proxy.latency(10)
        return proxy.url

    aws_far, vault_far = delayed(moto.endpoint_url), delayed(bao.url)

    def aws_20ms() -> SecretProvider:
        return AWSSecretsManagerProvider("bench/providers", endpoint_url=aws_far)

    def vault_20ms() -> SecretProvider:
        return HashiCorpVaultProvider(vault_far, bao.token, "bench-providers", environ={})

    return {
        "AWS Secrets Manager (moto)": lambda: stampede(aws, lambda: sent[0]),
        "Vault KV v2 (OpenBao)": lambda: stampede(vault, vault_count),
        "AWS (moto), 20 ms round trip": lambda: stampede(aws_20ms, lambda: sent[0]),
        "Vault (OpenBao), 20 ms round trip": lambda: stampede(vault_20ms, vault_count),
    }


def main() -> int:
    args = parse_args(__doc__ or "")
    print(f"# bench_providers ({machine()}, {args.rounds} rounds, medians)")
    file_ratio = bench_file_vs_env(args.rounds)
    targets: list[tuple[Target, float]] = [
        (Target("warm file get vs env get", 2.0), file_ratio),
    ]
    for name, (requests, warm, fresh) in bench_remote(args.rounds).items():
        targets.append((Target(f"{name}: back-end requests for 200 cold gets", 1), requests))
        targets.append((Target(f"{name}: 200 cold gets vs one get, new provider", 1.5), fresh))
        targets.append((Target(f"{name}: 200 cold gets vs one request, warm client", 1.5), warm))
    return finish("bench_providers", args, targets)


if __name__ == "__main__":
    sys.exit(main())
