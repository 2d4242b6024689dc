"""pytest fixtures for code that reads secrets: an isolated manager and per-test overrides.

Loaded through the ``pytest11`` entry point; it defines fixtures only, so it changes nothing
in a test run until a test asks for one of them.

- ``secrets_manager``: a `SecretsManager` that sees no environment variable and no real
  secrets file, installed as the process-wide manager for the test.
- ``override_secrets``: set secrets for one test: ``override_secrets({"HF_TOKEN": "x"})``,
  ``override_secrets["HF_TOKEN"] = "x"``, ``del override_secrets["HF_TOKEN"]``.
- ``secrets_provider``: the in-memory provider behind both (``.loads``, ``.failure``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path

import pytest

from .integrations import install, uninstall
from .keys import normalize_key
from .manager import SecretsManager, installed_manager
from .providers.file import FileSecretProvider
from .testing import InMemorySecretProvider

__all__ = ["FixtureSecretProvider", "SecretOverrides"]


class FixtureSecretProvider(InMemorySecretProvider):
    """An `InMemorySecretProvider` with a layer of overrides set without awaiting.

    Overrides win over the secrets it was created with (or given through ``await set``).
    """

    def __init__(self) -> None:
        super().__init__(name="memory")
        self.overrides: dict[str, str] = {}

    async def load_document(self) -> Mapping[str, str]:
        """The stored secrets with the overrides on top."""
        document = await super().load_document()
        if not self.overrides:
            return document
        return {**document, **self.overrides}


class SecretOverrides(MutableMapping[str, str]):
    """The ``override_secrets`` fixture: secrets set for one test, dropped after it.

    Keys are matched by their normalized form. Setting a value to None or ``""`` removes the
    override (an empty value counts as absent). Every change is seen by the next lookup.

    Args:
        manager: The test's manager (the ``secrets_manager`` fixture).
        provider: The provider holding the overrides.
    """

    def __init__(self, manager: SecretsManager, provider: FixtureSecretProvider) -> None:
        self.manager = manager
        self.provider = provider

    def __call__(
        self, values: Mapping[str, str | None] | None = None, /, **more: str | None
    ) -> None:
        """Set several overrides at once: ``override_secrets({"HF_TOKEN": "x"}, OTHER="y")``."""
        changes = {**(values or {}), **more}
        staged = dict(self.provider.overrides)
        for key, value in changes.items():
            _stage(staged, key, value)
        self._commit(staged)

    def __setitem__(self, key: str, value: str | None) -> None:
        staged = dict(self.provider.overrides)
        _stage(staged, key, value)
        self._commit(staged)

    def __delitem__(self, key: str) -> None:
        staged = dict(self.provider.overrides)
        del staged[normalize_key(key)]
        self._commit(staged)

    def __getitem__(self, key: str) -> str:
        return self.provider.overrides[normalize_key(key)]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.provider.overrides))

    def __len__(self) -> int:
        return len(self.provider.overrides)

    def __repr__(self) -> str:
        # Keys only: values are secrets, even in tests.
        return f"{type(self).__name__}(keys={sorted(self.provider.overrides)})"

    def clear(self) -> None:
        """Drop every override."""
        self._commit({})

    def _commit(self, staged: dict[str, str]) -> None:
        self.provider.overrides = staged  # one assignment: a reader sees old or new, whole
        self.provider.invalidate()
        self.manager.clear_cache()


def _stage(staged: dict[str, str], key: str, value: str | None) -> None:
    nkey = normalize_key(key)
    if value is None or value == "":
        staged.pop(nkey, None)
    elif isinstance(value, str):
        staged[nkey] = value
    else:
        raise TypeError(f"override for {nkey} must be a str or None, not {type(value).__name__}")


@pytest.fixture
def secrets_provider() -> FixtureSecretProvider:
    """The in-memory provider behind ``secrets_manager`` (set ``.failure`` for an outage)."""
    return FixtureSecretProvider()


@pytest.fixture
def secrets_manager(
    secrets_provider: FixtureSecretProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecretsManager]:
    """A `SecretsManager` isolated from the environment and the real secrets file.

    Its chain is the in-memory ``secrets_provider``, then a secrets file in a temporary
    directory (where ``set_secret`` writes). It is installed as the process-wide manager
    (`get_secrets_manager` returns it) for the test; afterwards the previous one is put back
    and this one is closed.
    """
    path = Path(tmp_path_factory.mktemp("secrets")) / "secrets.json"
    manager = SecretsManager(
        [secrets_provider, FileSecretProvider(path)],
        config={"file_path": str(path)},
        environ={},  # no SIMPLETUNER_CACHE_TTL & co. of the shell running the tests
    )
    previous = installed_manager()
    install(manager, previous)
    try:
        yield manager
    finally:
        uninstall(manager, previous)
        if not manager.closed:
            # The blocking facade closes from any thread, inside a running loop or not.
            manager.sync.close()


@pytest.fixture
def override_secrets(
    secrets_manager: SecretsManager, secrets_provider: FixtureSecretProvider
) -> Iterator[SecretOverrides]:
    """Set secrets for this test only; they are dropped after it.

    Uses (and so installs) ``secrets_manager``. Call it with a mapping
    (``override_secrets({"HF_TOKEN": "hf_x"})``) or use it as a dict.
    """
    overrides = SecretOverrides(secrets_manager, secrets_provider)
    try:
        yield overrides
    finally:
        if not secrets_manager.closed:
            overrides.clear()
        else:
            secrets_provider.overrides = {}
