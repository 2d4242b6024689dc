"""HashiCorpVaultProvider settings resolution, without a server: precedence, defaults, repr."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pytest

import simpletuner_secrets
from simpletuner_secrets import ConfigurationError, SecretsManager
from simpletuner_secrets.providers.vault import HashiCorpVaultProvider

ADDR = "http://127.0.0.1:8200"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty HOME: no ~/.vault-token unless a test writes one."""
    return tmp_path


def make(home: Path, env: dict[str, str] | None = None, **kwargs: Any) -> HashiCorpVaultProvider:
    """A provider whose environment is ``env`` plus HOME."""
    return HashiCorpVaultProvider(environ={"HOME": str(home), **(env or {})}, **kwargs)


def token_of(vault: HashiCorpVaultProvider) -> str | None:
    """The token the provider resolved (it keeps it masked)."""
    return None if vault._token is None else vault._token.reveal()


def test_defaults(home: Path) -> None:
    """Path simpletuner, mount secret, verification on, no namespace, version detected."""
    vault = make(home, {"VAULT_ADDR": ADDR, "VAULT_TOKEN": "t"})
    assert (vault.url, vault.path, vault.mount_point) == (ADDR, "simpletuner", "secret")
    assert vault.verify is True
    assert vault.namespace is None
    assert vault.kv_version is None


def test_missing_settings_names_what_is_missing(home: Path) -> None:
    """An address without a token reports VAULT_TOKEN; nothing reports both; complete is []."""
    assert make(home, {"VAULT_ADDR": ADDR}).missing_settings() == ["VAULT_TOKEN"]
    assert make(home, {"VAULT_TOKEN": "t"}).missing_settings() == ["VAULT_ADDR"]
    assert make(home).missing_settings() == ["VAULT_ADDR", "VAULT_TOKEN"]
    complete = make(home, {"VAULT_ADDR": ADDR, "VAULT_TOKEN": "t"})
    assert complete.missing_settings() == []
    assert complete.is_available()
    assert not make(home, {"VAULT_ADDR": ADDR}).is_available()


def test_empty_values_count_as_unset(home: Path) -> None:
    """Empty or blank settings fall through to the next level or the default."""
    vault = make(
        home,
        {"VAULT_ADDR": " ", "VAULT_TOKEN": "", "SIMPLETUNER_VAULT_PATH": "", "VAULT_NAMESPACE": ""},
        config={"vault_url": "", "vault_mount_point": None},
    )
    assert vault.missing_settings() == ["VAULT_ADDR", "VAULT_TOKEN"]
    assert vault.path == "simpletuner" and vault.mount_point == "secret"
    assert vault.namespace is None


@pytest.mark.parametrize(
    ("setting", "argument", "config_key", "env_key"),
    [
        ("url", "url", "vault_url", "VAULT_ADDR"),
        ("path", "path", "vault_path", "SIMPLETUNER_VAULT_PATH"),
        ("mount_point", "mount_point", "vault_mount_point", "SIMPLETUNER_VAULT_MOUNT"),
        ("namespace", "namespace", "vault_namespace", "VAULT_NAMESPACE"),
    ],
)
def test_argument_over_config_over_environment(
    home: Path, setting: str, argument: str, config_key: str, env_key: str
) -> None:
    """Each setting: the argument wins over config, which wins over the environment."""

    def value(level: str) -> str:
        return f"http://{level}:8200" if setting == "url" else f"{level}-value"

    env = {env_key: value("env")}
    config = {config_key: value("config")}
    assert getattr(make(home, env), setting) == value("env")
    assert getattr(make(home, env, config=config), setting) == value("config")
    chosen = make(home, env, config=config, **{argument: value("arg")})
    assert getattr(chosen, setting) == value("arg")


def test_token_precedence_down_to_the_token_file(home: Path) -> None:
    """Token: argument > config > VAULT_TOKEN > ~/.vault-token (HOME from environ)."""
    (home / ".vault-token").write_text("  file-token\n")
    assert token_of(make(home)) == "file-token"
    assert token_of(make(home, {"VAULT_TOKEN": "env-token"})) == "env-token"
    config = {"vault_token": "config-token"}
    assert token_of(make(home, {"VAULT_TOKEN": "env-token"}, config=config)) == "config-token"
    assert token_of(make(home, config=config, token="arg-token")) == "arg-token"


def test_blank_token_file_is_no_token(home: Path) -> None:
    """A ~/.vault-token holding only whitespace is no token."""
    (home / ".vault-token").write_text("\n")
    assert make(home, {"VAULT_ADDR": ADDR}).missing_settings() == ["VAULT_TOKEN"]


def test_os_environ_is_the_default(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Without environ=, os.environ is read (HOME included)."""
    monkeypatch.setenv("VAULT_ADDR", ADDR)
    monkeypatch.setenv("VAULT_TOKEN", "os-token")
    monkeypatch.setenv("SIMPLETUNER_VAULT_PATH", "from-os")
    monkeypatch.setenv("HOME", str(home))
    vault = HashiCorpVaultProvider()
    assert (vault.url, token_of(vault), vault.path) == (ADDR, "os-token", "from-os")


@pytest.mark.parametrize("truthy", ["1", "true", "TRUE", "t", "yes"])
def test_vault_skip_verify_truthy_wins_over_a_ca(home: Path, truthy: str) -> None:
    """A truthy VAULT_SKIP_VERIFY turns verification off, even with VAULT_CACERT set."""
    env = {"VAULT_SKIP_VERIFY": truthy, "VAULT_CACERT": "/ca.pem"}
    assert make(home, env).verify is False


@pytest.mark.parametrize("falsy", ["0", "false", "", "no"])
def test_vault_skip_verify_falsy_keeps_verification(home: Path, falsy: str) -> None:
    """A false or empty VAULT_SKIP_VERIFY leaves verification on (with the CA when set)."""
    assert make(home, {"VAULT_SKIP_VERIFY": falsy}).verify is True
    assert make(home, {"VAULT_SKIP_VERIFY": falsy, "VAULT_CACERT": "/ca.pem"}).verify == "/ca.pem"


def test_verify_from_ca_settings_config_and_argument(home: Path) -> None:
    """VAULT_CACERT, then VAULT_CAPATH; config vault_verify over them; the argument over all."""
    assert make(home, {"VAULT_CAPATH": "/certs"}).verify == "/certs"
    assert make(home, {"VAULT_CAPATH": "/certs", "VAULT_CACERT": "/ca.pem"}).verify == "/ca.pem"
    env = {"VAULT_CACERT": "/ca.pem"}
    assert make(home, env, config={"vault_verify": "false"}).verify is False
    assert make(home, env, config={"vault_verify": "/other.pem"}).verify == "/other.pem"
    assert make(home, env, config={"vault_verify": False}, verify=True).verify is True
    assert make(home, {"VAULT_SKIP_VERIFY": "1"}, verify="/arg.pem").verify == "/arg.pem"


def test_kv_version_from_argument_or_config(home: Path) -> None:
    """kv_version 1 or 2 (config may give it as text) is used as is; anything else is refused."""
    assert make(home, kv_version=1).kv_version == 1
    assert make(home, config={"vault_kv_version": "2"}).kv_version == 2
    assert make(home, config={"vault_kv_version": 2}, kv_version=1).kv_version == 1
    for bad in (3, "v2", 0, True):
        with pytest.raises(ConfigurationError, match="kv_version"):
            make(home, kv_version=bad)  # type: ignore[arg-type]


def test_address_must_be_http_or_https(home: Path) -> None:
    """An address without an http(s) scheme is refused, without echoing credentials."""
    with pytest.raises(ConfigurationError, match="http") as info:
        make(home, url="ftp://user:hunter2@vault:8200")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigurationError):
        make(home, url="127.0.0.1:8200")
    assert make(home, url="https://vault.example:8200/").url == "https://vault.example:8200"


def test_path_and_mount_are_stripped_of_slashes(home: Path) -> None:
    """Leading and trailing slashes are dropped; an empty path after that is refused."""
    vault = make(home, path="/apps/simpletuner/", mount_point="/kv/")
    assert (vault.path, vault.mount_point) == ("apps/simpletuner", "kv")
    with pytest.raises(ConfigurationError):
        make(home, path="/")


def test_repr_masks_the_token(home: Path) -> None:
    """repr shows address, mount and path; the token is *** or None, never its text."""
    vault = make(home, url="http://user:pw-secret@127.0.0.1:8200", token="s.very-secret-token")
    text = repr(vault)
    assert "s.very-secret-token" not in text and "pw-secret" not in text
    assert "token='***'" in text
    assert "http://127.0.0.1:8200" in text and "'secret'" in text and "'simpletuner'" in text
    assert "token=None" in repr(make(home, url=ADDR))


def test_missing_hvac_raises_import_error_naming_the_extra(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without hvac, construction raises ImportError with the pip command for the extra."""
    monkeypatch.setitem(sys.modules, "hvac", None)
    with pytest.raises(ImportError, match=r"simpletuner-secrets\[vault\]"):
        make(home, url=ADDR, token="t")


def test_lazy_top_level_export() -> None:
    """The top-level package exports the provider lazily."""
    assert simpletuner_secrets.HashiCorpVaultProvider is HashiCorpVaultProvider
    assert "HashiCorpVaultProvider" in simpletuner_secrets.__all__


async def test_load_without_settings_is_a_configuration_error(home: Path) -> None:
    """A load with no address or token raises ConfigurationError naming what is missing, also
    after closing twice (a closed provider reports the same problem, not a closed state)."""
    vault = make(home, {"VAULT_ADDR": ADDR})
    with pytest.raises(ConfigurationError, match="VAULT_TOKEN"):
        await vault.load_document()
    await vault.aclose()
    await vault.aclose()
    with pytest.raises(ConfigurationError, match="VAULT_TOKEN"):
        await vault.load_document()


async def test_manager_leaves_out_a_partial_vault(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Vault address without a token: the manager leaves the provider out with a WARNING."""
    config = {"file_path": str(home / "secrets.json")}
    with caplog.at_level(logging.WARNING):
        manager = SecretsManager(config=config, environ={"VAULT_ADDR": ADDR, "HOME": str(home)})
    assert "vault" not in [p.name for p in manager.providers]
    assert "VAULT_TOKEN" in caplog.text
    await manager.aclose()
    environ = {"VAULT_ADDR": ADDR, "VAULT_TOKEN": "t", "HOME": str(home)}
    complete = SecretsManager(config=config, environ=environ)
    assert "vault" in [p.name for p in complete.providers]
    await complete.aclose()
