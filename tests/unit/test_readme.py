"""Every code block of the README runs: Python blocks as scripts, shell blocks as commands.

Each block runs in a subprocess with an isolated HOME and an environment free of secrets, as a
new user would run it. The Vault operator block runs against the real OpenBao server in
`tests/integration/test_readme_operator.py`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README.read_text()) if lang == language]


def clean_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VAULT_", "AWS_", "SIMPLETUNER_", "BAO_"))
        and k not in ("HF_TOKEN", "REPLICATE_API_TOKEN", "CLOUD_WEBHOOK_SECRET")
        # a terminal size the runner exports (pytest-xdist workers set LINES/COLUMNS)
        # would outrank the tests' own file keys of those names
        and k not in ("LINES", "COLUMNS")
    }
    env["HOME"] = str(home)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


def test_readme_has_the_blocks_these_tests_expect() -> None:
    """The README keeps its quick start, Python examples, CLI and operator blocks."""
    assert len(blocks("python")) >= 5
    assert len(blocks("bash")) == 3


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_block_runs(index: int, tmp_path: Path) -> None:
    """A Python example runs to the end as a script, and prints no secret it set."""
    code = blocks("python")[index]
    command = [sys.executable, "-c", code]
    if "def test_" in code:
        # A block of tests for users' suites: run it with pytest, as they would.
        (tmp_path / "test_block.py").write_text(code)
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_mode=auto",
            "test_block.py",
        ]
    proc = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=clean_env(tmp_path),
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if "def test_" in code:
        assert " passed" in proc.stdout and "failed" not in proc.stdout
    for secret in ("hf_example_token_value", "r8_example_token_value", "wandb_example_key_value"):
        assert secret not in proc.stdout + proc.stderr


def test_quick_start_is_what_ci_runs() -> None:
    """The quick start is exactly two commands; .ci/run runs the second one verbatim."""
    quick = [line for line in blocks("bash")[0].splitlines() if line.strip()]
    assert len(quick) == 2
    assert quick[0].endswith("simpletuner-secrets doctor")
    assert quick[1] in (ROOT / ".ci" / "run").read_text().splitlines()


def test_quick_start_main_job_runs(tmp_path: Path) -> None:
    """The main job, `simpletuner-secrets doctor` on a fresh HOME, exits 0."""
    exe = shutil.which("simpletuner-secrets", path=clean_env(tmp_path)["PATH"])
    assert exe, "the console script is not installed next to this Python"
    proc = subprocess.run(
        [exe, "doctor"], capture_output=True, text=True, env=clean_env(tmp_path), timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "known keys" in proc.stdout


def test_cli_block_runs_in_order(tmp_path: Path) -> None:
    """The command-line block runs line by line with the documented exit codes."""
    (block,) = [b for b in blocks("bash") if "simpletuner-secrets list" in b]
    lines = [line.split("  #")[0].strip() for line in block.splitlines()]
    lines = [line for line in lines if line]
    assert len(lines) == 6
    outputs = []
    for line in lines:
        proc = subprocess.run(
            ["bash", "-c", line],
            capture_output=True,
            text=True,
            env=clean_env(tmp_path),
            timeout=60,
        )
        assert proc.returncode == 0, f"{line}: {proc.stderr}"
        outputs.append(proc.stdout)
    assert "hf_example\n" in outputs
    # Only `get` prints the value.
    assert sum("hf_example" in out for out in outputs) == 1
