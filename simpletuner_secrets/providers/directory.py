"""SecretsDirectoryProvider: one file per key, the layout of Docker secrets (``/run/secrets``)
and Kubernetes secret volumes, re-checked at most once a second.

A Kubernetes secret volume is written by the kubelet as a timestamped directory
(``..2026_12_02_06_30_51.123456789``), a ``..data`` symlink to it, and one symlink per key
(``KEY -> ..data/KEY``). An update writes a new timestamped directory, points a new symlink at
it, renames that over ``..data`` (the atomic step), then fixes the per-key links and removes
the old directory. Reading the files of the one directory ``..data`` names gives one whole
version: never half of the old and half of the new.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .. import _fork
from .._threads import LoopLimiters, run_sync
from ..errors import SecretFileError
from ..keys import normalize_key
from ._common import WarnOnce, read_value_file, setting, unsafe_file_problems
from .base import NOT_CACHED, DocumentSecretProvider, LeftOut

__all__ = ["DEFAULT_DIR", "SecretsDirectoryProvider"]

logger = logging.getLogger("simpletuner_secrets")

#: Where Docker (swarm and compose) mounts secrets; the default when it exists.
DEFAULT_DIR = "/run/secrets"
#: Seconds between two checks of the directory for changes.
RECHECK_S = 1.0
#: The kubelet's symlink to the current version of a secret volume.
DATA_LINK = "..data"
#: How many times a read starts again when the version it read was swapped out under it.
_SWAP_RETRIES = 5

_READS = LoopLimiters(4)


class _Swapped(Exception):
    """The version being read was removed meanwhile (a kubelet update): read the new one."""


class SecretsDirectoryProvider(DocumentSecretProvider):
    """Secrets held one per file in a directory: the file name (normalized) is the key, the
    content (one trailing newline stripped) the value.

    Hidden entries (``..data``, the kubelet's timestamped directories, ``.gitkeep``) and
    subdirectories are ignored. When ``..data`` is a symlink (a Kubernetes secret volume), the
    files of the directory it names are read, so that one read sees one whole version; an
    update (the kubelet's atomic swap of ``..data``) is seen within a second. A directory that
    does not exist is an empty document.

    The file provider's rules apply to every file: at most ``max_file_size`` bytes (default
    1 MiB), regular files only (a FIFO or a device is refused without blocking), UTF-8; a
    file readable by group or others, or owned by another user, is read with one warning (as
    Docker and the kubelet create them by default: 0444 / 0644, owned by root), or refused
    with `SecretFileError` when ``strict_permissions`` is set, which also refuses a
    directory writable by others. A failed read after a good one keeps serving the last good
    document, with one warning; errors name the file, never a value.

    Args:
        path: The directory; else ``secrets_dir`` from ``config``, else
            ``SIMPLETUNER_SECRETS_DIR``, else ``/run/secrets``.
        strict_permissions: Refuse unsafe files instead of warning.
        max_file_size: Larger files are refused (default 1 MiB).
        config: The `SecretsManager` settings mapping.
        environ: Environment for the settings above (default ``os.environ``).
        name: This provider's name in the chain (default ``dir``).
        timer: Monotonic clock for the once-a-second re-check (tests).

    Attributes:
        reads: How many times the directory's files were read (diagnostics).
    """

    name = "dir"
    cache_answers = False
    config_keys = frozenset({"secrets_dir"})

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        strict_permissions: bool = False,
        max_file_size: int = 1_048_576,
        config: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        name: str | None = None,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name=name)
        if max_file_size <= 0:
            raise ValueError("max_file_size must be positive")
        env: Mapping[str, str] = os.environ if environ is None else environ
        chosen = setting(
            None if path is None else os.fspath(path),
            config or {},
            "secrets_dir",
            env,
            "SIMPLETUNER_SECRETS_DIR",
        )
        self.path = Path(chosen or DEFAULT_DIR).expanduser()
        self.strict_permissions = strict_permissions
        self.max_file_size = max_file_size
        self._timer = timer
        self._document: dict[str, str] | None = None
        self._version: str | None = None  # the ..data target the document was read from
        self._fresh_until = float("-inf")
        self._state_lock = threading.Lock()
        self._warned = WarnOnce()
        self.reads = 0
        _fork.track(self)

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock; the last good document is kept."""
        self._state_lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, config: Mapping[str, Any], environ: Mapping[str, str]
    ) -> SecretsDirectoryProvider | LeftOut:
        """The directory provider of the default chain: the configured directory, else
        ``/run/secrets`` when it exists (left out, debug, otherwise)."""
        explicit = setting(None, config, "secrets_dir", environ, "SIMPLETUNER_SECRETS_DIR")
        if explicit is None and not os.path.isdir(DEFAULT_DIR):
            return LeftOut(
                cls.name, f"no secrets_dir / SIMPLETUNER_SECRETS_DIR set and no {DEFAULT_DIR}"
            )
        return cls(explicit or DEFAULT_DIR)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={str(self.path)!r})"

    # -- reads -------------------------------------------------------------------------

    def peek(self, key: str) -> str | None:
        """Answer from the document while it was checked less than a second ago, else
        `NOT_CACHED`."""
        document = self._document
        if document is None or self._timer() >= self._fresh_until:
            return NOT_CACHED  # type: ignore[no-any-return]
        return document.get(key)

    async def document(self) -> Mapping[str, str]:
        """The current document, re-checked at most once a second, loaded once for all."""
        if self._timer() < self._fresh_until:
            document = self._document
            if document is not None:
                return document
        return await self.load_coalesced(ttl=0)

    async def get(self, key: str) -> str | None:
        """Return the value of ``key``, or None when no file holds it.

        Raises:
            SecretFileError: A file is too large, unreadable or unsafe (strict), and no
                good document was read before.
        """
        nkey = normalize_key(key)
        value = self.peek(nkey)
        if value is not NOT_CACHED:
            return value
        return (await self.document()).get(nkey)

    async def load_document(self) -> Mapping[str, str]:
        """Check the directory in a worker thread and read it again if it changed."""
        return await run_sync(self._refresh, limiter=_READS.current())

    def invalidate(self) -> None:
        """Make the next lookup read the directory again (the last good document is kept)."""
        with self._state_lock:
            self._fresh_until = float("-inf")
            self._version = None
        super().invalidate()

    def _refresh(self) -> dict[str, str]:
        problem = ""
        for _ in range(_SWAP_RETRIES):
            try:
                return self._check_and_read()
            except _Swapped:
                continue
            except SecretFileError as exc:
                problem = str(exc)
                break
        else:
            problem = f"secrets directory {self.path} changed under every read; try again"
        with self._state_lock:
            last = self._document
            if last is not None:
                self._fresh_until = self._timer() + RECHECK_S
        if last is None:
            raise self._error(problem)
        if self._warned.first(("stale", problem)):
            logger.warning("%s; serving the last good document until it is fixed", problem)
        return last

    def _error(self, message: str) -> SecretFileError:
        error = SecretFileError(message, path=self.path)
        error.provider = self.name
        return error

    def _check_and_read(self) -> dict[str, str]:
        root = self.path
        try:
            root_status = os.stat(root)
        except (FileNotFoundError, NotADirectoryError):
            return self._commit({}, None)
        except OSError as exc:
            raise self._error(
                f"secrets directory {root} cannot be inspected: {_reason(exc)}"
            ) from None
        if not stat.S_ISDIR(root_status.st_mode):
            raise self._error(f"secrets directory {root} is not a directory")
        if self.strict_permissions:
            self._check_directory(root, root_status)
        version = _current_version(root)
        with self._state_lock:
            if version is not None and version == self._version and self._document is not None:
                self._fresh_until = self._timer() + RECHECK_S
                return self._document
        source = root if version is None else root / version
        document, problem = self._read_all(source, swappable=version is not None)
        if version is not None and _current_version(root) != version:
            # Swapped during the read: the old version may have been half removed (the
            # kubelet deletes it after the swap), so this read is not one whole version.
            # Still current after the read, it was current all along (a swap is one-way).
            raise _Swapped()
        if problem:
            raise self._error(problem)
        assert document is not None
        return self._commit(document, version)

    def _commit(self, document: dict[str, str], version: str | None) -> dict[str, str]:
        with self._state_lock:
            self._document = document
            self._version = version
            self._fresh_until = self._timer() + RECHECK_S
            self.reads += 1
        return document

    def _read_all(self, source: Path, *, swappable: bool) -> tuple[dict[str, str] | None, str]:
        """Every key file of ``source``, or what is wrong; never raises a `SecretFileError`
        from a frame holding the values read so far (error trackers record frame locals)."""
        document: dict[str, str] = {}
        try:
            entries = sorted(os.scandir(source), key=lambda e: e.name)
        except FileNotFoundError:
            if swappable:
                raise _Swapped() from None
            return {}, ""
        except OSError as exc:
            return None, f"secrets directory {source} cannot be listed: {_reason(exc)}"
        problem = value = ""
        for entry in entries:
            if entry.name.startswith("."):
                continue  # ..data, the kubelet's versions, .gitkeep
            try:
                if entry.is_dir():
                    continue  # a nested path of a projected volume: not a key of this level
                key = normalize_key(entry.name)
            except (OSError, ValueError):
                continue
            path = Path(entry.path)
            try:
                value, status = read_value_file(path, self.max_file_size)
            except (FileNotFoundError, NotADirectoryError):
                if swappable:
                    document.clear()
                    raise _Swapped() from None
                continue  # removed between the listing and the read
            except ValueError as exc:
                problem = f"secrets directory file {path} {exc}"
                break
            except OSError as exc:
                problem = f"secrets directory file {path} cannot be read: {_reason(exc)}"
                break
            problem = self._check_file(path, status)
            if problem:
                break
            if key in document:
                if self._warned.first(("duplicate", str(source), key)):
                    logger.warning(
                        "secrets directory %s: several files are key %s; %s is ignored",
                        source,
                        key,
                        entry.name,
                    )
                continue
            if value:
                document[key] = value
        del value
        if problem:
            document.clear()
            return None, problem
        return document, ""

    def _check_file(self, path: Path, status: os.stat_result) -> str:
        """A refusal (strict), else "" after warning once about an unsafe file."""
        problems = unsafe_file_problems(status)
        if not problems:
            return ""
        what = f"secrets directory file {path} " + " and ".join(problems)
        if self.strict_permissions:
            return f"{what}; refused (strict_permissions)"
        if self._warned.first(("unsafe", path.name, status.st_mode, status.st_uid)):
            logger.warning("%s; make it readable by this user only (mode 0400)", what)
        return ""

    def _check_directory(self, root: Path, status: os.stat_result) -> None:
        mode = stat.S_IMODE(status.st_mode)
        problems = []
        if hasattr(os, "getuid") and status.st_uid not in (os.getuid(), 0):
            problems.append(f"is owned by another user (uid {status.st_uid})")
        if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
            problems.append(f"is writable by others (mode {mode:04o})")
        if problems:
            raise self._error(
                f"secrets directory {root} " + " and ".join(problems) + "; refused "
                "(strict_permissions)"
            )


def _current_version(root: Path) -> str | None:
    """The target of ``..data``: the kubelet's current version; None in a plain directory."""
    try:
        return os.readlink(root / DATA_LINK)
    except OSError:
        return None  # no ..data symlink: a plain directory (Docker)


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
