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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from _harness import (
    RECORDED,
    Target,
    finish,
    machine,
    on_loop,
    parse_args,
    print_table,
    round_robin,
)

from simpletuner_secrets import (
    DocumentSecretProvider,
    EnvironmentSecretProvider,
    FileSecretProvider,
    SecretProvider,
)

OPS = 20_000
KEYS = [f"BENCH_PROVIDER_KEY_{i}" for i in range(20)]
VALUE = "bench-provider-value-0123456789"
#: Stampedes per round on a warm client, each beside one single get and the references.
STAMPEDES = 15


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
    bare: float  # 200 tasks sharing one load with no cache at all: a future each, one request
    one_fresh: float  # one get on a new provider (client creation included)
    wall_fresh: float  # 200 concurrent gets on a new provider


async def stampede(
    make: Callable[[], DocumentSecretProvider], count_requests: Callable[[], int]
) -> Stampede:
    """Measure 200 concurrent cold gets against one request, on a warm and a new client."""

    async def noop() -> None:
        return None

    probe = make()
    samples: dict[str, list[float]] = {"one": [], "wall": [], "floor": [], "bare": []}

    async def timed(field: str, awaitable: Awaitable[Any]) -> Any:
        start = time.perf_counter()
        result = await awaitable
        samples[field].append(time.perf_counter() - start)
        return result

    requests = 0
    try:
        await probe.get(KEYS[0])
        # Interleaved, so that every measure sees the same state of the machine.
        for _ in range(STAMPEDES):
            probe.invalidate()
            await timed("one", probe.get(KEYS[0]))
            probe.invalidate()
            before = count_requests()
            gets = asyncio.gather(*(probe.get(KEYS[i % 20]) for i in range(200)))
            values = await timed("wall", gets)
            requests = max(requests, count_requests() - before)
            assert values == [VALUE] * 200, "wrong values"
            await timed("floor", asyncio.gather(*(noop() for _ in range(200))))
            await timed("bare", bare_single_flight(probe))
    finally:
        await probe.aclose()

    # A new provider pays for its client (botocore's model, hvac's session): fewer samples.
    fresh_one, fresh_wall = [], []
    for _ in range(3):
        fresh = make()
        start = time.perf_counter()
        await fresh.get(KEYS[0])
        fresh_one.append(time.perf_counter() - start)
        await fresh.aclose()
        fresh = make()
        start = time.perf_counter()
        await asyncio.gather(*(fresh.get(KEYS[i % 20]) for i in range(200)))
        fresh_wall.append(time.perf_counter() - start)
        await fresh.aclose()
    med = statistics.median
    return Stampede(
        requests,
        med(samples["one"]),
        med(samples["wall"]),
        med(samples["floor"]),
        med(samples["bare"]),
        med(fresh_one),
        med(fresh_wall),
    )


async def bare_single_flight(provider: DocumentSecretProvider) -> None:
    """The least any coalescing cache can cost: 200 tasks, the first starts one load in a task
    of its own, each awaits a future of its own, the load resolves them all. No cache, no lock,
    no key handling, no statistics."""
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[Mapping[str, str]]] = []
    loads: list[asyncio.Task[None]] = []

    async def load() -> None:
        document = await provider.load_document()
        for future in futures:
            future.set_result(document)

    async def caller(key: str) -> str | None:
        if not loads:
            loads.append(loop.create_task(load()))
        future = loop.create_future()
        futures.append(future)
        return (await future).get(key)

    values = await asyncio.gather(*(caller(KEYS[i % 20]) for i in range(200)))
    assert values == [VALUE] * 200, "wrong values"


def bench_remote(rounds: int) -> dict[str, tuple[int, float, float, float]]:
    """Start both servers, seed one document each, measure the stampede on each."""
    out: dict[str, tuple[int, float, float, float]] = {}
    stack = contextlib.ExitStack()
    with stack:
        _bench_remote(remote_contenders(stack), rounds, out)
    return out


def _bench_remote(
    runs: dict[str, Callable[[], Awaitable[Stampede]]],
    rounds: int,
    out: dict[str, tuple[int, float, float, float]],
) -> None:
    print("\n### 200 concurrent cold gets of 20 keys, one back-end each\n")
    print(
        "| back-end | requests | one request | 200 gets | ratio | asyncio floor for 200 tasks "
        "| bare single-flight, no cache | its ratio "
        "| new provider: one get | new provider: 200 gets | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, run in runs.items():
        samples = [asyncio.run(run()) for _ in range(max(5, rounds // 2))]

        def med(field: str, samples: list[Stampede] = samples) -> float:
            return statistics.median(getattr(s, field) for s in samples)

        requests = max(s.requests for s in samples)
        one, wall, floor, bare = med("one"), med("wall"), med("floor"), med("bare")
        one_fresh, wall_fresh = med("one_fresh"), med("wall_fresh")
        print(
            f"| {name} | {requests} | {one * 1e3:.1f} ms | {wall * 1e3:.1f} ms "
            f"| {wall / one:.2f}x | {floor * 1e3:.1f} ms | {bare * 1e3:.1f} ms "
            f"| {bare / one:.2f}x "
            f"| {one_fresh * 1e3:.1f} ms | {wall_fresh * 1e3:.1f} ms "
            f"| {wall_fresh / one_fresh:.2f}x |"
        )
        out[name] = (requests, wall / one, wall_fresh / one_fresh, bare / one)
        RECORDED[f"200 concurrent cold gets, {name} (ms)"] = {
            "one request": one * 1e3,
            "200 gets": wall * 1e3,
            "asyncio floor for 200 tasks": floor * 1e3,
            "bare single-flight, no cache": bare * 1e3,
            "new provider: one get": one_fresh * 1e3,
            "new provider: 200 gets": wall_fresh * 1e3,
        }


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

    def aws() -> DocumentSecretProvider:
        return AWSSecretsManagerProvider("bench/providers", endpoint_url=moto.endpoint_url)

    def vault() -> DocumentSecretProvider:
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

    def aws_20ms() -> DocumentSecretProvider:
        return AWSSecretsManagerProvider("bench/providers", endpoint_url=aws_far)

    def vault_20ms() -> DocumentSecretProvider:
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
    for name, (requests, warm, fresh, bare) in bench_remote(args.rounds).items():
        targets.append((Target(f"{name}: back-end requests for 200 cold gets", 1), requests))
        targets.append((Target(f"{name}: 200 cold gets vs one get, new provider", 1.5), fresh))
        targets.append((Target(f"{name}: 200 cold gets vs one request, warm client", 1.5), warm))
        del bare  # a reference, not a target: recorded with the stampede table
    return finish("bench_providers", args, targets)


if __name__ == "__main__":
    sys.exit(main())
