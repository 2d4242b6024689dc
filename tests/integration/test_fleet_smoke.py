"""The fleet benchmark at smoke size: three real processes against a real OpenBao (stopped and
started again) and moto, for a few seconds each phase."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_fleet.py"


def test_fleet_benchmark_runs_and_its_outage_and_refresh_rules_hold() -> None:
    """bench_fleet --quick: lookups all answered through the outage, every process recovered,
    forced refreshes within one request per process per document per interval."""
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "### Targets" in out and "| row | target | measured | status |" in out
    report = json.loads(out[out.index("\n{") :])
    outage, forced = report["outage"], report["forced"]
    assert outage["lookups_during"] > 0 and outage["unanswered_lookups"] == 0
    assert outage["processes_recovered"] == 3
    assert 0 < forced["requests"] <= forced["allowed"]
    # What the servers logged in the window: the forced requests, plus at most one refresh
    # ahead per process and document begun before the burst (then the forced ones push the
    # next refresh ahead out of the window).
    assert forced["logged_requests"] == forced["requests"] + forced["natural_loads"]
    assert forced["natural_loads"] <= 3 * 2
    assert forced["processes_seeing_rotation"] == 3
    steady = report["steady"]
    assert steady["requests"] > 0
    # The workers' own record of their loads agrees with the servers' logs (up to the loads
    # that straddle the window's edges, one per process and document at most).
    assert abs(steady["worker_loads"] - steady["requests"]) <= 3 * 2
