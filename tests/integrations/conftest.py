"""Fixtures for the framework integration tests: a clean process-wide manager, free ports."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simpletuner_secrets import SecretsManager, set_secrets_manager
from simpletuner_secrets.integrations import uninstall
from simpletuner_secrets.manager import installed_manager

#: Variables that would point a default manager at a real back-end or a real secret.
FOREIGN = ("VAULT_", "AWS_", "SIMPLETUNER_", "BAO_")
KNOWN = ("HF_TOKEN", "REPLICATE_API_TOKEN", "CLOUD_WEBHOOK_SECRET")


@pytest.fixture
def no_installed_manager() -> Iterator[None]:
    """No process-wide manager during the test; whatever was installed is put back after."""
    previous = installed_manager()
    if previous is not None:
        uninstall(previous, None)
    try:
        yield
    finally:
        leftover = installed_manager()
        if leftover is not None and leftover is not previous:
            SecretsManager.reset()
        if previous is not None:
            set_secrets_manager(previous)


@pytest.fixture
def clean_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the test's own and an environment free of back-end settings and secrets."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in list(os.environ):
        if name.startswith(FOREIGN) or name in KNOWN:
            monkeypatch.delenv(name)
    return home


def bound_socket() -> socket.socket:
    """A TCP socket bound to a free 127.0.0.1 port (handed to the server: no port race)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def chain_settings(manager: SecretsManager) -> type[Any]:
    """A pydantic-settings base whose sources are the init arguments, then ``manager``'s
    chain (no environment source): subclass it with the fields under test."""
    from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

    from simpletuner_secrets.integrations.pydantic import SecretsManagerSettingsSource

    class ChainSettings(BaseSettings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, SecretsManagerSettingsSource(settings_cls, manager))

    return ChainSettings
