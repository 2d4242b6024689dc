"""FileSecretProvider: secrets in a JSON or YAML file, re-checked at most once a second.

Reads and writes run in a worker thread; writes are atomic, 0600, and locked across processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import anyio
import yaml

from ..errors import SecretFileError
from ..keys import normalize_key
from .base import NOT_CACHED, DocumentSecretProvider, document_from_mapping

__all__ = ["FileSecretProvider"]

logger = logging.getLogger("simpletuner_secrets")

DEFAULT_NAMES = ("secrets.json", "secrets.yaml", "secrets.yml")
#: Seconds between two checks of the file for changes.
RECHECK_S = 1.0
_limiter = anyio.CapacityLimiter(4)
_TMP_MARK = ".tmp-"


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that also refuses anchors, aliases and every explicit tag.

    ``safe_load`` follows aliases, and nested aliases explode when turned to text (billion
    laughs); a secrets file has no need for either.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.constructor.ConstructorError(
                None, None, "anchors and aliases are not allowed", event.start_mark
            )
        if getattr(event, "tag", None) is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "explicit tags are not allowed", event.start_mark
            )
        return super().compose_node(parent, index)


def _is_yaml(path: Path) -> bool:
    return path.suffix.lower() in (".yaml", ".yml")


class FileSecretProvider(DocumentSecretProvider):
    """Secrets in a JSON or YAML object (by extension), also the writable provider.

    With no path, the first existing of ``~/.simpletuner/secrets.json``, ``.yaml``, ``.yml`` is
    read, and writes go to it (else to ``~/.simpletuner/secrets.json``). An explicit path is used
    even before it exists. The file is stat-ed at most once a second and parsed again only when
    it changed, so an edit by another process is seen within a second.

    A file that turns malformed after a good read keeps serving the last good document, with
    one warning per corruption; a deleted file is an empty document. A group- or
    world-readable file, a symlink, or a file owned by another user is read with a warning, or
    refused with `SecretFileError` when ``strict_permissions`` is set.

    Args:
        file_path: The file; None for the default locations.
        strict_permissions: Refuse unsafe files instead of warning.
        max_file_size: Larger files are refused with `SecretFileError`.
        home: The home directory for the default locations (tests); defaults to `Path.home`.
        timer: Monotonic clock for the once-a-second re-check (tests).
    """

    name = "file"
    cache_answers = False

    def __init__(
        self,
        file_path: str | os.PathLike[str] | None = None,
        *,
        strict_permissions: bool = False,
        max_file_size: int = 1024 * 1024,
        home: Path | None = None,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._explicit = Path(file_path).expanduser() if file_path is not None else None
        self._home = home
        self.strict_permissions = strict_permissions
        self.max_file_size = max_file_size
        self._timer = timer
        self._document: dict[str, str] | None = None
        self._signature: tuple[int, int, int] | None = None
        self._checked_at = float("-inf")
        self._warned: set[tuple[Any, ...]] = set()
        self._state_lock = threading.Lock()
        self.parses = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={str(self.path)!r})"

    # -- paths -------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        """The default secrets directory, ``~/.simpletuner``."""
        return (self._home if self._home is not None else Path.home()) / ".simpletuner"

    @property
    def path(self) -> Path:
        """The file read and written now."""
        if self._explicit is not None:
            return self._explicit
        for name in DEFAULT_NAMES:
            candidate = self.directory / name
            if candidate.exists():
                return candidate
        return self.directory / DEFAULT_NAMES[0]

    # -- reads -------------------------------------------------------------------------

    def peek(self, key: str) -> str | None:
        """Answer from the document when it was checked less than a second ago."""
        document = self._document
        if document is None or self._timer() - self._checked_at >= RECHECK_S:
            return NOT_CACHED  # type: ignore[no-any-return]
        return document.get(key)

    async def document(self) -> Mapping[str, str]:
        """The current document, re-checked at most once a second, loaded once for all."""
        document = self._document
        if document is not None and self._timer() - self._checked_at < RECHECK_S:
            return document
        return await self._document_cache.get_or_set_async("document", self.load_document, 0)

    async def get(self, key: str) -> str | None:
        """Return the value of ``key``, or None when the file does not have it."""
        nkey = normalize_key(key)
        document = self._document
        if document is not None and self._timer() - self._checked_at < RECHECK_S:
            return document.get(nkey)
        return (await self.document()).get(nkey)

    async def load_document(self) -> Mapping[str, str]:
        """Check the file and parse it again if it changed (in a worker thread)."""
        return await anyio.to_thread.run_sync(self._refresh, limiter=_limiter)

    def _refresh(self) -> dict[str, str]:
        path = self.path
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._set_document({}, None)
            return {}
        signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._state_lock:
            if signature == self._signature and self._document is not None:
                self._checked_at = self._timer()
                return self._document
        self._check_safety(path, st)
        try:
            document = self._parse(path)
        except SecretFileError as exc:
            if self._document is None or self._signature is None:
                raise
            if ("corrupt", signature) not in self._warned:
                self._warned.add(("corrupt", signature))
                logger.warning("%s; serving the last good document until it is fixed", exc)
            with self._state_lock:
                self._checked_at = self._timer()
            return self._document
        self._set_document(document, signature)
        return document

    def _set_document(
        self, document: dict[str, str], signature: tuple[int, int, int] | None
    ) -> None:
        with self._state_lock:
            self._document = document
            self._signature = signature
            self._checked_at = self._timer()

    def _check_safety(self, path: Path, st: os.stat_result) -> None:
        problems = []
        if path.is_symlink():
            problems.append("is a symlink")
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            problems.append(f"is readable by others (mode {stat.S_IMODE(st.st_mode):04o})")
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            problems.append(f"is owned by another user (uid {st.st_uid})")
        if not problems:
            return
        what = f"secrets file {path} " + " and ".join(problems)
        if self.strict_permissions:
            raise SecretFileError(f"{what}; refused (strict_permissions)", path=path)
        marker = ("unsafe", path, st.st_mode, st.st_uid)
        if marker not in self._warned:
            self._warned.add(marker)
            logger.warning("%s; fix it with chmod 600", what)

    def _parse(self, path: Path) -> dict[str, str]:
        try:
            with open(path, "rb") as handle:
                raw = handle.read(self.max_file_size + 1)
        except OSError as exc:
            raise SecretFileError(
                f"secrets file {path} cannot be read: {type(exc).__name__}", path=path
            ) from None
        self.parses += 1
        if len(raw) > self.max_file_size:
            raise SecretFileError(
                f"secrets file {path} is larger than {self.max_file_size} bytes", path=path
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretFileError(f"secrets file {path} is not UTF-8 text", path=path) from None
        data = self._load_text(path, text)
        try:
            return document_from_mapping(data, provider="file", source=f"secrets file {path}")
        except SecretFileError:
            raise
        except Exception as exc:
            raise SecretFileError(str(exc), path=path) from None

    @staticmethod
    def _load_text(path: Path, text: str) -> Any:
        # Parser messages quote the offending line, which may hold a secret: only the path
        # and line number travel on, and the original exception is not chained.
        if not text.strip():
            return {}
        line: int | None = None
        kind = "YAML" if _is_yaml(path) else "JSON"
        try:
            if _is_yaml(path):
                return yaml.load(text, Loader=_StrictLoader)
            return json.loads(text)
        except json.JSONDecodeError as exc:
            line = exc.lineno
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
        except (yaml.YAMLError, RecursionError, ValueError):
            pass
        where = f" at line {line}" if line is not None else ""
        raise SecretFileError(
            f"secrets file {path} is not valid {kind}{where}", path=path, line=line
        )

    # -- writes ------------------------------------------------------------------------

    async def set(self, key: str, value: str) -> None:
        """Write ``key`` to the file atomically (created 0600 in a 0700 directory).

        Args:
            key: Any spelling of the key; stored normalized.
            value: A non-empty string.

        Raises:
            ValueError: The key or the value is empty.
            SecretFileError: The file is malformed or cannot be written.
        """
        nkey = normalize_key(key)
        if not isinstance(value, str) or not value:
            raise ValueError(f"the value for {nkey} must be a non-empty string")
        await anyio.to_thread.run_sync(self._update, nkey, value, limiter=_limiter)

    async def delete(self, key: str) -> bool:
        """Remove ``key`` from the file.

        Returns:
            Whether the file held the key.
        """
        nkey = normalize_key(key)
        return await anyio.to_thread.run_sync(self._update, nkey, None, limiter=_limiter)

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = stat.S_IMODE(path.parent.stat().st_mode)
        if mode & 0o077:
            logger.warning("secrets directory %s has mode %04o; 0700 is advised", path.parent, mode)
        lock_path = path.parent / f".{path.name}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _update(self, nkey: str, value: str | None) -> bool:
        path = self.path
        with self._locked(path):
            self._remove_stale_temporaries(path)
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                text = ""
            data = self._load_text(path, text) if text.strip() else {}
            if not isinstance(data, dict):
                raise SecretFileError(f"secrets file {path} does not hold an object", path=path)
            existing = {k for k in data if isinstance(k, str) and normalize_key(k) == nkey}
            for k in existing:
                del data[k]
            if value is not None:
                data[nkey] = value
            elif not existing:
                return False
            self._write_atomically(path, data)
            document = document_from_mapping(data, provider="file", source=f"secrets file {path}")
            st = os.stat(path)
            self._set_document(document, (st.st_mtime_ns, st.st_size, st.st_ino))
            return bool(existing) or value is not None

    @staticmethod
    def _remove_stale_temporaries(path: Path) -> None:
        # We hold the lock, so no live writer owns any of these.
        for leftover in path.parent.glob(f".{path.name}{_TMP_MARK}*"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()

    @staticmethod
    def _write_atomically(path: Path, data: Mapping[str, Any]) -> None:
        if _is_yaml(path):
            body = yaml.safe_dump(dict(data), default_flow_style=False, sort_keys=True)
        else:
            body = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        tmp = path.parent / f".{path.name}{_TMP_MARK}{secrets.token_hex(8)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(tmp, flags, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
