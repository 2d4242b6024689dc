"""The README's operator block, run as written with the `bao` CLI standing in for `vault`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from simpletuner_secrets import SecretsManager
from tests.servers.bao import BaoServer
from tests.unit.test_readme import blocks

pytestmark = pytest.mark.integration


def test_operator_block_writes_what_the_manager_reads(bao: BaoServer, tmp_path: Path) -> None:
    """`vault kv put secret/simpletuner ...` from the README is read back through the chain."""
    (block,) = [b for b in blocks("bash") if "vault kv put" in b]
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "vault").symlink_to(bao.binary)
    env = {**os.environ, **bao.env(), "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    for line in filter(None, (raw.strip() for raw in block.splitlines())):
        proc = subprocess.run(
            ["bash", "-c", line], capture_output=True, text=True, env=env, timeout=60
        )
        assert proc.returncode == 0, f"{line}: {proc.stderr}"
    config = {
        "vault_url": bao.url,
        "vault_token": bao.token,
        "file_path": str(tmp_path / "none.json"),
    }
    manager = SecretsManager(config=config, environ={})
    try:
        assert manager.sync.get("replicate-api-token") == "r8_..."
        assert manager.sync.get_hf_token() == "hf_..."
        assert manager.sync.explain("HF_TOKEN")["provider"] == "vault"
    finally:
        manager.sync.close()
