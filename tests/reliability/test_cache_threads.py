"""TTLCache under threads: lock-free hits never break the locked loops over the same dict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("cache_stress.py")
ROUNDS = 20


def test_lock_free_hits_never_break_purge_stats_or_loads() -> None:
    """Hits racing stats/len/purge/invalidate raise nothing, and every load completes."""
    try:
        done = subprocess.run(
            [sys.executable, str(SCRIPT), str(ROUNDS)],
            capture_output=True,
            text=True,
            timeout=120,  # a hang guard only: the run takes about 2 s
            cwd=Path(__file__).resolve().parents[2],
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the stress run hung: a load never finished")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["error_count"] == 0, result["errors"]
    assert result["blocked"] == 0
    assert result["answers"] == 3 * ROUNDS
