"""Draw the per-operation cost chart of the README from the saved benchmark results.

Run after the benchmark scripts (`nox -s bench` does both): reads `benchmarks/results/*.json`,
writes `benchmarks/results/chart.png`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

#: (table title, contender) pairs drawn, in order; "(ours)" marks this library's rows.
ROWS = [
    ("Cache hit, sync", "TTLCache.get (ours)"),
    ("Cache hit, sync", "cachetools.TTLCache[k]"),
    ("Cache hit, sync", "cachetools.TTLCache.get(k)"),
    ("Cache hit, async", "await get_or_set_async (ours)"),
    ("Cache hit, async", "async_lru hit"),
    ("Cache hit, async", "aiocache SimpleMemoryCache.get"),
    ("Warm lookup: env (absent, live) + one cached provider", "await m.get (ours)"),
    ("Warm lookup: env (absent, live) + one cached provider", "m.sync.get (ours)"),
    (
        "Warm lookup: env (absent, live) + one cached provider",
        "aws-secretsmanager-caching get_secret_string hit",
    ),
    ("Set with one eviction per call", "TTLCache.set (ours)"),
    ("Set with one eviction per call", "cachetools.TTLCache[k] = v"),
]


def main() -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables: dict[str, dict[str, float]] = {}
    machine = ""
    for path in sorted(RESULTS.glob("bench_*.json")):
        data = json.loads(path.read_text())
        if "tables" not in data:
            continue  # bench_fleet's report (its own plot, fleet.png) has no ratio tables
        tables.update(data["tables"])
        machine = data["machine"]
    rows = [
        (label, tables[title][label]) for title, label in ROWS if label in tables.get(title, {})
    ]
    if not rows:
        print("no saved results: run the benchmark scripts first", file=sys.stderr)
        return 1
    labels = [label for label, _ in rows][::-1]
    values = [value for _, value in rows][::-1]
    colors = ["#2a7ab0" if "(ours)" in label else "#b0b0b0" for label in labels]
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(rows) + 1.2))
    ax.barh(labels, values, color=colors)
    ax.set_xscale("log")
    ax.set_xlabel("nanoseconds per operation (median, log scale; lower is better)")
    ax.set_title(f"simpletuner-secrets per-operation cost\n{machine}", fontsize=10)
    for y, value in enumerate(values):
        ax.text(value * 1.05, y, f"{value:,.0f} ns", va="center", fontsize=8)
    ax.set_xlim(right=max(values) * 4)
    fig.tight_layout()
    out = RESULTS / "chart.png"
    fig.savefig(out, dpi=110)
    print(f"chart written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
