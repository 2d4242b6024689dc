"""FileSecretProvider: secrets in a JSON or YAML file, re-checked at most once a second.

Reads and writes run in a worker thread; writes are atomic, 0600, and locked across processes.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple, NoReturn, ParamSpec, TypeVar

from .. import _fork
from .._settings import (
    ENV_MAX_FILE_SIZE,
    ENV_SECRETS_FILE,
    ENV_STRICT_PERMISSIONS,
    env_flag,
    env_integer,
    env_text,
)
from .._threads import LoopLimiters, run_sync
from ..errors import ProviderError, SecretFileError
from ..keys import normalize_key
from ._common import text_setting
from ._number_text import NumberText
from .base import NOT_CACHED, DocumentSecretProvider, document_from_mapping

__all__ = ["FileSecretProvider"]

logger = logging.getLogger("simpletuner_secrets")

#: File names tried, in order, under ``~/.simpletuner`` when no path is given.
DEFAULT_NAMES = ("secrets.json", "secrets.yaml", "secrets.yml")
#: Larger files are refused (`FileSecretProvider.max_file_size`).
DEFAULT_MAX_FILE_SIZE = 1_048_576
#: Seconds between two checks of the file for changes.
RECHECK_S = 1.0
_TMP_MARK = ".tmp-"
_Signature = tuple[int, int, int, int]

# Reads and writes get limiters of their own, so a writer blocked on another process's lock
# cannot starve reads.
_READS = LoopLimiters(4)
_WRITES = LoopLimiters(2)


def _temp_suffix() -> str:
    return secrets.token_hex(8)


def _again(failure: SecretFileError) -> SecretFileError:
    """A new error like ``failure``, so that raising it again adds nothing to the first."""
    return SecretFileError(str(failure), path=failure.path, line=failure.line)


_P = ParamSpec("_P")
_T = TypeVar("_T")


def _afresh(call: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``call(...)``, with a `SecretFileError` it raises raised again as a new error from here.

    Tracebacks keep every frame they pass through, and error reporters record those frames'
    locals (Sentry by default, ``pytest --showlocals``, ``capture_locals=True``): the frames
    that read, parsed or edited the file hold its whole text. The new error's traceback
    starts here, and is raised outside the handler, so nothing chains back to them.
    """
    try:
        return call(*args, **kwargs)
    except SecretFileError as exc:
        failure = _again(exc)
    raise failure


class _Sealed:
    """A value on its way into the file; its repr is not the value (frame locals, logs)."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<secret value>"


def _is_yaml(path: Path) -> bool:
    return path.suffix.lower() in (".yaml", ".yml")


def _signature(st: os.stat_result) -> _Signature:
    # ctime too: a rewrite that keeps the size and sets the old mtime back (rsync -t --inplace,
    # `touch -r`) still moves the ctime, which no user call can set.
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


class FileSecretProvider(DocumentSecretProvider):
    """Secrets in a JSON or YAML object (by extension), and the writable provider.

    With no path, the first existing of ``~/.simpletuner/secrets.json``, ``.yaml``, ``.yml`` is
    read, and writes go to it (else to ``~/.simpletuner/secrets.json``). An explicit path is
    used even before it exists; a missing file is an empty document.

    Freshness: the file is stat-ed at most once a second and parsed again only when its
    (mtime, size, inode) changed, so an edit by another process is seen within a second and a
    lookup in between costs no system call. Concurrent first lookups, from any task, thread or
    event loop, share one read. Writes update the document at once.

    Stale-if-corrupt: a file that turns malformed (or unreadable, or too large, or empty: 0
    bytes or white space, as while an editor saves it) after a good read keeps serving the last
    good document, with one warning per corrupted file state, and is not parsed again until it
    changes; an INFO line says when it reads again. `SecretFileError` is raised only when no
    good document was ever read from the file (also after a deletion: a deleted file is an
    empty document, and that empty document is not a last good one). A file empty at the
    first read is an empty document.

    Safety: a group- or world-readable file, a symlink (followed), or a file owned by another
    user is read with one warning per file state, or refused with `SecretFileError` when
    ``strict_permissions`` is set. These checks are made on the file opened (``fstat``), not
    only on the path; when strict, its directory must also be ours (or root's) and not
    writable by others. Errors name the path and line, never a value, and no frame of their
    tracebacks holds the file's text.

    Formats: numbers read back as the text written (``1.50``, ``1e400``); in YAML only
    ``true``/``false`` (any case) are booleans, ``yes``/``no``/``on``/``off`` are text. A
    write edits the file's text, so only the key written changes: in JSON the other members
    keep their order, spacing and number texts; in YAML every other line stays byte for byte
    (comments, order, quoting, block scalars). A YAML edit is kept only if the file then reads
    as before but for that key; otherwise (or for a layout the edit does not handle, such as a
    document that is a lone ``~``) the file is written again whole by PyYAML, with a warning.

    Args:
        file_path: The file; None for the default locations.
        strict_permissions: Refuse unsafe files instead of warning.
        max_file_size: Larger files are refused with `SecretFileError` (default 1 MiB).
        home: The home directory for the default locations (tests); defaults to `Path.home`.
        timer: Monotonic clock for the once-a-second re-check (tests).
        name: This provider's name in the chain (default ``file``).

    Attributes:
        parses: How many times the file was read and parsed (diagnostics).
    """

    name = "file"
    cache_answers = False
    config_keys = frozenset({"file_path", "strict_permissions", "max_file_size"})

    def __init__(
        self,
        file_path: str | os.PathLike[str] | None = None,
        *,
        strict_permissions: bool = False,
        max_file_size: int = DEFAULT_MAX_FILE_SIZE,
        home: str | os.PathLike[str] | None = None,
        timer: Callable[[], float] = time.monotonic,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        if max_file_size <= 0:
            raise ValueError("max_file_size must be positive")
        self._explicit = Path(file_path).expanduser() if file_path is not None else None
        self._home = Path(home) if home is not None else None
        self.strict_permissions = strict_permissions
        self.max_file_size = max_file_size
        self._timer = timer
        # The last good document (None: never read), the signature of the file it came from
        # (None: the file was missing), and the signature of a corrupted file already reported.
        self._document: dict[str, str] | None = None
        self._signature: _Signature | None = None
        self._bad_signature: _Signature | None = None
        # With no good document yet: the last failure, kept for a second like a document (and
        # for as long as the file's signature is `_bad_signature`) instead of a parse per get.
        self._failure: SecretFileError | None = None
        self._fresh_until = float("-inf")
        # Bumped by every write, so that a read that started before it cannot overwrite it.
        self._generation = 0
        self._reparse = False  # set by invalidate(): parse even an unchanged file
        self._state_lock = threading.Lock()
        _fork.track(self)
        self._warned: set[tuple[Hashable, ...]] = set()
        self._stale = False  # serving the last good document for a file that does not read
        self.parses = 0

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock; the last good document is kept."""
        self._state_lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, config: Mapping[str, Any], environ: Mapping[str, str]
    ) -> FileSecretProvider:
        """The file provider of the default chain.

        Settings, each from ``config`` else its variable: ``file_path`` /
        ``SIMPLETUNER_SECRETS_FILE`` (else the default files), ``strict_permissions`` /
        ``SIMPLETUNER_STRICT_PERMISSIONS``, ``max_file_size`` / ``SIMPLETUNER_MAX_FILE_SIZE``.

        Raises:
            ConfigurationError: A variable holds a malformed value (the variable named).
        """
        path = text_setting(config.get("file_path")) or env_text(environ, ENV_SECRETS_FILE)
        strict = config.get("strict_permissions")
        if strict is None:
            strict = env_flag(environ, ENV_STRICT_PERMISSIONS)
        size = config.get("max_file_size")
        if size is None:
            size = env_integer(environ, ENV_MAX_FILE_SIZE, minimum=1)
        return cls(
            path,
            strict_permissions=bool(strict),
            max_file_size=DEFAULT_MAX_FILE_SIZE if size is None else int(size),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={str(self.path)!r})"

    # -- paths -------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        """The default secrets directory, ``~/.simpletuner``."""
        return (self._home if self._home is not None else Path.home()) / ".simpletuner"

    @property
    def explicit(self) -> bool:
        """Whether the path was given (argument, ``file_path``, ``SIMPLETUNER_SECRETS_FILE``)
        rather than found among the default files."""
        return self._explicit is not None

    @property
    def path(self) -> Path:
        """The file read and written now (the explicit path, else the first existing default)."""
        if self._explicit is not None:
            return self._explicit
        directory = self.directory
        for name in DEFAULT_NAMES:
            candidate = directory / name
            if os.path.lexists(candidate):
                return candidate
        return directory / DEFAULT_NAMES[0]

    # -- reads -------------------------------------------------------------------------

    def peek(self, key: str) -> str | None:
        """Answer from the document while it was checked less than a second ago.

        Args:
            key: A key already normalized by `normalize_key`.

        Returns:
            The value, None when absent, or `NOT_CACHED` when the file is due a check.
        """
        document = self._document
        if document is None or self._timer() >= self._fresh_until:
            return NOT_CACHED  # type: ignore[no-any-return]
        return document.get(key)

    async def document(self) -> Mapping[str, str]:
        """Return the current document, re-checked at most once a second, loaded once for all.

        Returns:
            The normalized document.

        Raises:
            SecretFileError: The file is malformed, too large or unsafe, and no good document
                was read before.
        """
        # No local holds the last document across the load: a failure's traceback would show
        # it (frame locals are captured by Sentry, `pytest --showlocals`, capture_locals).
        if self._timer() < self._fresh_until:
            document = self._document
            if document is not None:
                return document
            failure = self._failure
            if failure is not None:
                raise _again(failure)
        # ttl 0: the cache only coalesces the load in flight; freshness is tracked here.
        return await self.load_coalesced(ttl=0)

    async def get(self, key: str) -> str | None:
        """Return the value of ``key``, or None when the file does not have it.

        Args:
            key: Any spelling of the key.

        Returns:
            The value, or None.

        Raises:
            ValueError: The key is empty or invalid.
            SecretFileError: See `document`.
        """
        nkey = normalize_key(key)
        document = self._document
        if document is not None and self._timer() < self._fresh_until:
            return document.get(nkey)
        del document  # not held across the load (see `document`)
        return (await self.document()).get(nkey)

    async def load_document(self) -> Mapping[str, str]:
        """Check the file in a worker thread and parse it again if it changed.

        Returns:
            The normalized document (empty when the file does not exist).

        Raises:
            SecretFileError: See `document`.
        """
        read_limiter = _READS.current()
        return await run_sync(self._refresh, limiter=read_limiter)

    def _refresh(self) -> dict[str, str]:
        try:
            return self._check_and_parse()
        except SecretFileError as exc:
            with self._state_lock:
                if self._document is None:
                    # No good document to serve: remember the failure for a second, so that
                    # lookups meanwhile neither stat nor parse the file again.
                    self._failure = _again(exc)  # kept without its traceback
                    self._reparse = False
                    self._fresh_until = self._timer() + RECHECK_S
            raise

    def _check_and_parse(self) -> dict[str, str]:
        with self._state_lock:
            generation = self._generation
        path = self.path
        try:
            found = self._stat(path)
        except SecretFileError as exc:
            return self._keep_last_good(exc, None)
        if found is None:
            return self._commit(generation, {}, None)
        st, is_link = found
        self._check_safety(path, st, is_link=is_link)
        signature = _signature(st)
        with self._state_lock:
            unchanged = not self._reparse and signature in (self._signature, self._bad_signature)
            if self._document is not None and unchanged:
                self._fresh_until = self._timer() + RECHECK_S
                return self._document
            failure = self._failure
            if (
                self._document is None
                and failure is not None
                and not self._reparse
                and signature == self._bad_signature
            ):
                raise _again(failure)  # the same malformed file: not parsed again
        try:
            read = self._read_document(path, st, is_link)
        except SecretFileError as exc:
            return self._keep_last_good(exc, signature)
        if read.blank:
            with self._state_lock:
                had_file = self._document is not None and self._signature is not None
            if had_file:
                # Emptied while the service runs (an editor truncates, then writes): treated
                # like a malformed file, since the next state is most likely the full one.
                empty = SecretFileError(f"secrets file {path} is empty", path=path)
                return self._keep_last_good(empty, read.signature, remember=read.settled)
        return self._commit(generation, read.document, read.signature)

    def invalidate(self) -> None:
        """Make the next lookup check and parse the file again, even inside the second.

        The last good document is kept for stale-if-corrupt until the new read succeeds.
        """
        with self._state_lock:
            self._fresh_until = float("-inf")
            self._reparse = True
            self._bad_signature = None
            self._failure = None
        super().invalidate()

    def _commit(
        self, generation: int, document: dict[str, str], signature: _Signature | None
    ) -> dict[str, str]:
        with self._state_lock:
            if generation != self._generation and self._document is not None:
                return self._document  # a write landed meanwhile; its document is newer
            self._document = document
            self._signature = signature
            self._bad_signature = None
            self._failure = None
            self._reparse = False
            self._fresh_until = self._timer() + RECHECK_S
            recovered = self._end_stale()
        if recovered:
            logger.info("secrets file %s reads again; serving its new document", self.path)
        return document

    def _end_stale(self) -> bool:
        """Called with the state lock held: whether the last good document was being served
        for a corrupted file, which is over now (so are the warnings it was given)."""
        if not self._stale:
            return False
        self._stale = False
        self._warned = {marker for marker in self._warned if marker[0] != "corrupt"}
        return True

    def _keep_last_good(
        self, exc: SecretFileError, signature: _Signature | None, *, remember: bool = True
    ) -> dict[str, str]:
        """Serve the last good document for a file that does not read, warning once for
        each state of it; ``remember``: the state is not parsed again while it lasts (not for
        a file that changed while it was read: its next state is read at the next check)."""
        with self._state_lock:
            last = self._document
            if last is None or self._signature is None:
                self._bad_signature = signature  # `_refresh` keeps the failure with it
                raise exc
            self._bad_signature = signature if remember else None
            self._reparse = False
            self._fresh_until = self._timer() + RECHECK_S
            self._stale = True
            first = ("corrupt", signature) not in self._warned
            self._warned.add(("corrupt", signature))
        if first:
            logger.warning("%s; serving the last good document until it is fixed", exc)
        return last

    def _stat(self, path: Path) -> tuple[os.stat_result, bool] | None:
        """``(stat, is_symlink)`` of the file, None when it does not exist."""
        try:
            lst = os.lstat(path)
            is_link = stat.S_ISLNK(lst.st_mode)
            return (os.stat(path) if is_link else lst), is_link
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise SecretFileError(
                f"secrets file {path} cannot be inspected: {_os_reason(exc)}", path=path
            ) from None

    def _check_safety(self, path: Path, st: os.stat_result, *, is_link: bool) -> None:
        problems = []
        if is_link:
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
        marker = ("unsafe", str(path), is_link, st.st_mode, st.st_uid, st.st_ino)
        with self._state_lock:
            if marker in self._warned:
                return
            self._warned.add(marker)
        logger.warning("%s; make it a regular file of your own with mode 0600", what)

    def _check_directory(self, path: Path, dst: os.stat_result) -> None:
        """Refuse the directory ``path`` is in when someone else could replace the file in it:
        owned by another user (root excepted), or writable by others and not sticky."""
        problems = []
        if hasattr(os, "getuid") and dst.st_uid not in (os.getuid(), 0):
            problems.append(f"is owned by another user (uid {dst.st_uid})")
        mode = stat.S_IMODE(dst.st_mode)
        if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
            problems.append(f"is writable by others (mode {mode:04o})")
        if problems:
            raise SecretFileError(
                f"secrets file {path}: its directory {path.parent} "
                + " and ".join(problems)
                + "; refused (strict_permissions)",
                path=path,
            )

    def _open_beside(self, path: Path, name: str | None, flags: int, mode: int = 0o600) -> int:
        """Open ``name`` in the directory of ``path`` (None: ``path`` itself).

        With ``strict_permissions`` the directory is opened first (symlinks followed, so a
        link to another user's directory is judged by where it leads), checked through that
        descriptor, and ``name`` is opened relative to it without following a symlink: what is
        checked is what is opened.
        """
        if not self.strict_permissions:
            return os.open(path if name is None else path.parent / name, flags, mode)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self._check_directory(path, os.fstat(dir_fd))
            name = path.name if name is None else name
            return os.open(name, flags | os.O_NOFOLLOW, mode, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)

    def _read_bytes(
        self, path: Path, st: os.stat_result, *, is_link: bool
    ) -> tuple[bytes, os.stat_result]:
        if not stat.S_ISREG(st.st_mode):
            raise SecretFileError(f"secrets file {path} is not a regular file", path=path)
        if st.st_size > self.max_file_size:
            raise SecretFileError(
                f"secrets file {path} is larger than {self.max_file_size} bytes", path=path
            )
        # O_NONBLOCK: if the path was swapped for a FIFO since the stat, open must not hang.
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            fd = self._open_beside(path, None, flags)
            with os.fdopen(fd, "rb") as handle:
                fst = os.fstat(handle.fileno())
                if not stat.S_ISREG(fst.st_mode):
                    raise SecretFileError(f"secrets file {path} is not a regular file", path=path)
                # The path's checks were made before the open; the file read is the one opened
                # (a rename may have put another in its place since), so check that one.
                self._check_safety(path, fst, is_link=is_link)
                raw = handle.read(self.max_file_size + 1)
        except OSError as exc:
            raise SecretFileError(
                f"secrets file {path} cannot be read: {_os_reason(exc)}", path=path
            ) from None
        if len(raw) > self.max_file_size:
            raise SecretFileError(
                f"secrets file {path} is larger than {self.max_file_size} bytes", path=path
            )
        return raw, fst

    def _read_document(self, path: Path, st: os.stat_result, is_link: bool = False) -> _Read:
        """Read and parse the file; its errors are raised afresh from here (see `_afresh`)."""
        return _afresh(self._load_document, path, st, is_link)

    def _load_document(self, path: Path, st: os.stat_result, is_link: bool) -> _Read:
        raw, fst = self._read_bytes(path, st, is_link=is_link)
        with self._state_lock:
            self.parses += 1
        signature = _signature(fst)
        content = raw[len(codecs.BOM_UTF8) :] if raw.startswith(codecs.BOM_UTF8) else raw
        blank = not content or content.isspace()  # stops at the first other byte: no copy
        # Emptied between the stat and the read, or written to while read: a moving file.
        settled = signature == _signature(st) and fst.st_size == len(raw)
        return _Read(self._to_document(path, raw), signature, blank, settled)

    def _to_document(self, path: Path, raw: bytes) -> dict[str, str]:
        data = _parse(path, raw, text_scalars=True)
        try:
            data = _json_values_as_text(data)
            return document_from_mapping(data, provider="file", source=f"secrets file {path}")
        except ProviderError as exc:
            raise SecretFileError(str(exc), path=path) from None
        except (ValueError, RecursionError):
            # A YAML 0x/0o/0b integer too long to print as decimal text (Python's 4300-digit
            # limit), say. Raised outside the handler: nothing chained carries the document.
            pass
        raise SecretFileError(
            f"secrets file {path} holds a value that cannot be read as text", path=path
        )

    # -- writes ------------------------------------------------------------------------

    async def set(self, key: str, value: str) -> None:
        """Write ``key`` to the file atomically (0600 in a 0700 directory), under a lock.

        Cancellation (``asyncio.wait_for``, a task cancel): a call cancelled before the write
        began (while it waited for the lock held by another process, say) writes nothing, even
        after the lock frees; one cancelled while writing still completes, atomically.

        Args:
            key: Any spelling of the key; stored normalized (other spellings are replaced).
            value: A non-empty string.

        Raises:
            ValueError: The key is invalid or the value is empty.
            TypeError: The value is not a string.
            SecretFileError: The existing file is malformed or unsafe, or cannot be written.
        """
        nkey = normalize_key(key)
        if not isinstance(value, str):
            raise TypeError(f"the value for {nkey} must be a str, not {type(value).__name__}")
        if not value:
            raise ValueError(f"the value for {nkey} is empty; an empty secret cannot be stored")
        if not _encodable(value):
            raise ValueError(
                f"the value for {nkey} is not valid Unicode text (it holds a lone surrogate)"
            )
        sealed = _Sealed(value)
        del value  # from here on only the sealed value, whose repr hides it (frame locals)
        await self._run_update(nkey, sealed)

    async def delete(self, key: str) -> bool:
        """Remove ``key`` (every spelling of it) from the file; cancelled like `set`.

        Args:
            key: Any spelling of the key.

        Returns:
            Whether the file held the key.

        Raises:
            ValueError: The key is invalid.
            SecretFileError: The existing file is malformed or unsafe, or cannot be written.
        """
        nkey = normalize_key(key)
        return await self._run_update(nkey, None)

    async def _run_update(self, nkey: str, value: _Sealed | None) -> bool:
        """Run the update in a worker thread; a caller that gives up cancels it if it can.

        The thread cannot be stopped, so a cancelled (or timed-out) caller only sets a flag:
        the worker looks at it once it holds the inter-process lock and again just before it
        writes, and writes nothing if it is set. A write already under way completes, and
        atomically: the file is then either the old one or the new one.
        """
        cancelled = threading.Event()
        write_limiter = _WRITES.current()
        try:
            return await run_sync(self._update, nkey, value, cancelled, limiter=write_limiter)
        except BaseException:
            cancelled.set()
            raise

    def _update(self, nkey: str, value: _Sealed | None, cancelled: threading.Event) -> bool:
        path = self.path
        target = self._write_target(path)
        with self._locked(target):
            if cancelled.is_set():
                return False  # the caller gave up while this waited for the lock
            # The frames below hold the file's text and data: errors are raised afresh here.
            return _afresh(self._rewrite, target, nkey, value, cancelled)

    def _rewrite(
        self, target: Path, nkey: str, sealed: _Sealed | None, cancelled: threading.Event
    ) -> bool:
        value = sealed.value if sealed is not None else None
        self._remove_stale_temporaries(target)
        found = self._stat(target)
        raw: bytes | None = None
        old: Mapping[str, str] = {}
        if found is not None:
            st, _ = found
            self._check_safety(target, st, is_link=False)
            raw, fst = self._read_bytes(target, st, is_link=False)
            # A file that does not read is not edited; one read already is not parsed again.
            known = self._known_document(fst)
            old = known if known is not None else self._to_document(target, raw)
        if _is_yaml(target):
            edited = self._edit_yaml(target, raw, old, nkey, value)
            if edited is None:
                return False  # nothing to delete
            body, document = edited
        else:
            rewritten = _rewrite_json(target, raw, nkey, value)
            if rewritten is None:
                return False  # nothing to delete
            body = rewritten
            self._check_size(target, body)
            document = self._to_document(target, body)
        if cancelled.is_set():
            return False
        self._write_atomically(target, body)
        signature = _signature(os.stat(target))
        with self._state_lock:
            self._generation += 1
            self._document = document
            self._signature = signature
            self._bad_signature = None
            self._failure = None
            self._fresh_until = self._timer() + RECHECK_S
            self._end_stale()
        return True

    def _known_document(self, fst: os.stat_result) -> dict[str, str] | None:
        """The document already read from the file whose stat is ``fst``, if that is the one."""
        with self._state_lock:
            if self._document is not None and self._signature == _signature(fst):
                return self._document
        return None

    def _check_size(self, path: Path, body: bytes) -> None:
        if len(body) > self.max_file_size:
            raise SecretFileError(
                f"secrets file {path} would be larger than {self.max_file_size} bytes",
                path=path,
            )

    def _edit_yaml(
        self,
        path: Path,
        raw: bytes | None,
        old: Mapping[str, str],
        nkey: str,
        value: str | None,
    ) -> tuple[bytes, dict[str, str]] | None:
        """The YAML file's new bytes and document; None when there is nothing to delete.

        The key is edited in the text (`edit_yaml`), and the edit is kept only if the file
        then reads as the old document with just this key changed; else, or for a layout the
        edit does not handle, the file is written again whole by PyYAML, with a warning that
        its comments and formatting were not kept.
        """
        expected = dict(old)
        expected.pop(nkey, None)
        if value is not None:
            expected[nkey] = value
        bom = codecs.BOM_UTF8 if raw is not None and raw.startswith(codecs.BOM_UTF8) else b""
        text = raw[len(bom) :].decode("utf-8") if raw is not None else ""  # the read checked it
        # PyYAML and the text editor are imported by the first YAML file read or written:
        # a process with a JSON file, or none, does not pay for them (bench_startup).
        from ._yaml_text import EditRefused, edit_yaml, value_styles

        for style in value_styles():
            invalid = False
            try:
                edited = edit_yaml(text, nkey, value, style)
            except EditRefused:
                break
            except ValueError:
                invalid = True  # raised below, outside the handler: nothing chained
            if invalid:
                _invalid_key(path)
            if edited is None:
                return None
            body = bom + _encoded(path, edited)
            self._check_size(path, body)
            try:
                document = self._to_document(path, body)
            except SecretFileError:
                continue
            if document == expected:
                return body, document
        whole = _rewrite_yaml(path, raw, nkey, value)
        if whole is None:
            return None
        self._check_size(path, whole)
        document = self._to_document(path, whole)
        marker = ("rewritten", str(path))
        with self._state_lock:
            first = marker not in self._warned
            self._warned.add(marker)
        if first:
            logger.warning(
                "secrets file %s could not be edited in place; it was written again whole, "
                "without its comments and formatting",
                path,
            )
        return whole, document

    def _write_target(self, path: Path) -> Path:
        """The real file to replace: a symlinked secrets file is written through its link."""
        if not path.is_symlink():
            return path
        if self.strict_permissions:
            raise SecretFileError(
                f"secrets file {path} is a symlink; refused (strict_permissions)", path=path
            )
        try:
            target = path.resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop (RuntimeError before 3.13)
            reason = type(exc).__name__
            raise SecretFileError(
                f"secrets file {path} is a symlink that cannot be followed ({reason})", path=path
            ) from None
        marker = ("write-through", str(path), str(target))
        with self._state_lock:
            first = marker not in self._warned
            self._warned.add(marker)
        if first:
            logger.warning("secrets file %s is a symlink; writing to %s", path, target)
        return target

    def _ensure_directory(self, directory: Path) -> None:
        """Create ``directory`` and each missing parent 0700, whatever the umask.

        Directories that already exist are left as they are; the secrets directory itself is
        only warned about when others have access to it.
        """
        missing: list[Path] = []
        current = directory
        while not os.path.isdir(current) and current.parent != current:
            missing.append(current)
            current = current.parent
        created = False
        for level in reversed(missing):
            try:
                os.mkdir(level, 0o700)
            except FileExistsError:
                created = False  # made meanwhile by another writer: not ours to change
                continue
            created = True
            # mkdir's mode is filtered by the umask, so it can only fall short of 0700: a
            # umask such as 0277 leaves 0500, in which the next level cannot be created.
            if stat.S_IMODE(os.lstat(level).st_mode) != 0o700:
                os.chmod(level, 0o700)
        if created:
            return
        mode = stat.S_IMODE(directory.stat().st_mode)
        if mode & 0o077:
            marker = ("directory", str(directory), mode)
            with self._state_lock:
                first = marker not in self._warned
                self._warned.add(marker)
            if first:
                logger.warning(
                    "secrets directory %s has mode %04o; 0700 is advised", directory, mode
                )

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        try:
            self._ensure_directory(path.parent)
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = self._open_beside(path, f".{path.name}.lock", flags)
        except OSError as exc:
            raise SecretFileError(
                f"cannot lock secrets file {path}: {_os_reason(exc)}", path=path
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    @staticmethod
    def _remove_stale_temporaries(path: Path) -> None:
        # Called with the lock held: no live writer owns any of these.
        prefix = f".{path.name}{_TMP_MARK}"
        try:
            with os.scandir(path.parent) as entries:
                for entry in entries:
                    if entry.name.startswith(prefix):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(entry.path)
        except OSError as exc:
            raise SecretFileError(
                f"cannot write secrets file {path}: its directory cannot be listed "
                f"({_os_reason(exc)})",
                path=path,
            ) from None

    @staticmethod
    def _write_atomically(path: Path, body: bytes) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        for _ in range(16):
            tmp = path.parent / f".{path.name}{_TMP_MARK}{_temp_suffix()}"
            try:
                fd = os.open(tmp, flags, 0o600)
            except FileExistsError:
                continue  # someone put something there: never write through it
            except OSError as exc:
                raise SecretFileError(
                    f"cannot write secrets file {path}: {_os_reason(exc)}", path=path
                ) from None
            break
        else:
            raise SecretFileError(f"cannot create a temporary file next to {path}", path=path)
        try:
            try:
                os.fchmod(fd, 0o600)  # the creation mode is filtered by the umask
                _write_all(fd, body)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                # The reason is the OS's text ("No space left on device"), never the data.
                raise SecretFileError(
                    f"cannot write secrets file {path}: {_os_reason(exc)}", path=path
                ) from None
            raise
        try:
            dir_fd = os.open(path.parent, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise SecretFileError(
                f"secrets file {path} was replaced, but its directory could not be synced to "
                f"disk: {_os_reason(exc)}",
                path=path,
            ) from None


class _Read(NamedTuple):
    """One read of the file."""

    document: dict[str, str]
    signature: _Signature  # of the file opened
    blank: bool  # it held nothing but white space
    settled: bool  # its size and times did not change while it was looked at and read


def _write_all(fd: int, body: bytes) -> None:
    view = memoryview(body)
    while view:
        view = view[os.write(fd, view) :]


def _os_reason(exc: OSError) -> str:
    """What went wrong, as the OS says it: ``No space left on device (ENOSPC)``."""
    code = errno.errorcode.get(exc.errno) if exc.errno is not None else None
    if exc.strerror and code:
        return f"{exc.strerror} ({code})"
    return exc.strerror or type(exc).__name__


def _parse(path: Path, raw: bytes, *, text_scalars: bool) -> Any:
    """Parse a file's bytes as JSON or YAML (by extension); a blank file is empty.

    JSON numbers always come back as `NumberText` text; ``text_scalars`` picks the YAML
    loader (the read's, or the rewrite's that keeps native values).

    Parser messages quote the offending line, which may hold a secret: only the path, the line
    number and a fixed description travel on, and the parser's exception is not chained.
    """
    kind = "YAML" if _is_yaml(path) else "JSON"
    try:
        text: str | None = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None  # raised below, outside the handler: the decode error holds the whole file
    if text is None:
        raise SecretFileError(f"secrets file {path} is not UTF-8 text", path=path)
    if not text.strip():
        return {}
    line: int | None = None
    reason = "is not valid " + kind
    if kind == "YAML":
        data, line, problem = _parse_yaml(text, text_scalars=text_scalars)
        if problem is None:
            return data
        reason = problem
    else:
        try:
            # Numbers (and NaN/Infinity) stay the text written: 1.50 is not 1.5, 1e400 not inf.
            return json.loads(
                text, parse_float=NumberText, parse_int=NumberText, parse_constant=NumberText
            )
        except json.JSONDecodeError as exc:
            line = exc.lineno
        except RecursionError:
            reason = f"is nested too deeply to be valid {kind}"
        except ValueError:
            pass
    where = f" at line {line}" if line is not None else ""
    raise SecretFileError(f"secrets file {path} {reason}{where}", path=path, line=line)


def _parse_yaml(text: str, *, text_scalars: bool) -> tuple[Any, int | None, str | None]:
    """YAML text parsed: (data, None, None), or (None, line, reason) when it is refused or
    malformed (see `_parse`: no parser message travels on). PyYAML is imported here, by the
    first YAML file read, not by the library's import."""
    import yaml

    from ._yaml_text import RefusedYAML, RewriteLoader, TextLoader

    line: int | None = None
    reason = "is not valid YAML"
    try:
        loader = TextLoader if text_scalars else RewriteLoader
        data = yaml.load(text, Loader=loader)
        return ({} if data is None else data), None, None
    except RefusedYAML as exc:
        reason = f"is refused: {exc.problem}"
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
    except RecursionError:
        reason = "is nested too deeply to be valid YAML"
    except yaml.reader.ReaderError as exc:  # a control character: not a MarkedYAMLError
        reason = "is not valid YAML: it holds a character YAML does not allow"
        line = text.count("\n", 0, exc.position) + 1
    except (yaml.YAMLError, ValueError):
        pass
    return None, line, reason


def _json_values_as_text(data: Any) -> Any:
    """A parsed JSON object with its top-level values ready for `document_from_mapping`:
    numbers as written, objects and arrays as compact JSON text with their numbers as written.
    """
    if not isinstance(data, dict):
        return data
    for value in data.values():
        if type(value) is not str:
            break
    else:
        return data  # the common case, strings only: nothing to convert
    texts: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, (dict, list)):
            value = _json_text(value)
        elif isinstance(value, NumberText):
            value = str(value)
        texts[key] = value
    return texts


def _json_key(key: Any) -> str:
    """A member name as `json.dumps` writes it: a YAML key 1, true or null becomes "1"."""
    if isinstance(key, str):
        return json.dumps(key, ensure_ascii=False)
    return json.dumps({key: 0}, ensure_ascii=False)[1:-4]


def _json_text(value: Any) -> str:
    """``json.dumps(value, separators=(",", ":"), ensure_ascii=False)``, but numbers as they
    were written; iterative, so a value the parser could nest is never too deep here."""
    parts: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if type(item) is tuple:  # punctuation queued with the members below
            parts.append(item[0])
        elif isinstance(item, NumberText):
            parts.append(str(item))
        elif isinstance(item, str):
            parts.append(json.dumps(item, ensure_ascii=False))
        elif isinstance(item, dict):
            parts.append("{")
            queued: list[Any] = []
            for i, (key, member) in enumerate(item.items()):
                queued.append(("," * bool(i) + _json_key(key) + ":",))
                queued.append(member)
            queued.append(("}",))
            stack.extend(reversed(queued))
        elif isinstance(item, list):
            parts.append("[")
            queued = []
            for i, member in enumerate(item):
                if i:
                    queued.append((",",))
                queued.append(member)
            queued.append(("]",))
            stack.extend(reversed(queued))
        else:  # true, false, null
            parts.append(json.dumps(item))
    return "".join(parts)


_JSON_SPACE = re.compile(r"[ \t\n\r]*")


def _skip_space(text: str, position: int) -> int:
    """The offset of the first character at or after ``position`` that is not JSON space."""
    return _JSON_SPACE.match(text, position).end()  # type: ignore[union-attr]  # matches ""


class _Member(NamedTuple):
    """Where one top-level member of a JSON object is in the text."""

    key: str
    lead: int  # the start of the space before the key, just after "{" or ","
    key_start: int
    key_end: int
    value_start: int
    value_end: int
    nonfinite: bool  # the value holds NaN or Infinity


def _json_members(path: Path, text: str) -> tuple[int, list[_Member], int]:
    """The offsets of the object's "{", of each member, and of its "}".

    ``text`` already parsed as a JSON object, so the scan cannot fail on the syntax.
    """
    constants: list[str] = []

    def constant(name: str) -> str:
        constants.append(name)
        return name

    decoder = json.JSONDecoder(parse_float=str, parse_int=str, parse_constant=constant)
    opening = _skip_space(text, 0)
    position = opening + 1
    members: list[_Member] = []
    if text[_skip_space(text, position)] == "}":
        return opening, members, _skip_space(text, position)
    while True:
        key_start = _skip_space(text, position)
        key, key_end = json.decoder.scanstring(text, key_start + 1)  # type: ignore[attr-defined]
        value_start = _skip_space(text, _skip_space(text, key_end) + 1)
        value_end = decoder.raw_decode(text, value_start)[1]
        nonfinite = bool(constants)
        constants.clear()
        members.append(
            _Member(key, position, key_start, key_end, value_start, value_end, nonfinite)
        )
        following = _skip_space(text, value_end)
        if text[following] == "}":
            return opening, members, following
        position = following + 1  # just after the comma


def _scan_json(path: Path, text: str) -> tuple[int, list[_Member], int]:
    """`_json_members`, with a `RecursionError` turned into a `SecretFileError`."""
    try:
        return _json_members(path, text)
    except RecursionError:
        # Near the interpreter's limit the read's parse may pass where this one, a few frames
        # deeper, does not. Raised outside the handler: nothing chained.
        pass
    raise SecretFileError(f"secrets file {path} is nested too deeply to rewrite", path=path)


def _json_member(key: str, colon: str, value: str) -> str:
    return json.dumps(key, ensure_ascii=False) + colon + json.dumps(value, ensure_ascii=False)


def _rewrite_json(path: Path, raw: bytes | None, nkey: str, value: str | None) -> bytes | None:
    """The file's bytes with only ``nkey`` changed; None when there is nothing to delete.

    The edit is made in the text: the other members keep their order, spacing, escapes and
    number texts. A key already there keeps its place (its other spellings are removed); a
    new key goes after the last one, spaced like it.
    """
    bom = codecs.BOM_UTF8 if raw is not None and raw.startswith(codecs.BOM_UTF8) else b""
    text = raw[len(bom) :].decode("utf-8") if raw is not None else ""  # the read checked it
    if not text.strip():
        if value is None:
            return None
        text = "{\n  " + _json_member(nkey, ": ", value) + "\n}\n"
        return bom + _encoded(path, text)
    keep = 0 if value is None else 1  # the spelling replaced in place
    changed = False
    while True:
        opening, members, closing = _scan_json(path, text)
        hits = [i for i, member in enumerate(members) if normalize_key(member.key) == nkey]
        if len(hits) <= keep:
            break
        text = _without_member(text, opening, members, closing, hits[-1])
        changed = True
    if value is None:
        if not changed:
            return None
        return bom + _encoded(path, _finite(path, text))
    if hits:
        member = members[hits[0]]
        colon = text[member.key_end : member.value_start]
        new = _json_member(nkey, colon, value)
        text = text[: member.key_start] + new + text[member.value_end :]
    elif members:
        last = members[-1]
        space = text[last.lead : last.key_start]
        if len(members) == 1 and "\n" not in space:
            space = " "  # {"A": "1"} -> {"A": "1", "B": "2"}
        colon = text[last.key_end : last.value_start]
        new = "," + space + _json_member(nkey, colon, value)
        text = text[: last.value_end] + new + text[last.value_end :]
    else:
        text = (
            text[: opening + 1] + "\n  " + _json_member(nkey, ": ", value) + "\n" + text[closing:]
        )
    return bom + _encoded(path, _finite(path, text))


def _finite(path: Path, text: str) -> str:
    """``text``, unless a member holds NaN or Infinity: jq, Go and Node refuse such a file, so
    it is not written (removing or replacing the key that holds one is fine)."""
    for member in _scan_json(path, text)[1]:
        if member.nonfinite:
            line = text.count("\n", 0, member.value_start) + 1
            raise SecretFileError(
                f"secrets file {path} holds NaN or Infinity at line {line}, which JSON does "
                "not allow; not rewriting it (write the number, or quote it)",
                path=path,
                line=line,
            )
    return text


def _without_member(
    text: str, opening: int, members: list[_Member], closing: int, index: int
) -> str:
    """``text`` without member ``index`` and one comma next to it."""
    if len(members) == 1:
        return text[: opening + 1] + text[closing:]
    if index < len(members) - 1:  # from its key to the next key: its own leading space stays
        return text[: members[index].key_start] + text[members[index + 1].key_start :]
    # The last: from the end of the value before it (its comma included) to its own end.
    return text[: members[index - 1].value_end] + text[members[index].value_end :]


def _encoded(path: Path, text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        pass  # not chained: the error keeps the whole text in its ``object``
    raise SecretFileError(
        f"secrets file {path} cannot be written: it holds a value that is not encodable text",
        path=path,
    )


def _rewrite_yaml(path: Path, raw: bytes | None, nkey: str, value: str | None) -> bytes | None:
    """The file's new bytes, written again whole by PyYAML in its order (the fallback of the
    text edit); None when there is nothing to delete."""
    data: dict[str, Any] = {}
    if raw is not None:
        data = _native_mapping(path, _parse(path, raw, text_scalars=False))
    try:
        spellings = [k for k in data if normalize_key(k) == nkey]
    except ValueError:
        spellings = None  # raised below, outside the handler
    if spellings is None:
        _invalid_key(path)
    if value is None and not spellings:
        return None
    for spelling in spellings:
        del data[spelling]
    if value is not None:
        data[nkey] = value
    return _dump(path, data)


def _invalid_key(path: Path) -> NoReturn:
    raise SecretFileError(f"secrets file {path} has an invalid key; not rewriting it", path=path)


def _native_mapping(path: Path, data: Any) -> dict[str, Any]:
    """The parsed file as a dict with string keys, for a rewrite that keeps its types."""
    if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
        raise SecretFileError(
            f"secrets file {path} does not hold an object with string keys; not rewriting it",
            path=path,
        )
    return data


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _dump(path: Path, data: Mapping[str, Any]) -> bytes:
    """A YAML file's new bytes; `SecretFileError` when a value it holds cannot be written out.

    (JSON files are edited in their text instead: `_rewrite_json`.) The encoder's own errors
    are not chained: a `UnicodeEncodeError` keeps the whole text it failed on (every secret of
    the file) in its ``object`` attribute.
    """
    import yaml

    from ._yaml_text import Dumper

    try:
        text = yaml.dump(
            dict(data),
            Dumper=Dumper,
            default_flow_style=False,
            sort_keys=False,
            allow_unicode=True,
        )
        return text.encode("utf-8")
    except (ValueError, RecursionError):
        pass  # a lone surrogate read from a \ud800 escape, an integer too long to print
    raise SecretFileError(
        f"secrets file {path} cannot be written: it holds a value that is not encodable text",
        path=path,
    )
