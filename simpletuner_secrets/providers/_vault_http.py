"""The Vault provider's HTTP transport: one request under a load's total deadline, never
following a redirect, its answer read within a size limit and reported without hvac's text.

Shared by the provider's reads (vault.py) and its logins and renewals (_vault_auth.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import heapq
import importlib.util
import itertools
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from .. import _fork
from ._common import WorkerSlots, display_url, sdk_imports

__all__ = [
    "ERROR_BODY_LIMIT",
    "INSTALL_HINT",
    "WATCHDOG",
    "WORKERS",
    "Deadline",
    "Refusal",
    "decode",
    "folder_context",
    "guarded",
    "hvac_installed",
    "import_hvac",
    "request",
    "session_type",
]

#: The install hint given when hvac is missing.
INSTALL_HINT = "pip install 'simpletuner-secrets[vault]'"


def hvac_installed() -> bool:
    # find_spec only looks for the package; importing hvac (and requests) takes long enough to
    # stall an event loop, so the import itself happens in the worker thread on first use.
    try:
        return importlib.util.find_spec("hvac") is not None
    except (ImportError, ValueError):
        return False


def import_hvac() -> Any:
    try:
        with sdk_imports():  # one SDK import at a time: see sdk_imports
            import hvac
    except ImportError as exc:
        raise ImportError(f"the vault provider needs hvac: {INSTALL_HINT}") from exc
    return hvac


ERROR_BODY_LIMIT = 65_536
_CHUNK = 65_536
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

# hvac calls get worker slots of their own, so a slow Vault cannot take the threads of the
# other calls (the file provider's, the default limit's); a slot is held until its thread returns, so a Vault
# that never finishes cannot make the threads (and their sockets) grow either.
WORKERS = WorkerSlots(4)


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


class Deadline:
    """One load's total deadline, and the HTTP connections to cut when it passes (or when
    the provider is closed)."""

    __slots__ = ("_conns", "_finished", "_lock", "at", "cause", "seconds", "started")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.at = self.started + seconds
        self.cause = ""  # "deadline" or "closed" once cut
        self._conns: list[Any] = []
        self._lock = threading.Lock()
        self._finished = False

    @property
    def finished(self) -> bool:
        return self._finished

    def elapsed(self) -> float:
        """Seconds since the load started: what a message says it really took."""
        return time.monotonic() - self.started

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

    def refusal(self) -> Refusal:
        if self.cause == "closed":
            return Refusal("Closed", detail="the provider was closed during the request")
        return Refusal(
            "Timeout",
            detail=(
                f"Timeout (no complete answer within {self.seconds:g} s, the provider's "
                f"timeout; gave up after {self.elapsed():.1f} s)"
            ),
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
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        # When the thread wakes next by itself: a later deadline needs no wake-up call (a
        # thread woken for nothing takes the GIL in the middle of a load).
        self._wakes_at = float("inf")

    def arm(self, deadline: Deadline) -> None:
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


WATCHDOG = _Watchdog()
_fork.after_fork(WATCHDOG._reset)

# The load running in this worker thread: the connections it uses register with it.
_RUNNING = threading.local()


@contextlib.contextmanager
def guarded(deadline: Deadline) -> Iterator[Deadline]:
    """Run the requests of this block, in this worker thread, under ``deadline``: the
    watchdog cuts their connections when it passes."""
    WATCHDOG.arm(deadline)
    previous = getattr(_RUNNING, "deadline", None)
    _RUNNING.deadline = deadline
    try:
        yield deadline
    finally:
        _RUNNING.deadline = previous
        deadline.finish()


def _watch(conn: Any) -> None:
    deadline: Deadline | None = getattr(_RUNNING, "deadline", None)
    if deadline is not None:
        deadline.watch(conn)


@functools.cache
def session_type() -> Any:
    """The requests session hvac gets: it never follows a redirect, and a load's deadline can
    cut its connections. Built on first use, in a worker thread (requests imports slowly)."""
    with sdk_imports():
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
        #: A TLS context of our own (a CA folder loaded file by file), used instead of the
        #: CA settings requests would hand urllib3.
        ssl_context: ssl.SSLContext | None = None

        def build_connection_pool_key_attributes(
            self, request: Any, verify: Any, cert: Any = None
        ) -> tuple[dict[str, Any], dict[str, Any]]:
            host, pool = super().build_connection_pool_key_attributes(request, verify, cert)
            if self.ssl_context is not None and verify is not False:
                for name in ("ca_certs", "ca_cert_dir", "cert_file", "key_file"):
                    pool.pop(name, None)
                pool["ssl_context"] = self.ssl_context
            return host, pool

        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

        def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
            manager = super().proxy_manager_for(proxy, **proxy_kwargs)
            if isinstance(manager, urllib3.ProxyManager):  # SOCKS proxies: per-read only
                manager.pool_classes_by_scheme = pools
            return manager

    class NoRedirectSession(requests.Session):
        def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
            super().__init__()
            self.max_redirects = 0
            adapter = WatchedAdapter()
            adapter.ssl_context = ssl_context
            self.mount("https://", adapter)
            self.mount("http://", adapter)

        def get_redirect_target(self, resp: requests.Response) -> None:
            # Never follow, whatever allow_redirects says: X-Vault-Token would go along to
            # wherever the redirect points (https to plain http included).
            return None

    return NoRedirectSession


# -- one request -------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """What a failed request tells us, without hvac's or requests' exception.

    hvac's errors carry the server's answer, which can be an error page echoing the request
    (the token header included): the provider's own errors are raised outside any handler of
    them, so that not even ``__context__`` holds one.
    """

    name: str  # the exception's class name (``ConnectionError``...) or the status's hvac name
    status: int | None = None  # the HTTP status, when there was an answer
    no_route: bool = False  # a 404 saying that no mount serves the path
    detail: str = ""  # the whole cause, when the name alone does not tell it
    #: Vault's own error texts (a 4xx answer's ``errors``), cut short; never holds a token.
    errors: tuple[str, ...] = ()

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def forbidden(self) -> bool:
        return self.status == 403

    def describe(self) -> str:
        """The cause in words: the detail, else the status, else the exception's name."""
        if self.detail:
            return self.detail
        if self.status is not None:
            return f"{self.name} (HTTP {self.status})"
        return self.name


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps (requests -> urllib3 -> socket/ssl), at most 12 of them."""
    seen: list[BaseException] = []
    stack = [exc]
    while stack and len(seen) < 12:
        current = stack.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        for nested in (
            getattr(current, "reason", None),
            current.__cause__,
            current.__context__,
            *current.args,
        ):
            if isinstance(nested, BaseException):
                stack.append(nested)
    return seen


def _what_happened(exc: Exception) -> str:
    """Say what a failed connection was: refused, DNS, TLS, a timeout (no server text)."""
    causes = _causes(exc)
    for cause in causes:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return "TLS verification failed: set VAULT_CACERT (or VAULT_CAPATH) to the server's CA"
    for cause in causes:
        if isinstance(cause, ssl.SSLError):
            text = str(cause)
            if any(
                marker in text
                for marker in ("WRONG_VERSION_NUMBER", "record layer failure", "packet length")
            ):
                return (
                    "TLS handshake failed: the server does not speak TLS there "
                    "(plain http?); use http:// or the server's TLS port"
                )
            return f"TLS handshake failed ({getattr(cause, 'reason', None) or 'SSLError'})"
    for cause in causes:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused (nothing listens at that address and port)"
        if isinstance(cause, socket.gaierror):
            return "the host name could not be resolved (DNS)"
        if isinstance(cause, TimeoutError | socket.timeout) or "Timeout" in type(cause).__name__:
            return "no answer in time (timed out)"
    return ""


def refusal_of(exc: Exception, deadline: Deadline) -> Refusal:
    """What ``exc`` (raised by requests or hvac) says, in words that hold no server text."""
    if deadline.over():
        return deadline.refusal()
    name = type(exc).__name__
    happened = _what_happened(exc)
    detail = f"{name}: {happened}, after {deadline.elapsed():.1f} s" if happened else ""
    return Refusal(name, _STATUS.get(name), no_route=_no_route(exc), detail=detail)


def _too_large(limit: int) -> Refusal:
    return Refusal(
        "TooLarge", detail=f"the answer is larger than max_document_size ({limit} bytes)"
    )


def request(
    client: Any,
    source: str,
    deadline: Deadline,
    limit: int,
    *,
    token: Any = None,
    method: str = "GET",
    body: Mapping[str, Any] | None = None,
    params: Mapping[str, str] | None = None,
) -> bytes | Refusal:
    """Send ``method /v1/<source>``: the body of a 2xx answer (at most ``limit`` bytes), or
    what the failure was. What the server or the network does never raises here.

    Args:
        token: A `Masked` token sent as ``X-Vault-Token`` (none when None: a login, or an
            Agent that adds its own).
        body: A JSON body (logins: it may hold a secret id, a JWT or a password; it goes no
            further than this call).
    """
    timeout = deadline.at - time.monotonic()
    if timeout <= 0 or deadline.cause:
        return deadline.refusal()
    refusal: Refusal | None = None
    headers = {} if token is None else {"X-Vault-Token": token.reveal()}
    extra: dict[str, Any] = {}
    if body is not None:
        extra["json"] = dict(body)
    if params:
        extra["params"] = dict(params)
    try:
        response = client.adapter.request(
            method,
            f"/v1/{quote(source)}",
            headers=headers,
            stream=True,
            raise_exception=False,
            timeout=timeout,
            **extra,
        )
    except Exception as exc:
        refusal = refusal_of(exc, deadline)
    del headers, extra
    if refusal is not None:
        return refusal
    try:
        answer = _answer(response, deadline, limit)
    finally:
        response.close()
    if isinstance(answer, Refusal) and answer.errors:
        # An error text that repeats what was sent (a proxy's echo) is dropped.
        sent = [token.reveal()] if token is not None else []
        sent += [v for v in (body or {}).values() if isinstance(v, str) and len(v) >= 4]
        kept = tuple(e for e in answer.errors if not any(x in e for x in sent))
        answer = dataclasses.replace(answer, errors=kept)
        del sent
    return answer


def _error_texts(body: bytes | Refusal) -> tuple[str, ...]:
    # Vault's own error texts ("permission denied", "invalid role or secret ID"): server
    # words, not the request, cut short; a non-JSON page (which could echo the request) is
    # never read into a message.
    if not isinstance(body, bytes):
        return ()
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        return ()
    errors = answer.get("errors") if isinstance(answer, Mapping) else None
    if not isinstance(errors, list):
        return ()
    return tuple(str(e)[:160] for e in errors[:3] if isinstance(e, str))


def _answer(response: Any, deadline: Deadline, limit: int) -> bytes | Refusal:
    status = int(response.status_code)
    if 300 <= status < 400:
        location = str(response.headers.get("Location") or "?")
        where = display_url(location)[:200]
        detail = f"HTTP {status} redirect to {where}{_standby_redirect_hint(response, location)}"
        detail += "; redirects are never followed (the token would go along)"
        return Refusal("Redirect", status, detail=detail)
    if 200 <= status < 300:
        return _read_body(response, deadline, limit)
    body = _read_body(response, deadline, ERROR_BODY_LIMIT)
    no_route = status == 404 and isinstance(body, bytes) and b"no handler for route" in body
    errors = _error_texts(body)
    name = _STATUS_NAMES.get(status, "HTTPError")
    state = _ha_state(status, body) if isinstance(body, bytes) else ""
    if state:
        # The state in our words; Vault's text would only repeat it.
        return Refusal(name, status, detail=f"{name} (HTTP {status}): {state}")
    return Refusal(name, status, no_route=no_route, errors=errors)


# -- high availability: what a standby or a node without a leader answers ----------------
#
# A standby forwards requests to the active node over the cluster port. When it cannot (no
# active node during a leader election, or forwarding off) it answers 307 with the active
# node's address, the same path on another node; that redirect is never followed (the token
# would go along), so the read fails and the manager serves the last good answer. A node
# with no leader at all answers 500, a sealed one 503: both are named, not left as bare
# status codes, so a log says "leader election" rather than "internal error". Only these
# fixed phrases of the server's error text are looked for.

#: Statuses whose error text may tell an HA state, and the phrases that tell it.
_HA_STATES: dict[int, tuple[tuple[bytes, str], ...]] = {
    500: (
        (
            b"active cluster node not found",
            "the cluster has no active node now (a leader election?); retried later",
        ),
    ),
    503: ((b"is sealed", "this node is sealed (restarted and not unsealed yet?)"),),
}


def _ha_state(status: int, body: bytes) -> str:
    """What the error text of a 500 or 503 says about the cluster, or ``""``."""
    for phrase, meaning in _HA_STATES.get(status, ()):
        if phrase in body:
            return meaning
    return ""


def _standby_redirect_hint(response: Any, location: str) -> str:
    """A note for a 307 that sends the very same request to another node: a standby
    pointing at its active node, which it could not forward to."""
    requested = urlsplit(str(getattr(response, "url", "") or ""))
    target = urlsplit(location)
    if (
        int(response.status_code) == 307
        and target.netloc
        and target.netloc != requested.netloc
        and target.path == requested.path
    ):
        return (
            " (the same request on another node: what a standby answers when it cannot"
            " forward to its active node, as during a leader election)"
        )
    return ""


def _read_body(response: Any, deadline: Deadline, limit: int) -> bytes | Refusal:
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
        return deadline.refusal() if deadline.over() else Refusal(failure)
    return b"".join(chunks)


def decode(body: bytes, source: str, levels: int) -> tuple[Any, str]:
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


def folder_context(folder: Path, client_cert: tuple[str, str] | None) -> ssl.SSLContext:
    """A TLS context trusting every certificate of the PEM files in ``folder``.

    OpenSSL reads a CA directory only through hashed file names (``openssl rehash``); the
    vault CLI reads every file of ``VAULT_CAPATH``, so this does too.

    Raises:
        ValueError: The folder holds no PEM certificate (the message names it).
        OSError: The folder cannot be listed.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    loaded = 0
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        try:
            text = Path(entry.path).read_text(encoding="ascii", errors="strict")
        except (OSError, UnicodeDecodeError):
            continue
        if "-----BEGIN CERTIFICATE-----" not in text:
            continue
        try:
            context.load_verify_locations(cadata=text)
        except ssl.SSLError:
            continue
        loaded += 1
    if not loaded:
        raise ValueError(f"the CA folder {folder} holds no PEM certificate")
    if client_cert is not None:
        context.load_cert_chain(*client_cert)
    return context
