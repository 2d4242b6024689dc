"""EnvironmentSecretProvider: secrets from environment variables, read live on every lookup.

The highest-priority provider; its read of a missing variable is on every lookup's path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from .._settings import ENV_ENV_PREFIX, env_text
from ..keys import KNOWN_KEYS, normalize_key
from ._common import text_setting
from .base import SecretProvider

__all__ = ["EnvironmentSecretProvider"]

_ENCODED_LIMIT = 4096


def _fast_reader() -> Callable[[str], str | None] | None:
    """A live reader of ``os.environ`` that skips its exception-heavy ``get``.

    ``os.environ.get`` on a missing key encodes the key and raises and catches `KeyError`
    twice (~1 us). On POSIX CPython, ``os.environ._data`` is the dict that ``os.environ`` itself
    keeps in sync (bytes keys and values), so one dict lookup with a memoized encoded key reads
    the same live state. Returns None where that layout is not there. The warm-get rows of
    ``bench_manager`` read the environment first on every lookup, so they measure this.
    """
    env: Any = os.environ
    data = getattr(env, "_data", None)
    encodekey = getattr(env, "encodekey", None)
    decodevalue = getattr(env, "decodevalue", None)
    if os.name != "posix" or not isinstance(data, dict) or encodekey is None or decodevalue is None:
        return None
    encoded: dict[str, Any] = {}

    def read(name: str) -> str | None:
        try:
            raw_key = encoded[name]
        except KeyError:
            raw_key = encodekey(name)
            if len(encoded) < _ENCODED_LIMIT:
                encoded[name] = raw_key
        raw = data.get(raw_key)
        return None if raw is None else decodevalue(raw)

    return read


class EnvironmentSecretProvider(SecretProvider):
    """Secrets from environment variables, read live (a change is seen at once).

    With ``prefix="SIMPLETUNER"``, ``replicate-api-token`` reads
    ``SIMPLETUNER_REPLICATE_API_TOKEN``. An empty variable counts as absent.

    Args:
        prefix: Prepended (normalized, joined with ``_``) to every key.
        environ: The mapping to read; defaults to ``os.environ``.
    """

    name = "env"
    cache_answers = False
    config_keys = frozenset({"env_prefix"})

    def __init__(self, prefix: str = "", *, environ: Mapping[str, str] | None = None) -> None:
        self.prefix = normalize_key(prefix).rstrip("_") + "_" if prefix.strip() else ""
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        reader = _fast_reader() if environ is None else None
        self._read: Callable[[str], str | None] = reader or self._environ.get
        self._names: dict[str, str] = {}

    @classmethod
    def from_settings(
        cls, config: Mapping[str, Any], environ: Mapping[str, str]
    ) -> EnvironmentSecretProvider:
        """The environment provider of the default chain: prefix from ``env_prefix``, else
        ``SIMPLETUNER_ENV_PREFIX``, else none."""
        prefix = text_setting(config.get("env_prefix")) or env_text(environ, ENV_ENV_PREFIX)
        return cls(prefix=prefix or "")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(prefix={self.prefix.rstrip('_')!r})"

    def variable_name(self, key: str) -> str:
        """Return the environment variable that holds ``key``."""
        return self.prefix + normalize_key(key)

    def peek(self, key: str) -> str | None:
        """Read the variable for an already normalized ``key`` now; empty means absent."""
        try:
            name = self._names[key]
        except KeyError:
            name = self.prefix + key
            if len(self._names) < _ENCODED_LIMIT:
                self._names[key] = name
        return self._read(name) or None

    def get_sync(self, key: str) -> str | None:
        """Blocking `get`: the variable's value, or None when unset or empty."""
        return self.peek(normalize_key(key))

    async def get(self, key: str) -> str | None:
        """Return the variable's value, or None when unset or empty."""
        return self.peek(normalize_key(key))

    def keys(self) -> list[str]:
        """The keys this provider has: with a prefix, every variable under it (prefix
        stripped); without one, the known keys that are set."""
        if self.prefix:
            found = []
            for name, value in self._environ.items():
                key = name[len(self.prefix) :]
                if not (value and key and name.startswith(self.prefix)):
                    continue
                try:
                    if normalize_key(key) != key:
                        continue  # `lower` or `my-token`: get() reads only normalized names
                except ValueError:
                    continue
                found.append(key)
            return sorted(found)
        return [k for k in KNOWN_KEYS if self.peek(k)]
