"""Run a script in a fresh interpreter and read the JSON object it printed last."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_json_script(code: str, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Run ``code`` with ``python -W error -c`` (warnings are errors); it must exit 0. The JSON
    object on its last line of output."""
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,  # a hang guard: a run takes a second or two
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))
