"""Failures that never reach the server say what happened (refused, DNS, TLS, timeout), where,
and how long it really took; the manager's own timeout says how long it waited."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3.exceptions
from botocore.exceptions import (
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
    SSLError,
)

from simpletuner_secrets import ProviderError, SecretProvider, SecretsManager
from simpletuner_secrets.providers._network import describe_connection_failure
from simpletuner_secrets.providers.aws import AWSSecretsManagerProvider


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials, no profile files, no instance metadata: botocore goes straight to
    the endpoint."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def plain_tcp_server() -> Iterator[int]:
    """A loopback server that answers every connection with plain text: not TLS."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        listener.close()


async def test_mistyped_endpoint_says_connection_refused_and_how_long(aws_env: None) -> None:
    """A refused connection (AWS_ENDPOINT_URL on a closed port) is reported as such, with the
    endpoint and the real duration, well before provider_timeout (not "no answer within 5 s")."""
    url = f"http://127.0.0.1:{closed_port()}"
    provider = AWSSecretsManagerProvider("app", "us-east-1", environ={"AWS_ENDPOINT_URL": url})
    started = time.monotonic()
    async with SecretsManager([provider], on_provider_error="raise") as m:
        with pytest.raises(ProviderError) as info:
            await m.get("HF_TOKEN")
    took = time.monotonic() - started
    message = str(info.value)
    assert f"connection refused at {url} after " in message, message
    assert "no answer within" not in message
    reported = float(message.rsplit("after ", 1)[1].removesuffix(" s"))
    assert 0 < reported <= took + 0.1


async def test_https_to_a_plain_server_says_tls_failed(
    aws_env: None, plain_tcp_server: int
) -> None:
    """https:// against a server that does not speak TLS: "TLS failed", with a hint."""
    url = f"https://127.0.0.1:{plain_tcp_server}"
    provider = AWSSecretsManagerProvider("app", "us-east-1", endpoint_url=url, environ={})
    try:
        with pytest.raises(ProviderError, match=r"TLS failed \(.*\) at https://127\.0\.0\.1"):
            await provider.load_document()
    finally:
        await provider.aclose()


def urllib3_new_connection_error(cause: OSError) -> BaseException:
    """urllib3's NewConnectionError raised from ``cause``, as its connection class raises it."""
    try:
        raise urllib3.exceptions.NewConnectionError(
            None, "Failed to establish a new connection"
        ) from cause
    except urllib3.exceptions.NewConnectionError as exc:
        return exc


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (
            EndpointConnectionError(
                endpoint_url="http://x", error=socket.gaierror(-2, "Name or service not known")
            ),
            "DNS lookup failed (Name or service not known)",
        ),
        (
            EndpointConnectionError(
                endpoint_url="http://x", error=ConnectionRefusedError(111, "Connect call failed")
            ),
            "connection refused",
        ),
        (
            SSLError(
                endpoint_url="https://x",
                error=ssl.SSLCertVerificationError(1, "certificate verify failed"),
            ),
            "TLS",
        ),
        (ConnectTimeoutError(endpoint_url="http://x"), "connect timeout"),
        (ReadTimeoutError(endpoint_url="http://x"), "read timeout"),
        (
            EndpointConnectionError(endpoint_url="http://x", error=ConnectionResetError()),
            "connection reset",
        ),
        # urllib3 (botocore's and requests' HTTP stack): a reset while connecting is a
        # NewConnectionError, a subclass of its ConnectTimeoutError, raised from the OS error.
        (
            EndpointConnectionError(
                endpoint_url="http://x", error=urllib3_new_connection_error(ConnectionResetError())
            ),
            "connection reset",
        ),
        (
            urllib3_new_connection_error(OSError(113, "No route to host")),
            "connection failed (No route to host)",
        ),
        (urllib3.exceptions.ConnectTimeoutError("timed out"), "connect timeout"),
    ],
)
def test_wrapped_causes_are_named(error: BaseException, said: str) -> None:
    """The cause under botocore's (and aiohttp's) wrappers is found and named."""
    found = describe_connection_failure(error)
    assert found is not None and found.startswith(said), found


def test_an_http_answer_is_not_a_connection_failure() -> None:
    """Errors that are not about reaching the server are left to their own message."""
    assert describe_connection_failure(ValueError("bad json")) is None
    assert describe_connection_failure(EndpointConnectionError(endpoint_url="http://x")) is None


async def test_manager_timeout_says_how_long_it_waited() -> None:
    """provider_timeout running out says "timed out" and the time really waited."""

    class Stalled(SecretProvider):
        name = "stalled"

        async def get(self, key: str) -> str | None:
            await asyncio.sleep(30)
            return None

    async with SecretsManager([Stalled()], on_provider_error="raise", provider_timeout=0.05) as m:
        with pytest.raises(ProviderError) as info:
            await m.get("K")
    found = re.fullmatch(
        r"stalled: no answer within 0\.05 s \(timed out; gave up after (\d+\.\d) s\)",
        str(info.value),
    )
    assert found is not None, str(info.value)
    assert float(found.group(1)) < 5.0  # the wait ended at the timeout, not the 30 s stall
