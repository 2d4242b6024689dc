"""EnvironmentSecretProvider: live reads, normalization, prefix, the fast and portable paths."""

from __future__ import annotations

import os

import pytest

from simpletuner_secrets.providers import env as env_module
from simpletuner_secrets.providers.env import EnvironmentSecretProvider


def test_reads_live_and_normalizes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable set after construction is seen at once, by any spelling of its key."""
    p = EnvironmentSecretProvider()
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    assert p.get_sync("replicate-api-token") is None
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_live")
    assert p.get_sync("replicate-api-token") == "r8_live"
    assert p.get_sync("Replicate.Api.Token") == "r8_live"
    monkeypatch.delenv("REPLICATE_API_TOKEN")
    assert p.get_sync("REPLICATE_API_TOKEN") is None


async def test_prefix_is_normalized_and_not_doubled(monkeypatch: pytest.MonkeyPatch) -> None:
    """prefix SIMPLETUNER reads SIMPLETUNER_<KEY>; a trailing underscore is not doubled."""
    monkeypatch.setenv("SIMPLETUNER_REPLICATE_API_TOKEN", "pref")
    monkeypatch.setenv("REPLICATE_API_TOKEN", "plain")
    for prefix in ("SIMPLETUNER", "simpletuner_", "simpletuner"):
        assert await EnvironmentSecretProvider(prefix).get("replicate-api-token") == "pref"


def test_empty_variable_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty variable does not shadow lower providers: it reads as None."""
    monkeypatch.setenv("HF_TOKEN", "")
    assert EnvironmentSecretProvider().get_sync("HF_TOKEN") is None


def test_injected_environ_uses_the_portable_path() -> None:
    """An injected mapping is read with plain .get, live."""
    environ = {"HF_TOKEN": "hf_1"}
    p = EnvironmentSecretProvider(environ=environ)
    assert p.get_sync("hf-token") == "hf_1"
    environ["HF_TOKEN"] = "hf_2"
    assert p.get_sync("hf-token") == "hf_2"


def test_portable_fallback_when_fast_path_is_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without os.environ's internals the provider falls back to os.environ.get."""
    monkeypatch.setattr(env_module, "_fast_reader", lambda: None)
    p = EnvironmentSecretProvider()
    assert p._read == os.environ.get
    monkeypatch.setenv("HF_TOKEN", "fallback")
    assert p.get_sync("HF_TOKEN") == "fallback"


def test_fast_path_is_used_on_posix_and_agrees_with_os_environ(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fast reader is active on POSIX and sees os.environ writes and deletes."""
    p = EnvironmentSecretProvider()
    if os.name == "posix":
        assert p._read != os.environ.get
    monkeypatch.setenv("CLOUD_WEBHOOK_SECRET", "ünïcode")
    assert p.get_sync("cloud-webhook-secret") == "ünïcode"
    os.environ.pop("CLOUD_WEBHOOK_SECRET")
    assert p.get_sync("cloud-webhook-secret") is None


def test_keys_lists_known_keys_or_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """keys(): known keys present without a prefix; everything under the prefix with one."""
    environ = {"HF_TOKEN": "x", "APP_DB_PASSWORD": "y", "APP_": "z", "OTHER": "w"}
    assert EnvironmentSecretProvider(environ=environ).keys() == ["HF_TOKEN"]
    assert EnvironmentSecretProvider("app", environ=environ).keys() == ["DB_PASSWORD"]


def test_repr_shows_no_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """repr names the class and prefix only."""
    monkeypatch.setenv("SIMPLETUNER_HF_TOKEN", "hf_secret_value")
    p = EnvironmentSecretProvider("SIMPLETUNER")
    assert "hf_secret_value" not in repr(p)
    assert repr(p) == "EnvironmentSecretProvider(prefix='SIMPLETUNER')"
