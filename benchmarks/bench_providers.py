"""Providers: a warm file lookup against a live environment read, and cold stampedes on the
real AWS (moto) and Vault (OpenBao) servers, counted request by request.

200 cold gets are compared with one request and with two cacheless single-flight floors
measured beside them: the load in a task of its own, and the first caller loading inline.

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
    gc_rule,
    machine,
    on_loop,
    parse_args,
    print_table,
    rotated,
    round_robin,
    settle,
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
#: Interleaved sets per round on a warm client: one request, 200 gets and the floors each.
STAMPEDES = 15
#: The same with --quick.
QUICK_STAMPEDES = 4


def bench_file_vs_env(rounds: int) -> list[float]:
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
    return results.ratios(
        "await FileSecretProvider.get (warm)", "await EnvironmentSecretProvider.get"
    )


#: The measures of one interleaved set, in the order of its first round (then rotated).
MEASURES = (
    "one request",  # one get on a warm client, document forgotten: one request's latency
    "200 gets",  # 200 concurrent gets of 20 keys on the same warm client, document forgotten
    "asyncio floor",  # asyncio.gather of 200 no-op coroutines: the event loop's own share
    "bare single-flight",  # 200 tasks, the load in a task of its own, a future per caller
    "inline single-flight",  # 200 tasks, the first loads in its own coroutine, one future
)
#: The floors a coalescing cache is compared with: each does one request for 200 callers.
FLOORS = ("bare single-flight", "inline single-flight")


@dataclass
class RequestCount:
    """Back-end requests counted without work beside the timed samples: ``mark`` is a cheap
    position taken just before and after each sample (a counter, an audit log's size), and
    ``between`` counts the requests between two positions once the sets are done. (Reading
    and parsing a growing audit log next to each sample cost every measure of the set about
    0.3 ms here, and the 200 gets more than the floors.)"""

    mark: Callable[[], int]
    between: Callable[[int, int], int]


@dataclass
class Stampede:
    """The samples of one round on one back-end (seconds), one per interleaved set."""

    samples: dict[str, list[float]]
    requests: list[int]  # back-end requests for 200 concurrent gets, counted below the provider
    one_fresh: list[float]  # one get on a new provider (client creation included)
    wall_fresh: list[float]  # 200 concurrent gets on a new provider


async def stampede(
    make: Callable[[], DocumentSecretProvider],
    count: RequestCount,
    first: int,
    sets: int,
) -> Stampede:
    """Measure 200 concurrent cold gets against one request and the floors, on a warm client
    (``sets`` interleaved sets, rotated from set number ``first``) and on new ones."""
    probe = make()
    samples: dict[str, list[float]] = {name: [] for name in MEASURES}
    marks: list[tuple[int, int]] = []

    async def noop() -> None:
        return None

    async def one_request() -> float:
        probe.invalidate()
        start = time.perf_counter()
        await probe.get(KEYS[0])
        return time.perf_counter() - start

    async def gets() -> float:
        probe.invalidate()
        before = count.mark()
        start = time.perf_counter()
        values = await asyncio.gather(*(probe.get(KEYS[i % 20]) for i in range(200)))
        elapsed = time.perf_counter() - start
        marks.append((before, count.mark()))
        assert values == [VALUE] * 200, "wrong values"
        return elapsed

    async def asyncio_floor() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(noop() for _ in range(200)))
        return time.perf_counter() - start

    async def bare() -> float:
        start = time.perf_counter()
        await bare_single_flight(probe)
        return time.perf_counter() - start

    async def inline() -> float:
        start = time.perf_counter()
        await inline_single_flight(probe)
        return time.perf_counter() - start

    measures: dict[str, Callable[[], Awaitable[float]]] = dict(
        zip(MEASURES, (one_request, gets, asyncio_floor, bare, inline), strict=True)
    )
    try:
        await probe.get(KEYS[0])
        for measure in measures.values():  # warm-up: first calls pay for code paths
            await measure()
        marks.clear()
        settle()
        for n in range(first, first + sets):
            for name in rotated(MEASURES, n):
                with gc_rule():
                    samples[name].append(await measures[name]())
    finally:
        await probe.aclose()

    # A new provider pays for its client (botocore's model, hvac's session): fewer samples.
    fresh: dict[str, list[float]] = {"one": [], "wall": []}
    for n in range(first, first + 3):
        for name in rotated(list(fresh), n):
            provider = make()
            try:
                with gc_rule():
                    start = time.perf_counter()
                    if name == "one":
                        await provider.get(KEYS[0])
                    else:
                        await asyncio.gather(*(provider.get(KEYS[i % 20]) for i in range(200)))
                    fresh[name].append(time.perf_counter() - start)
            finally:
                await provider.aclose()
    requests = [count.between(before, after) for before, after in marks]
    return Stampede(samples, requests, fresh["one"], fresh["wall"])


async def bare_single_flight(provider: DocumentSecretProvider) -> None:
    """The least a coalescing cache that loads in a task of its own can cost: 200 tasks, the
    first starts one load in a task, each awaits a future of its own, the load resolves them
    all. No cache, no lock, no key handling, no statistics."""
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


async def inline_single_flight(provider: DocumentSecretProvider) -> None:
    """Cheaper still: 200 tasks, the first runs the load inline in its own coroutine and
    resolves one future the 199 others await. (A cancelled first caller would fail them all:
    a floor to measure against, not a design.)"""
    loop = asyncio.get_running_loop()
    shared: list[asyncio.Future[Mapping[str, str]]] = []

    async def caller(key: str) -> str | None:
        if shared:
            return (await shared[0]).get(key)
        shared.append(loop.create_future())
        document = await provider.load_document()
        shared[0].set_result(document)
        return document.get(key)

    values = await asyncio.gather(*(caller(KEYS[i % 20]) for i in range(200)))
    assert values == [VALUE] * 200, "wrong values"


@dataclass
class BackendResult:
    """A back-end's per-set values across every round, for the targets."""

    requests: list[float]
    warm: list[float]  # 200 gets / one request, set by set
    floor: list[float]  # 200 gets / the cheaper of the two floors, set by set
    fresh: list[float]  # 200 gets / one get, each on a new provider, pair by pair
    cheapest: str  # the floor with the lower median in this run


def ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    return [a / b for a, b in zip(numerators, denominators, strict=True)]


def bench_remote(rounds: int, sets: int) -> dict[str, BackendResult]:
    """Start both servers, seed one document each, measure the stampede on each."""
    out: dict[str, BackendResult] = {}
    with contextlib.ExitStack() as stack:
        _bench_remote(remote_contenders(stack), rounds, sets, out)
    return out


def _bench_remote(
    runs: dict[str, Callable[[int, int], Awaitable[Stampede]]],
    rounds: int,
    sets: int,
    out: dict[str, BackendResult],
) -> None:
    print("\n### 200 concurrent cold gets of 20 keys, one back-end each (medians, ms)\n")
    print(
        "| back-end | requests | one request | 200 gets | ratio | asyncio floor for 200 tasks "
        "| bare single-flight (load in a task) | inline single-flight (first caller loads) "
        "| 200 gets / cheapest floor | new provider: one get | new provider: 200 gets | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, run in runs.items():
        per_round = [asyncio.run(run(r * sets, sets)) for r in range(rounds)]
        samples: dict[str, list[float]] = {m: [] for m in MEASURES}
        for s in per_round:
            for m in MEASURES:
                samples[m].extend(s.samples[m])
        one_fresh = [x for s in per_round for x in s.one_fresh]
        wall_fresh = [x for s in per_round for x in s.wall_fresh]
        # The cheapest floor of this run by median; then compared set by set (the cheaper of
        # two noisy samples in each set would be biased low).
        cheapest = min(FLOORS, key=lambda f: statistics.median(samples[f]))
        result = BackendResult(
            requests=[float(n) for s in per_round for n in s.requests],
            warm=ratios(samples["200 gets"], samples["one request"]),
            floor=ratios(samples["200 gets"], samples[cheapest]),
            fresh=ratios(wall_fresh, one_fresh),
            cheapest=cheapest,
        )
        out[name] = result
        med = {m: statistics.median(v) * 1e3 for m, v in samples.items()}
        one_f, wall_f = statistics.median(one_fresh) * 1e3, statistics.median(wall_fresh) * 1e3
        print(
            f"| {name} | {max(result.requests):g} | {med['one request']:.2f} "
            f"| {med['200 gets']:.2f} | {statistics.median(result.warm):.2f}x "
            f"| {med['asyncio floor']:.2f} | {med['bare single-flight']:.2f} "
            f"| {med['inline single-flight']:.2f} "
            f"| {statistics.median(result.floor):.2f}x ({result.cheapest.split()[0]}) "
            f"| {one_f:.1f} | {wall_f:.1f} | {statistics.median(result.fresh):.2f}x |"
        )
        RECORDED[f"200 concurrent cold gets, {name} (ms)"] = {
            "one request": med["one request"],
            "200 gets": med["200 gets"],
            "asyncio floor for 200 tasks": med["asyncio floor"],
            "bare single-flight, no cache": med["bare single-flight"],
            "inline single-flight, no cache": med["inline single-flight"],
            "new provider: one get": one_f,
            "new provider: 200 gets": wall_f,
        }


def remote_contenders(
    stack: contextlib.ExitStack,
) -> dict[str, Callable[[int, int], Awaitable[Stampede]]]:
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

    aws_count = RequestCount(mark=lambda: sent[0], between=lambda a, b: b - a)

    # Vault requests are counted by the server's own audit log (written before it answers),
    # between two of its sizes.
    from tests.servers.bao import AuditLog

    audit = bao.audit_mark()

    def vault_between(start: int, end: int) -> int:
        return len(AuditLog(audit.path, start, end).responses("secret/data/bench-providers"))

    vault_count = RequestCount(mark=lambda: audit.path.stat().st_size, between=vault_between)

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
        "AWS Secrets Manager (moto)": lambda n, k: stampede(aws, aws_count, n, k),
        "Vault KV v2 (OpenBao)": lambda n, k: stampede(vault, vault_count, n, k),
        "AWS (moto), 20 ms round trip": lambda n, k: stampede(aws_20ms, aws_count, n, k),
        "Vault (OpenBao), 20 ms round trip": lambda n, k: stampede(vault_20ms, vault_count, n, k),
    }


def main() -> int:
    args = parse_args(__doc__ or "")
    print(f"# bench_providers ({machine()}, {args.rounds} rounds, medians)")
    file_ratio = bench_file_vs_env(args.rounds)
    targets: list[tuple[Target, list[float]]] = [
        (Target("warm file get vs env get", 2.0), file_ratio),
    ]
    # A round here is one asyncio.run (a new loop and a new client), of interleaved sets.
    rounds, sets = (3, QUICK_STAMPEDES) if args.quick else (max(5, args.rounds // 2), STAMPEDES)
    for name, result in bench_remote(rounds, sets).items():
        targets += [
            (
                Target(f"{name}: back-end requests for 200 cold gets", 1, unit="", worst=True),
                result.requests,
            ),
            (Target(f"{name}: 200 cold gets vs one get, new provider", 1.5), result.fresh),
            (Target(f"{name}: 200 cold gets vs one request, warm client", 1.5), result.warm),
            (Target(f"{name}: 200 cold gets vs cheapest floor", 1.1), result.floor),
        ]
    return finish("bench_providers", args, targets)


if __name__ == "__main__":
    sys.exit(main())
