"""The public API's types, as a type checker sees them: tests/static/api_types.py under mypy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_typed_api_file_passes_mypy_strict(tmp_path: Path) -> None:
    """explain()/stats() are TypedDicts, cached keeps signatures: every assert_type holds."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--warn-unused-ignores",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            "tests/static/api_types.py",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "error" not in proc.stdout
