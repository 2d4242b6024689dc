"""What the built-in providers share: one settings rule, URL masking, warn-once state, a
masked holder for tokens, bounded reads of small files, and worker threads whose slot is
held until the thread really returns."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import stat
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

from .. import _fork
from .._threads import LoopLimiters, run_sync
from ..errors import ProviderError
from .base import document_from_mapping

__all__ = [
    "Masked",
    "WarnOnce",
    "WorkerSlots",
    "convert_document",
    "display_url",
    "first_setting",
    "is_loopback_host",
    "mask_url",
    "missing_extra_reason",
    "read_regular_file",
    "read_value_file",
    "sdk_imports",
    "setting",
    "text_setting",
    "unsafe_file_problems",
]

T = TypeVar("T")


# Held while an SDK is imported: one import at a time, process-wide.
_sdk_import_lock = threading.RLock()


def _new_sdk_import_lock() -> None:
    global _sdk_import_lock
    _sdk_import_lock = threading.RLock()


_fork.after_fork(_new_sdk_import_lock)


@contextlib.contextmanager
def sdk_imports() -> Iterator[None]:
    """Hold this around an SDK's first import (aioboto3, hvac), which runs in a worker thread.

    Python's warning filters are one process-wide list, and ``warnings.catch_warnings`` is not
    thread-safe: it saves the list on entry and puts the saved copy back on exit. botocore
    imports inside a ``catch_warnings`` block; requests, imported by hvac, adds a filter that
    silences urllib3's SOCKS ``DependencyWarning`` and then imports the module that issues it.
    When AWS and Vault import at once in two threads, botocore's exit can drop requests' filter
    just before the warning is issued, and it reaches stderr (about one run in ten). Imports
    made one at a time cannot interleave so.
    """
    with _sdk_import_lock:
        yield


def text_setting(value: Any) -> str | None:
    """A setting as stripped text; None, empty and whitespace-only count as unset."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def first_setting(*values: Any) -> str | None:
    """The first of ``values`` that is set, by `text_setting`'s rule."""
    for value in values:
        text = text_setting(value)
        if text is not None:
            return text
    return None


def setting(
    argument: Any,
    config: Mapping[str, Any],
    config_key: str,
    environ: Mapping[str, str],
    *env_names: str,
) -> str | None:
    """The one settings rule: argument > ``config[config_key]`` > the first set variable of
    ``env_names``; blank means unset at every level."""
    return first_setting(argument, config.get(config_key), *(environ.get(n) for n in env_names))


def missing_extra_reason(exc: ImportError) -> str:
    """Why a provider whose settings are present is left out: its SDK is not installed (the
    ImportError names the extra to install)."""
    return f"its settings are present, but {exc}"


def mask_url(url: str | None) -> str | None:
    """The URL with the password of its user info masked, for repr and messages."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        netloc = f"{parts.username or ''}:***@{host}"
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparsable URL>"


def display_url(url: str) -> str:
    """The address without user info, query or fragment, fit for messages and repr."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class WarnOnce:
    """Remembers which conditions were already reported, so each is logged once per streak.

    Thread-safe: providers report from worker threads and several event loops.
    """

    def __init__(self) -> None:
        self._seen: set[Hashable] = set()
        self._lock = threading.Lock()
        _fork.track(self)

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock."""
        self._lock = threading.Lock()

    def first(self, marker: Hashable) -> bool:
        """Whether ``marker`` is reported for the first time (and mark it reported)."""
        with self._lock:
            if marker in self._seen:
                return False
            self._seen.add(marker)
            return True

    def clear(self, marker: Hashable) -> None:
        """Forget ``marker``: the condition ended, so its next occurrence is reported again."""
        with self._lock:
            self._seen.discard(marker)


def is_loopback_host(host: str | None) -> bool:
    """Whether ``host`` (a URL's hostname) is this machine: 127.0.0.0/8, ::1 (also as
    ::ffff:127.x.y.z) or ``localhost`` (and names under ``.localhost``, RFC 6761)."""
    if not host:
        return False
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name.partition("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


class Masked:
    """A secret string that no repr, str, ``vars()``, frame-locals capture, pickle or copy
    shows: the value sits in a slot and leaves only through `reveal`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one call that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("a masked secret cannot be pickled")

    def __copy__(self) -> Masked:
        return self  # immutable: a copy would only be a second place holding the value

    def __deepcopy__(self, memo: object) -> Masked:
        return self


def read_regular_file(path: Path, max_size: int) -> tuple[bytes, os.stat_result]:
    """Read a small file without ever blocking on what the path turned out to be.

    The open is non-blocking (a FIFO cannot hang it), the opened file must be regular
    (``fstat``, so a symlink to ``/dev/zero`` or a device is refused), and at most
    ``max_size`` bytes are read.

    Returns:
        The content and the opened file's status (for permission checks).

    Raises:
        FileNotFoundError: Nothing is there (also NotADirectoryError for a path through a file).
        ValueError: Not a regular file, or larger than ``max_size``; the message says which.
        OSError: It cannot be opened or read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise ValueError("is not a regular file")
        if status.st_size > max_size:
            raise ValueError(f"is larger than {max_size} bytes")
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        raw = handle.read(max_size + 1)
    if len(raw) > max_size:
        raise ValueError(f"is larger than {max_size} bytes")
    return raw, status


def unsafe_file_problems(status: os.stat_result) -> list[str]:
    """What makes a secret file unsafe to trust (the file provider's rule): readable or
    writable by group or others, or owned by another user. Empty when it is safe."""
    problems = []
    if status.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        problems.append(f"is readable by others (mode {stat.S_IMODE(status.st_mode):04o})")
    if hasattr(os, "getuid") and status.st_uid != os.getuid():
        problems.append(f"is owned by another user (uid {status.st_uid})")
    return problems


def read_value_file(path: Path, max_size: int) -> tuple[str, os.stat_result]:
    """One secret held by a whole file: its UTF-8 text, one trailing newline stripped.

    Read with `read_regular_file` (non-blocking open, regular files only, at most
    ``max_size`` bytes), as Docker secrets, Kubernetes secret volumes and ``K_FILE`` hold
    them.

    Returns:
        The value (possibly empty) and the opened file's status.

    Raises:
        FileNotFoundError: Nothing is there.
        ValueError: Not a regular file, too large, or not UTF-8 (the message says which and
            never quotes the content).
        OSError: It cannot be opened or read.
    """
    raw, status = read_regular_file(path, max_size)
    offset = -1
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start  # only the offset: the decode error holds the whole content
    del raw
    if offset >= 0:
        # Raised outside the handler, so that the decode error is not even its context.
        raise ValueError(f"is not UTF-8 text (invalid byte at offset {offset})")
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    return text, status


def convert_document(data: Any, *, provider: str, source: str) -> tuple[dict[str, str] | None, str]:
    """`document_from_mapping` that reports a malformed document instead of raising.

    An exception raised while ``data`` is a local of some frame carries the whole document
    on its traceback (`traceback.TracebackException(capture_locals=True)`, Sentry and
    ``pytest --showlocals`` print every local). This returns the message, so that the caller
    can drop its own reference to the document and raise from a frame that holds none.

    Returns:
        ``(document, "")``, or ``(None, message)`` when ``data`` is not a valid document.
    """
    try:
        return document_from_mapping(data, provider=provider, source=source), ""
    except ProviderError as exc:
        problem = str(exc)
    except (ValueError, RecursionError):
        # An integer too long to print as decimal text (Python's 4300-digit limit), say.
        problem = f"{provider}: {source} holds a value that cannot be read as text"
    return None, problem


class WorkerSlots:
    """At most ``tokens`` threads per event loop for one kind of blocking call, a caller's
    cancellation ending its wait at once.

    A cancelled caller stops waiting, but its slot stays taken until the thread really
    returns: against a back-end that never finishes, cancelled calls cannot pile up threads
    (and their sockets) without bound.
    """

    def __init__(self, tokens: int, *, daemon: str | None = None) -> None:
        """
        Args:
            tokens: Threads at once per event loop.
            daemon: Run each call in a new daemon thread of this name instead of a pooled
                worker thread: for a one-off call (a first load), named in thread dumps.
        """
        self._slots = LoopLimiters(tokens)
        self._daemon = daemon

    async def run(self, func: Callable[[], T]) -> T:
        """Run ``func`` in a worker thread once a slot is free; cancellable at any point."""
        return await run_sync(func, limiter=self._slots.current(), name=self._daemon)
