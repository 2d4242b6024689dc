"""The real `aws` CLI (the `awscli` wheel) driving the moto server, as an operator would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.servers.moto import MotoServer


def aws_executable() -> str:
    """The `aws` script beside this interpreter, else on PATH; fails the test when absent."""
    beside = Path(sys.executable).with_name("aws")
    if beside.exists():
        return str(beside)
    found = shutil.which("aws")
    if found is None:
        pytest.fail("the `aws` CLI is not installed (pip install awscli: the test extra)")
    return found


class AwsCli:
    """Runs ``aws secretsmanager ...`` against one moto server, with dummy keys only."""

    def __init__(self, server: MotoServer, home: Path) -> None:
        self.server = server
        empty = home / "aws-cli-empty"
        empty.write_text("")
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),
            **server.env(),
            "AWS_CONFIG_FILE": str(empty),
            "AWS_SHARED_CREDENTIALS_FILE": str(empty),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_PAGER": "",
        }

    def run(self, *args: str) -> Any:
        """``aws secretsmanager <args>``; its JSON answer (None when it prints nothing)."""
        proc = subprocess.run(
            [aws_executable(), "secretsmanager", *args, "--output", "json"],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
        )
        assert proc.returncode == 0, f"aws secretsmanager {args[0]}: {proc.stderr}"
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    def create(self, name: str, secret: str) -> str:
        """``create-secret``; the new version id."""
        return str(
            self.run("create-secret", "--name", name, "--secret-string", secret)["VersionId"]
        )

    def rotate(self, name: str, secret: str) -> str:
        """``put-secret-value``: a new AWSCURRENT; the old one becomes AWSPREVIOUS."""
        return str(
            self.run("put-secret-value", "--secret-id", name, "--secret-string", secret)[
                "VersionId"
            ]
        )

    def stage(self, name: str, secret: str, stage: str) -> str:
        """``put-secret-value --version-stages STAGE``: a version only that label points at."""
        return str(
            self.run(
                "put-secret-value",
                "--secret-id",
                name,
                "--secret-string",
                secret,
                "--version-stages",
                stage,
            )["VersionId"]
        )

    def delete(self, name: str) -> None:
        """``delete-secret --force-delete-without-recovery``."""
        self.run("delete-secret", "--secret-id", name, "--force-delete-without-recovery")
