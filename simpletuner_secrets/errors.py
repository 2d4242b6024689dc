"""The exception tree of simpletuner-secrets.

    SecretsError
    ├── ProviderError        a back-end failed (unreachable, denied, malformed, timed out)
    │   └── SecretFileError  a secrets file is malformed, too large or unsafe
    ├── ConfigurationError   settings are missing, partial or contradictory
    └── MissingSecretError   `require` found no provider with the key

No message built here ever contains a secret value: callers pass names, paths, line numbers
and causes, never document content.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ConfigurationError",
    "MissingSecretError",
    "ProviderError",
    "SecretFileError",
    "SecretsError",
]


class SecretsError(Exception):
    """Base class of every error this library raises on purpose."""


class ProviderError(SecretsError):
    """A provider could not answer: its back-end failed, refused, or sent something malformed.

    Attributes:
        provider: The name of the provider that failed (``"aws"``, ``"vault"``, ...).
    """

    def __init__(self, message: str, *, provider: str = "") -> None:
        super().__init__(message)
        self.provider = provider


class SecretFileError(ProviderError):
    """A secrets file is malformed, too large, or refused for its permissions.

    Attributes:
        path: The file concerned.
        line: The 1-based line of a parse error, when known.
    """

    def __init__(self, message: str, *, path: Path | str, line: int | None = None) -> None:
        super().__init__(message, provider="file")
        self.path = Path(path)
        self.line = line

    def __reduce__(self) -> tuple[object, ...]:
        # `path` is keyword-only, so the default (class, args) rebuild would fail: pickling
        # (process pools, multiprocessing) and copy.copy go through this instead.
        return (_rebuild_file_error, (str(self), self.path, self.line), self.__dict__)


def _rebuild_file_error(message: str, path: Path, line: int | None) -> SecretFileError:
    return SecretFileError(message, path=path, line=line)


class ConfigurationError(SecretsError):
    """Settings are missing, partial or contradictory (a Vault URL without a token, say)."""


class MissingSecretError(SecretsError):
    """A required secret is absent: `SecretsManager.require`, or a required key at startup.

    Attributes:
        key: The (first) key missing, normalized.
        keys: Every key missing, normalized.
        providers: The names of the providers asked, highest priority first.
        failed: The names of those among them that are failing (they might hold it).
    """

    def __init__(
        self, key: str, providers: list[str], failed: list[str], others: tuple[str, ...] = ()
    ) -> None:
        keys = [key, *others]
        asked = ", ".join(providers) or "none"
        if others:
            text = f"secrets {', '.join(keys)} are not set (providers asked: {asked}"
        else:
            text = f"secret {key} is not set (providers asked: {asked}"
        text += f"; failing: {', '.join(failed)})" if failed else ")"
        super().__init__(text)
        self.key = key
        self.keys = keys
        self.providers = list(providers)
        self.failed = list(failed)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.key, self.providers, self.failed, tuple(self.keys[1:])))
