"""EnvironmentSecretProvider: live reads, normalization, prefix, the fast and portable paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from simpletuner_secrets.providers import env as env_module
from simpletuner_secrets.providers.base import NOT_CACHED
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
    monkeypatch.setattr(env_module, "_posix_layout", lambda: None)
    p = EnvironmentSecretProvider()
    assert p._read == os.environ.get
    assert p._data is None  # peek reads through the portable path, not os.environ's dict
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


@pytest.mark.skipif(os.name != "posix", reason="os.environ's internals are POSIX CPython's")
@pytest.mark.parametrize("prefix", ["", "APP"])
@pytest.mark.parametrize("file_indirection", [True, False])
def test_the_posix_reader_answers_as_the_portable_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prefix: str, file_indirection: bool
) -> None:
    """The POSIX fast peek (os.environ's own dict, no call) and the portable one answer every
    case alike: set, empty, unset, unicode, K_FILE before and after its file is read."""
    fast = EnvironmentSecretProvider(prefix, file_indirection=file_indirection)
    assert fast._data is not None
    with monkeypatch.context() as m:
        m.setattr(env_module, "_posix_layout", lambda: None)
        portable = EnvironmentSecretProvider(prefix, file_indirection=file_indirection)
    assert portable._data is None
    value_file = tmp_path / "token"
    value_file.write_text("from-file\n")
    head = f"{prefix}_" if prefix else ""
    monkeypatch.setenv(f"{head}SET_KEY", "plain")
    monkeypatch.setenv(f"{head}EMPTY_KEY", "")
    monkeypatch.setenv(f"{head}UNICODE_KEY", "ünïcode")
    monkeypatch.setenv(f"{head}FILE_KEY_FILE", str(value_file))
    monkeypatch.setenv(f"{head}BOTH_KEY", "direct")
    monkeypatch.setenv(f"{head}BOTH_KEY_FILE", str(value_file))
    keys = ["SET_KEY", "EMPTY_KEY", "UNICODE_KEY", "FILE_KEY", "BOTH_KEY", "UNSET_KEY"]
    for provider in (fast, portable):
        provider._files.clear()
    before = [(fast.peek(k), portable.peek(k)) for k in keys]
    assert all(a == b for a, b in before), before
    expected_file = NOT_CACHED if file_indirection else None
    assert [a for a, _ in before] == ["plain", None, "ünïcode", expected_file, "direct", None]
    # After a read of the file, both answer it from what they read.
    assert fast.get_sync("FILE_KEY") == portable.get_sync("FILE_KEY")
    assert fast.peek("FILE_KEY") == portable.peek("FILE_KEY")
    assert fast.peek("FILE_KEY") == ("from-file" if file_indirection else None)
    # Live: a change and a removal are seen at once by both.
    monkeypatch.setenv(f"{head}SET_KEY", "changed")
    monkeypatch.delenv(f"{head}UNICODE_KEY")
    assert (fast.peek("SET_KEY"), fast.peek("UNICODE_KEY")) == ("changed", None)
    assert (portable.peek("SET_KEY"), portable.peek("UNICODE_KEY")) == ("changed", None)
