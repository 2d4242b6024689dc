"""A small round-robin TCP front for the HA tests: one loopback port in front of a cluster's nodes.

Each accepted connection is dialled to the next node in turn; a node that refuses is skipped
for the next one, as a load balancer retries another upstream. The front runs its own event
loop in a background thread, so the provider's worker threads and the test's loop both reach
it; it records which upstreams it dialled, so a test can tell where the traffic went.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter

__all__ = ["RoundRobinFront"]

_CHUNK = 65_536


class RoundRobinFront:
    """Listen on ``127.0.0.1:<free port>`` and spread connections over ``upstream_ports``.

    Args:
        upstream_ports: The nodes' ports on 127.0.0.1, in the order they take turns.

    Attributes:
        dialled: Connections forwarded per upstream port.
        refused: Dials refused per upstream port (the node was down; the next one was tried).
    """

    def __init__(self, upstream_ports: list[int]) -> None:
        if not upstream_ports:
            raise ValueError("a front needs at least one upstream")
        self._upstreams = list(upstream_ports)
        self._next = 0
        self.dialled: Counter[int] = Counter()
        self.refused: Counter[int] = Counter()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RoundRobinFront:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="rr-front", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), loop).result(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        self._loop = self._thread = None

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()
        for _ in range(3):
            await asyncio.sleep(0)

    async def _dial(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(len(self._upstreams)):
            port = self._upstreams[self._next % len(self._upstreams)]
            self._next += 1
            try:
                streams = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                self.refused[port] += 1
                continue
            self.dialled[port] += 1
            return streams
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        upstream = await self._dial()
        if upstream is None:  # every node down: the client sees the connection close
            self._writers.discard(writer)
            writer.transport.abort()
            return
        up_reader, up_writer = upstream
        self._writers.add(up_writer)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for end in (writer, up_writer):
                self._writers.discard(end)
                end.transport.abort()

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        # Either side ending (a node killed, a client gone) ends both: abort the other end,
        # so the client's pooled connection is seen as dead rather than half open.
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while chunk := await source.read(_CHUNK):
                sink.write(chunk)
                await sink.drain()
        sink.transport.abort()
