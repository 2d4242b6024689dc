"""What went wrong on the way to a back-end, in words: connection refused, DNS, TLS, timeout.

SDKs wrap the operating system's error two or three times (botocore's
``EndpointConnectionError`` around aiohttp's ``ClientConnectorError`` around
``ConnectionRefusedError``); `describe_connection_failure` finds the one that names the cause.
Nothing here imports an SDK: classes are recognised by name.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator

__all__ = ["describe_connection_failure"]

#: Timeout classes of botocore, urllib3, requests and aiohttp, by name, and what they mean.
_TIMEOUTS = {
    "ConnectTimeoutError": "connect timeout",
    "ConnectTimeout": "connect timeout",
    "ConnectionTimeoutError": "connect timeout",
    "ReadTimeoutError": "read timeout",
    "ReadTimeout": "read timeout",
    "SocketTimeoutError": "read timeout",
    "ServerTimeoutError": "read timeout",
}
_DNS = frozenset({"ClientConnectorDNSError", "NameResolutionError"})
#: urllib3's ``NewConnectionError`` subclasses its ``ConnectTimeoutError`` for any connection
#: that failed to open (reset, unreachable), timed out or not: its class names no timeout.
_NOT_TIMEOUTS = frozenset({"NewConnectionError"})


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every error it wraps: causes, contexts, and the wrapped errors SDKs keep
    as attributes (botocore's ``kwargs['error']``, aiohttp's ``os_error``, urllib3's
    ``reason``)."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop(0)
        if id(current) in seen or len(seen) > 32:
            continue
        seen.add(id(current))
        yield current
        kwargs = getattr(current, "kwargs", None)
        inner = [kwargs.get("error") if isinstance(kwargs, dict) else None]
        inner += [getattr(current, name, None) for name in ("os_error", "reason")]
        inner += [current.__cause__, current.__context__]
        stack.extend(e for e in inner if isinstance(e, BaseException))


def describe_connection_failure(exc: BaseException) -> str | None:
    """Say what stopped a request from reaching its server, or None when it is not that kind
    of failure (an HTTP error answer, a malformed document).

    Returns:
        ``"connection refused"``, ``"DNS lookup failed (...)"``, ``"TLS failed (...)"`` or
        ``"TLS certificate verification failed (...)"``, ``"connect timeout"``,
        ``"read timeout"``, ``"connection reset"``, ``"connection failed (...)"``.
        The details are the operating system's or OpenSSL's words, never data sent or
        received.
    """
    errors = list(_chain(exc))
    # aiohttp's SSL errors subclass ssl.SSLError without its attributes; the one they wrap
    # (``os_error``) has them.
    tls = [e for e in errors if isinstance(e, ssl.SSLError)]
    for bad in tls:
        verify = getattr(bad, "verify_message", None)
        if isinstance(bad, ssl.SSLCertVerificationError) and verify:
            return f"TLS certificate verification failed ({verify})"
    for bad in tls:
        reason = getattr(bad, "reason", None)
        if reason == "WRONG_VERSION_NUMBER":
            return "TLS failed (WRONG_VERSION_NUMBER: the server does not speak TLS; http://?)"
        if reason:
            return f"TLS failed ({reason})"
    if tls:
        return "TLS failed"
    for error in errors:
        if isinstance(error, socket.gaierror):
            return f"DNS lookup failed ({error.strerror or error})"
    for error in errors:
        if type(error).__name__ in _DNS:
            return "DNS lookup failed"
    for error in errors:
        if isinstance(error, ConnectionRefusedError):
            return "connection refused"
    for error in errors:
        if type(error).__name__ in _NOT_TIMEOUTS:
            continue  # its cause (the operating system's error) says what happened
        for cls in type(error).__mro__:
            meaning = _TIMEOUTS.get(cls.__name__)
            if meaning is not None:
                return meaning
    for error in errors:
        if isinstance(error, ConnectionResetError | BrokenPipeError):
            return "connection reset"
    for error in errors:
        if isinstance(error, TimeoutError | asyncio.TimeoutError):  # distinct on 3.10
            return "timed out"
    for error in errors:
        if isinstance(error, OSError) and error.strerror:
            return f"connection failed ({error.strerror})"
    return None
