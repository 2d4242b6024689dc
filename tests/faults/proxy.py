"""A TCP fault proxy: forwards a loopback port to a back-end and breaks the traffic on demand.

It runs its own event loop in a background thread, so sync tests, async tests and server
fixtures can all drive it; every switch is thread-safe and applies to live connections at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["MODES", "FaultProxy", "Mode"]

Mode = Literal["pass", "latency", "stall", "reset", "blackhole"]
MODES: tuple[Mode, ...] = ("pass", "latency", "stall", "reset", "blackhole")

_CHUNK = 65_536
_EOF = b""


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close ``writer``'s socket with a TCP RST (SO_LINGER 0), not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass(eq=False)
class _Link:
    """One accepted client connection and, once dialled, its upstream connection."""

    client_reader: asyncio.StreamReader
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    # Bytes were dropped in blackhole mode: the stream is broken, nothing more gets through.
    dead: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    open_directions: int = 2


class FaultProxy:
    """Listen on ``127.0.0.1:<free port>`` and forward every connection to ``upstream``.

    Modes (switch with `set_mode` or the shortcuts, at any time, from any thread):

    - ``pass``: bytes flow both ways.
    - ``latency``: every chunk is delivered ``latency_ms`` after it arrived, in each direction
      (a request/response round trip gains twice that); order is kept.
    - ``stall``: connections are accepted and read, nothing is delivered either way. The bytes
      are held and delivered once the mode is ``pass`` or ``latency`` again (a hung back-end
      that wakes up).
    - ``blackhole``: connections are accepted, what they send is dropped, nothing ever comes
      back and nothing is closed (a peer behind a firewall that drops packets). A connection
      that lost bytes stays dead after the mode changes; new connections work again.
    - ``reset``: every live connection and every new one is closed with a TCP RST.

    The upstream is dialled when a connection's first bytes are due for delivery (the client
    speaks first, as in HTTP); when it refuses, the client connection is reset. `stop` (or
    leaving the ``with`` block) closes the listener and every socket.

    Args:
        upstream_host: The back-end's host (loopback).
        upstream_port: The back-end's port.
        mode: The initial mode.
        latency_ms: The delay added in each direction in ``latency`` mode.

    Attributes:
        connections: Client connections accepted so far.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        mode: Mode = "pass",
        latency_ms: float = 0.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self._upstream = (upstream_host, int(upstream_port))
        self._mode: Mode = mode
        self._latency_s = latency_ms / 1000.0
        self.connections = 0
        self._links: set[_Link] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._changed: asyncio.Event | None = None
        self.port = 0

    # -- lifetime ----------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Start the proxy's loop thread and listener; return the proxy."""
        if self._loop is not None:
            raise RuntimeError("the proxy is already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name=f"fault-proxy->{self._upstream[1]}", daemon=True
        )
        self._thread.start()
        try:
            self._call(self._listen())
        except BaseException:
            self.stop()
            raise
        return self

    async def _listen(self) -> None:
        self._changed = asyncio.Event()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        """Close the listener and every connection, then end the loop thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._call(self._shutdown())
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()
        self._loop = None
        self._thread = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        links = list(self._links)
        tasks = [t for link in links for t in link.tasks]
        for link in links:
            self._close_link(link, rst=True)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        # Handlers still finishing (they only wait for `done`): let them return.
        for _ in range(3):
            await asyncio.sleep(0)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        loop = self._loop
        if loop is None:
            coro.close()
            raise RuntimeError("the proxy is not running")
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        future.result(10)

    # -- state -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the address clients use instead of the back-end's."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def mode(self) -> Mode:
        """The current mode."""
        return self._mode

    @property
    def latency_ms(self) -> float:
        """The delay added in each direction in ``latency`` mode."""
        return self._latency_s * 1000.0

    @property
    def active(self) -> int:
        """Client connections open now."""
        return len(self._links)

    def set_mode(self, mode: Mode, latency_ms: float | None = None) -> None:
        """Switch to ``mode`` (and set ``latency_ms`` if given); effective when this returns."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self._call(self._apply(mode, latency_ms))

    async def _apply(self, mode: Mode, latency_ms: float | None) -> None:
        if latency_ms is not None:
            self._latency_s = latency_ms / 1000.0
        self._mode = mode
        if mode == "reset":
            for link in list(self._links):
                self._close_link(link, rst=True)
        self._wake()

    def passthrough(self) -> None:
        """Let bytes flow (and deliver what a stall held)."""
        self.set_mode("pass")

    def latency(self, ms: float) -> None:
        """Add ``ms`` milliseconds in each direction."""
        self.set_mode("latency", ms)

    def stall(self) -> None:
        """Accept and read, deliver nothing until the mode changes."""
        self.set_mode("stall")

    def blackhole(self) -> None:
        """Accept and drop everything; never answer, never close."""
        self.set_mode("blackhole")

    def reset(self) -> None:
        """Reset every live connection and every new one."""
        self.set_mode("reset")

    def set_upstream(self, host: str, port: int, *, reset_live: bool = True) -> None:
        """Forward new connections to ``host:port``; reset the live ones unless told not to."""
        self._call(self._retarget((host, int(port)), reset_live))

    async def _retarget(self, upstream: tuple[str, int], reset_live: bool) -> None:
        self._upstream = upstream
        if reset_live:
            for link in list(self._links):
                self._close_link(link, rst=True)

    def _wake(self) -> None:
        """Tell every waiting delivery that the mode changed."""
        changed = self._changed
        self._changed = asyncio.Event()
        if changed is not None:
            changed.set()

    # -- connections -------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        link = _Link(reader, writer)
        if self._mode == "reset":
            _rst(writer)
            return
        if self._mode == "blackhole":
            link.dead = True
        self._links.add(link)
        try:
            queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
            self._spawn(link, self._read(link, reader, queue))
            self._spawn(link, self._deliver(link, queue, upstream_bound=True))
            await link.done.wait()
        finally:
            self._close_link(link, rst=False)

    def _spawn(self, link: _Link, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        link.tasks.add(task)
        task.add_done_callback(link.tasks.discard)

    async def _read(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        queue: asyncio.Queue[tuple[float, bytes]],
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                chunk = await reader.read(_CHUNK)
                queue.put_nowait((loop.time(), chunk))
                if not chunk:
                    return
        except (ConnectionError, OSError):
            self._close_link(link, rst=True)

    async def _deliver(
        self, link: _Link, queue: asyncio.Queue[tuple[float, bytes]], *, upstream_bound: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                arrived, chunk = await queue.get()
                deliver = await self._due(link, arrived, loop)
                target = link.upstream if upstream_bound else link.client
                if chunk == _EOF:
                    if not deliver or target is None:
                        # Nobody is left to tell (dead stream, or an upstream never dialled).
                        self._close_link(link, rst=False)
                        return
                    if target.can_write_eof() and not target.transport.is_closing():
                        target.write_eof()
                    self._finish_direction(link)
                    return
                if not deliver:
                    continue  # dropped
                if target is None:
                    target = await self._dial(link)
                    if target is None:
                        return
                target.write(chunk)
                await target.drain()
        except (ConnectionError, OSError):
            self._close_link(link, rst=True)

    async def _due(self, link: _Link, arrived: float, loop: asyncio.AbstractEventLoop) -> bool:
        """Wait until a chunk may go out; False when it is to be dropped."""
        while True:
            if link.dead:
                return False
            mode = self._mode
            changed = self._changed
            assert changed is not None
            if mode == "blackhole":
                link.dead = True
                return False
            if mode in ("stall", "reset"):
                await changed.wait()
                continue
            if mode == "latency":
                wait = arrived + self._latency_s - loop.time()
                if wait > 0:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(changed.wait(), wait)
                    continue
            return True

    async def _dial(self, link: _Link) -> asyncio.StreamWriter | None:
        try:
            reader, writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            self._close_link(link, rst=True)  # the back-end refuses: so does the proxy
            return None
        if link.done.is_set():
            writer.transport.abort()
            return None
        link.upstream = writer
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self._spawn(link, self._read(link, reader, queue))
        self._spawn(link, self._deliver(link, queue, upstream_bound=False))
        return writer

    def _finish_direction(self, link: _Link) -> None:
        link.open_directions -= 1
        if link.open_directions <= 0:
            self._close_link(link, rst=False)

    def _close_link(self, link: _Link, *, rst: bool) -> None:
        if link not in self._links and link.done.is_set():
            return
        self._links.discard(link)
        link.done.set()
        for writer in (link.client, link.upstream):
            if writer is None:
                continue
            if rst or writer.transport.is_closing():
                _rst(writer)
            else:
                writer.close()
        current = asyncio.current_task()
        for task in list(link.tasks):
            if task is not current:
                task.cancel()
