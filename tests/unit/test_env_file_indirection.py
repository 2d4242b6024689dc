"""`K_FILE` indirection in the environment provider (SPEC 9): Docker's convention."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from simpletuner_secrets import ProviderError, SecretsManager
from simpletuner_secrets.providers.base import NOT_CACHED
from simpletuner_secrets.providers.env import EnvironmentSecretProvider
from tests.clock import FakeClock

SECRET = "file-indirect-value-do-not-print"


def secret_file(tmp_path: Path, text: str, name: str = "db_password") -> Path:
    path = tmp_path / name
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


async def test_k_file_answers_k_with_one_trailing_newline_stripped(tmp_path: Path) -> None:
    """K unset and K_FILE set: K is the file's content, one trailing newline stripped."""
    path = secret_file(tmp_path, SECRET + "\n")
    provider = EnvironmentSecretProvider(environ={"DB_PASSWORD_FILE": str(path)})
    assert await provider.get("db-password") == SECRET
    assert provider.get_sync("DB_PASSWORD") == SECRET
    assert SECRET not in repr(provider)


async def test_k_itself_wins_over_k_file(tmp_path: Path) -> None:
    """When K is set, K_FILE is not read at all."""
    environ = {"DB_PASSWORD": "direct", "DB_PASSWORD_FILE": str(tmp_path / "absent")}
    assert await EnvironmentSecretProvider(environ=environ).get("DB_PASSWORD") == "direct"


async def test_the_prefix_applies_to_the_file_variable(tmp_path: Path) -> None:
    """With prefix APP, key TOKEN reads APP_TOKEN, else the file APP_TOKEN_FILE names."""
    path = secret_file(tmp_path, "prefixed\n")
    provider = EnvironmentSecretProvider("APP", environ={"APP_TOKEN_FILE": str(path)})
    assert await provider.get("token") == "prefixed"


async def test_an_unreadable_file_names_the_variable_and_the_path(tmp_path: Path) -> None:
    """A missing, oversized or non-UTF-8 file is a ProviderError naming K_FILE and the path,
    never the content."""
    missing = tmp_path / "missing"
    provider = EnvironmentSecretProvider(environ={"TOKEN_FILE": str(missing)})
    with pytest.raises(ProviderError) as caught:
        await provider.get("TOKEN")
    assert "TOKEN_FILE" in str(caught.value) and str(missing) in str(caught.value)
    assert caught.value.provider == "env"
    big = secret_file(tmp_path, SECRET * 100, "big")
    small = EnvironmentSecretProvider(environ={"TOKEN_FILE": str(big)}, max_file_size=100)
    with pytest.raises(ProviderError, match="larger than 100 bytes") as caught:
        await small.get("TOKEN")
    assert SECRET not in str(caught.value)
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe" + SECRET.encode())
    with pytest.raises(ProviderError, match="not UTF-8") as caught:
        await EnvironmentSecretProvider(environ={"TOKEN_FILE": str(binary)}).get("TOKEN")
    assert SECRET not in str(caught.value)


async def test_the_file_is_read_again_at_most_once_a_second(tmp_path: Path) -> None:
    """peek answers from the last read within the second (no I/O on the loop), and an edit
    of the file is seen once the second has passed."""
    clock = FakeClock()
    path = secret_file(tmp_path, "v1")
    provider = EnvironmentSecretProvider(environ={"TOKEN_FILE": str(path)}, timer=clock)
    assert provider.peek("TOKEN") is NOT_CACHED  # never read: only get reads (off the loop)
    assert await provider.get("TOKEN") == "v1"
    path.write_text("v2")
    assert provider.peek("TOKEN") == "v1"
    clock.tick(1.0)
    assert provider.peek("TOKEN") is NOT_CACHED
    assert await provider.get("TOKEN") == "v2"


async def test_file_indirection_can_be_turned_off(tmp_path: Path) -> None:
    """file_indirection=False: K_FILE is only a variable of its own name."""
    path = secret_file(tmp_path, SECRET)
    provider = EnvironmentSecretProvider(environ={"TOKEN_FILE": str(path)}, file_indirection=False)
    assert await provider.get("TOKEN") is None
    assert await provider.get("TOKEN_FILE") == str(path)


async def test_the_manager_answers_from_k_file_and_skips_a_broken_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the manager: K_FILE answers K; an unreadable one is a provider failure,
    skipped (logged) so that the next provider answers, or raised in raise mode."""
    path = secret_file(tmp_path, "from-file\n")
    monkeypatch.setenv("HF_TOKEN_FILE", str(path))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("REPLICATE_API_TOKEN_FILE", str(tmp_path / "absent"))
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    secrets_file = tmp_path / "s.json"
    secrets_file.write_text('{"REPLICATE_API_TOKEN": "r8-from-file-provider"}')
    os.chmod(secrets_file, 0o600)
    config = {"file_path": str(secrets_file)}
    async with SecretsManager(config=config) as m:
        assert await m.get_hf_token() == "from-file"
        with caplog.at_level(logging.WARNING):
            assert await m.get_replicate_token() == "r8-from-file-provider"
        assert "REPLICATE_API_TOKEN_FILE" in caplog.text
    async with SecretsManager(config=config, on_provider_error="raise") as loud:
        with pytest.raises(ProviderError, match="REPLICATE_API_TOKEN_FILE"):
            await loud.get_replicate_token()
