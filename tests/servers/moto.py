"""A real ``moto_server`` (AWS emulator) on a free loopback port, for tests and benchmarks.

`run_moto` is a plain context manager; the ``moto`` fixture shares one server per session.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["MotoServer", "MotoServerError", "free_port", "moto_command", "run_moto"]

REGION = "us-east-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
START_TIMEOUT_S = 30.0


class MotoServerError(RuntimeError):
    """moto_server could not be started; the message carries the tail of its log."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def moto_command() -> list[str]:
    """The moto_server executable of this interpreter's environment, else ``-m moto.server``."""
    beside = Path(sys.executable).with_name("moto_server")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("moto_server")
    if found:
        return [found]
    return [sys.executable, "-m", "moto.server"]


class MotoServer:
    """A running moto_server and a sync boto3 client to arrange secrets on it.

    Attributes:
        endpoint_url: ``http://127.0.0.1:<port>``.
        region: The region the helpers use (``us-east-1``).
        log_path: The server's combined stdout/stderr.
    """

    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.endpoint_url = f"http://127.0.0.1:{port}"
        self.region = REGION
        self.log_path = log_path
        self._admin: Any = None

    def env(self) -> dict[str, str]:
        """Environment variables that point the AWS SDKs at this server with dummy keys."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<log unreadable: {exc}>"
        return "\n".join(text.splitlines()[-lines:])

    @property
    def admin(self) -> Any:
        """A sync boto3 Secrets Manager client on this server (explicit dummy keys)."""
        if self._admin is None:
            import boto3
            import botocore.session

            core = botocore.session.Session()
            # A user's ~/.aws files must not change what the tests talk to.
            core.set_config_variable("config_file", os.devnull)
            core.set_config_variable("credentials_file", os.devnull)
            session = boto3.session.Session(
                aws_access_key_id=ACCESS_KEY,
                aws_secret_access_key=SECRET_KEY,
                region_name=self.region,
                botocore_session=core,
            )
            self._admin = session.client("secretsmanager", endpoint_url=self.endpoint_url)
        return self._admin

    def create_secret(
        self, name: str, *, string: str | None = None, binary: bytes | None = None
    ) -> None:
        """Create secret ``name`` holding ``string`` or ``binary``."""
        kwargs: dict[str, Any] = {"Name": name}
        if string is not None:
            kwargs["SecretString"] = string
        if binary is not None:
            kwargs["SecretBinary"] = binary
        self.admin.create_secret(**kwargs)

    def put_secret_value(
        self, name: str, *, string: str | None = None, binary: bytes | None = None
    ) -> None:
        """Store a new AWSCURRENT version of ``name``; the old one becomes AWSPREVIOUS."""
        kwargs: dict[str, Any] = {"SecretId": name}
        if string is not None:
            kwargs["SecretString"] = string
        if binary is not None:
            kwargs["SecretBinary"] = binary
        self.admin.put_secret_value(**kwargs)

    def delete_secret(self, name: str) -> None:
        """Delete ``name`` at once (no recovery window); a missing secret is fine."""
        with contextlib.suppress(self.admin.exceptions.ResourceNotFoundException):
            self.admin.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)

    def healthy(self) -> bool:
        """Whether the server answers its management API."""
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1.0) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        """Terminate the server, then kill it if it does not exit within 5 s."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _start(log_path: Path, timeout: float) -> MotoServer:
    port = free_port()
    env = dict(os.environ)
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*moto_command(), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    server = MotoServer(process, port, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise MotoServerError(
                f"moto_server exited with code {process.returncode} on port {port}:\n"
                f"{server.log_tail()}"
            )
        if server.healthy():
            return server
        time.sleep(0.05)
    server.stop()
    raise MotoServerError(
        f"moto_server did not answer on port {port} within {timeout:.0f} s:\n{server.log_tail()}"
    )


@contextlib.contextmanager
def run_moto(timeout: float = START_TIMEOUT_S) -> Iterator[MotoServer]:
    """Start moto_server on a free loopback port and stop it on exit.

    Args:
        timeout: Seconds to wait for the server to answer.

    Yields:
        The running server.

    Raises:
        MotoServerError: The server did not start; the message holds its log tail.
    """
    fd, name = tempfile.mkstemp(prefix="moto-server-", suffix=".log")
    os.close(fd)
    log_path = Path(name)
    server: MotoServer | None = None
    try:
        for attempt in range(3):  # the free port may be taken between probe and bind
            try:
                server = _start(log_path, timeout)
                break
            except MotoServerError:
                if attempt == 2:
                    raise
        assert server is not None
        yield server
    finally:
        if server is not None:
            server.stop()
        log_path.unlink(missing_ok=True)


# -- pytest ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    """One moto_server for the whole session; a start failure fails the test (never skips)."""
    try:
        manager = run_moto()
        server = manager.__enter__()
    except MotoServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture
def moto_env(moto: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MotoServer:
    """Point the AWS SDKs at the moto server with dummy keys; ~/.aws and profiles are ignored."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_REGION",
        "SIMPLETUNER_AWS_SECRET_NAME",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in moto.env().items():
        monkeypatch.setenv(name, value)
    empty = tmp_path / "aws-empty"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    # Never fall back to the instance metadata service (a non-loopback address).
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return moto


@pytest.fixture
def moto_secret(moto: MotoServer) -> Iterator[str]:
    """A secret name unique to the test; the secret, if created, is deleted afterwards."""
    name = f"simpletuner-test/{uuid.uuid4().hex}"
    yield name
    moto.delete_secret(name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the moto_server log tail to the report of a failed test that used the server."""
    report = yield
    if report.failed and "moto" in getattr(item, "fixturenames", ()):
        funcargs = getattr(item, "funcargs", {})
        server = funcargs.get("moto") or funcargs.get("moto_env")
        if isinstance(server, MotoServer):
            report.sections.append(("moto_server log (tail)", server.log_tail()))
    return report
