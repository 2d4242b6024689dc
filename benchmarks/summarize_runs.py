"""Summarize several full benchmark runs: each target's median over the runs and their spread.

Each run's ``benchmarks/results/*.json`` is copied to a folder of its own; this prints one
markdown row per target: the bound, the median of the runs' measured values, the lowest and
highest run, and how many runs met the bound.

Run: ``python benchmarks/summarize_runs.py RUN_DIR [RUN_DIR ...]``.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def main(folders: list[str]) -> int:
    if not folders:
        print(__doc__, file=sys.stderr)
        return 2
    rows: dict[str, dict[str, object]] = {}
    values: dict[str, list[float]] = {}
    for folder in folders:
        for path in sorted(Path(folder).glob("bench_*.json")):
            for label, target in json.loads(path.read_text()).get("targets", {}).items():
                rows.setdefault(label, target)
                values.setdefault(label, []).append(float(target["measured"]))
    print(f"{len(folders)} runs\n")
    print("| row | target | median of runs | lowest-highest run | runs met |")
    print("|---|---|---|---|---|")
    for label, target in rows.items():
        runs = values[label]
        sign = ">=" if target["at_least"] else "<="
        bound = float(target["bound"])  # type: ignore[arg-type]
        met = sum((v >= bound) if target["at_least"] else (v <= bound) for v in runs)
        unit = "" if "requests" in label else "x"
        print(
            f"| {label} | {sign} {bound:g}{unit} | {statistics.median(runs):.2f}{unit} "
            f"| {min(runs):.2f}-{max(runs):.2f}{unit} | {met}/{len(runs)} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
