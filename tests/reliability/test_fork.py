"""Forked processes get a working manager: os.fork, multiprocessing's fork pool, gunicorn."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.servers.moto import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("fork_child.py")
#: Python 3.12+ warns when a process with threads forks; forking such a process is the point.
FORK_WARNING = "ignore:This process:DeprecationWarning"


def run_scenario(scenario: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [
                sys.executable,
                "-W",
                "error",
                "-W",
                FORK_WARNING,
                str(SCRIPT),
                scenario,
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=120,  # a hang guard: each scenario takes a few seconds
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{scenario} hung: {exc.stderr!r}")


def test_a_child_forked_after_use_gets_a_working_manager(tmp_path: Path) -> None:
    """After fork, the child's facade reads cold keys, sees file re-checks, and reset() works."""
    done = run_scenario("after-use", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("OK")


def test_a_child_forked_during_a_load_does_not_wait_for_it(tmp_path: Path) -> None:
    """A child forked while the parent's load runs loads on its own instead of hanging."""
    done = run_scenario("load-in-flight", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("OK")


def test_multiprocessing_fork_workers_read_through_the_process_manager(tmp_path: Path) -> None:
    """A fork-context Pool's workers read cached, cold and re-checked keys."""
    done = run_scenario("multiprocessing", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("OK")


def test_workers_forked_together_refresh_inherited_entries_apart(tmp_path: Path) -> None:
    """Eight children of one parent each move the inherited entry's refresh ahead to a point
    of their own, drawn from their own seed after the fork, within the entry's freshness."""
    done = run_scenario("preforked", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("OK")


def test_gunicorn_preload_workers_answer_every_request(tmp_path: Path) -> None:
    """gunicorn --preload -w 2: every request, before and after the file re-check, is served."""
    secrets = tmp_path / "secrets.json"
    secrets.write_text('{"APP_KEY": "app-value"}')
    secrets.chmod(0o600)
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), APP_SECRETS_FILE=str(secrets), HOME=str(tmp_path))
    server = subprocess.Popen(
        [
            sys.executable,
            "-W",
            FORK_WARNING,
            "-m",
            "gunicorn",
            "--preload",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "--chdir",
            str(Path(__file__).parent),
            "gunicorn_app:app",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        answers = []
        deadline = time.monotonic() + 60  # a hang guard for the server's start
        while time.monotonic() < deadline and not answers:
            try:
                answers.append(fetch(port))
            except OSError:
                time.sleep(0.1)
        assert answers, "gunicorn did not start"
        for _ in range(3):  # across the file provider's once-a-second re-check
            answers.extend(fetch(port) for _ in range(10))
            time.sleep(0.6)
        assert all(value == "app-value" for _, value in answers), answers
    finally:
        server.terminate()
        try:
            output, _ = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
    assert "closed during the call" not in output, output[-3000:]


def fetch(port: int) -> tuple[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        pid, value = response.read().decode().split(" ", 1)
    return pid, value
