"""Where the time of 200 cold gets on a loopback Vault goes: a timeline, not a target.

bench_providers compares 200 concurrent cold gets with one request and with two cacheless
floors. This script times the phases of the same three measures on an OpenBao dev server:

- ``load called``: from the start until the first caller calls ``load_document`` (the loop
  creating the 200 tasks of the ``gather`` and running the first one);
- ``thread starts``: until the worker thread begins the hvac read; the loop holds the GIL while
  it runs the other 199 callers' first steps, so the thread waits for them;
- ``thread ends``: until the hvac read returns (its Python work holds the GIL too);
- ``total``: until every caller has its value (the loop waking 200 tasks).

Because the thread and the loop take turns on the GIL, the phases add up instead of
overlapping: 200 gets cost one request plus the loop's work for 200 tasks, whatever the cache.
The last lines print what that means for the ratios bench_providers judges.

It wraps the provider instance's `load_document` and its blocking read to take the times (the
read's name is the provider's own: a measuring aid, not an API).

Run: `python benchmarks/trace_stampede.py [--rounds N]` (needs the test extras: it starts
`bao server -dev` itself).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from _harness import gc_rule, machine, rotated, settle
from bench_providers import KEYS, VALUE, inline_single_flight

from simpletuner_secrets import HashiCorpVaultProvider

PHASES = ("load called", "thread starts", "thread ends", "total")
MEASURES = ("one request", "200 gets", "inline single-flight")


async def trace(url: str, token: str, rounds: int) -> dict[str, list[tuple[float, ...]]]:
    """Time each measure's phases ``rounds`` times, in rotated order, under the gc rule."""
    probe = HashiCorpVaultProvider(url, token, "bench-trace", environ={})
    marks: dict[str, float] = {}
    clock = time.perf_counter
    load_document = probe.load_document
    read = probe._load_blocking

    async def timed_load() -> Mapping[str, str]:
        marks.setdefault("load called", clock())
        return await load_document()

    def timed_read() -> Any:
        marks["thread starts"] = clock()
        try:
            return read()
        finally:
            marks["thread ends"] = clock()

    probe.load_document = timed_load
    probe._load_blocking = timed_read

    async def one() -> None:
        probe.invalidate()
        assert await probe.get(KEYS[0]) == VALUE

    async def gets() -> None:
        probe.invalidate()
        values = await asyncio.gather(*(probe.get(KEYS[i % 20]) for i in range(200)))
        assert values == [VALUE] * 200

    async def inline() -> None:
        await inline_single_flight(probe)

    runs: dict[str, Callable[[], Awaitable[None]]] = dict(
        zip(MEASURES, (one, gets, inline), strict=True)
    )
    samples: dict[str, list[tuple[float, ...]]] = {m: [] for m in MEASURES}
    try:
        for run in runs.values():  # warm-up: the client, the code paths
            await run()
        settle()
        for r in range(rounds):
            for name in rotated(MEASURES, r):
                with gc_rule():
                    marks.clear()
                    start = clock()
                    await runs[name]()
                    marks["total"] = clock()
                samples[name].append(tuple(marks[p] - start for p in PHASES))
    finally:
        await probe.aclose()
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=300, help="samples per measure")
    args = parser.parse_args()

    from tests.servers.bao import run_bao

    with run_bao(kv1_mount=None) as bao:
        bao.request("POST", "secret/data/bench-trace", {"data": {k: VALUE for k in KEYS}})
        samples = asyncio.run(trace(bao.url, bao.token, args.rounds))

    print(
        f"# trace_stampede ({machine()}, {args.rounds} samples each, medians, ms from the start)\n"
    )
    print("| measure | " + " | ".join(PHASES) + " | loop before the thread | thread | after it |")
    print("|---|" + "---|" * (len(PHASES) + 3))
    med: dict[str, list[float]] = {}
    for name, rows in samples.items():
        med[name] = [statistics.median(column) * 1e3 for column in zip(*rows, strict=True)]
        called, starts, ends, total = med[name]
        print(
            f"| {name} | {called:.3f} | {starts:.3f} | {ends:.3f} | {total:.3f} "
            f"| {starts:.3f} | {ends - starts:.3f} | {total - ends:.3f} |"
        )
    one, ours, floor = (med[m][3] for m in MEASURES)
    print(
        f"\n200 gets / one request: {ours / one:.2f}x; the inline floor itself: {floor / one:.2f}x"
        f" of one request; 200 gets / the inline floor: {ours / floor:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
