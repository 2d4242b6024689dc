"""The README's `python moto` blocks, each run after the `shell` block before it (the `aws`
CLI creating and rotating secrets) against a real moto server, as a user would run them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.aws_cli import aws_executable
from tests.servers.moto import MotoServer
from tests.unit.test_readme import README, clean_env

pytestmark = pytest.mark.integration

#: A `shell` block and the `python moto` block right after it.
PAIR = re.compile(r"^```shell\n(.*?)^```\n\n```python moto\n(.*?)^```$", re.MULTILINE | re.DOTALL)
PAIRS = PAIR.findall(README.read_text())


def test_the_readme_has_its_moto_examples() -> None:
    """The several-secrets and the aws:// reference examples are there, each after its shell
    block (a `python moto` block without one would not run anywhere)."""
    assert len(PAIRS) == 2
    assert README.read_text().count("```python moto\n") == len(PAIRS)


@pytest.mark.parametrize(("shell", "code"), PAIRS, ids=["several-secrets", "aws-references"])
def test_moto_block_runs_after_its_shell_block(
    shell: str, code: str, moto: MotoServer, tmp_path: Path
) -> None:
    """The shell block's `aws` commands and exports, then the Python block, exit 0."""
    names = re.findall(r"--name (\S+)", shell)
    env = clean_env(tmp_path)
    empty = tmp_path / "aws-empty"
    empty.write_text("")
    env.update(moto.env())
    env.update(
        AWS_CONFIG_FILE=str(empty),
        AWS_SHARED_CREDENTIALS_FILE=str(empty),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_PAGER="",
    )
    env["PATH"] = str(Path(aws_executable()).parent) + os.pathsep + env["PATH"]
    script = tmp_path / "example.py"
    script.write_text(code)
    try:
        proc = subprocess.run(
            ["bash", "-e", "-c", f"{shell}\n{sys.executable} {script}"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        for name in names:
            moto.delete_secret(name)
