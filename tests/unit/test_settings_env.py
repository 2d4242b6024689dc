"""Every non-Vault setting from its environment variable, bad values refused by name; the key
grammar on writes; providers left out for a missing extra warn."""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from simpletuner_secrets import (
    ConfigurationError,
    EnvironmentSecretProvider,
    FileSecretProvider,
    SecretsManager,
    validate_key,
)
from simpletuner_secrets._settings import SETTINGS_VARIABLES
from simpletuner_secrets.providers import aws
from simpletuner_secrets.providers.aws import AWSSecretsManagerProvider
from simpletuner_secrets.testing import InMemorySecretProvider

ROOT = Path(__file__).resolve().parents[2]
#: A value that looks like a token, set into a variable by mistake: never echoed.
PASTED = "hf_pastedTokenValue8842"


def manager(environ: dict[str, str], **kwargs: Any) -> SecretsManager:
    return SecretsManager([InMemorySecretProvider({})], environ=environ, **kwargs)


# -- the manager's settings -----------------------------------------------------------


def test_manager_settings_come_from_their_variables() -> None:
    """cache_ttl, cache_max_size, on_provider_error, provider_timeout, max_stale: each read
    from its SIMPLETUNER_* variable when not given; stats() reports what was given."""
    m = manager(
        {
            "SIMPLETUNER_CACHE_TTL": "2",
            "SIMPLETUNER_CACHE_MAX_SIZE": "50",
            "SIMPLETUNER_ON_PROVIDER_ERROR": "Raise",
            "SIMPLETUNER_PROVIDER_TIMEOUT": "0.5",
            "SIMPLETUNER_MAX_STALE": "60",
        }
    )
    assert (m.cache_ttl, m.on_provider_error, m.provider_timeout, m.max_stale) == (
        2.0,
        "raise",
        0.5,
        60.0,
    )
    cache = m.stats()["cache"]
    assert (cache["default_ttl"], cache["max_size"], cache["max_stale"]) == (2.0, 50, 60.0)


def test_arguments_win_over_variables_and_defaults_apply_without_either() -> None:
    """An argument beats its variable; with neither, the documented defaults."""
    environ = {"SIMPLETUNER_CACHE_TTL": "2", "SIMPLETUNER_ON_PROVIDER_ERROR": "raise"}
    m = manager(environ, cache_ttl=30, on_provider_error="skip")
    assert (m.cache_ttl, m.on_provider_error) == (30.0, "skip")
    plain = manager({})
    assert (plain.cache_ttl, plain.on_provider_error, plain.provider_timeout) == (
        300.0,
        "skip",
        5.0,
    )
    assert (plain.max_stale, plain.stats()["cache"]["max_size"]) == (86_400.0, 10_000)


@pytest.mark.parametrize(
    ("variable", "text"),
    [
        ("SIMPLETUNER_CACHE_TTL", PASTED),
        ("SIMPLETUNER_CACHE_TTL", "-1"),
        ("SIMPLETUNER_CACHE_TTL", "nan"),
        ("SIMPLETUNER_PROVIDER_TIMEOUT", "inf"),
        ("SIMPLETUNER_MAX_STALE", PASTED),
        ("SIMPLETUNER_CACHE_MAX_SIZE", "0"),
        ("SIMPLETUNER_CACHE_MAX_SIZE", "1.5"),
        ("SIMPLETUNER_ON_PROVIDER_ERROR", PASTED),
    ],
)
def test_a_bad_manager_variable_is_a_configuration_error_naming_it(
    variable: str, text: str
) -> None:
    """A malformed value raises ConfigurationError naming the variable, not the value."""
    with pytest.raises(ConfigurationError, match=variable) as info:
        manager({variable: text})
    assert text not in str(info.value)


# -- the environment and file providers' settings ------------------------------------------


def test_env_prefix_comes_from_its_variable(tmp_path: Path) -> None:
    """SIMPLETUNER_ENV_PREFIX sets the environment provider's prefix; env_prefix wins."""
    environ = {"SIMPLETUNER_ENV_PREFIX": "myapp", "HOME": str(tmp_path)}
    config = {"file_path": str(tmp_path / "s.json")}
    chain = SecretsManager(config=config, environ=environ).providers
    (env,) = [p for p in chain if isinstance(p, EnvironmentSecretProvider)]
    assert env.prefix == "MYAPP_"
    chain = SecretsManager(config={**config, "env_prefix": "other"}, environ=environ).providers
    (env,) = [p for p in chain if isinstance(p, EnvironmentSecretProvider)]
    assert env.prefix == "OTHER_"


async def test_file_settings_come_from_their_variables(tmp_path: Path) -> None:
    """SIMPLETUNER_SECRETS_FILE, SIMPLETUNER_STRICT_PERMISSIONS, SIMPLETUNER_MAX_FILE_SIZE
    configure the chain's file provider, and writes go to that file."""
    path = tmp_path / "app" / "secrets.yaml"
    environ = {
        "SIMPLETUNER_SECRETS_FILE": str(path),
        "SIMPLETUNER_STRICT_PERMISSIONS": "yes",
        "SIMPLETUNER_MAX_FILE_SIZE": "4096",
        "HOME": str(tmp_path),
    }
    async with SecretsManager(environ=environ) as m:
        (file,) = [p for p in m.providers if isinstance(p, FileSecretProvider)]
        assert (file.path, file.strict_permissions, file.max_file_size) == (path, True, 4096)
        assert m.get_secrets_file_path() == path
        await m.set_secret("db-password", "pw-value-1")
        assert "DB_PASSWORD" in path.read_text()
        assert await m.get("db.password") == "pw-value-1"


def test_config_file_settings_win_over_variables(tmp_path: Path) -> None:
    """file_path, strict_permissions and max_file_size in config beat the variables."""
    environ = {
        "SIMPLETUNER_SECRETS_FILE": str(tmp_path / "env.json"),
        "SIMPLETUNER_STRICT_PERMISSIONS": "1",
        "SIMPLETUNER_MAX_FILE_SIZE": "4096",
    }
    config = {
        "file_path": str(tmp_path / "cfg.json"),
        "strict_permissions": False,
        "max_file_size": 100,
    }
    file = FileSecretProvider.from_settings(config, environ)
    assert (file.path, file.strict_permissions, file.max_file_size) == (
        tmp_path / "cfg.json",
        False,
        100,
    )


@pytest.mark.parametrize(
    ("variable", "text"),
    [
        ("SIMPLETUNER_STRICT_PERMISSIONS", PASTED),
        ("SIMPLETUNER_MAX_FILE_SIZE", "-5"),
        ("SIMPLETUNER_MAX_FILE_SIZE", PASTED),
    ],
)
def test_a_bad_file_variable_is_a_configuration_error_naming_it(
    variable: str, text: str, tmp_path: Path
) -> None:
    """A malformed file setting fails the manager's construction, naming the variable only."""
    with pytest.raises(ConfigurationError, match=variable) as info:
        SecretsManager(environ={variable: text, "HOME": str(tmp_path)})
    assert text not in str(info.value)


# -- the AWS provider's settings --------------------------------------------------------


def test_aws_stage_and_timeouts_come_from_their_variables() -> None:
    """SIMPLETUNER_AWS_VERSION_STAGE and the two timeouts reach the provider and its client
    config; config keys beat them, the argument beats both."""
    environ = {
        "SIMPLETUNER_AWS_SECRET_NAME": "app",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SIMPLETUNER_AWS_VERSION_STAGE": "AWSPREVIOUS",
        "SIMPLETUNER_AWS_CONNECT_TIMEOUT": "1.5",
        "SIMPLETUNER_AWS_READ_TIMEOUT": "7",
    }
    provider = AWSSecretsManagerProvider(environ=environ)
    assert (provider.version_stage, provider.connect_timeout, provider.read_timeout) == (
        "AWSPREVIOUS",
        1.5,
        7.0,
    )
    _, client_config = provider._open_session()
    assert (client_config.connect_timeout, client_config.read_timeout) == (1.5, 7.0)
    config = {"aws_version_stage": "S-CFG", "aws_read_timeout": 2}
    assert AWSSecretsManagerProvider(config=config, environ=environ).version_stage == "S-CFG"
    assert AWSSecretsManagerProvider(config=config, environ=environ).read_timeout == 2.0
    chosen = AWSSecretsManagerProvider(version_stage="S-ARG", config=config, environ=environ)
    assert chosen.version_stage == "S-ARG"
    assert AWSSecretsManagerProvider("n", environ={}).version_stage == "AWSCURRENT"


def test_aws_uses_standard_retries_unless_botocore_is_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The client retries in standard mode (a refused connection fails in about 2 s, within
    provider_timeout); AWS_RETRY_MODE set by the user is left to botocore."""
    monkeypatch.delenv("AWS_RETRY_MODE", raising=False)
    _, config = AWSSecretsManagerProvider("n", "us-east-1", environ={})._open_session()
    assert config.retries == {"mode": "standard"}
    monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")
    _, config = AWSSecretsManagerProvider("n", "us-east-1", environ={})._open_session()
    assert config.retries is None


def test_a_bad_aws_variable_leaves_aws_out_with_a_warning_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A malformed AWS timeout variable: the AWS provider is left out with a WARNING naming
    the variable, never its value."""
    environ = {
        "SIMPLETUNER_AWS_SECRET_NAME": "app",
        "SIMPLETUNER_AWS_READ_TIMEOUT": PASTED,
        "HOME": str(tmp_path),
    }
    with caplog.at_level(logging.WARNING, logger="simpletuner_secrets"):
        m = SecretsManager(environ=environ)
    assert "aws" not in [p.name for p in m.providers]
    (left,) = [left for left in m.left_out if left.provider == "aws"]
    assert left.misconfigured and "SIMPLETUNER_AWS_READ_TIMEOUT" in left.reason
    assert PASTED not in caplog.text and PASTED not in left.reason


def test_readme_documents_every_settings_variable() -> None:
    """Each SIMPLETUNER_* settings variable appears in the README's settings table."""
    readme = (ROOT / "README.md").read_text()
    missing = [v for v in SETTINGS_VARIABLES if f"`{v}`" not in readme]
    assert missing == []


# -- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "stored"),
    [
        ("hf-token2", "HF_TOKEN2"),
        ("HF_TOKEN", "HF_TOKEN"),
        ("db.password", "DB_PASSWORD"),
        ("_x", "_X"),
    ],
)
def test_keys_in_the_grammar_normalize(key: str, stored: str) -> None:
    """validate_key accepts letters, digits, _ - . (a letter or _ first) and normalizes."""
    assert validate_key(key) == stored
    assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", stored)


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("my key", "a space at position 3"),
        ("../etc/x", "'.' at position 1"),
        ("a/b", "'/' at position 2"),
        ("9lives", "'9' at position 1"),
        ("-flag", "'-' at position 1"),
        ("clé", "U+00E9 at position 3"),
        ("", "empty"),
    ],
)
def test_keys_outside_the_grammar_are_refused_saying_where(key: str, problem: str) -> None:
    """A key outside the grammar is a ValueError naming the offending character's position."""
    with pytest.raises(ValueError, match=re.escape(problem)):
        validate_key(key)


async def test_set_secret_refuses_a_key_outside_the_grammar_and_writes_nothing(
    tmp_path: Path,
) -> None:
    """set_secret("my key") and set_secret("../etc/x") raise ValueError; the file is untouched."""
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"A": "1"}))
    path.chmod(0o600)
    async with SecretsManager(config={"file_path": str(path)}, environ={}) as m:
        for key in ("my key", "../etc/x"):
            with pytest.raises(ValueError, match="invalid secret key"):
                await m.set_secret(key, "value-never-written")
        assert json.loads(path.read_text()) == {"A": "1"}
        assert validate_key("hf-token2") == "HF_TOKEN2"  # the name a write stores, no write
        await m.set_secret("hf-token2", "hf-value-2")
        assert json.loads(path.read_text()) == {"A": "1", "HF_TOKEN2": "hf-value-2"}


def test_sync_set_secret_stores_the_normalized_name(tmp_path: Path) -> None:
    """The sync facade's writes store the normalized name, as `validate_key` reports it."""
    path = tmp_path / "s.json"
    m = SecretsManager(config={"file_path": str(path)}, environ={})
    try:
        m.sync.set_secret("replicate.api-token", "r8-value-1")
        assert json.loads(path.read_text()) == {validate_key("replicate.api-token"): "r8-value-1"}
    finally:
        m.sync.close()


# -- a provider whose extra is missing ----------------------------------------------------


def test_settings_present_but_extra_missing_warns_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An AWS secret name or a Vault address with aioboto3 / hvac missing: a WARNING naming
    the extra to install (not a DEBUG line), and the provider counts as misconfigured."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name in ("aioboto3", "hvac") else real_find_spec(name, *args)

    monkeypatch.setattr(aws, "_sdk_found", None)
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    environ = {
        "SIMPLETUNER_AWS_SECRET_NAME": "app",
        "VAULT_ADDR": "http://127.0.0.1:8200",
        "VAULT_TOKEN": "s.token-never-logged",
        "HOME": str(tmp_path),
    }
    with caplog.at_level(logging.DEBUG, logger="simpletuner_secrets"):
        m = SecretsManager(environ=environ)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("pip install 'simpletuner-secrets[aws]'" in w for w in warnings), warnings
    assert any("pip install 'simpletuner-secrets[vault]'" in w for w in warnings), warnings
    assert {left.provider for left in m.left_out if left.misconfigured} == {"aws", "vault"}
    assert "token-never-logged" not in caplog.text


def test_no_settings_and_no_extra_stays_a_debug_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing configured for AWS, Vault or a secrets directory: their absence is no warning."""
    with caplog.at_level(logging.DEBUG, logger="simpletuner_secrets"):
        m = SecretsManager(environ={"HOME": str(tmp_path)})
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert {left.provider for left in m.left_out} == {"aws", "dir", "vault"}
    assert not any(left.misconfigured for left in m.left_out)
