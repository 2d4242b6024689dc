"""The benchmark scripts still run (a smoke test: no timing is asserted here), and `--check`
turns a missed target into a failing exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "script",
    [
        "bench_cache.py",
        "bench_manager.py",
        "bench_providers.py",
        "bench_service.py",
        "bench_file_io.py",
        "bench_startup.py",
    ],
)
def test_benchmark_script_runs_quickly_to_the_end(script: str) -> None:
    """Each benchmark runs with --quick, exits 0 and prints its targets table."""
    proc = run(script, "--quick")
    assert proc.returncode == 0, proc.stderr
    assert "### Targets" in proc.stdout
    assert "| row | target | measured (median) | spread | status |" in proc.stdout


def test_check_exits_1_when_a_target_is_missed() -> None:
    """With --check, a missed target (forced by --force-miss) makes the script exit 1."""
    proc = run("bench_manager.py", "--quick", "--check", "--force-miss")
    assert proc.returncode == 1, proc.stderr
    assert "MISSED (forced)" in proc.stdout
    assert "| met |" not in proc.stdout


def test_check_fails_only_for_a_missed_target() -> None:
    """Without a forced miss, --check exits 1 exactly when a row of the table says MISSED."""
    proc = run("bench_manager.py", "--quick", "--check")
    assert "### Targets" in proc.stdout, proc.stderr
    missed = "| MISSED" in proc.stdout
    assert proc.returncode == (1 if missed else 0), proc.stdout + proc.stderr


def test_only_runs_the_named_section_and_writes_no_results() -> None:
    """`bench_manager.py --only vault-login` prints that row alone (on a real OpenBao it starts)
    and leaves the saved results file untouched."""
    saved = BENCH / "results" / "bench_manager.json"
    before = saved.read_bytes() if saved.exists() else None
    proc = run("bench_manager.py", "--only", "vault-login", "--rounds", "2")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| warm await m.get")]
    assert [row.split(" | ")[0] for row in rows] == [
        "| warm await m.get, Vault AppRole login vs given token"
    ]
    assert "results saved" not in proc.stdout
    assert (saved.read_bytes() if saved.exists() else None) == before
