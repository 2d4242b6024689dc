"""HashiCorpVaultProvider: one KV secret (v2 or v1) from HashiCorp Vault or OpenBao, via hvac.

hvac blocks, so every hvac call, client creation and the hvac import included, runs in a
worker thread, and so does everything done with an answer (its JSON parsed, its values
turned into text): the event loop only waits. At most four such threads run per event loop,
each slot held until its thread really returns, and every load has a total deadline (hvac's
own timeout is per receive, so a server trickling a byte at a time would never end): a
watchdog thread shuts the load's sockets down when it passes. Redirects are never followed,
since the token header would go along to wherever they point.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import importlib.util
import itertools
import json
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import anyio
import anyio.to_thread

from .. import _fork
from ..errors import ConfigurationError, ProviderError
from ._common import (
    Masked,
    WarnOnce,
    WorkerSlots,
    convert_document,
    display_url,
    first_setting,
    is_loopback_host,
    read_regular_file,
    text_setting,
)
from .base import DocumentSecretProvider, LeftOut

__all__ = ["HashiCorpVaultProvider"]

logger = logging.getLogger(__name__)

#: The install hint given when hvac is missing.
INSTALL_HINT = "pip install 'simpletuner-secrets[vault]'"
DEFAULT_PATH = "simpletuner"
DEFAULT_MOUNT = "secret"
#: Larger answers are refused (like the file provider's max_file_size).
DEFAULT_MAX_DOCUMENT_SIZE = 1_048_576
#: A token file larger than this is not a token file.
TOKEN_FILE_LIMIT = 65_536
#: How much of an error answer is read (to tell a missing mount from a missing secret).
_ERROR_BODY_LIMIT = 65_536
_CHUNK = 65_536
_TRUE = frozenset({"1", "t", "true", "y", "yes", "on"})
_FALSE = frozenset({"0", "f", "false", "n", "no", "off"})
# hvac raises one exception class per HTTP status; messages name the status, not hvac's text.
_STATUS = {
    "InvalidRequest": 400,
    "Unauthorized": 401,
    "Forbidden": 403,
    "InvalidPath": 404,
    "RateLimitExceeded": 429,
    "InternalServerError": 500,
    "VaultNotInitialized": 501,
    "BadGateway": 502,
    "VaultDown": 503,
}
_STATUS_NAMES = {status: name for name, status in _STATUS.items()}

# hvac calls get worker slots of their own, so a slow Vault cannot exhaust anyio's default
# thread pool, nor the file provider's; a slot is held until its thread returns, so a Vault
# that never finishes cannot make the threads (and their sockets) grow either.
_WORKERS = WorkerSlots(4)


def _hvac_installed() -> bool:
    # find_spec only looks for the package; importing hvac (and requests) takes long enough to
    # stall an event loop, so the import itself happens in the worker thread on first use.
    try:
        return importlib.util.find_spec("hvac") is not None
    except (ImportError, ValueError):
        return False


def _import_hvac() -> Any:
    try:
        import hvac
    except ImportError as exc:
        raise ImportError(f"the vault provider needs hvac: {INSTALL_HINT}") from exc
    return hvac


def _parse_verify(text: str) -> bool | str:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    return text  # a CA bundle file or directory


def _parse_kv_version(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or str(value).strip() not in ("1", "2"):
        raise ConfigurationError(f"vault: kv_version must be 1, 2 or None, not {value!r}")
    return int(str(value).strip())


def _no_route(exc: Exception) -> bool:
    # Vault answers a path under a mount that does not exist with 404 "no handler for route".
    errors = getattr(exc, "errors", None) or []
    return any("no handler for route" in str(error) for error in errors)


# -- a total deadline per load ---------------------------------------------------------------


def _shut(conn: Any) -> None:
    """Shut ``conn``'s socket down: a thread blocked reading it gets end-of-file at once."""
    sock = getattr(conn, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            # socket.socket's own shutdown, also for a TLS socket: only the descriptor is
            # shut, the TLS object is left to the thread that uses it.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Deadline:
    """One load's total deadline, and the HTTP connections to cut when it passes (or when
    the provider is closed)."""

    __slots__ = ("_conns", "_finished", "_lock", "at", "cause", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.cause = ""  # "deadline" or "closed" once cut
        self._conns: list[Any] = []
        self._lock = threading.Lock()
        self._finished = False

    @property
    def finished(self) -> bool:
        return self._finished

    def over(self) -> bool:
        """Whether the load was cut, or its time is up."""
        return bool(self.cause) or time.monotonic() >= self.at

    def watch(self, conn: Any) -> None:
        """A request of this load is about to use ``conn``: cut it with the load."""
        with self._lock:
            conn.watched_by = self
            if self.cause:
                _shut(conn)
            elif conn not in self._conns:
                self._conns.append(conn)

    def cut(self, cause: str) -> None:
        """Shut down the sockets of the load's connections, unless it has finished."""
        with self._lock:
            if self._finished or self.cause:
                return
            self.cause = cause
            for conn in self._conns:
                # A connection back in the pool may serve another load by now: not ours.
                if getattr(conn, "watched_by", None) is self:
                    _shut(conn)
            self._conns.clear()

    def finish(self) -> None:
        with self._lock:
            self._finished = True
            self._conns.clear()

    def refusal(self) -> _Refusal:
        if self.cause == "closed":
            return _Refusal("Closed", detail="the provider was closed during the request")
        return _Refusal(
            "Timeout",
            detail=f"Timeout (no complete answer within {self.seconds:g} s, the provider's timeout)",
        )


class _Watchdog:
    """One daemon thread that cuts the loads whose deadline has passed. It starts with the
    first load and ends after `IDLE_S` seconds with nothing to watch."""

    IDLE_S = 10.0

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # Also the fork handler: the child has no watchdog thread, whatever the parent had.
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        # When the thread wakes next by itself: a later deadline needs no wake-up call (a
        # thread woken for nothing takes the GIL in the middle of a load).
        self._wakes_at = float("inf")

    def arm(self, deadline: _Deadline) -> None:
        with self._cond:
            heap = self._heap
            while heap and heap[0][2].finished:
                heapq.heappop(heap)
            heapq.heappush(heap, (deadline.at, next(self._order), deadline))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="simpletuner-vault-deadlines", daemon=True
                )
                self._thread.start()
            elif deadline.at < self._wakes_at:
                self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while True:
                heap = self._heap
                while heap and heap[0][2].finished:
                    heapq.heappop(heap)
                now = time.monotonic()
                if not heap:
                    self._wakes_at = now + self.IDLE_S
                    if not self._cond.wait(self.IDLE_S) and not self._heap:
                        self._thread = None
                        self._wakes_at = float("inf")
                        return
                    continue
                wait = heap[0][0] - now
                if wait > 0:
                    self._wakes_at = heap[0][0]
                    self._cond.wait(wait)
                    continue
                heapq.heappop(heap)[2].cut("deadline")


_WATCHDOG = _Watchdog()
_fork.after_fork(_WATCHDOG._reset)

# The load running in this worker thread: the connections it uses register with it.
_RUNNING = threading.local()


def _watch(conn: Any) -> None:
    deadline: _Deadline | None = getattr(_RUNNING, "deadline", None)
    if deadline is not None:
        deadline.watch(conn)


@functools.cache
def _session_type() -> Any:
    """The requests session hvac gets: it never follows a redirect, and a load's deadline can
    cut its connections. Built on first use, in a worker thread (requests imports slowly)."""
    import requests
    import requests.adapters
    import urllib3
    import urllib3.connection

    # A connection is watched before it connects and again once connected: a deadline that
    # passed while the socket did not exist yet shuts the new socket at once.
    class WatchedHTTPConnection(urllib3.connection.HTTPConnection):
        watched_by: Any = None

        def connect(self) -> None:
            _watch(self)
            super().connect()
            _watch(self)

        def request(self, *args: Any, **kwargs: Any) -> None:
            _watch(self)  # a kept-alive connection is not connected again
            super().request(*args, **kwargs)

    class WatchedHTTPSConnection(urllib3.connection.HTTPSConnection):
        watched_by: Any = None

        def connect(self) -> None:
            _watch(self)  # the TLS handshake can trickle too
            super().connect()
            _watch(self)

        def request(self, *args: Any, **kwargs: Any) -> None:
            _watch(self)
            super().request(*args, **kwargs)

    class WatchedHTTPPool(urllib3.HTTPConnectionPool):
        ConnectionCls = WatchedHTTPConnection

    class WatchedHTTPSPool(urllib3.HTTPSConnectionPool):
        ConnectionCls = WatchedHTTPSConnection

    pools: dict[str, type[urllib3.HTTPConnectionPool]] = {
        "http": WatchedHTTPPool,
        "https": WatchedHTTPSPool,
    }

    class WatchedAdapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

        def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
            manager = super().proxy_manager_for(proxy, **proxy_kwargs)
            if isinstance(manager, urllib3.ProxyManager):  # SOCKS proxies: per-read only
                manager.pool_classes_by_scheme = pools
            return manager

    class NoRedirectSession(requests.Session):
        def __init__(self) -> None:
            super().__init__()
            self.max_redirects = 0
            adapter = WatchedAdapter()
            self.mount("https://", adapter)
            self.mount("http://", adapter)

        def get_redirect_target(self, resp: requests.Response) -> None:
            # Never follow, whatever allow_redirects says: X-Vault-Token would go along to
            # wherever the redirect points (https to plain http included).
            return None

    return NoRedirectSession


# -- one request -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Refusal:
    """What a failed request tells us, without hvac's or requests' exception.

    hvac's errors carry the server's answer, which can be an error page echoing the request
    (the token header included): the provider's own errors are raised outside any handler of
    them, so that not even ``__context__`` holds one.
    """

    name: str  # the exception's class name (``ConnectionError``...) or the status's hvac name
    status: int | None = None  # the HTTP status, when there was an answer
    no_route: bool = False  # a 404 saying that no mount serves the path
    detail: str = ""  # the whole cause, when the name alone does not tell it

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def forbidden(self) -> bool:
        return self.status == 403


def _refusal_of(exc: Exception, deadline: _Deadline) -> _Refusal:
    if deadline.over():
        return deadline.refusal()
    name = type(exc).__name__
    return _Refusal(name, _STATUS.get(name), no_route=_no_route(exc))


def _too_large(limit: int) -> _Refusal:
    return _Refusal(
        "TooLarge", detail=f"the answer is larger than max_document_size ({limit} bytes)"
    )


def _fetch(client: Any, source: str, deadline: _Deadline, limit: int) -> bytes | _Refusal:
    """GET ``/v1/<source>``: the body of a 2xx answer (at most ``limit`` bytes), or what the
    failure was. What the server or the network does never raises here."""
    timeout = deadline.at - time.monotonic()
    if timeout <= 0 or deadline.cause:
        return deadline.refusal()
    refusal: _Refusal | None = None
    try:
        response = client.adapter.get(
            f"/v1/{quote(source)}", stream=True, raise_exception=False, timeout=timeout
        )
    except Exception as exc:
        refusal = _refusal_of(exc, deadline)
    if refusal is not None:
        return refusal
    try:
        return _answer(response, deadline, limit)
    finally:
        response.close()


def _answer(response: Any, deadline: _Deadline, limit: int) -> bytes | _Refusal:
    status = int(response.status_code)
    if 300 <= status < 400:
        where = display_url(str(response.headers.get("Location") or "?"))[:200]
        detail = (
            f"HTTP {status} redirect to {where}; redirects are never followed "
            "(the token would go along)"
        )
        return _Refusal("Redirect", status, detail=detail)
    if 200 <= status < 300:
        return _read_body(response, deadline, limit)
    no_route = False
    if status == 404:
        body = _read_body(response, deadline, _ERROR_BODY_LIMIT)
        no_route = isinstance(body, bytes) and b"no handler for route" in body
    return _Refusal(_STATUS_NAMES.get(status, "HTTPError"), status, no_route=no_route)


def _read_body(response: Any, deadline: _Deadline, limit: int) -> bytes | _Refusal:
    declared = str(response.headers.get("Content-Length") or "")
    if declared.isdigit() and int(declared) > limit:
        return _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    failure = ""
    try:
        for chunk in response.iter_content(_CHUNK):
            size += len(chunk)
            if size > limit:
                return _too_large(limit)
            chunks.append(chunk)
    except Exception as exc:
        failure = type(exc).__name__
    if failure:
        return deadline.refusal() if deadline.over() else _Refusal(failure)
    return b"".join(chunks)


def _decode(body: bytes, source: str, levels: int) -> tuple[Any, str]:
    """The answer's JSON, ``levels`` ``data`` fields deep, or ``(None, problem)``; the problem
    says what is wrong without quoting the answer."""
    problem = ""
    try:
        answer = json.loads(body)
    except json.JSONDecodeError as exc:
        problem = f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    except (ValueError, RecursionError):
        problem = "not JSON that can be read"
    if problem:
        return None, f"vault: unexpected response for {source}: {problem}"
    for _ in range(levels):
        if not isinstance(answer, Mapping) or "data" not in answer:
            kind = type(answer).__name__
            return None, f"vault: unexpected response for {source}: {kind} without 'data'"
        answer = answer["data"]
    return answer, ""


@dataclass(frozen=True)
class _Read:
    """What one read of the secret came to. It never holds the answer's text: an error about
    a malformed answer is raised from a frame that holds no value."""

    document: dict[str, str] | None = None  # the secret, converted
    refusal: _Refusal | None = None  # the request failed
    problem: str = ""  # the answer is malformed: what is wrong, never a value


class HashiCorpVaultProvider(DocumentSecretProvider):
    """Secrets in one KV secret of HashiCorp Vault (or OpenBao): ``<mount>/<path>``.

    The whole secret is the document; every key is answered from it. KV v2 is tried first
    (``<mount>/data/<path>``). A 404 there cannot tell a missing secret from a KV v1 mount, so
    the mount's version is then asked of ``sys/internal/ui/mounts/<mount>`` (as the vault CLI
    does), and KV v1 is read only when the mount is not v2. The version found is remembered;
    ``kv_version`` skips the detection. A 403 or a network error never falls back to v1: it
    raises `ProviderError`.

    A missing secret is an empty document, logged once at WARNING (again only after it was
    found in between). A missing mount is a configuration mistake, not an empty document: it
    raises `ProviderError` naming the mount.

    Settings: an argument wins over ``config`` (``vault_url``, ``vault_token``, ``vault_path``,
    ``vault_mount_point``, ``vault_namespace``, ``vault_verify``, ``vault_kv_version``), which
    wins over the environment (``VAULT_ADDR``, ``VAULT_TOKEN`` then ``~/.vault-token``,
    ``SIMPLETUNER_VAULT_PATH``, ``SIMPLETUNER_VAULT_MOUNT``, ``VAULT_NAMESPACE``,
    ``VAULT_SKIP_VERIFY``, ``VAULT_CACERT``, ``VAULT_CAPATH``). Blank counts as unset at every
    level, ``verify`` included (so a blank verify keeps verification on). A truthy
    ``VAULT_SKIP_VERIFY`` wins over a CA setting, as with the vault CLI.

    ``~/.vault-token`` is read only when it is a regular file of at most 64 KiB (opened
    without blocking, so a FIFO cannot hang the constructor); one readable by group or others
    is used with a WARNING naming it. An ``http://`` address that is not loopback logs one
    WARNING when a token is set: the token would cross the network in clear. The token is
    kept masked: no repr, ``vars()`` or captured frame locals of the library show it.

    One hvac client is created on first use, in a worker thread, and reused by every call
    from any event loop; `aclose` closes it (a later lookup opens a new one). Redirects are
    never followed: a 3xx answer raises `ProviderError` naming where it pointed.

    Args:
        url: The Vault address, ``http(s)://host:port``.
        token: The Vault token.
        path: The secret's path inside the mount (default ``simpletuner``).
        mount_point: The KV mount (default ``secret``).
        namespace: The Vault namespace, sent as ``X-Vault-Namespace``.
        verify: TLS verification: True, False, or a CA bundle path.
        kv_version: 1 or 2 to skip the version detection.
        timeout: Seconds one load may take in all (connecting and every read of every
            request it makes): a total deadline, not only a per-read one.
        max_document_size: Larger answers are refused with `ProviderError` (default 1 MiB).
        config: Settings by config key (see above).
        environ: The environment to read settings from (defaults to ``os.environ``); its
            ``HOME``, when present, locates ``~/.vault-token``.
        name: This provider's name in the chain (default ``vault``).

    Raises:
        ImportError: hvac is not installed (the message names the ``[vault]`` extra).
        ConfigurationError: A setting is invalid (an address that is not http(s), a
            ``kv_version`` other than 1 or 2, an empty path, a token file that is not a
            small regular file).
        ValueError: ``max_document_size`` is not positive.
    """

    name = "vault"
    config_keys = frozenset(
        {
            "vault_url",
            "vault_token",
            "vault_path",
            "vault_mount_point",
            "vault_namespace",
            "vault_verify",
            "vault_kv_version",
        }
    )

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        path: str | None = None,
        mount_point: str | None = None,
        *,
        namespace: str | None = None,
        verify: bool | str | None = None,
        kv_version: int | None = None,
        timeout: float = 10.0,
        max_document_size: int = DEFAULT_MAX_DOCUMENT_SIZE,
        config: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        try:
            self._settle(
                url=url,
                token=token,
                path=path,
                mount_point=mount_point,
                namespace=namespace,
                verify=verify,
                kv_version=kv_version,
                timeout=timeout,
                max_document_size=max_document_size,
                cfg=config or {},
                env=os.environ if environ is None else environ,
            )
        except (ImportError, ConfigurationError, ValueError) as exc:
            # Dropping the traceback drops the frames that held the settings.
            error = exc.with_traceback(None)
        else:
            return
        # Raised from this frame without the token, the config or the environment among its
        # locals: a frame-locals capture (Sentry, pytest --showlocals) would print them.
        del token, config, environ
        raise error

    def _settle(
        self,
        *,
        url: str | None,
        token: str | None,
        path: str | None,
        mount_point: str | None,
        namespace: str | None,
        verify: bool | str | None,
        kv_version: int | None,
        timeout: float,
        max_document_size: int,
        cfg: Mapping[str, Any],
        env: Mapping[str, str],
    ) -> None:
        if not _hvac_installed():
            raise ImportError(f"the vault provider needs hvac: {INSTALL_HINT}")
        if max_document_size <= 0:
            raise ValueError("vault: max_document_size must be positive")
        url = first_setting(url, cfg.get("vault_url"), env.get("VAULT_ADDR"))
        if url is not None:
            if urlsplit(url).scheme not in ("http", "https"):
                raise ConfigurationError(
                    f"vault: the address {display_url(url)!r} must start with http:// or https://"
                )
            url = url.rstrip("/")
        self.url = url
        given = first_setting(token, cfg.get("vault_token"), env.get("VAULT_TOKEN"))
        self._token = Masked(given) if given is not None else self._token_from_file(env)
        self.path = (
            first_setting(path, cfg.get("vault_path"), env.get("SIMPLETUNER_VAULT_PATH"))
            or DEFAULT_PATH
        ).strip("/")
        self.mount_point = (
            first_setting(
                mount_point, cfg.get("vault_mount_point"), env.get("SIMPLETUNER_VAULT_MOUNT")
            )
            or DEFAULT_MOUNT
        ).strip("/")
        if not self.path or not self.mount_point:
            raise ConfigurationError("vault: the secret path and the mount must not be empty")
        self.namespace = first_setting(
            namespace, cfg.get("vault_namespace"), env.get("VAULT_NAMESPACE")
        )
        self.verify = self._resolve_verify(verify, cfg, env)
        self._explicit_kv_version = _parse_kv_version(
            kv_version if kv_version is not None else cfg.get("vault_kv_version")
        )
        self._kv_version = self._explicit_kv_version
        self.timeout = timeout
        self.max_document_size = max_document_size
        self._client: Any = None
        self._client_lock = threading.Lock()
        _fork.track(self)
        self._warned = WarnOnce()
        # The deadlines of this provider's loads in flight, so that aclose can cut them.
        self._loads: set[_Deadline] = set()
        self._loads_lock = threading.Lock()
        if url is not None and self._token is not None:
            parts = urlsplit(url)
            if parts.scheme == "http" and not is_loopback_host(parts.hostname):
                logger.warning(
                    "vault: the address %s is plain http://: the token and every secret "
                    "cross the network unencrypted; use https://",
                    display_url(url),
                )

    @classmethod
    def from_settings(
        cls, config: Mapping[str, Any], environ: Mapping[str, str]
    ) -> HashiCorpVaultProvider | LeftOut:
        """The Vault provider of the default chain, when an address is set.

        Left out (debug) with no ``vault_url`` / ``VAULT_ADDR`` or no hvac; (warning) when a
        setting is malformed or partial (an address and no token).
        """
        if not (config.get("vault_url") or environ.get("VAULT_ADDR")):
            return LeftOut(cls.name, "no vault_url / VAULT_ADDR set (extra [vault])")
        try:
            provider = cls(config=config, environ=environ)
        except ImportError as exc:
            return LeftOut(cls.name, str(exc))
        except ConfigurationError as exc:
            return LeftOut(cls.name, str(exc), logging.WARNING)
        missing = provider.missing_settings()
        if missing:
            return LeftOut(
                cls.name,
                f"its settings are partial, missing {', '.join(missing)}",
                logging.WARNING,
            )
        return provider

    def reset_after_fork(self) -> None:
        """In a forked child: the parent's hvac session shares its pooled sockets; it is
        dropped, and the child opens its own; the parent's loads in flight are not the
        child's to cut."""
        self._client = None
        self._client_lock = threading.Lock()
        self._loads = set()
        self._loads_lock = threading.Lock()

    # -- settings ----------------------------------------------------------------------

    @staticmethod
    def _token_from_file(env: Mapping[str, str]) -> Masked | None:
        home = text_setting(env.get("HOME"))
        token_file = (Path(home) if home is not None else Path.home()) / ".vault-token"
        problem = ""
        token: str | None = None
        try:
            raw, status = read_regular_file(token_file, TOKEN_FILE_LIMIT)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except ValueError as exc:
            problem = str(exc)  # not a regular file, or too large
        except OSError as exc:
            problem = f"cannot be read ({type(exc).__name__})"
        if not problem:
            try:
                token = text_setting(raw.decode("utf-8"))
            except UnicodeDecodeError:
                problem = "is not UTF-8 text"
        if problem:
            raise ConfigurationError(f"vault: the token file {token_file} {problem}; refused")
        if token is None:
            return None
        if status.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            logger.warning(
                "vault: the token file %s can be read or changed by group or others "
                "(mode %04o); make it 0600",
                token_file,
                stat.S_IMODE(status.st_mode),
            )
        return Masked(token)

    @staticmethod
    def _resolve_verify(
        verify: bool | str | None, cfg: Mapping[str, Any], env: Mapping[str, str]
    ) -> bool | str:
        # Blank means unset here too: requests reads verify="" as False, verification off.
        for value in (verify, cfg.get("vault_verify")):
            if isinstance(value, bool):
                return value
            text = text_setting(value)
            if text is not None:
                return _parse_verify(text)
        if (text_setting(env.get("VAULT_SKIP_VERIFY")) or "").lower() in _TRUE:
            return False
        ca = first_setting(env.get("VAULT_CACERT"), env.get("VAULT_CAPATH"))
        return ca if ca is not None else True

    @property
    def kv_version(self) -> int | None:
        """The KV version used: given, or detected by the first load (None until then)."""
        return self._kv_version

    def missing_settings(self) -> list[str]:
        """Name the settings still needed before the provider can be used.

        Returns:
            ``["VAULT_ADDR"]``, ``["VAULT_TOKEN"]``, both, or ``[]`` when complete.
        """
        missing = []
        if self.url is None:
            missing.append("VAULT_ADDR")
        if self._token is None:
            missing.append("VAULT_TOKEN")
        return missing

    def is_available(self) -> bool:
        """Return whether hvac is importable and an address and a token are set."""
        return not self.missing_settings() and _hvac_installed()

    def __repr__(self) -> str:
        # getattr: an error tracker may repr a provider whose __init__ raised half-way.
        raw_url = getattr(self, "url", None)
        url = display_url(raw_url) if raw_url is not None else None
        token = "***" if getattr(self, "_token", None) is not None else None
        return (
            f"{type(self).__name__}(url={url!r}, "
            f"mount_point={getattr(self, 'mount_point', None)!r}, "
            f"path={getattr(self, 'path', None)!r}, "
            f"namespace={getattr(self, 'namespace', None)!r}, token={token!r})"
        )

    # -- loading -----------------------------------------------------------------------

    async def load_document(self) -> Mapping[str, str]:
        """Read the secret from Vault in a worker thread, with no caching.

        The answer is parsed and converted in that thread too, so a large document does not
        stall the event loop.

        Returns:
            The normalized document; empty when the secret does not exist.

        Raises:
            ConfigurationError: The address or the token is missing.
            ProviderError: Vault refused (403 and other errors), could not be reached within
                the timeout, redirected, has no such mount, or sent something that is not a
                secret or is larger than ``max_document_size``.
        """
        missing = self.missing_settings()
        if missing:
            raise ConfigurationError(f"vault: missing settings: {', '.join(missing)}")
        # A caller's timeout (the manager's provider_timeout) ends the wait at once; the
        # thread goes on until its load's deadline at most, holding its worker slot.
        document, source = await _WORKERS.run(self._load_blocking)
        if document is None:
            if self._warned.first("missing"):
                logger.warning(
                    "vault: no secret at %s on %s; using an empty document",
                    source,
                    display_url(self.url or ""),
                )
            return {}
        self._warned.clear("missing")
        return document

    def _client_or_create(self) -> Any:
        client = self._client
        if client is None:
            with self._client_lock:
                client = self._client
                if client is None:
                    hvac = _import_hvac()
                    session = _session_type()()
                    session.verify = self.verify
                    client = hvac.Client(
                        url=self.url,
                        token=self._token.reveal() if self._token is not None else "",
                        namespace=self.namespace,
                        verify=self.verify,
                        timeout=self.timeout,
                        allow_redirects=False,
                        session=session,
                        # The plain adapter: hvac's JSON one would read and parse a whole
                        # answer before its size is known.
                        adapter=hvac.adapters.RawAdapter,
                    )
                    self._client = client
        return client

    def _load_blocking(self) -> tuple[dict[str, str] | None, str]:
        """One load under its total deadline; runs in a worker thread."""
        deadline = _Deadline(self.timeout)
        with self._loads_lock:
            self._loads.add(deadline)
        _WATCHDOG.arm(deadline)
        _RUNNING.deadline = deadline
        try:
            return self._load_within(deadline)
        finally:
            _RUNNING.deadline = None
            deadline.finish()
            with self._loads_lock:
                self._loads.discard(deadline)

    def _load_within(self, deadline: _Deadline) -> tuple[dict[str, str] | None, str]:
        """Read the secret (detecting the KV version if needed).

        Returns:
            The converted document (None when the secret does not exist) and its API path.
        """
        client = self._client_or_create()
        version = self._kv_version
        if version != 1:
            source = f"{self.mount_point}/data/{self.path}"
            read = self._read(client, source, deadline, levels=2)
            if read.refusal is None:
                self._kv_version = 2
                if read.problem:
                    raise ProviderError(read.problem, provider=self.name)
                # None: the latest version was deleted or destroyed, so no secret is there now.
                return read.document, source
            refusal = read.refusal
            if not refusal.not_found:
                hint = ""
                if version is None and refusal.forbidden:
                    hint = (
                        f"; no KV v1 fallback after a 403: if {self.mount_point!r} is a KV v1"
                        " mount, set kv_version=1"
                    )
                raise self._failure(refusal, source, hint)
            if refusal.no_route:
                raise self._mount_missing(f"HTTP 404 on {source}")
            if version is None:
                version = self._detect_version(client, deadline)
            if version == 2:
                return None, source
        source = f"{self.mount_point}/{self.path}"
        read = self._read(client, source, deadline, levels=1)
        if read.refusal is None:
            if read.problem:
                raise ProviderError(read.problem, provider=self.name)
            return read.document, source
        if not read.refusal.not_found:
            raise self._failure(read.refusal, source)
        if read.refusal.no_route:
            raise self._mount_missing(f"HTTP 404 on {source}")
        return None, source

    def _read(self, client: Any, source: str, deadline: _Deadline, *, levels: int) -> _Read:
        """Fetch, parse and convert the secret at ``source``. Never raises for what the
        answer holds: the answer's text and its parsed form end with this frame."""
        body = _fetch(client, source, deadline, self.max_document_size)
        if isinstance(body, _Refusal):
            return _Read(refusal=body)
        data, problem = _decode(body, source, levels)
        if problem:
            return _Read(problem=problem)
        if data is None:
            return _Read()
        document, problem = convert_document(data, provider=self.name, source=source)
        return _Read(document=document, problem=problem)

    def _detect_version(self, client: Any, deadline: _Deadline) -> int:
        """Ask Vault for the mount's KV version after a 404 on the v2 path, and remember it."""
        source = f"sys/internal/ui/mounts/{self.mount_point}"
        body = _fetch(client, source, deadline, _ERROR_BODY_LIMIT)
        if isinstance(body, _Refusal):
            refusal = body
            if refusal.forbidden or refusal.not_found:
                # The data path answered 404, so the token may use the mount: a refusal here
                # means that no such mount exists.
                raise self._mount_missing(f"{refusal.name} on {source}")
            raise self._failure(refusal, source)
        info, problem = _decode(body, source, 1)
        if problem:
            raise ProviderError(problem, provider=self.name)
        if not isinstance(info, Mapping):
            raise ProviderError(
                f"vault: unexpected response for {source}: 'data' is a {type(info).__name__}",
                provider=self.name,
            )
        options = info.get("options")
        version = str(options.get("version")) if isinstance(options, Mapping) else "1"
        self._kv_version = 2 if info.get("type") == "kv" and version == "2" else 1
        return self._kv_version

    def _mount_missing(self, cause: str) -> ProviderError:
        self._kv_version = self._explicit_kv_version
        return ProviderError(
            f"vault: no mount {self.mount_point!r} on {display_url(self.url or '')} "
            f"(or the token may not see it): {cause}",
            provider=self.name,
        )

    def _failure(self, refusal: _Refusal, source: str, hint: str = "") -> ProviderError:
        if refusal.detail:
            cause = refusal.detail
        elif refusal.status is not None:
            cause = f"{refusal.name} (HTTP {refusal.status})"
        else:
            cause = refusal.name
        if "SSL" in refusal.name:
            hint = f"{hint}; TLS verification failed: set VAULT_CACERT to the server's CA"
        return ProviderError(
            f"vault: reading {source} from {display_url(self.url or '')} failed: {cause}{hint}",
            provider=self.name,
        )

    # -- lifetime ----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the hvac client's HTTP session. Safe to call more than once.

        Loads still in flight are cut (their sockets shut down): they raise `ProviderError`
        at once instead of running on to their deadline. A later lookup opens a new client.
        """
        self.invalidate()
        with self._loads_lock:
            loads = list(self._loads)
        for load in loads:
            load.cut("closed")
        if self._client is not None:
            # Not through the worker slots: closing must not wait behind loads of others.
            await anyio.to_thread.run_sync(self._close_blocking)

    def _close_blocking(self) -> None:
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.adapter.close()
