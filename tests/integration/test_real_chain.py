"""SecretsManager over the real chain: environment, file, moto and OpenBao at once."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simpletuner_secrets import SecretsManager
from tests.clock import BandMiddle
from tests.servers.bao import BaoServer
from tests.servers.moto import MotoServer

pytestmark = pytest.mark.integration

ENV_VALUE = "chain-env-value-1a2b3c"
FILE_VALUE = "chain-file-value-4d5e6f"
AWS_VALUE = "chain-aws-value-7a8b9c"
VAULT_VALUE = "chain-vault-value-0d1e2f"
ROTATED = "chain-vault-rotated-3a4b5c"


@pytest.fixture
def chain(
    tmp_path: Path,
    moto_env: MotoServer,
    moto_secret: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, Any]]:
    """Seed a key per layer (and shared keys) and return the manager's config and environ."""
    monkeypatch.setenv("CHAIN_ONLY_ENV", ENV_VALUE)
    monkeypatch.setenv("CHAIN_SHARED", ENV_VALUE)
    file_path = tmp_path / "secrets.yaml"
    file_path.write_text(
        f"ONLY_FILE: {FILE_VALUE}\nSHARED: {FILE_VALUE}\nFILE_AND_AWS: {FILE_VALUE}\n"
    )
    file_path.chmod(0o600)
    moto_env.create_secret(
        moto_secret,
        string=json.dumps(
            {
                "ONLY_AWS": AWS_VALUE,
                "SHARED": AWS_VALUE,
                "FILE_AND_AWS": AWS_VALUE,
                "AWS_AND_VAULT": AWS_VALUE,
            }
        ),
    )
    yield {
        "env_prefix": "CHAIN",
        "file_path": str(file_path),
        "aws_secret_name": moto_secret,
        "aws_endpoint_url": moto_env.endpoint_url,
        "aws_region": moto_env.region,
    }


def vault_config(bao: BaoServer, path: str) -> dict[str, str]:
    return {"vault_url": bao.url, "vault_token": bao.token, "vault_path": path}


def seed_vault(bao: BaoServer, path: str, value: str) -> None:
    bao.request(
        "POST",
        f"secret/data/{path}",
        {"data": {"ONLY_VAULT": value, "SHARED": value, "AWS_AND_VAULT": value}},
    )


async def test_priority_and_fan_out_over_the_real_chain(
    chain: dict[str, Any], bao: BaoServer, sent_targets: list[str], tmp_path: Path
) -> None:
    """Each key comes from the highest provider that has it; one fetch per remote document."""
    path = f"chain-{secrets.token_hex(4)}"
    seed_vault(bao, path, VAULT_VALUE)
    config = {**chain, **vault_config(bao, path)}
    audit = bao.audit_mark()
    # The middle of every band: no random first refresh ahead to add a request to the counts.
    async with SecretsManager(
        config=config, environ={"HOME": str(tmp_path)}, rng=BandMiddle()
    ) as manager:
        assert [p.name for p in manager.providers] == ["env", "file", "aws", "vault"]
        keys = [
            "only-env",
            "only-file",
            "only-aws",
            "only-vault",
            "shared",
            "file-and-aws",
            "aws-and-vault",
            "nowhere",
        ]
        answers = await asyncio.gather(*(manager.get(k) for k in keys * 25))
        expected = [
            ENV_VALUE,
            FILE_VALUE,
            AWS_VALUE,
            VAULT_VALUE,
            ENV_VALUE,
            FILE_VALUE,
            AWS_VALUE,
            None,
        ]
        assert answers == expected * 25
        explained = {k: (await manager.explain(k))["provider"] for k in keys}
        assert explained == {
            "only-env": "env",
            "only-file": "file",
            "only-aws": "aws",
            "only-vault": "vault",
            "shared": "env",
            "file-and-aws": "file",
            "aws-and-vault": "aws",
            "nowhere": None,
        }
        # 200 lookups, one document fetch per remote provider.
        assert sent_targets.count("secretsmanager.GetSecretValue") == 1
        assert audit.responses(f"secret/data/{path}") == [f"secret/data/{path}"]
        stats = manager.stats()["providers"]
        assert stats["aws"]["calls"] == 1 and stats["vault"]["calls"] == 1
        # The sync facade shares the cache: no new fetch, from 8 threads.
        got: list[str | None] = []
        threads = [
            threading.Thread(target=lambda: got.append(manager.sync.get("only-vault")))
            for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert got == [VAULT_VALUE] * 8
        assert sent_targets.count("secretsmanager.GetSecretValue") == 1


async def test_vault_rotation_is_seen_after_the_ttl_without_restart(
    bao: BaoServer, tmp_path: Path
) -> None:
    """A value rotated in Vault replaces the cached one once the TTL has passed."""
    path = f"rotate-{secrets.token_hex(4)}"
    seed_vault(bao, path, VAULT_VALUE)
    config = {"file_path": str(tmp_path / "none.json"), **vault_config(bao, path)}
    async with SecretsManager(config=config, cache_ttl=0.5, environ={}) as manager:
        assert await manager.get("ONLY_VAULT") == VAULT_VALUE
        bao.cli("kv", "put", f"secret/{path}", f"ONLY_VAULT={ROTATED}")
        assert await manager.get("ONLY_VAULT") == VAULT_VALUE  # still cached
        deadline = time.monotonic() + 5
        while await manager.get("ONLY_VAULT") != ROTATED:
            assert time.monotonic() < deadline, "rotation not seen within 5 s (TTL 0.5 s)"
            await asyncio.sleep(0.05)


async def test_vault_stopped_mid_run_serves_the_last_value_with_a_warning(
    bao_fresh: BaoServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Vault going away: the last good value keeps being served, one WARNING, no value."""
    path = f"stale-{secrets.token_hex(4)}"
    seed_vault(bao_fresh, path, VAULT_VALUE)
    config = {"file_path": str(tmp_path / "none.json"), **vault_config(bao_fresh, path)}
    caplog.set_level(logging.WARNING)
    async with SecretsManager(
        config=config, cache_ttl=0.3, provider_timeout=2.0, environ={}
    ) as manager:
        assert await manager.get("ONLY_VAULT") == VAULT_VALUE
        bao_fresh.stop()
        await asyncio.sleep(0.4)  # past the TTL (0.3 s +- 10%)
        for _ in range(5):
            assert await manager.get("ONLY_VAULT") == VAULT_VALUE
        info = await manager.explain("ONLY_VAULT")
        assert info["provider"] == "vault" and info["stale"] is True
        assert manager.stats()["providers"]["vault"]["errors"] >= 1
    stale_warnings = [r for r in caplog.records if "serving the last good answer" in r.getMessage()]
    assert len(stale_warnings) == 1
    assert VAULT_VALUE not in caplog.text and bao_fresh.token not in caplog.text


async def test_aws_secret_deleted_is_an_empty_document_not_a_failure(
    chain: dict[str, Any], moto_env: MotoServer, tmp_path: Path
) -> None:
    """A missing AWS secret counts as no keys there; the chain keeps answering."""
    config = {**chain, "aws_secret_name": f"{chain['aws_secret_name']}-absent"}
    async with SecretsManager(
        config=config, on_provider_error="raise", environ={"HOME": str(tmp_path)}
    ) as manager:
        assert await manager.get("only-aws") is None
        assert await manager.get("only-file") == FILE_VALUE
