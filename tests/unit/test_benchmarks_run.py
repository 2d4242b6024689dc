"""The benchmark scripts still run (a smoke test: no timing is asserted here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.parametrize(
    "script", ["bench_cache.py", "bench_manager.py", "bench_providers.py", "bench_service.py"]
)
def test_benchmark_script_runs_quickly_to_the_end(script: str) -> None:
    """Each benchmark runs with --quick, exits 0 and prints its targets table."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "### Targets" in proc.stdout
