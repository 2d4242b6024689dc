"""Every script in examples/ runs its self-check to exit 0, as a new user would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import FOREIGN, KNOWN

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
DEMO_VALUES = (
    "hf_demo_token_for_the_self_check",
    "hf_demo_from_the_file",
    "wandb_demo_value_for_the_script",
    "r8_demo_value_for_the_script",
    "postgres://app@db/app",
)


def isolated_env(home: Path) -> dict[str, str]:
    """The current environment minus back-end settings and known secrets, with its own HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN) and k not in KNOWN}
    env["HOME"] = str(home)
    env.pop("PYTHONWARNINGS", None)
    return env


def test_the_examples_are_there() -> None:
    """The four documented examples exist."""
    names = {path.name for path in EXAMPLES}
    assert {
        "fastapi_service.py",
        "aiohttp_service.py",
        "sync_script.py",
        "settings_model.py",
    } <= names


@pytest.mark.parametrize("script", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_runs(script: Path, tmp_path: Path) -> None:
    """The script exits 0 with warnings as errors, prints something, and no secret value."""
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        env=isolated_env(home),
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip()
    for value in DEMO_VALUES:
        assert value not in proc.stdout + proc.stderr
    # Scripts that write secrets use a temporary file, never the user's ~/.simpletuner.
    assert not (home / ".simpletuner").exists()
