"""Worker threads for the providers' blocking work (file I/O, hvac, botocore), with limits per
event loop.

`run_sync` runs a blocking call in a worker thread; a cancelled caller stops waiting at once,
while the call's thread keeps its limiter token until it returns. Worker threads are daemon threads, reused while busy and gone after `IDLE_S` idle: a call
that never returns does not hold the interpreter's exit, and a process that reads its
secrets once does not pay for a thread pool or a general async-compatibility layer (an
import of anyio's asyncio back-end cost a fresh process about 35 ms here).

A limit is a `Limiter` per event loop (`LoopLimiters`): it wakes its waiters through futures
of the loop it belongs to, so the app's loop and the sync facade's loop each get their own. Each kind of work gets its own limit, so that one slow kind (a dead
Vault, a writer waiting on another process's lock) cannot starve the others.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from . import _fork

__all__ = ["IDLE_S", "Limiter", "LoopLimiters", "run_sync"]

T = TypeVar("T")

#: Seconds an idle worker thread waits for work before it ends.
IDLE_S = 10.0
#: Worker threads per event loop for calls given no limit of their own.
DEFAULT_TOKENS = 40


class Limiter:
    """At most ``tokens`` holders at once, for the tasks of one event loop; waiters served in
    turn.

    Unlike `asyncio.Semaphore`, it keeps no reference to its loop once nobody waits: a
    `LoopLimiters` entry, keyed weakly by its loop, then goes with the loop.
    """

    __slots__ = ("_free", "_waiters")

    def __init__(self, tokens: int) -> None:
        self._free = tokens
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> None:
        """Take a token, waiting for one if none is free."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a token just as the wait was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Hand a token back: to the longest waiter, else to the pool. On the loop's thread."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


class LoopLimiters:
    """One `Limiter` of ``tokens`` threads per event loop, made on first use."""

    def __init__(self, tokens: int) -> None:
        self._tokens = tokens
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Limiter]
        self._by_loop = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        _fork.track(self)

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock and no limiter of the parent's loops."""
        self._lock = threading.Lock()
        self._by_loop = weakref.WeakKeyDictionary()

    def current(self) -> Limiter:
        """The limiter of the running event loop."""
        loop = asyncio.get_running_loop()
        limiter = self._by_loop.get(loop)
        if limiter is None:
            with self._lock:
                limiter = self._by_loop.get(loop)
                if limiter is None:
                    limiter = Limiter(self._tokens)
                    self._by_loop[loop] = limiter
        return limiter


_DEFAULT = LoopLimiters(DEFAULT_TOKENS)


class _Worker:
    """One daemon thread of the pool, handed one job at a time."""

    __slots__ = ("job", "wake")

    def __init__(self) -> None:
        self.job: Callable[[], None] | None = None
        self.wake = threading.Event()


class _Pool:
    """Daemon worker threads: a job goes to an idle worker (the one idle last), else to a new
    thread; a worker idle for `IDLE_S` ends. No job ever waits behind another."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        _fork.track(self)

    def reset_after_fork(self) -> None:
        """In a forked child: the parent's threads are not here."""
        self._lock = threading.Lock()
        self._idle = []

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job()`` in a worker thread (it must not raise)."""
        with self._lock:
            worker = self._idle.pop() if self._idle else None
        if worker is not None:
            worker.job = job
            worker.wake.set()
            return
        worker = _Worker()
        worker.job = job
        threading.Thread(target=self._serve, args=(worker,), name=self._name, daemon=True).start()

    def _serve(self, worker: _Worker) -> None:
        while True:
            job, worker.job = worker.job, None
            assert job is not None
            job()
            del job
            worker.wake.clear()
            with self._lock:
                self._idle.append(worker)
            if worker.wake.wait(IDLE_S):
                continue
            with self._lock:
                try:
                    self._idle.remove(worker)
                except ValueError:
                    pass  # taken just now: its job is on the way
                else:
                    return
            worker.wake.wait()


_POOL = _Pool("simpletuner-secrets worker")


def _start(
    loop: asyncio.AbstractEventLoop, func: Callable[[], T], name: str | None
) -> asyncio.Future[T]:
    """Start ``func()`` in a worker thread (or a new daemon thread named ``name``), in a copy
    of the caller's context; a future of this loop settles with its outcome."""
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # a detached caller left meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def job() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = context.run(func)
        except BaseException as exc:  # handed to the caller, whatever it is
            error = exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:
            pass  # the loop is closed: nobody waits
        del result, error

    if name is None:
        _POOL.submit(job)
    else:
        threading.Thread(target=job, name=name, daemon=True).start()
    return future


class _Slot:
    """One token of a limiter, handed back exactly once: by the caller when the thread never
    ran or already returned, else by the thread as it returns."""

    __slots__ = ("_left", "_limiter", "_lock", "_loop", "_released", "_running")

    def __init__(self, limiter: Limiter, loop: asyncio.AbstractEventLoop) -> None:
        self._limiter = limiter
        self._loop = loop
        self._lock = threading.Lock()
        self._running = False
        self._left = False
        self._released = False

    def run(self, func: Callable[[], T]) -> T:
        """Run ``func`` in the worker thread, unless the caller has already left."""
        with self._lock:
            if self._left:
                raise RuntimeError("abandoned before it started")  # nobody awaits this
            self._running = True
        try:
            return func()
        finally:
            with self._lock:
                self._running = False
                hand_back = self._left and not self._released
                self._released = self._released or hand_back
            if hand_back:
                try:
                    self._loop.call_soon_threadsafe(self._limiter.release)
                except RuntimeError:
                    pass  # the loop is closed, and its limiter with it

    def leave(self) -> None:
        """The caller stops waiting (result, error or cancellation); runs on the loop."""
        with self._lock:
            self._left = True
            hand_back = not self._running and not self._released
            self._released = self._released or hand_back
        if hand_back:
            self._limiter.release()


async def run_sync(
    func: Callable[..., T],
    *args: Any,
    limiter: Limiter | None = None,
    name: str | None = None,
) -> T:
    """``func(*args)`` in a worker thread, at most ``limiter``'s tokens at once (by default
    `DEFAULT_TOKENS` per event loop).

    A cancelled caller (``provider_timeout``, ``wait_for``, a shutdown) stops waiting at once
    and the call's outcome is dropped; its token stays taken until the thread really returns,
    so that calls that never return cannot pile up threads (and their sockets) without bound.
    A call that must not act once its caller has gone checks a flag of its own (see the file
    provider's writes).

    Args:
        func: The blocking call.
        args: Its positional arguments.
        limiter: A `LoopLimiters.current` of the running loop.
        name: Run in a new daemon thread of this name instead of a pooled one: a one-off call
            (a first load), named in thread dumps.
    """
    if limiter is None:
        limiter = _DEFAULT.current()
    loop = asyncio.get_running_loop()
    await limiter.acquire()
    slot = _Slot(limiter, loop)
    try:
        call = functools.partial(func, *args) if args else func
        future = _start(loop, functools.partial(slot.run, call), name)
        try:
            return await future
        finally:
            future.cancel()  # a no-op once settled; else the thread's late outcome is dropped
    finally:
        slot.leave()
