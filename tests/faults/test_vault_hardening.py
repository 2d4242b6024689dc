"""Vault hardening (issue 12), each case on a real OpenBao server or a loopback stub of it.

Redirects are never followed with the token; a blank ``verify`` keeps TLS verification on;
plain-http addresses and loose token files are warned about, and the token is stored masked;
``~/.vault-token`` is read only when it is a small regular file; a trickling server cannot
grow threads or sockets, and every load has a total deadline; documents are converted off the
event loop and refused over ``max_document_size``; errors about malformed documents are
raised from frames that hold no value. Whatever can hang runs in a subprocess or under a
hard timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import http.server
import json
import logging
import os
import pickle
import secrets
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from simpletuner_secrets import ConfigurationError, ProviderError, SecretsManager
from simpletuner_secrets.providers._common import WorkerSlots
from simpletuner_secrets.providers.vault import HashiCorpVaultProvider
from tests.heartbeat import max_gap_during
from tests.servers.bao import BaoServer

pytestmark = pytest.mark.integration

# Module-level strings named *SECRET* are audited by tests/leak_audit.py in every log record,
# error message and repr of these tests.
SECRET_TOKEN = "hvs.hardening-token-6c1f0a9e"
SECRET_VALUE = "hardening-value-3e8d7b21"
KEY = "HARDENING_KEY"
LOGGER = "simpletuner_secrets.providers.vault"
WORKTREE = Path(__file__).resolve().parents[2]
PACKAGE_DIR = str(WORKTREE / "simpletuner_secrets")
#: Hard limit for a child interpreter (the unfixed code hangs forever in some cases).
CHILD_TIMEOUT = 30.0


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty HOME: no ~/.vault-token unless a test writes one."""
    path = tmp_path / "home"
    path.mkdir()
    return path


def vault_on(url: str, home: Path, **kwargs: Any) -> HashiCorpVaultProvider:
    """A provider on ``url`` whose environment is only ``HOME``."""
    kwargs.setdefault("token", SECRET_TOKEN)
    kwargs.setdefault("path", "app")
    return HashiCorpVaultProvider(url=url, environ={"HOME": str(home)}, **kwargs)


def kv2_body(data: Any) -> bytes:
    """A KV v2 read answer holding ``data``."""
    return json.dumps({"data": {"data": data, "metadata": {"version": 1}}}).encode()


# -- loopback servers --------------------------------------------------------------------

Answer = Callable[[str], tuple[int, dict[str, str], bytes]]


class StubServer:
    """A loopback HTTP server: every GET is answered by ``answer(path)``; what it saw
    (path, X-Vault-Token) is recorded in `seen`."""

    def __init__(self, answer: Answer, *, tls: ssl.SSLContext | None = None) -> None:
        seen: list[tuple[str, str | None]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                seen.append((self.path, self.headers.get("X-Vault-Token")))
                status, headers, body = answer(self.path)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.seen = seen
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> StubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def fixed(status: int, body: bytes, **headers: str) -> Answer:
    headers.setdefault("Content-Type", "application/json")
    return lambda path: (status, dict(headers), body)


class TrickleServer:
    """Answers every request with its headers at once, then one body byte every
    ``interval`` seconds, forever: hvac's per-receive timeout never fires. With
    ``handshake``, it trickles a TLS handshake record instead (for https clients).

    Attributes:
        accepted: Connections accepted so far.
        open: Connections the client has not closed yet.
    """

    def __init__(self, interval: float, *, handshake: bool = False) -> None:
        self.interval = interval
        self.handshake = handshake
        self.accepted = 0
        self.open = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._listener.settimeout(0.1)
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        scheme = "https" if self.handshake else "http"
        return f"{scheme}://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self.open += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(5)
                if self.handshake:
                    # A TLS handshake record announcing 16 KiB, then its bytes one at a time.
                    conn.sendall(b"\x16\x03\x03\x40\x00")
                else:
                    request = b""
                    while b"\r\n\r\n" not in request:
                        chunk = conn.recv(4096)
                        if not chunk:
                            return
                        request += chunk
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 1000000\r\n\r\n"
                    )
                while not self._stop.is_set():
                    conn.sendall(b" ")
                    readable, _, _ = select.select([conn], [], [], self.interval)
                    if readable and not conn.recv(1):
                        return  # the client closed the connection
        except OSError:
            return
        finally:
            with self._lock:
                self.open -= 1

    def __enter__(self) -> TrickleServer:
        self._accepting.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._accepting.join(5)
        self._listener.close()
        for thread in self._threads:
            thread.join(5)


async def soon(condition: Callable[[], bool], limit: float) -> bool:
    """Whether ``condition`` holds within ``limit`` seconds (polled every 20 ms)."""
    give_up = time.monotonic() + limit
    while not condition():
        if time.monotonic() > give_up:
            return False
        await asyncio.sleep(0.02)
    return True


def run_child(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports this worktree's package; a child
    still running after CHILD_TIMEOUT is killed and the test fails with TimeoutExpired."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(WORKTREE), **env},
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )


def library_locals_holding(exc: BaseException, *needles: str) -> list[str]:
    """Every library frame local (``file:function:name``) on ``exc``'s traceback, and on its
    chained exceptions, whose captured repr contains one of ``needles``."""
    found = []
    shown = traceback.TracebackException.from_exception(exc, capture_locals=True)
    pending: list[traceback.TracebackException | None] = [shown]
    while pending:
        current = pending.pop()
        if current is None:
            continue
        pending += [current.__cause__, current.__context__]
        for frame in current.stack:
            if not frame.filename.startswith(PACKAGE_DIR):
                continue
            for name, text in (frame.locals or {}).items():
                if any(needle in text for needle in needles):
                    found.append(f"{Path(frame.filename).name}:{frame.name}:{name}")
    return found


# -- 1. redirects ------------------------------------------------------------------------


def test_a_redirect_to_another_host_is_never_followed(home: Path) -> None:
    """A 307 from the Vault address to another server: the second server never sees the
    request (nor the token); the provider raises ProviderError naming the redirect."""

    async def scenario() -> None:
        with StubServer(fixed(200, kv2_body({KEY: SECRET_VALUE}))) as elsewhere:
            redirect = fixed(307, b"", Location=f"{elsewhere.url}/v1/secret/data/app")
            with StubServer(redirect) as vault_address:
                vault = vault_on(vault_address.url, home, kv_version=2)
                with pytest.raises(ProviderError) as info:
                    await asyncio.wait_for(vault.get(KEY), 10)
                await vault.aclose()
                assert [token for _, token in vault_address.seen] == [SECRET_TOKEN]
            assert elsewhere.seen == [], "the redirect was followed"
        message = str(info.value)
        assert "redirect" in message and "307" in message and elsewhere.url in message
        assert SECRET_TOKEN not in message and SECRET_VALUE not in message

    asyncio.run(scenario())


async def test_a_redirect_during_version_detection_is_not_followed(home: Path) -> None:
    """No kv_version: the first request (the KV v2 read) is redirected; nothing follows."""
    with StubServer(fixed(200, kv2_body({KEY: SECRET_VALUE}))) as elsewhere:
        redirect = fixed(302, b"", Location=f"{elsewhere.url}/v1/secret/data/app")
        with StubServer(redirect) as vault_address:
            vault = vault_on(vault_address.url, home)
            with pytest.raises(ProviderError, match="redirect"):
                await asyncio.wait_for(vault.get(KEY), 10)
            await vault.aclose()
        assert elsewhere.seen == []


@pytest.mark.parametrize(
    ("status", "body", "named"),
    [
        (
            500,
            b'{"errors":["local node not active but active cluster node not found"]}\n',
            "the cluster has no active node now (a leader election?)",
        ),
        (503, b'{"errors":["Vault is sealed"]}\n', "this node is sealed"),
    ],
)
async def test_a_node_between_leaders_or_sealed_is_named(
    home: Path, status: int, body: bytes, named: str
) -> None:
    """The 500 a raft node answers while its cluster has no leader, and the 503 of a sealed
    node, are ProviderErrors that say so (not a bare status); the server's text is matched,
    never quoted."""
    with StubServer(fixed(status, body)) as node:
        vault = vault_on(node.url, home, kv_version=2)
        with pytest.raises(ProviderError) as info:
            await asyncio.wait_for(vault.get(KEY), 10)
        await vault.aclose()
    message = str(info.value)
    assert f"HTTP {status}" in message and named in message
    assert body.decode().split('"')[3] not in message


async def test_another_500_is_not_called_an_election(home: Path) -> None:
    """A 500 with any other text stays a plain InternalServerError (HTTP 500), Vault's own
    text after it, and is not called an election."""
    with StubServer(fixed(500, b'{"errors":["internal error"]}')) as node:
        vault = vault_on(node.url, home, kv_version=2)
        with pytest.raises(ProviderError) as info:
            await asyncio.wait_for(vault.get(KEY), 10)
        await vault.aclose()
    message = str(info.value)
    assert message.endswith("failed: InternalServerError (HTTP 500): internal error")
    assert "election" not in message


async def test_an_https_redirect_to_plain_http_is_not_followed(
    bao_tls: BaoServer, home: Path
) -> None:
    """An https Vault address answering 307 to a plain-http server: not followed."""
    assert bao_tls.ca_path is not None
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    certs = bao_tls.ca_path.parent
    tls.load_cert_chain(certs / "vault-cert.pem", certs / "vault-key.pem")
    with StubServer(fixed(200, kv2_body({KEY: SECRET_VALUE}))) as plain:
        redirect = fixed(307, b"", Location=f"{plain.url}/v1/secret/data/app")
        with StubServer(redirect, tls=tls) as vault_address:
            vault = vault_on(vault_address.url, home, kv_version=2, verify=str(bao_tls.ca_path))
            with pytest.raises(ProviderError, match="redirect") as info:
                await asyncio.wait_for(vault.get(KEY), 10)
            await vault.aclose()
            assert len(vault_address.seen) == 1
        assert plain.seen == []
    assert SECRET_TOKEN not in str(info.value)


async def test_the_providers_http_session_itself_never_follows(home: Path) -> None:
    """Even a request made on the provider's session with requests' default
    allow_redirects=True stops at the redirect: no code path can follow one."""
    with StubServer(fixed(200, kv2_body({KEY: SECRET_VALUE}))) as elsewhere:
        redirect = fixed(307, b"", Location=f"{elsewhere.url}/v1/secret/data/app")
        with StubServer(redirect) as vault_address:
            vault = vault_on(vault_address.url, home, kv_version=2)
            with pytest.raises(ProviderError):
                await vault.get(KEY)
            client = vault._client
            assert client is not None
            session = client.adapter.session

            def follow() -> int:
                url = f"{vault_address.url}/v1/secret/data/app"
                response = session.get(url, headers={"X-Vault-Token": SECRET_TOKEN}, timeout=5)
                response.close()
                return int(response.status_code)

            assert await asyncio.wait_for(asyncio.to_thread(follow), 10) == 307
            await vault.aclose()
        assert elsewhere.seen == []


# -- 2. a blank verify -------------------------------------------------------------------


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
@pytest.mark.parametrize("level", ["argument", "config", "VAULT_CACERT", "VAULT_CAPATH"])
def test_a_blank_verify_keeps_verification_on(home: Path, level: str, blank: str) -> None:
    """A blank verify, at any level, counts as unset (the one settings rule): verification
    stays on instead of requests reading "" as False."""
    kwargs: dict[str, Any] = {}
    env = {"HOME": str(home), "VAULT_ADDR": "https://127.0.0.1:8200", "VAULT_TOKEN": "t"}
    if level == "argument":
        kwargs["verify"] = blank
    elif level == "config":
        kwargs["config"] = {"vault_verify": blank}
    else:
        env[level] = blank
    vault = HashiCorpVaultProvider(environ=env, **kwargs)
    assert vault.verify is True


def test_a_blank_verify_falls_through_to_the_next_level(home: Path) -> None:
    """Blank in the argument and the config: the environment's CA is used."""
    env = {"HOME": str(home), "VAULT_CACERT": "/etc/vault/ca.pem"}
    vault = HashiCorpVaultProvider(verify=" ", config={"vault_verify": ""}, environ=env)
    assert vault.verify == "/etc/vault/ca.pem"


@pytest.mark.parametrize("level", ["argument", "config"])
async def test_a_blank_verify_against_tls_still_verifies(
    bao_tls: BaoServer, home: Path, level: str
) -> None:
    """On a TLS server with a private CA, verify="" must fail the certificate check, not
    read the secret with verification silently off."""
    path = unique("verify")
    bao_tls.request("POST", f"secret/data/{path}", {"data": {KEY: SECRET_VALUE}})
    kwargs: dict[str, Any] = {"verify": ""} if level == "argument" else {}
    config = {"vault_verify": ""} if level == "config" else None
    vault = HashiCorpVaultProvider(
        url=bao_tls.url,
        token=bao_tls.token,
        path=path,
        config=config,
        environ={"HOME": str(home)},
        **kwargs,
    )
    with pytest.raises(ProviderError, match="TLS verification failed"):
        await vault.get(KEY)
    await vault.aclose()


# -- 3. warnings and the token's storage -------------------------------------------------


def vault_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING
    ]


def test_a_plain_http_address_with_a_token_warns_once(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """http:// to a non-loopback host with a token: one WARNING naming the address."""
    caplog.set_level(logging.WARNING, LOGGER)
    vault = vault_on("http://vault.example.com:8200", home)
    assert vault.is_available()
    warnings = vault_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "http://vault.example.com:8200" in warnings[0] and "https" in warnings[0]
    assert SECRET_TOKEN not in caplog.text


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8200",
        "http://127.3.4.5:8200",
        "http://localhost:8200",
        "http://LOCALHOST.:8200",
        "http://[::1]:8200",
        "https://vault.example.com:8200",
    ],
)
def test_loopback_or_https_addresses_do_not_warn(
    home: Path, caplog: pytest.LogCaptureFixture, url: str
) -> None:
    """Loopback (127.0.0.0/8, ::1, localhost) over http, or any https address: no warning."""
    caplog.set_level(logging.WARNING, LOGGER)
    vault_on(url, home)
    assert vault_warnings(caplog) == []


def test_a_plain_http_address_without_a_token_does_not_warn(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No token, nothing to send in clear: no warning (the provider is only partial)."""
    caplog.set_level(logging.WARNING, LOGGER)
    HashiCorpVaultProvider(url="http://vault.example.com:8200", environ={"HOME": str(home)})
    assert vault_warnings(caplog) == []


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_token_file_open_to_group_or_others_warns_naming_it(
    home: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    """~/.vault-token readable by group or others: a WARNING naming the file and its mode;
    the token is still used."""
    caplog.set_level(logging.WARNING, LOGGER)
    token_file = home / ".vault-token"
    token_file.write_text(SECRET_TOKEN + "\n")
    token_file.chmod(mode)
    vault = vault_on("https://vault.example.com", home, token=None)
    assert vault.missing_settings() == []
    warnings = vault_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert str(token_file) in warnings[0] and f"{mode:04o}" in warnings[0]


def test_a_private_token_file_does_not_warn(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    token_file = home / ".vault-token"
    token_file.write_text(SECRET_TOKEN)
    token_file.chmod(0o600)
    vault_on("https://vault.example.com", home, token=None)
    assert vault_warnings(caplog) == []


def test_the_token_is_stored_masked(home: Path) -> None:
    """Neither vars() nor repr of the provider show the raw token; its holder shows ***,
    has no __dict__, refuses pickling, and copies without revealing it."""
    vault = vault_on("https://vault.example.com", home)
    assert SECRET_TOKEN not in repr(vars(vault))
    assert SECRET_TOKEN not in repr(vault)
    for value in vars(vault).values():
        assert value != SECRET_TOKEN
    holder = vars(vault)["_token"]
    assert repr(holder) == "***" and str(holder) == "***" and f"{holder}" == "***"
    with pytest.raises(TypeError):
        vars(holder)
    with pytest.raises(TypeError):
        pickle.dumps(holder)
    assert SECRET_TOKEN not in repr(vars(copy.copy(vault)))
    assert copy.deepcopy(holder) is holder


def test_a_configuration_error_holds_no_token_in_frame_locals(home: Path) -> None:
    """A ConfigurationError from the constructor: no library frame shows the token given as
    argument, in config or in the environment."""
    with pytest.raises(ConfigurationError) as info:
        HashiCorpVaultProvider(
            url="https://vault.example.com",
            token=SECRET_TOKEN,
            kv_version=3,
            config={"vault_token": SECRET_TOKEN},
            environ={"HOME": str(home), "VAULT_TOKEN": SECRET_TOKEN},
        )
    assert library_locals_holding(info.value, SECRET_TOKEN) == []


# -- 4. the token file -------------------------------------------------------------------

_MANAGER_CHILD = """
import logging, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s")
from simpletuner_secrets import SecretsManager
manager = SecretsManager()
print(",".join(p.name for p in manager.providers))
"""


def child_env(home: Path) -> dict[str, str]:
    return {"HOME": str(home), "VAULT_ADDR": "http://127.0.0.1:9"}


def test_a_fifo_token_file_does_not_block_the_manager(home: Path) -> None:
    """~/.vault-token is a FIFO nobody writes to: SecretsManager() returns at once, the
    Vault provider left out with a warning naming the file."""
    os.mkfifo(home / ".vault-token")
    started = time.monotonic()
    done = run_child(_MANAGER_CHILD, child_env(home))
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < CHILD_TIMEOUT
    assert "vault" not in done.stdout.split(",")
    assert str(home / ".vault-token") in done.stderr and "not a regular file" in done.stderr


def test_a_token_file_linked_to_dev_zero_is_refused(home: Path) -> None:
    """~/.vault-token -> /dev/zero: refused as not a regular file (no MemoryError)."""
    (home / ".vault-token").symlink_to("/dev/zero")
    done = run_child(_MANAGER_CHILD, child_env(home))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "vault" not in done.stdout.split(",")
    assert "not a regular file" in done.stderr


def test_an_oversized_token_file_is_refused(home: Path) -> None:
    """A token file over 64 KiB is refused with ConfigurationError naming it."""
    token_file = home / ".vault-token"
    token_file.write_text("x" * (64 * 1024 + 1))
    token_file.chmod(0o600)
    with pytest.raises(ConfigurationError, match="larger than") as info:
        vault_on("https://vault.example.com", home, token=None)
    assert str(token_file) in str(info.value)


def test_a_token_file_that_is_a_directory_is_refused(home: Path) -> None:
    """A ~/.vault-token that is a directory is a ConfigurationError saying it is not a file."""
    (home / ".vault-token").mkdir()
    with pytest.raises(ConfigurationError, match="not a regular file"):
        vault_on("https://vault.example.com", home, token=None)


def test_a_missing_token_file_is_simply_no_token(home: Path) -> None:
    """No ~/.vault-token at all is no error: the token is just missing from the settings."""
    vault = vault_on("https://vault.example.com", home, token=None)
    assert vault.missing_settings() == ["VAULT_TOKEN"]


# -- 5. bounded threads and sockets, a total deadline ------------------------------------

_TRICKLE_CHILD = """
import asyncio, json, os, sys, threading
from simpletuner_secrets.providers.vault import HashiCorpVaultProvider

DEADLINE = float(os.environ["DEADLINE"])

def sockets():
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count

async def main():
    vault = HashiCorpVaultProvider(url=os.environ["URL"], token="t", path="app",
        kv_version=2, environ={}, timeout=DEADLINE)
    before = (threading.active_count(), sockets())
    outcomes = {}
    for _ in range(40):
        try:
            await asyncio.wait_for(vault.load_document(), 0.1)
            outcome = "value"
        except asyncio.TimeoutError:
            outcome = "timeout"
        except Exception as exc:
            outcome = type(exc).__name__
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    during = (threading.active_count(), sockets())
    await asyncio.sleep(DEADLINE + 1.5)
    after = (threading.active_count(), sockets())
    print(json.dumps({"before": before, "during": during, "after": after,
        "outcomes": outcomes}), flush=True)
    os._exit(0)  # the unfixed code leaves threads that never end

asyncio.run(main())
"""


async def test_cancelled_callers_keep_their_worker_slot_until_the_thread_returns() -> None:
    """With 2 slots, 6 callers cancelled while their calls block: never more than 2 calls
    run at once (a limit handed back on cancellation would let all 6 in), and the slots come
    back once the threads return."""
    slots = WorkerSlots(2)
    release = threading.Event()
    lock = threading.Lock()
    running = peak = 0

    def blocking() -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            release.wait(10)
            return "done"
        finally:
            with lock:
                running -= 1

    for _ in range(6):
        with contextlib.suppress(asyncio.TimeoutError):  # not the builtin one on 3.10
            await asyncio.wait_for(slots.run(blocking), 0.05)
    assert peak == 2
    release.set()
    assert await asyncio.wait_for(slots.run(lambda: "again"), 5) == "again"
    assert peak == 2


def test_a_trickling_vault_keeps_threads_and_sockets_bounded() -> None:
    """40 lookups cut by a 0.1 s caller timeout against a server that trickles one byte
    every 0.5 s: at most the limiter's 4 worker threads (and the deadline watchdog) and 4
    sockets; once the 2 s deadline has passed, every socket is closed."""
    with TrickleServer(interval=0.5) as server:
        done = run_child(_TRICKLE_CHILD, {"URL": server.url, "DEADLINE": "2.0"})
        assert done.returncode == 0, done.stderr[-3000:]
        counts = json.loads(done.stdout)
    (threads0, sockets0), (threads1, sockets1) = counts["before"], counts["during"]
    threads2, sockets2 = counts["after"]
    assert threads1 - threads0 <= 6, f"{threads1 - threads0} more threads after 40 lookups"
    assert sockets1 - sockets0 <= 4, f"{sockets1 - sockets0} more sockets after 40 lookups"
    assert sockets2 <= sockets0, f"{sockets2 - sockets0} sockets left after the deadline"
    assert threads2 - threads0 <= 6
    # Only lookups holding one of the 4 slots reach the server, each slot for one deadline
    # (2 s) at a time, over the ~4 s of lookups: at most 3 rounds of 4 (40 before the fix).
    assert server.accepted <= 12, f"{server.accepted} connections for 40 lookups"


async def test_a_trickling_vault_load_ends_at_its_deadline(home: Path) -> None:
    """With no caller timeout, a load against a trickling server ends with ProviderError at
    the provider's timeout (a total deadline, not a per-receive one), and the connection
    is closed."""
    with TrickleServer(interval=0.3) as server:
        vault = vault_on(server.url, home, kv_version=2, timeout=1.0)
        started = time.monotonic()
        with pytest.raises(ProviderError, match="within 1 s") as info:
            await asyncio.wait_for(vault.load_document(), 8.0)  # the hard timeout
        elapsed = time.monotonic() - started
        # A per-receive timeout would run to the hard timeout (8 s): the bound sits well
        # below that, well above the deadline, so that a busy machine does not fail it.
        assert elapsed < 4.0, f"the load took {elapsed:.2f} s"
        assert await soon(lambda: server.open == 0, 2.0), "the connection is still open"
        await vault.aclose()
    assert "Timeout" in str(info.value) and SECRET_TOKEN not in str(info.value)


async def test_a_trickling_tls_handshake_ends_at_the_deadline(home: Path) -> None:
    """An https address whose TLS handshake trickles: the load's deadline covers the
    handshake too (CPython already bounds a handshake by the socket timeout; this keeps the
    deadline's own answer for it)."""
    with TrickleServer(interval=0.3, handshake=True) as server:
        vault = vault_on(server.url, home, kv_version=2, timeout=1.0)
        started = time.monotonic()
        with pytest.raises(ProviderError, match="within 1 s"):
            await asyncio.wait_for(vault.load_document(), 8.0)  # the hard timeout
        assert time.monotonic() - started < 4.0  # a handshake left unbounded: 8 s
        await vault.aclose()


async def test_aclose_ends_a_load_stuck_on_a_trickling_vault(home: Path) -> None:
    """aclose cuts the connections of this provider's loads in flight: their threads end
    now rather than at the deadline."""
    with TrickleServer(interval=0.3) as server:
        vault = vault_on(server.url, home, kv_version=2, timeout=20.0)
        load = asyncio.create_task(vault.load_document())
        assert await soon(lambda: server.accepted > 0, 5.0)
        started = time.monotonic()
        await vault.aclose()
        with pytest.raises(ProviderError, match="closed"):
            await asyncio.wait_for(load, 10.0)
        assert time.monotonic() - started < 5.0  # the deadline, uncut, is 20 s away
        assert await soon(lambda: server.open == 0, 2.0), "the connection is still open"


# -- 6. documents converted off the loop, and size-limited -------------------------------


def write(server: BaoServer, path: str, data: dict[str, Any]) -> None:
    server.request("POST", f"secret/data/{path}", {"data": data})


async def test_a_large_numeric_value_is_converted_off_the_loop(bao: BaoServer, home: Path) -> None:
    """A million floats in one value (17 MB of JSON): turning it into text (json.dumps) takes
    about 0.5 s of CPU, none of it on the event loop."""
    path = unique("numbers")
    write(bao, path, {KEY: [i + 0.123456789 for i in range(1_000_000)]})
    vault = vault_on(bao.url, home, token=bao.token, path=path, max_document_size=64 << 20)
    # The worker's json calls hold the GIL for about 0.5 s of CPU (seconds on a loaded
    # machine): a wide wall-clock guard; the loop thread's own CPU is what is judged.
    stall, value = await max_gap_during(vault.get(KEY), hang_guard=10.0)
    await vault.aclose()
    assert value is not None and value.startswith("[0.123456789,1.123456789,")
    assert stall < 0.1, f"the event loop stalled {stall * 1000:.0f} ms"


async def test_a_ten_mib_document_is_converted_off_the_loop(bao: BaoServer, home: Path) -> None:
    """A 10 MiB document (100 values of 100 KiB) with max_document_size raised: no stall."""
    path = unique("tenmib")
    write(bao, path, {f"KEY_{i}": f"{i}-" + "v" * 100_000 for i in range(100)})
    vault = vault_on(bao.url, home, token=bao.token, path=path, max_document_size=32 << 20)
    stall, value = await max_gap_during(vault.get("KEY_7"), hang_guard=10.0)
    await vault.aclose()
    assert value is not None and value.startswith("7-vvv")
    assert stall < 0.1, f"the event loop stalled {stall * 1000:.0f} ms"


async def test_a_document_over_max_document_size_is_refused(bao: BaoServer, home: Path) -> None:
    """A 1.5 MB document with the default max_document_size (1 MiB): ProviderError naming
    the limit and the path, no value."""
    path = unique("oversized")
    write(bao, path, {f"KEY_{i}": SECRET_VALUE + "x" * 15_000 for i in range(100)})
    vault = vault_on(bao.url, home, token=bao.token, path=path)
    assert vault.max_document_size == 1 << 20
    with pytest.raises(ProviderError, match="max_document_size") as info:
        await vault.get("KEY_1")
    await vault.aclose()
    assert path in str(info.value) and SECRET_VALUE not in str(info.value)


async def test_an_oversized_answer_without_content_length_is_cut_at_the_limit(home: Path) -> None:
    """A chunked answer (no Content-Length) is read only up to the limit, then refused."""

    class Chunked(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"[" + b"1," * 50_000
            with contextlib.suppress(OSError):
                for _ in range(200):  # 20 MB, unless the client stops reading
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Chunked)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        vault = vault_on(url, home, kv_version=2, max_document_size=64 * 1024)
        with pytest.raises(ProviderError, match="max_document_size"):
            await asyncio.wait_for(vault.get(KEY), 10)
        await vault.aclose()
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("size", [0, -1])
def test_max_document_size_must_be_positive(home: Path, size: int) -> None:
    """A zero or negative max_document_size is refused with a ValueError naming it."""
    with pytest.raises(ValueError, match="max_document_size"):
        vault_on("https://vault.example.com", home, max_document_size=size)


# -- 7. frame locals of errors about malformed documents ---------------------------------

MALFORMED: dict[str, bytes] = {
    # What a broken proxy or server could answer in place of a KV v2 read.
    "data is a list": kv2_body([SECRET_VALUE]),
    "data is text": json.dumps({"data": SECRET_VALUE}).encode(),
    "inner data is text": kv2_body(SECRET_VALUE),
    "not JSON": b'{"data": {"data": {"' + KEY.encode() + b'": "' + SECRET_VALUE.encode() + b'"',
    "a blank key": kv2_body({KEY: SECRET_VALUE, "  ": SECRET_VALUE}),
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_a_malformed_answer_leaves_no_value_in_library_frame_locals(
    home: Path, case: str
) -> None:
    """A malformed answer under on_provider_error="raise": the ProviderError's traceback,
    formatted with capture_locals=True, shows no value in any library frame."""
    with StubServer(fixed(200, MALFORMED[case])) as stub:
        vault = vault_on(stub.url, home, kv_version=2)
        async with SecretsManager([vault], on_provider_error="raise") as manager:
            with pytest.raises(ProviderError) as info:
                await asyncio.wait_for(manager.get(KEY), 10)
    assert SECRET_VALUE not in str(info.value)
    assert library_locals_holding(info.value, SECRET_VALUE, SECRET_TOKEN) == []


async def test_a_blank_key_on_a_real_server_leaves_no_value_in_frame_locals(
    bao: BaoServer, home: Path
) -> None:
    """The same with a document OpenBao really stores: a blank key beside a value."""
    path = unique("blank-key")
    write(bao, path, {KEY: SECRET_VALUE, " ": SECRET_VALUE})
    vault = vault_on(bao.url, home, token=bao.token, path=path)
    async with SecretsManager([vault], on_provider_error="raise") as manager:
        with pytest.raises(ProviderError, match="invalid key") as info:
            await manager.get(KEY)
    assert library_locals_holding(info.value, SECRET_VALUE, bao.token) == []
    with pytest.raises(ProviderError) as direct:
        await vault.load_document()
    await vault.aclose()
    assert library_locals_holding(direct.value, SECRET_VALUE, bao.token) == []
