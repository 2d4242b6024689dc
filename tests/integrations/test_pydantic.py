"""pydantic-settings integration: settings fields resolved through the provider chain."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from simpletuner_secrets import SecretsManager
from simpletuner_secrets.integrations.pydantic import SecretsManagerSettingsSource
from simpletuner_secrets.pytest_plugin import SecretOverrides
from simpletuner_secrets.testing import InMemorySecretProvider
from tests.servers.bao import BaoServer
from tests.servers.moto import MotoServer

from .conftest import chain_settings

HF_VALUE = "hf_pydantic_test_value_91ab"


def settings_class(manager: SecretsManager | None, *, first: bool = False) -> type[BaseSettings]:
    """A settings model whose secrets source comes after init and env (or first of all)."""

    class Settings(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="APP_")

        hf_token: SecretStr
        replicate_token: SecretStr | None = Field(default=None, alias="REPLICATE_API_TOKEN")
        database_url: str = Field(
            default="sqlite://", validation_alias=AliasChoices("db-url", "DATABASE_URL")
        )
        port: int = 8000
        allowed_hosts: list[str] = ["localhost"]
        debug: bool = False

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            secrets = SecretsManagerSettingsSource(settings_cls, manager)
            if first:
                return (secrets, init_settings, env_settings)
            return (init_settings, env_settings, secrets)

    return Settings


@contextlib.contextmanager
def opened(manager: SecretsManager) -> Iterator[SecretsManager]:
    """Use ``manager`` in a sync test; close it (and its facade's loop) afterwards."""
    try:
        yield manager
    finally:
        manager.sync.close()


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data))
    path.chmod(0o600)
    return path


def test_fields_resolve_from_env_and_file_through_the_chain(
    clean_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Env beats the file; names, aliases and alias choices are normalized keys; types convert."""
    secrets_file = write_json(
        tmp_path / "secrets.json",
        {
            "HF_TOKEN": "hf_from_the_file_is_shadowed",
            "replicate-api-token": "r8_from_file",
            "DB_URL": "postgres://file/db",
            "PORT": 5432,
            "ALLOWED_HOSTS": ["a.example", "b.example"],
            "DEBUG": True,
        },
    )
    monkeypatch.setenv("HF_TOKEN", HF_VALUE)
    with opened(SecretsManager(config={"file_path": str(secrets_file)})) as manager:
        settings: Any = settings_class(manager)()
    assert settings.hf_token.get_secret_value() == HF_VALUE
    assert settings.replicate_token.get_secret_value() == "r8_from_file"
    assert settings.database_url == "postgres://file/db"
    assert settings.port == 5432
    assert settings.allowed_hosts == ["a.example", "b.example"]
    assert settings.debug is True


def test_secretstr_fields_stay_masked(secrets_manager: SecretsManager) -> None:
    """A SecretStr field shows stars in repr and str; the value only through get_secret_value."""
    secrets_manager.sync.set_secret("HF_TOKEN", HF_VALUE)
    settings: Any = settings_class(secrets_manager)()
    assert HF_VALUE not in repr(settings) and HF_VALUE not in str(settings)
    assert "**********" in repr(settings)
    assert settings.hf_token.get_secret_value() == HF_VALUE


def test_priority_follows_the_source_order(
    override_secrets: SecretOverrides, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Placed last, the secrets source loses to init and env; placed first, it wins."""
    override_secrets({"HF_TOKEN": HF_VALUE, "PORT": "9000"})
    monkeypatch.setenv("APP_PORT", "7000")
    manager = override_secrets.manager
    last: Any = settings_class(manager)(port=6000)
    assert last.port == 6000
    assert settings_class(manager)().port == 7000
    first: Any = settings_class(manager, first=True)(port=6000)
    assert first.port == 9000
    # Absent everywhere: the default.
    assert last.database_url == "sqlite://" and last.debug is False


def test_default_manager_is_the_process_wide_one(override_secrets: SecretOverrides) -> None:
    """With no manager given, the source reads get_secrets_manager() when settings load."""
    override_secrets["hf-token"] = HF_VALUE
    settings: Any = settings_class(None)()
    assert settings.hf_token.get_secret_value() == HF_VALUE


def test_a_required_field_absent_everywhere_is_a_validation_error(
    secrets_manager: SecretsManager,
) -> None:
    """The source adds nothing for an absent secret; pydantic reports the missing field."""
    with pytest.raises(ValueError, match="hf_token"):
        settings_class(secrets_manager)()


async def test_settings_load_inside_a_running_event_loop(
    secrets_manager: SecretsManager, override_secrets: SecretOverrides
) -> None:
    """Settings built in async code (a loop runs in this thread) resolve without deadlock."""
    override_secrets({"HF_TOKEN": HF_VALUE})
    settings: Any = settings_class(secrets_manager)()
    assert settings.hf_token.get_secret_value() == HF_VALUE
    # And a cold lookup, which must go through the facade's own loop:
    secrets_manager.clear_cache()
    again: Any = settings_class(secrets_manager)()
    assert again.hf_token.get_secret_value() == HF_VALUE


def test_in_memory_provider_as_a_stand_in() -> None:
    """Any chain works: here one in-memory provider, loaded once for every field."""
    provider = InMemorySecretProvider({"HF_TOKEN": HF_VALUE, "DATABASE_URL": "postgres://mem"})
    with opened(SecretsManager([provider])) as manager:
        settings: Any = settings_class(manager)()
        assert settings.database_url == "postgres://mem"
        assert provider.loads == 1


def test_failing_provider_is_a_settings_error_without_the_value(
    override_secrets: SecretOverrides,
) -> None:
    """on_provider_error="raise": loading fails with SettingsError naming the field, not a value."""
    provider = InMemorySecretProvider({"HF_TOKEN": HF_VALUE})
    provider.failure = "backend down"
    manager = SecretsManager([provider], on_provider_error="raise")
    with opened(manager), pytest.raises(SettingsError, match='field "hf_token"') as info:
        settings_class(manager)()
    assert HF_VALUE not in str(info.value)


def test_malformed_json_for_a_complex_field_does_not_quote_it(
    override_secrets: SecretOverrides,
) -> None:
    """A list field whose secret is not JSON fails naming the field, never quoting the text."""
    override_secrets({"HF_TOKEN": HF_VALUE, "ALLOWED_HOSTS": "not json sk_oops"})
    with pytest.raises(SettingsError, match='field "allowed_hosts"') as info:
        settings_class(override_secrets.manager)()
    assert "sk_oops" not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None  # the JSON error (its `doc` is the value) stays behind


def test_env_prefix_is_not_applied_and_a_model_field_is_one_json_secret() -> None:
    """Secrets keep their own names whatever the settings' env_prefix; a nested model field
    reads one secret named after the field, holding the model as JSON."""
    from pydantic import BaseModel

    class Database(BaseModel):
        url: str
        pool: int = 5

    provider = InMemorySecretProvider(
        {
            "HF_TOKEN": HF_VALUE,
            "APP_HF_TOKEN": "prefixed-name-not-read",
            "DATABASE": json.dumps({"url": "postgres://db", "pool": 9}),
        }
    )
    with opened(SecretsManager([provider])) as manager:

        class Settings(chain_settings(manager)):  # type: ignore[misc]
            model_config = SettingsConfigDict(env_prefix="APP_")

            hf_token: SecretStr
            database: Database

        settings: Any = Settings()
    assert settings.hf_token.get_secret_value() == HF_VALUE
    assert settings.database == Database(url="postgres://db", pool=9)


def test_missing_pydantic_settings_names_the_extra() -> None:
    """Without pydantic-settings installed, importing the integration names the extra."""
    code = (
        "import sys; sys.modules['pydantic_settings'] = None\n"
        "try:\n"
        "    import simpletuner_secrets.integrations.pydantic\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "pip install 'simpletuner-secrets[pydantic]'" in out


@pytest.mark.integration
def test_settings_from_env_file_aws_and_vault_at_once(
    clean_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    moto_env: MotoServer,
    moto_secret: str,
    bao: BaoServer,
) -> None:
    """One model, four back-ends: env > file > AWS (moto) > Vault (OpenBao), real servers."""
    vault_path = f"settings-{uuid.uuid4().hex[:8]}"
    bao.request(
        "POST",
        f"secret/data/{vault_path}",
        {"data": {"HF_TOKEN": "hf_vault", "DATABASE_URL": "postgres://vault", "PORT": "1111"}},
    )
    moto_env.create_secret(
        moto_secret,
        string=json.dumps({"HF_TOKEN": "hf_aws", "DATABASE_URL": "postgres://aws", "DEBUG": True}),
    )
    secrets_file = write_json(
        tmp_path / "secrets.json", {"HF_TOKEN": "hf_file", "REPLICATE_API_TOKEN": "r8_file"}
    )
    monkeypatch.setenv("HF_TOKEN", HF_VALUE)
    config = {
        "file_path": str(secrets_file),
        "aws_secret_name": moto_secret,
        "vault_url": bao.url,
        "vault_token": bao.token,
        "vault_path": vault_path,
    }
    with opened(SecretsManager(config=config)) as manager:
        assert [p.name for p in manager.providers] == ["env", "file", "aws", "vault"]
        settings: Any = settings_class(manager)()
        assert settings.hf_token.get_secret_value() == HF_VALUE  # env
        assert settings.replicate_token.get_secret_value() == "r8_file"  # file
        assert settings.database_url == "postgres://aws"  # AWS before Vault
        assert settings.debug is True  # AWS, a JSON boolean
        assert settings.port == 1111  # Vault only
        assert manager.stats()["providers"]["aws"]["calls"] == 1
        assert manager.stats()["providers"]["vault"]["calls"] == 1
