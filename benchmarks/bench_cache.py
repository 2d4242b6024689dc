"""TTLCache against cachetools, async-lru and aiocache: hits, evicting sets, memory, stampedes.

Run: `nox -s bench` or `python benchmarks/bench_cache.py [--rounds N] [--quick] [--check]`.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiocache
import cachetools
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
    summarize,
    timed,
)
from async_lru import alru_cache

from simpletuner_secrets import TTLCache

OPS = 20_000


def bench_get(rounds: int) -> list[float]:
    ours: TTLCache[int] = TTLCache(max_size=1000)
    theirs: cachetools.TTLCache[str, int] = cachetools.TTLCache(maxsize=1000, ttl=300)
    keys = [f"k{i}" for i in range(100)]
    for k in keys:
        ours.set(k, 1)
        theirs[k] = 1
    get = ours.get

    def run_ours(ops: int) -> None:
        for _ in range(ops // 100):
            for k in keys:
                get(k)

    def run_cachetools(ops: int) -> None:
        for _ in range(ops // 100):
            for k in keys:
                theirs[k]

    def run_cachetools_get(ops: int) -> None:
        g = theirs.get
        for _ in range(ops // 100):
            for k in keys:
                g(k)

    results = round_robin(
        {
            "TTLCache.get (ours)": timed(run_ours),
            "cachetools.TTLCache[k]": timed(run_cachetools),
            "cachetools.TTLCache.get(k)": timed(run_cachetools_get),
        },
        rounds,
        OPS,
    )
    print_table("Cache hit, sync", results, baseline="cachetools.TTLCache[k]")
    return results.ratios("TTLCache.get (ours)", "cachetools.TTLCache[k]")


def bench_async_hit(rounds: int) -> list[float]:
    loop = asyncio.new_event_loop()
    ours: TTLCache[int] = TTLCache(max_size=1000)
    keys = [f"k{i}" for i in range(100)]

    async def factory() -> int:
        return 1

    @alru_cache(maxsize=1000, ttl=300)
    async def alru(key: str) -> int:
        return 1

    simple = aiocache.SimpleMemoryCache()

    async def warm() -> None:
        for k in keys:
            await ours.get_or_set_async(k, factory)
            await alru(k)
            await simple.set(k, 1, ttl=300)

    loop.run_until_complete(warm())

    async def run_ours(ops: int) -> None:
        gos = ours.get_or_set_async
        for _ in range(ops // 100):
            for k in keys:
                await gos(k, factory)

    async def run_alru(ops: int) -> None:
        for _ in range(ops // 100):
            for k in keys:
                await alru(k)

    async def run_aiocache(ops: int) -> None:
        for _ in range(ops // 100):
            for k in keys:
                await simple.get(k)

    results = round_robin(
        {
            "await get_or_set_async (ours)": on_loop(loop, run_ours),
            "async_lru hit": on_loop(loop, run_alru),
            "aiocache SimpleMemoryCache.get": on_loop(loop, run_aiocache),
        },
        rounds,
        OPS // 4,
    )
    loop.run_until_complete(simple.close())
    loop.close()
    print_table("Cache hit, async", results, baseline="async_lru hit")
    return results.ratios("await get_or_set_async (ours)", "async_lru hit")


def bench_set_evicting(rounds: int) -> list[float]:
    keys = [f"key{i}" for i in range(100_000)]
    ours: TTLCache[int] = TTLCache(max_size=1000)
    theirs: cachetools.TTLCache[str, int] = cachetools.TTLCache(maxsize=1000, ttl=300)
    position = {"ours": 0, "theirs": 0}

    def run_ours(ops: int) -> None:
        s = ours.set
        i = position["ours"]
        for n in range(ops):
            s(keys[(i + n) % 100_000], 1)
        position["ours"] = (i + ops) % 100_000

    def run_theirs(ops: int) -> None:
        i = position["theirs"]
        for n in range(ops):
            theirs[keys[(i + n) % 100_000]] = 1
        position["theirs"] = (i + ops) % 100_000

    # Fill both so that every measured set evicts.
    run_ours(2000)
    run_theirs(2000)
    results = round_robin(
        {"TTLCache.set (ours)": timed(run_ours), "cachetools.TTLCache[k] = v": timed(run_theirs)},
        rounds,
        OPS,
    )
    print_table("Set with one eviction per call", results, baseline="cachetools.TTLCache[k] = v")
    assert ours.stats()["size"] == 1000
    return results.ratios("TTLCache.set (ours)", "cachetools.TTLCache[k] = v")


def bench_memory(rounds: int) -> list[float]:
    n = 100_000
    keys = [f"key{i}" for i in range(n)]
    value = object()

    def measure(make: Callable[[], Any], put: Callable[[Any, str], None]) -> float:
        gc.collect()
        tracemalloc.start()
        container = make()
        for k in keys:
            put(container, k)
        current, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del container
        return current / n

    contenders: dict[str, tuple[Callable[[], Any], Callable[[Any, str], None]]] = {
        "ours": (lambda: TTLCache(max_size=n), lambda c, k: c.set(k, value)),
        "cachetools": (
            lambda: cachetools.TTLCache(maxsize=n, ttl=300),
            lambda c, k: c.__setitem__(k, value),
        ),
    }
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(max(3, rounds // 10)):
        for name in rotated(list(contenders), r):
            samples[name].append(measure(*contenders[name]))
    ours, theirs = (statistics.median(samples[k]) for k in ("ours", "cachetools"))
    ratios = [a / b for a, b in zip(samples["ours"], samples["cachetools"], strict=True)]
    print("\n### Memory per entry (100,000 entries, container only)\n")
    print("| contender | bytes/entry | ratio to cachetools |\n|---|---|---|")
    print(f"| TTLCache (ours) | {ours:.0f} | {statistics.median(ratios):.2f}x |")
    print(f"| cachetools.TTLCache | {theirs:.0f} | 1.00x |")
    return ratios


#: 1,000-miss stampedes measured in each event loop.
STAMPEDES_PER_LOOP = 6


def bench_stampede(rounds: int) -> list[float]:
    latency = 0.05
    waiters = 1000

    async def factory_of(calls: dict[str, int], name: str) -> int:
        calls[name] += 1
        await asyncio.sleep(latency)
        return 1

    async def one_stampede(turn: int) -> dict[str, float]:
        calls = {"ours": 0, "alru": 0}
        cache: TTLCache[int] = TTLCache()

        @alru_cache(maxsize=10, ttl=300)
        async def alru(key: str) -> int:
            return await factory_of(calls, "alru")

        async def run_ours() -> None:
            factory = functools.partial(factory_of, calls, "ours")
            await asyncio.gather(*(cache.get_or_set_async("k", factory) for _ in range(waiters)))
            assert calls["ours"] == 1, f"{calls['ours']} factory calls, expected 1"

        async def run_theirs() -> None:
            await asyncio.gather(*(alru("k") for _ in range(waiters)))

        runs = {"ours": run_ours, "alru": run_theirs, "bare": bare_single_flight}
        out = {}
        for name in rotated(list(runs), turn):
            with gc_rule():
                start = time.perf_counter()
                await runs[name]()
                out[name] = (time.perf_counter() - start) / latency
        return out

    async def bare_single_flight() -> None:
        # The least any coalescing can cost: a future per caller, one load resolving them.
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[int]] = []
        loads: list[asyncio.Task[None]] = []

        async def load() -> None:
            await asyncio.sleep(latency)
            for future in futures:
                future.set_result(1)

        async def caller() -> int:
            if not loads:
                loads.append(loop.create_task(load()))
            future = loop.create_future()
            futures.append(future)
            return await future

        await asyncio.gather(*(caller() for _ in range(waiters)))

    async def one_loop(first: int) -> list[dict[str, float]]:
        # Several stampedes per event loop: the first gather on a new loop warms it up.
        return [await one_stampede(first + turn) for turn in range(STAMPEDES_PER_LOOP)]

    samples: dict[str, list[float]] = {"ours": [], "alru": [], "bare": []}
    settle()
    for loop_round in range(max(3, rounds // 3)):
        for stampede in asyncio.run(one_loop(loop_round * STAMPEDES_PER_LOOP)):
            for name, ratio in stampede.items():
                samples[name].append(ratio)
    ours, alru, bare = (summarize(samples[k]) for k in ("ours", "alru", "bare"))
    RECORDED["1,000 concurrent misses on a 50 ms factory (wall / 50 ms)"] = {
        "TTLCache.get_or_set_async (ours)": ours.value,
        "async_lru": alru.value,
        "bare single-flight, no cache": bare.value,
    }
    print("\n### 1,000 concurrent misses on a 50 ms factory\n")
    print("| contender | factory calls | wall / 50 ms (median) | IQR |\n|---|---|---|---|")
    for label, s in (
        ("TTLCache.get_or_set_async (ours)", ours),
        ("async_lru", alru),
        ("bare single-flight, no cache (the floor)", bare),
    ):
        print(f"| {label} | 1 | {s.value:.2f}x | {s.q1:.2f}-{s.q3:.2f}x |")
    return samples["ours"]


def main() -> int:
    args = parse_args(__doc__ or "")
    print(f"# bench_cache ({machine()}, {args.rounds} rounds, medians)")
    get_ratio = bench_get(args.rounds)
    async_ratio = bench_async_hit(args.rounds)
    set_ratio = bench_set_evicting(args.rounds)
    mem_ratio = bench_memory(args.rounds)
    stampede = bench_stampede(args.rounds)
    targets: list[tuple[Target, list[float]]] = [
        (Target("get hit vs cachetools [k]", 0.55), get_ratio),
        (Target("async hit vs async_lru", 0.35), async_ratio),
        (Target("evicting set vs cachetools", 0.35), set_ratio),
        (Target("memory/entry vs cachetools", 0.85), mem_ratio),
        (Target("1,000 misses, wall vs 50 ms", 1.25), stampede),
    ]
    return finish("bench_cache", args, targets)


if __name__ == "__main__":
    sys.exit(main())
