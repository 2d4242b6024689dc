"""One AWS provider across many event loops: clients of closed loops are released, and what
does not depend on the loop (botocore's parsed service model) is built once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.servers.moto import MotoServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("aws_loops.py")
LOOPS = 40


def run(moto_env: MotoServer, secret: str, mode: str) -> dict[str, Any]:
    env = dict(os.environ, SIMPLETUNER_AWS_SECRET_NAME=secret, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-W", "error", str(SCRIPT), mode, str(LOOPS)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,  # a hang guard: the run takes seconds
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Task was destroyed" not in done.stderr, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_clients_of_loops_closed_by_hand_are_released(
    moto_env: MotoServer, moto_secret: str
) -> None:
    """40 loops closed without asyncio.run leave no client, socket or MiB of state behind."""
    moto_env.create_secret(moto_secret, string='{"K": "v"}')
    result = run(moto_env, moto_secret, "manual")
    assert result["open_clients"] <= 1, result  # the last loop's, until aclose
    assert result["fd_growth"] <= 2, result
    # Each leaked client held about 8 MiB: 40 of them, over 300 MiB.
    assert result["rss_growth_mib"] < 60, result


def test_asyncio_run_per_lookup_parses_the_service_model_once(
    moto_env: MotoServer, moto_secret: str
) -> None:
    """40 asyncio.run lookups share one parsed service model instead of parsing it per run."""
    moto_env.create_secret(moto_secret, string='{"K": "v"}')
    result = run(moto_env, moto_secret, "run")
    assert result["model_files"] >= 1, result
    # Built per run, the model's files were parsed 287 times over these 41 runs.
    assert result["model_parses"] <= 2 * result["model_files"], result
    assert result["open_clients"] == 0, result
