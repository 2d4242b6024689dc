"""Shared measuring helpers for the benchmark scripts: round-robin samples, medians, ratio tables.

Contenders are measured in turn within one process so that machine noise hits them alike.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Every table printed in this run: title -> {contender: median}.
RECORDED: dict[str, dict[str, float]] = {}


@dataclass
class Target:
    """A ratio bound from an issue: ``ours / anchor <= bound`` (``>=`` with ``at_least``)."""

    label: str
    bound: float
    at_least: bool = False


@dataclass
class Results:
    """Per-contender samples (ns per operation, or any unit) and the derived table."""

    unit: str = "ns/op"
    samples: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.samples.setdefault(name, []).append(value)

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=31, help="round-robin samples per contender")
    parser.add_argument("--quick", action="store_true", help="a few short rounds (smoke test)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 3
    return args


def machine() -> str:
    return (
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}"
    )


def round_robin(contenders: dict[str, Callable[[int], float]], rounds: int, ops: int) -> Results:
    """Run each contender's batch of ``ops`` operations in turn, ``rounds`` times.

    Each callable runs ``ops`` operations and returns the elapsed seconds.
    """
    results = Results()
    for fn in contenders.values():  # warm-up
        fn(max(ops // 10, 1))
    gc.disable()
    try:
        for _ in range(rounds):
            for name, fn in contenders.items():
                results.add(name, fn(ops) / ops * 1e9)
    finally:
        gc.enable()
    return results


def timed(loop_body: Callable[[int], None]) -> Callable[[int], float]:
    def run(ops: int) -> float:
        start = time.perf_counter()
        loop_body(ops)
        return time.perf_counter() - start

    return run


def on_loop(
    loop: asyncio.AbstractEventLoop, body: Callable[[int], Awaitable[None]]
) -> Callable[[int], float]:
    """Like `timed`, for a coroutine function run to completion on ``loop``."""

    def run(ops: int) -> float:
        start = time.perf_counter()
        loop.run_until_complete(body(ops))
        return time.perf_counter() - start

    return run


def finish(script: str, args: argparse.Namespace, targets: list[tuple[Target, float]]) -> int:
    """Print the targets table, save the results of a full run, return the exit code."""
    ok = check(targets)
    if not args.quick:
        print(f"\nresults saved to {save(script, targets)}")
    return 0 if ok or not args.check else 1


def print_table(title: str, results: Results, baseline: str | None = None) -> None:
    RECORDED[title] = {name: results.median(name) for name in results.samples}
    print(f"\n### {title}\n")
    header = f"| contender | median {results.unit} |"
    if baseline:
        header += f" ratio to {baseline} |"
    print(header)
    print("|" + "---|" * (3 if baseline else 2))
    base = results.median(baseline) if baseline else None
    for name in results.samples:
        med = results.median(name)
        row = f"| {name} | {med:,.0f} |"
        if base:
            row += f" {med / base:.2f}x |"
        print(row)


def check(targets: list[tuple[Target, float]]) -> bool:
    print("\n### Targets\n")
    print("| target | measured | bound | status |")
    print("|---|---|---|---|")
    ok = True
    for target, ratio in targets:
        good = ratio >= target.bound if target.at_least else ratio <= target.bound
        ok &= good
        status = "met" if good else "MISSED"
        sign = ">=" if target.at_least else "<="
        print(f"| {target.label} | {ratio:.2f}x | {sign} {target.bound}x | {status} |")
    return ok


def save(script: str, targets: list[tuple[Target, float]]) -> Path:
    """Write this run's tables and targets to ``benchmarks/results/<script>.json``."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{script}.json"
    payload = {
        "machine": machine(),
        "tables": RECORDED,
        "targets": {t.label: {"measured": ratio, "bound": t.bound} for t, ratio in targets},
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
