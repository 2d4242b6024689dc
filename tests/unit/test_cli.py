"""The command line end to end, in subprocesses with an isolated HOME and environment."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

SECRET = "hf_cli_secret_value_123456"


def run(
    home: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VAULT_", "AWS_", "SIMPLETUNER_"))
        and k not in ("HF_TOKEN", "REPLICATE_API_TOKEN", "CLOUD_WEBHOOK_SECRET")
    }
    clean["HOME"] = str(home)
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "simpletuner_secrets.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=clean,
        timeout=60,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


def test_doctor_on_a_fresh_machine_exits_zero(home: Path) -> None:
    """doctor with nothing configured lists the chain, why AWS and Vault are out, the keys."""
    proc = run(home, "doctor")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "env" in out and "file" in out
    assert "aws    left out" in out and "vault  left out" in out
    assert "the file does not exist yet" in out
    for key in ("REPLICATE_API_TOKEN", "HF_TOKEN", "CLOUD_WEBHOOK_SECRET"):
        assert key in out


def test_set_from_stdin_then_get_which_list_delete(home: Path) -> None:
    """set reads stdin (one newline stripped); get prints; which/list mask; delete removes."""
    proc = run(home, "set", "hf-token", stdin=SECRET + "\n")
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    path = home / ".simpletuner" / "secrets.json"
    assert json.loads(path.read_text()) == {"HF_TOKEN": SECRET}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    got = run(home, "get", "HF_TOKEN")
    assert (got.returncode, got.stdout) == (0, SECRET + "\n")

    which = run(home, "which", "hf-token")
    assert which.returncode == 0
    assert "file" in which.stdout and SECRET not in which.stdout
    assert "hf**********" in which.stdout

    listed = run(home, "list")
    assert listed.returncode == 0 and "HF_TOKEN" in listed.stdout
    assert SECRET not in listed.stdout

    doctor = run(home, "doctor")
    assert SECRET not in doctor.stdout and "hf**********" in doctor.stdout

    assert run(home, "delete", "hf-token").returncode == 0
    assert run(home, "delete", "hf-token").returncode == 1
    assert run(home, "get", "HF_TOKEN").returncode == 1


def test_absent_key_exits_one_and_bad_key_exits_two(home: Path) -> None:
    """get/which of an absent key exit 1; an empty key is a usage error (exit 2, one line)."""
    assert run(home, "get", "NOPE").returncode == 1
    assert run(home, "which", "NOPE").returncode == 1
    bad = run(home, "get", " ")
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error:")


def test_set_refuses_a_value_on_the_command_line(home: Path) -> None:
    """A value given as an extra argument is a usage error, never written."""
    proc = run(home, "set", "HF_TOKEN", SECRET)
    assert proc.returncode == 2
    assert not (home / ".simpletuner" / "secrets.json").exists()


def test_environment_wins_and_list_shows_prefixed_variables(home: Path) -> None:
    """An environment variable beats the file; with a prefix, list shows its variables."""
    run(home, "set", "HF_TOKEN", stdin="from-file")
    env = {"HF_TOKEN": "from-env-value-long"}
    assert run(home, "get", "HF_TOKEN", env=env).stdout == "from-env-value-long\n"
    listed = run(home, "--env-prefix", "APP", "list", env={"APP_DB_PASSWORD": "pg-password-long"})
    assert "DB_PASSWORD" in listed.stdout and "pg-password-long" not in listed.stdout


def test_malformed_file_is_a_one_line_error_without_the_value(home: Path) -> None:
    """A broken secrets file gives exit 2 and a message naming the file, not the secret."""
    target = home / ".simpletuner"
    target.mkdir(mode=0o700)
    (target / "secrets.json").write_text('{"HF_TOKEN": "' + SECRET + '",,}')
    (target / "secrets.json").chmod(0o600)
    proc = run(home, "get", "HF_TOKEN")
    assert proc.returncode == 2
    assert "secrets.json" in proc.stderr and SECRET not in proc.stderr + proc.stdout


def test_help_and_version(home: Path) -> None:
    """--help lists the commands; --version prints the version."""
    helped = run(home, "--help")
    assert helped.returncode == 0
    for command in ("get", "set", "delete", "which", "list", "doctor"):
        assert command in helped.stdout
    assert run(home, "--version").stdout.startswith("simpletuner-secrets ")
