"""One event loop running forever in a daemon thread, for blocking callers to submit work to.

It imports nothing of this package: the sync facade owns one for its lifetime.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from concurrent.futures import Future
from typing import TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")


class LoopThread:
    """An event loop with an explicit lifetime: started by the constructor, ended by `stop`.

    A daemon thread, unlike a thread pool worker, never holds up interpreter exit when a
    script forgets to close its owner. Clients, locks and futures bound to this loop live as
    long as it does. Work is refused from the loop's own thread: waiting there for a result
    would block the very loop that has to produce it.
    """

    def __init__(self, name: str = "simpletuner-secrets-sync") -> None:
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()  # set once the loop runs
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()

    @property
    def thread(self) -> threading.Thread:
        """The thread running the loop."""
        return self._thread

    def in_own_thread(self) -> bool:
        """Whether the caller runs on this loop's thread."""
        return threading.current_thread() is self._thread

    def submit(self, awaitable: Awaitable[T]) -> Future[T]:
        """Run ``awaitable`` on the loop; its outcome arrives through the returned future.

        Raises:
            RuntimeError: Called from the loop's own thread, or the loop is closed.
        """
        if self.in_own_thread():
            raise RuntimeError("LoopThread.submit called from the loop's own thread")
        return asyncio.run_coroutine_threadsafe(_as_coroutine(awaitable), self.loop)

    def alive(self) -> bool:
        """Whether the loop still runs, or is about to (and so will run what was submitted).

        A thread slow to start (a busy machine) is not yet running its loop: that is alive.
        """
        if not self._thread.is_alive():
            return False
        return not self._started.is_set() or self.loop.is_running()

    def stop(self, drain_timeout: float = 10.0) -> None:
        """Cancel what still runs on the loop, stop it, join the thread and close the loop.

        From the loop's own thread nothing happens: the loop cannot wait for itself, and its
        owner stops it once the call running there has returned.
        """
        if self.loop.is_closed():
            return
        if not self._thread.is_alive():
            self.loop.close()  # its thread is gone: nothing would run a drain (no 10 s wait)
            return
        if self.in_own_thread():
            return

        async def drain() -> None:
            current = asyncio.current_task()
            pending = [t for t in asyncio.all_tasks() if t is not current]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        try:
            asyncio.run_coroutine_threadsafe(drain(), self.loop).result(timeout=drain_timeout)
        except Exception:
            pass  # best effort: the loop is going away either way
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=drain_timeout)
        if not self._thread.is_alive():
            self.loop.close()


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable
