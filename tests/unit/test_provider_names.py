"""`name=` on every built-in provider (SPEC 9): several of one kind in a chain, names unique."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from simpletuner_secrets import (
    AWSSecretsManagerProvider,
    EnvironmentSecretProvider,
    FileSecretProvider,
    HashiCorpVaultProvider,
    SecretsDirectoryProvider,
    SecretsManager,
)
from simpletuner_secrets.testing import InMemorySecretProvider

BUILT_IN: list[tuple[type[Any], dict[str, Any], str]] = [
    (EnvironmentSecretProvider, {}, "env"),
    (SecretsDirectoryProvider, {"path": "/nonexistent-dir"}, "dir"),
    (FileSecretProvider, {"file_path": "/nonexistent/s.json"}, "file"),
    (AWSSecretsManagerProvider, {"secret_name": "s", "region_name": "us-east-1"}, "aws"),
    (HashiCorpVaultProvider, {"url": "http://127.0.0.1:1", "token": "t"}, "vault"),
    (InMemorySecretProvider, {}, "memory"),
]


@pytest.mark.parametrize(("cls", "kwargs", "default"), BUILT_IN, ids=[b[2] for b in BUILT_IN])
def test_every_built_in_provider_takes_a_name(
    cls: type[Any], kwargs: dict[str, Any], default: str
) -> None:
    """Without name= a provider keeps its kind's name; with it, that instance is renamed and
    the class (and other instances) are not."""
    assert cls(**kwargs).name == default
    renamed = cls(**kwargs, name="team-secrets")
    assert renamed.name == "team-secrets"
    assert cls.name == default and cls(**kwargs).name == default


@pytest.mark.parametrize("bad", ["", "  ", "two words", "a,b"])
def test_a_name_must_be_one_word(bad: str) -> None:
    """An empty name, or one with whitespace or a comma, is a ValueError."""
    with pytest.raises(ValueError, match="provider name"):
        EnvironmentSecretProvider(name=bad)


def file_with(path: Path, data: dict[str, str]) -> Path:
    path.write_text(json.dumps(data))
    os.chmod(path, 0o600)
    return path


async def test_two_file_providers_in_one_chain(tmp_path: Path) -> None:
    """Two secrets files, each its own provider by name: the first wins, stats and explain
    tell them apart."""
    team = FileSecretProvider(
        file_with(tmp_path / "team.json", {"A": "team", "T": "t"}), name="team"
    )
    mine = FileSecretProvider(
        file_with(tmp_path / "mine.json", {"A": "mine", "M": "m"}), name="mine"
    )
    async with SecretsManager([team, mine]) as m:
        assert await m.get("A") == "team"
        assert await m.get("M") == "m"
        assert (await m.explain("M"))["provider"] == "mine"
        assert (await m.explain("T"))["provider"] == "team"
        assert set(m.stats()["providers"]) == {"team", "mine"}
        assert "team, mine" in repr(m)


def test_duplicate_names_in_a_chain_are_refused(tmp_path: Path) -> None:
    """Two providers with one name (two unnamed environment providers, or an explicit clash)
    raise ValueError naming it."""
    with pytest.raises(ValueError, match="'env'"):
        SecretsManager([EnvironmentSecretProvider(), EnvironmentSecretProvider("APP")])
    with pytest.raises(ValueError, match="'x'"):
        SecretsManager(
            [InMemorySecretProvider(name="x"), FileSecretProvider(tmp_path / "s.json", name="x")]
        )
    SecretsManager([EnvironmentSecretProvider(), EnvironmentSecretProvider("APP", name="app")])
