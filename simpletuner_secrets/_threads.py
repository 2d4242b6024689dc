"""Thread limiters per event loop, for the providers' blocking work (file I/O, hvac).

anyio's CapacityLimiter wakes its waiters through asyncio events of one loop, so a limiter
shared by the app's loop and the sync facade's loop could wake a waiter on the wrong thread.
Each kind of work therefore gets one limiter per loop, and its own, so that one slow kind (a
dead Vault, a writer waiting on another process's lock) cannot starve the others or anyio's
default pool.
"""

from __future__ import annotations

import asyncio
import threading
import weakref

import anyio

from . import _fork

__all__ = ["LoopLimiters"]


class LoopLimiters:
    """One `anyio.CapacityLimiter` of ``tokens`` threads per event loop, made on first use."""

    def __init__(self, tokens: int) -> None:
        self._tokens = tokens
        self._by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, anyio.CapacityLimiter
        ] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        _fork.track(self)

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock and no limiter of the parent's loops."""
        self._lock = threading.Lock()
        self._by_loop = weakref.WeakKeyDictionary()

    def current(self) -> anyio.CapacityLimiter:
        """The limiter of the running event loop."""
        loop = asyncio.get_running_loop()
        limiter = self._by_loop.get(loop)
        if limiter is None:
            with self._lock:
                limiter = self._by_loop.get(loop)
                if limiter is None:
                    limiter = anyio.CapacityLimiter(self._tokens)
                    self._by_loop[loop] = limiter
        return limiter
