"""EnvironmentSecretProvider: secrets from environment variables, read live on every lookup,
and ``K_FILE`` variables naming a file that holds ``K`` (Docker's convention).

The highest-priority provider; its read of a missing variable is on every lookup's path.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .._settings import ENV_ENV_PREFIX, env_text
from .._threads import run_sync
from ..errors import ProviderError
from ..keys import KNOWN_KEYS, normalize_key
from ._common import read_value_file, text_setting
from .base import NOT_CACHED, SecretProvider

__all__ = ["EnvironmentSecretProvider"]

_ENCODED_LIMIT = 4096
#: The suffix of a variable that names a file holding the value (``DB_PASSWORD_FILE``).
FILE_SUFFIX = "_FILE"
#: A ``K_FILE`` file's content is read again at most this often (an edit is seen within it).
FILE_RECHECK_S = 1.0


#: ``os.environ``'s live dict (bytes keys and values), its key encoder, its value decoder.
_Layout = tuple[dict[Any, Any], Callable[[str], Any], Callable[[Any], str]]


def _posix_layout() -> _Layout | None:
    """``os.environ``'s live dict with its key encoder and value decoder, where it has them.

    ``os.environ.get`` on a missing key encodes the key and raises and catches `KeyError`
    twice (~1 us). On POSIX CPython, ``os.environ._data`` is the dict that ``os.environ`` itself
    keeps in sync (bytes keys and values), so one dict lookup with a memoized encoded key reads
    the same live state. None where that layout is not there. The warm-get rows of
    ``bench_manager`` read the environment first on every lookup, so they measure this.
    """
    env: Any = os.environ
    data = getattr(env, "_data", None)
    encodekey = getattr(env, "encodekey", None)
    decodevalue = getattr(env, "decodevalue", None)
    if os.name != "posix" or not isinstance(data, dict) or encodekey is None or decodevalue is None:
        return None
    return data, encodekey, decodevalue


def _fast_reader(layout: _Layout) -> Callable[[str], str | None]:
    """A live reader of ``os.environ`` through its `_posix_layout`, skipping its
    exception-heavy ``get``."""
    data, encodekey, decodevalue = layout
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

    ``_FILE`` indirection (the convention of Docker's official images): when ``K`` is not set
    but ``K_FILE`` is, ``K`` is the content of the file it names, one trailing newline
    stripped. The file is read in a worker thread and again at most once a second (an edit is
    seen within a second); an unreadable file raises `ProviderError` naming the variable and
    the path, never the content.

    Args:
        prefix: Prepended (normalized, joined with ``_``) to every key.
        environ: The mapping to read; defaults to ``os.environ``.
        file_indirection: Answer ``K`` from the file ``K_FILE`` names.
        max_file_size: Larger ``K_FILE`` files are refused (default 1 MiB).
        name: This provider's name in the chain (default ``env``).
        timer: Monotonic clock for the once-a-second re-read of ``K_FILE`` files (tests).
    """

    name = "env"
    cache_answers = False
    config_keys = frozenset({"env_prefix"})

    def __init__(
        self,
        prefix: str = "",
        *,
        environ: Mapping[str, str] | None = None,
        file_indirection: bool = True,
        max_file_size: int = 1_048_576,
        name: str | None = None,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_file_size <= 0:
            raise ValueError("max_file_size must be positive")
        self.rename(name)
        self.prefix = normalize_key(prefix).rstrip("_") + "_" if prefix.strip() else ""
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        layout = _posix_layout() if environ is None else None
        self._read: Callable[[str], str | None] = (
            self._environ.get if layout is None else _fast_reader(layout)
        )
        self._names: dict[str, tuple[str, str]] = {}
        # On POSIX with os.environ: `peek` reads its live dict directly, both names of a key
        # (K and K_FILE) encoded once, so a miss costs two dict lookups and no call (the
        # warm-get rows of bench_manager read the environment first on every lookup).
        self._raw_names: dict[str, tuple[Any, Any]] = {}
        self._data: dict[Any, Any] | None = None
        if layout is not None:
            self._data, self._encode, self._decode = layout
        self.file_indirection = file_indirection
        self.max_file_size = max_file_size
        self._timer = timer
        # key -> (the path K_FILE named, the value read from it, until when it is current)
        self._files: dict[str, tuple[str, str, float]] = {}

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
        """Read the variable for an already normalized ``key`` now; empty means absent.

        Returns:
            The value; None when absent; `NOT_CACHED` when only ``K_FILE`` is set and its
            file is due a read (`get` reads it in a worker thread).
        """
        data = self._data
        if data is None:
            return self._peek_portable(key)
        try:
            raw_name, raw_file = self._raw_names[key]
        except KeyError:
            name = self.prefix + key
            raw_name, raw_file = self._encode(name), self._encode(name + FILE_SUFFIX)
            if len(self._raw_names) < _ENCODED_LIMIT:
                self._raw_names[key] = (raw_name, raw_file)
        raw = data.get(raw_name)
        if raw:
            return self._decode(raw)
        if not self.file_indirection:
            return None
        raw_path = data.get(raw_file)
        if not raw_path:
            return None
        return self._file_value(key, self._decode(raw_path))

    def _peek_portable(self, key: str) -> str | None:
        """`peek` through ``_read``: an injected mapping, or no POSIX layout."""
        try:
            name, file_name = self._names[key]
        except KeyError:
            name = self.prefix + key
            file_name = name + FILE_SUFFIX
            if len(self._names) < _ENCODED_LIMIT:
                self._names[key] = (name, file_name)
        value = self._read(name)
        if value or not self.file_indirection:
            return value or None
        # A miss reads K_FILE too: both names memoized, so a miss costs two dict lookups more
        # (the warm-get rows of bench_manager read the environment first on every lookup).
        path = self._read(file_name)
        if not path:
            return None
        return self._file_value(key, path)

    def _file_value(self, key: str, path: str) -> str | None:
        """The value last read from ``path`` for ``key`` while current, else `NOT_CACHED`."""
        known = self._files.get(key)
        if known is not None and known[0] == path and self._timer() < known[2]:
            return known[1] or None
        return NOT_CACHED  # type: ignore[no-any-return]

    def get_sync(self, key: str) -> str | None:
        """Blocking `get`: the variable's value (or its ``_FILE``'s), or None when unset."""
        nkey = normalize_key(key)
        value = self.peek(nkey)
        if value is NOT_CACHED:
            return self._read_file(nkey)
        return value

    async def get(self, key: str) -> str | None:
        """Return the variable's value (or its ``_FILE``'s), or None when unset or empty.

        Raises:
            ProviderError: ``K_FILE`` names a file that cannot be read.
        """
        nkey = normalize_key(key)
        value = self.peek(nkey)
        if value is NOT_CACHED:
            return await run_sync(self._read_file, nkey)
        return value

    def _read_file(self, key: str) -> str | None:
        """Read the file ``K_FILE`` names (blocking: a worker thread, or the sync caller)."""
        variable = self.prefix + key + FILE_SUFFIX
        path = self._read(variable)
        if not path:
            return None
        problem = ""
        try:
            value, _ = read_value_file(Path(path), self.max_file_size)
        except (FileNotFoundError, NotADirectoryError):
            problem = "does not exist"
        except ValueError as exc:
            problem = str(exc)
        except OSError as exc:
            problem = f"cannot be read ({exc.strerror or type(exc).__name__})"
        if problem:
            raise ProviderError(
                f"env: {variable} names {path!r}, which {problem}", provider=self.name
            )
        if len(self._files) < _ENCODED_LIMIT or key in self._files:
            self._files[key] = (path, value, self._timer() + FILE_RECHECK_S)
        return value or None

    def keys(self) -> list[str]:
        """The keys this provider has: with a prefix, every variable under it (prefix
        stripped); without one, the known keys that are set (directly or by ``K_FILE``)."""
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
