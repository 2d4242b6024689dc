"""The command line against real back-ends: an OpenBao dev server and moto_server.

Every case runs the CLI in a subprocess with an isolated HOME; secrets are arranged with the
real `bao` CLI and boto3 against moto.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.servers.bao import BaoServer
from tests.servers.moto import MotoServer
from tests.unit.test_cli import clean_env, write_secrets

pytestmark = pytest.mark.integration

VAULT_VALUE = "hf_from_vault_value_0001"
AWS_VALUE = "r8_from_aws_value_0002"


def cli(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simpletuner_secrets.cli", *args],
        capture_output=True,
        text=True,
        env=clean_env(home, env),
        timeout=120,
    )


@pytest.fixture
def remote_env(
    bao: BaoServer, moto: MotoServer, moto_secret: str, tmp_path: Path
) -> dict[str, str]:
    """Settings for a chain where Vault (a path of the test's own) holds HF_TOKEN and SHARED
    and AWS holds REPLICATE_API_TOKEN and SHARED (AWS is higher in the chain)."""
    path = f"cli-{uuid.uuid4().hex[:12]}"
    bao.cli("kv", "put", f"secret/{path}", f"HF_TOKEN={VAULT_VALUE}", "SHARED=from-vault")
    moto.create_secret(
        moto_secret, string=json.dumps({"REPLICATE_API_TOKEN": AWS_VALUE, "SHARED": "from-aws"})
    )
    empty = tmp_path / "aws-empty"
    empty.write_text("")
    return {
        "VAULT_ADDR": bao.url,
        "VAULT_TOKEN": bao.token,
        "SIMPLETUNER_VAULT_PATH": path,
        "SIMPLETUNER_AWS_SECRET_NAME": moto_secret,
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_EC2_METADATA_DISABLED": "true",
        **moto.env(),
    }


def test_doctor_with_vault_and_aws_healthy_exits_zero(
    remote_env: dict[str, str], tmp_path: Path
) -> None:
    """doctor with both back-ends up: exit 0, each key found where it lives, values masked."""
    proc = cli(tmp_path, remote_env, "doctor", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert [p["name"] for p in report["providers"]] == ["env", "file", "aws", "vault"]
    assert all(p["reachable"] for p in report["providers"])
    keys = {k["key"]: (k["state"], k["provider"]) for k in report["keys"]}
    assert keys == {
        "REPLICATE_API_TOKEN": ("found", "aws"),
        "HF_TOKEN": ("found", "vault"),
        "CLOUD_WEBHOOK_SECRET": ("absent", None),
    }
    assert VAULT_VALUE not in proc.stdout and AWS_VALUE not in proc.stdout


def test_list_which_export_and_run_across_the_chain(
    remote_env: dict[str, str], tmp_path: Path
) -> None:
    """list shows every provider's keys; which --all names both holders of SHARED (AWS is
    higher); export --all and run --all carry the chain's answers."""
    write_secrets(tmp_path, {"FILE_ONLY": "from-file"})
    listed = json.loads(cli(tmp_path, remote_env, "list", "--json").stdout)
    keys = {p["name"]: sorted(p["keys"]) for p in listed["providers"]}
    assert keys["aws"] == ["REPLICATE_API_TOKEN", "SHARED"]
    assert keys["vault"] == ["HF_TOKEN", "SHARED"]
    assert keys["file"] == ["FILE_ONLY"]

    which = json.loads(cli(tmp_path, remote_env, "which", "--all", "--json", "shared").stdout)
    assert which["provider"] == "aws"
    assert [p["name"] for p in which["providers"] if p["has"]] == ["aws", "vault"]

    exported = cli(tmp_path, remote_env, "export", "--all", "--format", "json")
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout) == {
        "FILE_ONLY": "from-file",
        "HF_TOKEN": VAULT_VALUE,
        "REPLICATE_API_TOKEN": AWS_VALUE,
        "SHARED": "from-aws",
    }

    script = "import os; print(os.environ['HF_TOKEN'], os.environ['SHARED'])"
    ran = cli(tmp_path, remote_env, "run", "--all", "--", sys.executable, "-c", script)
    assert (ran.returncode, ran.stdout) == (0, f"{VAULT_VALUE} from-aws\n"), ran.stderr


def test_a_wrong_vault_token_is_exit_two_for_get_and_three_for_doctor(
    remote_env: dict[str, str], tmp_path: Path
) -> None:
    """A token Vault refuses (403): `get` of a key Vault could hold exits 2, `doctor` exits 3
    with the keys Vault could hold unknown; AWS's key is still found."""
    env = {**remote_env, "VAULT_TOKEN": "not-a-valid-token"}
    got = cli(tmp_path, env, "get", "HF_TOKEN")
    assert got.returncode == 2, got.stderr
    assert "error: vault" in got.stderr and "not-a-valid-token" not in got.stderr
    doctor = cli(tmp_path, env, "doctor", "--json")
    assert doctor.returncode == 3, doctor.stdout + doctor.stderr
    report = json.loads(doctor.stdout)
    keys = {k["key"]: (k["state"], k["provider"]) for k in report["keys"]}
    assert keys["HF_TOKEN"] == ("unknown", None)
    assert keys["REPLICATE_API_TOKEN"] == ("found", "aws")
    assert "not-a-valid-token" not in doctor.stdout + doctor.stderr
