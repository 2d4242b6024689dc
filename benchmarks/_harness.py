"""Shared measuring helpers for the benchmark scripts: rotated rounds under one gc rule, and
targets judged on per-round ratios, printed with their spread.

The fairness rules live here so that every benchmark applies them alike:

- Contenders are measured in turn within one process, so that machine noise hits them alike,
  and the order rotates: round ``r`` starts with contender ``r % n`` (`rotated`).
- gc: `gc_rule` collects before each sample and keeps gc disabled while it is timed, for every
  contender. `settle` freezes the long-lived setup (SDK models, servers' clients) once, so that
  those collections only scan what the samples themselves left behind.
- A target is judged on one value per round (a ratio of contenders measured in that round):
  the median of those values is the measured value; their quartiles and range are the spread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Every table printed in this run: title -> {contender: median}.
RECORDED: dict[str, dict[str, float]] = {}

T = TypeVar("T")


def rotated(items: Sequence[T], r: int) -> list[T]:
    """``items`` in the order of round ``r``: starting with item ``r % len(items)``."""
    k = r % len(items)
    return [*items[k:], *items[:k]]


@contextlib.contextmanager
def gc_rule() -> Iterator[None]:
    """The gc rule of every sample: collect first, then no collection while it is timed."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def settle() -> None:
    """Collect, then freeze the survivors (imports, clients, warm caches) out of later
    collections: `gc_rule`'s collection before each sample then costs microseconds, not the
    30-40 ms of a full pass over botocore's models."""
    gc.collect()
    gc.freeze()


@dataclass
class Target:
    """A bound from an issue: ``value <= bound`` (``>=`` with ``at_least``).

    ``value`` is the median of the per-round values, or their maximum with ``worst`` (a count
    that must hold in every round, such as back-end requests).
    """

    label: str
    bound: float
    at_least: bool = False
    unit: str = "x"
    worst: bool = False


@dataclass
class Results:
    """Per-contender samples (ns per operation, or any unit), one per round, in round order."""

    unit: str = "ns/op"
    samples: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.samples.setdefault(name, []).append(value)

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def ratios(self, name: str, anchor: str) -> list[float]:
        """``name / anchor`` round by round (both measured in the same round)."""
        return [a / b for a, b in zip(self.samples[name], self.samples[anchor], strict=True)]


def parse_args(description: str, sections: Sequence[str] = ()) -> argparse.Namespace:
    """The common options; ``sections`` (a script's parts) adds ``--only SECTION``: run that
    part alone (its targets are printed, no results file is written)."""
    parser = argparse.ArgumentParser(description=description)
    if sections:
        parser.add_argument(
            "--only",
            choices=list(sections),
            action="append",
            help="run only this section (may be repeated); the results file is left as it is",
        )
    parser.add_argument("--rounds", type=int, default=31, help="round-robin samples per contender")
    parser.add_argument("--quick", action="store_true", help="a few short rounds (smoke test)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--force-miss",
        action="store_true",
        help="for testing --check: judge every row against a bound no measurement can meet",
    )
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
    """Run each contender's batch of ``ops`` operations in turn, ``rounds`` times, the order
    rotating every round, each batch under `gc_rule`.

    Each callable runs ``ops`` operations and returns the elapsed seconds.
    """
    names = list(contenders)
    results = Results(samples={name: [] for name in names})
    for fn in contenders.values():  # warm-up
        fn(max(ops // 10, 1))
    settle()
    for r in range(rounds):
        for name in rotated(names, r):
            with gc_rule():
                elapsed = contenders[name](ops)
            results.add(name, elapsed / ops * 1e9)
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


@dataclass
class Summary:
    """A target's per-round values reduced: the judged value and the spread around it."""

    value: float
    q1: float
    q3: float
    low: float
    high: float
    rounds: int


def summarize(values: Sequence[float], *, worst: bool = False) -> Summary:
    ordered = sorted(values)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    value = ordered[-1] if worst else statistics.median(ordered)
    return Summary(value, q1, q3, ordered[0], ordered[-1], len(ordered))


def _met(target: Target, value: float, bound: float) -> bool:
    return value >= bound if target.at_least else value <= bound


def _number(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:g}{unit}"


def finish(
    script: str, args: argparse.Namespace, targets: list[tuple[Target, Sequence[float]]]
) -> int:
    """Print the targets table, save the results of a full run, return the exit code.

    Returns:
        1 when ``--check`` is given and a target is missed, else 0.
    """
    rows = [(target, summarize(values, worst=target.worst)) for target, values in targets]
    bounds = [_forced(t) if args.force_miss else t.bound for t, _ in rows]
    print("\n### Targets\n")
    if args.force_miss:
        print("(--force-miss: every bound replaced by one no measurement can meet)\n")
    print("Spread: interquartile range and range of the per-round values; n: how many.\n")
    print("| row | target | measured (median) | spread | status |")
    print("|---|---|---|---|---|")
    ok = True
    for (target, s), bound in zip(rows, bounds, strict=True):
        good = _met(target, s.value, bound)
        ok &= good
        sign = ">=" if target.at_least else "<="
        measured = _number(s.value, target.unit)
        if target.worst:
            measured += " (worst round)"
        spread = (
            f"IQR {_number(s.q1, target.unit)}-{_number(s.q3, target.unit)}, "
            f"range {_number(s.low, target.unit)}-{_number(s.high, target.unit)} "
            f"(n={s.rounds})"
        )
        print(
            f"| {target.label} | {sign} {_number(bound, target.unit)} | {measured} | {spread} "
            f"| {_status(target, s.value, bound)} |"
        )
    if not args.quick and not getattr(args, "only", None):
        print(f"\nresults saved to {save(script, rows, targets)}")
    return 0 if ok or not args.check else 1


def _forced(target: Target) -> float:
    # Ratios and counts are positive: nothing is <= -1 or >= infinity.
    return math.inf if target.at_least else -1.0


def _status(target: Target, value: float, bound: float) -> str:
    if _met(target, value, bound):
        return "met"
    if not math.isfinite(bound) or bound <= 0:
        return "MISSED (forced)"
    miss = (bound - value) if target.at_least else (value - bound)
    amount = f"{miss:.3f}x" if target.unit == "x" else _number(miss, target.unit)
    return f"MISSED by {amount} ({miss / bound:.1%} of the bound)"


def print_table(title: str, results: Results, baseline: str | None = None) -> None:
    """Print each contender's median and interquartile range (and its ratio to ``baseline``)."""
    RECORDED[title] = {name: results.median(name) for name in results.samples}
    print(f"\n### {title}\n")
    header = f"| contender | median {results.unit} | IQR |"
    if baseline:
        header += f" ratio to {baseline} (median, IQR) |"
    print(header)
    print("|" + "---|" * (4 if baseline else 3))
    for name, values in results.samples.items():
        s = summarize(values)
        row = f"| {name} | {s.value:,.0f} | {s.q1:,.0f}-{s.q3:,.0f} |"
        if baseline:
            r = summarize(results.ratios(name, baseline))
            row += f" {r.value:.2f}x ({r.q1:.2f}-{r.q3:.2f}) |"
        print(row)


def save(
    script: str,
    rows: list[tuple[Target, Summary]],
    targets: list[tuple[Target, Sequence[float]]],
) -> Path:
    """Write this run's tables and targets to ``benchmarks/results/<script>.json``."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{script}.json"
    payload = {
        "machine": machine(),
        "tables": RECORDED,
        "targets": {
            t.label: {
                "bound": t.bound,
                "at_least": t.at_least,
                "measured": s.value,
                "judged_by": "worst round" if t.worst else "median of rounds",
                "iqr": [s.q1, s.q3],
                "range": [s.low, s.high],
                "met": _met(t, s.value, t.bound),
                "per_round": list(values),
            }
            for (t, s), (_, values) in zip(rows, targets, strict=True)
        },
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
