"""The fault proxy itself: each mode does what the fault tests rely on, quickly."""

from __future__ import annotations

import asyncio
import os
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.faults.proxy import FaultProxy

SHORT = 0.3  # seconds a client waits to conclude that nothing comes back


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        tag: bytes = self.server.tag  # type: ignore[attr-defined]
        while True:
            try:
                data = self.request.recv(65536)
            except OSError:
                return
            if not data:
                return
            self.request.sendall(tag + data)


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, tag: bytes) -> None:
        super().__init__(("127.0.0.1", 0), _Echo)
        self.tag = tag
        self.port = int(self.server_address[1])


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    """A loopback echo server that prefixes every answer with ``A:``."""
    yield from _serve(b"A:")


@pytest.fixture
def echo_b() -> Iterator[EchoServer]:
    """A second echo server, prefixing ``B:``."""
    yield from _serve(b"B:")


def _serve(tag: bytes) -> Iterator[EchoServer]:
    server = EchoServer(tag)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    """A proxy in front of ``echo``, stopped after the test."""
    with FaultProxy("127.0.0.1", echo.port) as running:
        yield running


def connect(proxy: FaultProxy, timeout: float = 2.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def roundtrip(sock: socket.socket, data: bytes = b"ping") -> bytes:
    sock.sendall(data)
    return sock.recv(65536)


def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_pass_forwards_both_ways_and_counts_connections(proxy: FaultProxy) -> None:
    """pass: bytes reach the upstream and its answer comes back; connections are counted."""
    assert proxy.url == f"http://127.0.0.1:{proxy.port}"
    with connect(proxy) as one, connect(proxy) as two:
        assert roundtrip(one) == b"A:ping"
        assert roundtrip(two, b"pong") == b"A:pong"
        assert proxy.connections == 2
        assert proxy.active == 2
    wait_until(lambda: proxy.active == 0)


def test_latency_adds_the_delay_in_each_direction(proxy: FaultProxy) -> None:
    """latency: a round trip takes twice the delay (not more), order kept, chunks not serialized."""
    proxy.latency(150)
    with connect(proxy) as sock:
        started = time.monotonic()
        assert roundtrip(sock) == b"A:ping"
        elapsed = time.monotonic() - started
        # The bounds sit below the wrong behaviours, not at the expected time: twice the
        # delay per direction would be 0.6 s (a busy machine adds tens of ms, not 300).
        assert 0.3 <= elapsed < 0.6, elapsed
        # Three chunks sent 50 ms apart: each comes back ~300 ms after it was sent, in order.
        started = time.monotonic()
        for part in (b"1", b"2", b"3"):
            sock.sendall(part)
            time.sleep(0.05)
        got = b""
        while len(got) < 9:
            got += sock.recv(65536)
        assert got == b"A:1A:2A:3"
        assert time.monotonic() - started < 0.1 + 0.3 + 0.5  # serialized: 0.9 s at least
    proxy.passthrough()
    with connect(proxy) as sock:
        started = time.monotonic()
        assert roundtrip(sock) == b"A:ping"
        assert time.monotonic() - started < 0.25  # the latency left on: 0.3 s at least


def test_stall_holds_the_bytes_until_the_mode_changes(proxy: FaultProxy) -> None:
    """stall: accepted and read, no answer; back to pass, the held request is answered."""
    with connect(proxy) as live:
        assert roundtrip(live) == b"A:ping"
        proxy.stall()
        live.settimeout(SHORT)
        live.sendall(b"held")
        with pytest.raises(TimeoutError):
            live.recv(65536)
        with connect(proxy, SHORT) as new:
            new.sendall(b"new")
            with pytest.raises(TimeoutError):
                new.recv(65536)
            proxy.passthrough()
            new.settimeout(2)
            assert new.recv(65536) == b"A:new"
        live.settimeout(2)
        assert live.recv(65536) == b"A:held"


def test_blackhole_drops_everything_and_the_stream_stays_dead(proxy: FaultProxy) -> None:
    """blackhole: connect succeeds, nothing comes back, nothing closes; new connections recover."""
    with connect(proxy) as live:
        assert roundtrip(live) == b"A:ping"
        proxy.blackhole()
        live.settimeout(SHORT)
        live.sendall(b"lost")
        with pytest.raises(TimeoutError):
            live.recv(65536)
        with connect(proxy, SHORT) as new:
            new.sendall(b"lost too")
            with pytest.raises(TimeoutError):
                new.recv(65536)
        proxy.passthrough()
        live.sendall(b"again")
        with pytest.raises(TimeoutError):
            live.recv(65536)  # a stream that lost bytes stays broken
    with connect(proxy) as fresh:
        assert roundtrip(fresh) == b"A:ping"
    wait_until(lambda: proxy.active == 0)


def test_reset_sends_rst_to_live_and_new_connections(proxy: FaultProxy) -> None:
    """reset: a live connection is reset at once; a new one is accepted, then reset."""
    with connect(proxy) as live:
        assert roundtrip(live) == b"A:ping"
        proxy.reset()
        with pytest.raises(ConnectionResetError):
            live.recv(65536)
    # Accepted then reset: the RST may already be there when connect() returns.
    with pytest.raises(ConnectionResetError), connect(proxy) as new:
        roundtrip(new)
    proxy.passthrough()
    with connect(proxy) as sock:
        assert roundtrip(sock) == b"A:ping"
    assert proxy.active <= 1


def test_refused_upstream_is_a_reset_for_the_client() -> None:
    """An upstream that refuses: the client's connection is reset, quickly."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with FaultProxy("127.0.0.1", closed_port) as proxy, connect(proxy) as sock:
        started = time.monotonic()
        with pytest.raises(ConnectionResetError):
            roundtrip(sock)
        # At once, not at the socket's 2 s timeout (a proxy that left the client hanging).
        assert time.monotonic() - started < 1.5


def test_set_upstream_switches_new_connections_and_resets_live_ones(
    proxy: FaultProxy, echo_b: EchoServer
) -> None:
    """set_upstream: live connections are reset, new ones reach the new back-end."""
    with connect(proxy) as live:
        assert roundtrip(live) == b"A:ping"
        proxy.set_upstream("127.0.0.1", echo_b.port)
        with pytest.raises(ConnectionResetError):
            live.recv(65536)
    with connect(proxy) as sock:
        assert roundtrip(sock) == b"B:ping"


def test_stop_closes_every_socket_and_the_thread(echo: EchoServer) -> None:
    """stop: the listener and every connection are closed, the loop thread ends, no fd is left."""
    fds_before = fd_count()
    proxy = FaultProxy("127.0.0.1", echo.port).start()
    clients = [connect(proxy) for _ in range(3)]
    assert roundtrip(clients[0]) == b"A:ping"
    proxy.stall()
    clients[1].sendall(b"held")
    proxy.stop()
    proxy.stop()  # idempotent
    for client in clients:
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            roundtrip(client)
        client.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
    wait_until(lambda: fd_count() <= fds_before)
    assert not [t for t in threading.enumerate() if t.name.startswith("fault-proxy")]


async def test_works_from_inside_a_running_event_loop(proxy: FaultProxy) -> None:
    """The proxy has its own loop: an async test drives it and talks through it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        proxy.latency(100)
        started = time.monotonic()
        writer.write(b"ping")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(100), 2) == b"A:ping"
        assert time.monotonic() - started >= 0.2
    finally:
        writer.close()
        await writer.wait_closed()


def test_unknown_mode_is_refused(proxy: FaultProxy) -> None:
    """A typo in a mode fails loudly rather than passing traffic."""
    with pytest.raises(ValueError, match="unknown mode"):
        proxy.set_mode("slow")  # type: ignore[arg-type]
