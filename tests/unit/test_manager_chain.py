"""SecretsManager's default chain and writes: what is left out and why, where writes go."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from simpletuner_secrets import (
    EnvironmentSecretProvider,
    FileSecretProvider,
    SecretsError,
    SecretsManager,
)
from simpletuner_secrets.testing import InMemorySecretProvider

SECRET = "chain-secret-value-6c5b4a"


def names(manager: SecretsManager) -> list[str]:
    return [p.name for p in manager.providers]


def test_default_chain_is_env_then_file_with_reasons_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With nothing configured: env, file; AWS and Vault left out with a debug line each."""
    caplog.set_level(logging.DEBUG, logger="simpletuner_secrets")
    manager = SecretsManager(environ={"HOME": str(tmp_path)})
    assert names(manager) == ["env", "file"]
    assert "aws provider left out: no aws_secret_name" in caplog.text
    assert "vault provider left out: no vault_url" in caplog.text


def test_missing_extra_leaves_the_provider_out_with_a_debug_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A configured provider whose SDK is not installed is left out, the extra named."""

    from simpletuner_secrets.providers import aws, vault

    monkeypatch.setattr(aws, "_sdk_importable", lambda: False)
    monkeypatch.setattr(vault, "_hvac_installed", lambda: False)
    caplog.set_level(logging.DEBUG, logger="simpletuner_secrets")
    manager = SecretsManager(
        config={"aws_secret_name": "app", "vault_url": "http://127.0.0.1:1", "vault_token": "t"}
    )
    assert names(manager) == ["env", "file"]
    assert "simpletuner-secrets[aws]" in caplog.text
    assert "simpletuner-secrets[vault]" in caplog.text


def test_config_file_path_is_read_and_written(tmp_path: Path) -> None:
    """`file_path` in config is the file the chain reads and the writes go to."""
    path = tmp_path / "nested" / "app.yaml"
    manager = SecretsManager(config={"file_path": str(path)}, environ={})
    assert manager.get_secrets_file_path() == path
    file_providers = [p for p in manager.providers if isinstance(p, FileSecretProvider)]
    assert [p.path for p in file_providers] == [path]


async def test_writes_are_seen_at_once_and_keep_their_format(tmp_path: Path) -> None:
    """set_secret then get sees it; YAML stays YAML; delete removes it; 0600 file."""
    path = tmp_path / "secrets.yaml"
    async with SecretsManager(config={"file_path": str(path)}, environ={}) as manager:
        assert await manager.get("db-password") is None
        await manager.set_secret("db-password", SECRET)
        assert await manager.get("DB_PASSWORD") == SECRET
        assert path.read_text().startswith("DB_PASSWORD:")
        assert path.stat().st_mode & 0o777 == 0o600
        assert await manager.delete_secret("db.password") is True
        assert await manager.get("DB_PASSWORD") is None
        assert await manager.delete_secret("DB_PASSWORD") is False


async def test_write_shadowed_by_the_environment_says_so_without_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An environment variable of the same key still wins; a WARNING says so, no value."""
    monkeypatch.setenv("SHADOWED_KEY", "from-environment")
    path = tmp_path / "secrets.json"
    caplog.set_level(logging.WARNING, logger="simpletuner_secrets")
    async with SecretsManager(config={"file_path": str(path)}) as manager:
        await manager.set_secret("shadowed-key", SECRET)
        assert await manager.get("SHADOWED_KEY") == "from-environment"
    assert json.loads(path.read_text()) == {"SHADOWED_KEY": SECRET}
    assert "SHADOWED_KEY was written to the secrets file" in caplog.text
    assert "env" in caplog.text and SECRET not in caplog.text


async def test_custom_chain_writes_invalidate_cached_per_key_answers(tmp_path: Path) -> None:
    """A write through the manager is seen by the next get even with caching providers."""
    path = tmp_path / "secrets.json"
    file_provider = FileSecretProvider(path)
    memory = InMemorySecretProvider({"TOKEN": "from-memory-provider"})
    async with SecretsManager([EnvironmentSecretProvider(), file_provider, memory]) as manager:
        assert await manager.get("TOKEN") == "from-memory-provider"
        await manager.set_secret("TOKEN", SECRET)
        assert await manager.get("TOKEN") == SECRET
        assert manager.get_secrets_file_path() == path
        await manager.delete_secret("TOKEN")
        assert await manager.get("TOKEN") == "from-memory-provider"


async def test_closed_manager_refuses_writes(tmp_path: Path) -> None:
    """set_secret and delete_secret on a closed manager raise a clear SecretsError."""
    manager = SecretsManager(config={"file_path": str(tmp_path / "s.json")}, environ={})
    await manager.aclose()
    with pytest.raises(SecretsError, match="closed"):
        await manager.set_secret("K", SECRET)
    with pytest.raises(SecretsError, match="closed"):
        await manager.delete_secret("K")
    with pytest.raises(SecretsError, match="closed"):
        await manager.get("K")


def test_a_malformed_vault_address_is_left_out_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """VAULT_ADDR without a scheme: Vault is left out, and a WARNING says why."""
    caplog.set_level(logging.DEBUG, logger="simpletuner_secrets")
    manager = SecretsManager(
        environ={"HOME": str(tmp_path), "VAULT_ADDR": "127.0.0.1:8200", "VAULT_TOKEN": "t0k"}
    )
    assert names(manager) == ["env", "file"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("vault provider left out" in r.getMessage() for r in warnings)
    assert "t0k" not in caplog.text


def test_env_keys_lists_only_variables_a_lookup_can_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a prefix, keys() leaves out names a lookup would never read (`lower`, `a-b`)."""
    provider = EnvironmentSecretProvider(
        "app", environ={"APP_DB_PASSWORD": "x", "APP_lower": "y", "APP_a-b": "z", "APP_": "w"}
    )
    assert provider.keys() == ["DB_PASSWORD"]
