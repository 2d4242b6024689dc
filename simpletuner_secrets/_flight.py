"""Single-flight: one in-flight load per key and everyone waiting for it, across tasks,
threads and event loops.

`Load` is one factory call and its waiters; `SingleFlight` is the load side of a cache (look
up or join or lead, run the factory, hand every waiter the outcome). Storage is the cache's:
`SingleFlight` declares the few attributes it reads and the `_store` it calls.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from contextvars import ContextVar
from typing import Any, Generic, TypeVar, cast

from .errors import SecretsError

__all__ = [
    "Abandoned",
    "Load",
    "SingleFlight",
    "avoided_loops",
    "being_cancelled",
    "blocked_loops",
    "checked_ttl",
    "require_asyncio",
    "running_loop",
    "start_task",
]

T = TypeVar("T")

_MISSING: Any = object()

#: How often a waiter on another event loop (or thread) looks whether the loading loop died.
DEAD_LOOP_POLL_S = 0.5

#: Event loops that are blocked waiting for the current call (the sync facade sets this when it
#: is called from inside a running loop). Joining a load led by such a loop would deadlock, so
#: loads led there are not joined: the caller loads on its own.
blocked_loops: ContextVar[frozenset[asyncio.AbstractEventLoop]] = ContextVar(
    "simpletuner_secrets_blocked_loops", default=frozenset()
)


class Abandoned(Exception):
    """A load ended without a result (its event loop shut down): waiters load again."""


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop, or None outside one."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def require_asyncio() -> None:
    """Refuse, with one clear error, an async call made outside asyncio (trio, curio).

    The resolver, the cache's single-flight and the AWS client are asyncio code; under trio
    (through anyio, say) they would half-work. Trio code can use the sync facade from a
    worker thread.
    """
    if running_loop() is None:
        raise SecretsError(
            "SecretsManager's async methods run on asyncio only (this is not an asyncio "
            "event loop: trio?); from trio, call the sync facade in a thread: "
            "await trio.to_thread.run_sync(manager.sync.get, key)"
        )


if sys.version_info >= (3, 11):

    def start_task(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]
    ) -> asyncio.Task[T]:
        """``loop.create_task(coro)``: a task whose cancellation `being_cancelled` can tell."""
        return loop.create_task(coro)

else:  # pragma: no cover - Python 3.10

    class _TrackedTask(asyncio.Task):  # type: ignore[type-arg]
        """A task that remembers being asked to cancel: 3.10 has no ``Task.cancelling()``."""

        cancel_requested = False

        def cancel(self, msg: Any = None) -> bool:
            self.cancel_requested = True
            return super().cancel(msg)

    def start_task(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]
    ) -> asyncio.Task[T]:
        """``loop.create_task(coro)``: a task whose cancellation `being_cancelled` can tell."""
        return _TrackedTask(coro, loop=loop)


def being_cancelled() -> bool:
    """Whether the running task was asked to cancel, rather than ending in a CancelledError it
    merely awaited (a future someone else cancelled).

    Python 3.11+ tells with ``Task.cancelling()``. On 3.10 only tasks made by `start_task` can
    tell (the cache's loads, the resolver's lookups); in any other task every CancelledError
    counts as a cancellation.
    """
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    if cancelling is not None:
        return bool(cancelling())
    requested = getattr(task, "cancel_requested", None)
    return requested is None or bool(requested)


def avoided_loops(sync_caller: bool) -> frozenset[asyncio.AbstractEventLoop]:
    """The loops whose loads this caller must not join: the blocked-loops rule.

    A sync caller blocks its own thread's running loop (if any) while it waits, so a load led
    there could never finish; so does every loop in `blocked_loops`.
    """
    avoid = blocked_loops.get()
    if sync_caller:
        here = running_loop()
        if here is not None:
            avoid = avoid | {here}
    return avoid


def checked_ttl(ttl: float | None, default: float) -> float:
    """``ttl`` in seconds, ``default`` when None.

    Raises:
        ValueError: ``ttl`` is negative.
    """
    if ttl is None:
        return default
    if ttl < 0:
        raise ValueError(f"ttl must be >= 0, got {ttl!r}")
    return float(ttl)


def _resolve(fut: asyncio.Future[Any], ok: bool, payload: Any) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(payload)
    else:
        fut.set_exception(payload)


class Load:
    """One in-flight factory call and everyone waiting for it.

    The leader runs the factory (in its own task for async loads, inline for sync ones); each
    async waiter owns a future on its own loop, each sync waiter blocks on `event`. Cancelling a
    waiter cancels only its own future.
    """

    __slots__ = ("done", "event", "loop", "ok", "payload", "task", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        # The loop the factory runs on; None for a load run inline by a thread (get_or_set).
        self.loop = loop
        self.waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = []
        self.event: threading.Event | None = None
        self.done = False
        self.ok = False
        self.payload: Any = None
        # asyncio keeps only weak references to tasks: hold ours until it is done.
        self.task: asyncio.Task[None] | None = None

    def joinable(
        self, loop: asyncio.AbstractEventLoop | None, avoid: frozenset[asyncio.AbstractEventLoop]
    ) -> bool:
        """Whether a caller on ``loop`` may wait for this load instead of leading its own."""
        if self.loop in avoid:
            return False
        return self.loop is loop or not self.is_dead()

    def add_waiter(
        self, loop: asyncio.AbstractEventLoop | None, fut: asyncio.Future[Any] | None
    ) -> None:
        """Register an async waiter's future, or make sure a sync waiter has an event."""
        if fut is not None:
            assert loop is not None
            self.waiters.append((loop, fut))
        elif self.event is None:
            self.event = threading.Event()

    def finish(self, ok: bool, payload: Any) -> None:
        """Record the outcome and deliver it to every waiter. Called once, under no lock."""
        self.done, self.ok, self.payload = True, ok, payload
        here = running_loop()
        for loop, fut in self.waiters:
            if loop is here:
                _resolve(fut, ok, payload)
            else:
                try:
                    loop.call_soon_threadsafe(_resolve, fut, ok, payload)
                except RuntimeError:
                    pass  # that waiter's loop is closed: nobody is left to tell
        self.waiters = []
        if self.event is not None:
            self.event.set()

    def abandon(self) -> None:
        """End the load without a result: every waiter loads again."""
        self.finish(False, Abandoned())

    def is_dead(self) -> bool:
        """Whether the loop running this load is closed or stopped, so it cannot finish now.

        A loop stopped between two ``run_until_complete`` calls may run again one day, but a
        waiter elsewhere cannot wait for that: it loads on its own.
        """
        loop = self.loop
        return loop is not None and not self.done and (loop.is_closed() or not loop.is_running())

    def wait_sync(self) -> Any:
        """Block until the load finishes; its result, or its exception raised.

        Raises:
            Abandoned: The load ended without a result, or its loop died.
        """
        event = self.event
        assert event is not None
        while not event.wait(DEAD_LOOP_POLL_S):
            if self.is_dead():
                raise Abandoned()
        if self.ok:
            return self.payload
        raise self.payload

    async def wait_async(self, fut: asyncio.Future[Any], loop: asyncio.AbstractEventLoop) -> Any:
        """Await this waiter's future ``fut`` (on ``loop``); the load's result.

        Raises:
            Abandoned: The load ended without a result, or its loop died.
        """
        try:
            if self.loop is loop:
                return await fut
            # Led elsewhere: if that loop dies with the load pending, nobody would resolve us.
            while True:
                done, _ = await asyncio.wait((fut,), timeout=DEAD_LOOP_POLL_S)
                if done:
                    return fut.result()
                if self.is_dead():
                    raise Abandoned()
        except asyncio.CancelledError:
            fut.cancel()  # so finish() skips it; a done future is left as it is
            raise


class SingleFlight(Generic[T]):
    """The load side of a cache: concurrent misses on a key share one factory call.

    Coalesces across tasks, threads and event loops; every waiter receives the result (or the
    exception). A subclass owns the storage and provides what is declared below: the entries
    (read lock-free, mutated under ``_lock``), the clock, the counters, the in-flight table,
    and `_store`, called under ``_lock`` with a finished load's value.
    """

    default_ttl: float
    _data: OrderedDict[Hashable, tuple[T, float]]
    _timer: Callable[[], float]
    _lock: threading.Lock
    _pending: dict[Hashable, Load]
    _hits: int
    _misses: int
    _loads: int
    _coalesced: int

    def _store(self, key: Hashable, value: T, seconds: float) -> None:
        """Store a value for ``seconds`` (caller holds ``_lock``)."""
        raise NotImplementedError

    def _lookup_or_join(
        self,
        key: Hashable,
        loop: asyncio.AbstractEventLoop | None,
        fut: asyncio.Future[Any] | None = None,
        force: bool = False,
    ) -> tuple[Any, Load | None, bool]:
        """Under the lock: a live value, or the load to join, or a new load we lead.

        An async caller passes its loop and its own future, registered as a waiter here; a
        sync caller (``loop`` None) gets the load's `threading.Event` created. A load led by a
        loop that is blocked waiting for this very call (the thread's own running loop for a
        sync call, or a loop in `blocked_loops`) is not joined: that would deadlock, so the
        caller leads a load of its own. A load in `_pending` is never finished: `_complete`
        removes it under the same lock.

        With ``force`` a live entry is ignored: the caller wants a new value.

        Returns ``(value, load, leader)``; ``value`` is `_MISSING` unless it was a hit.
        """
        avoid = avoided_loops(sync_caller=loop is None)
        with self._lock:
            entry = self._data.get(key)
            now = self._timer()
            if not force and entry is not None and entry[1] > now:
                self._data.move_to_end(key)
                self._hits += 1
                return entry[0], None, False
            self._misses += 1
            load = self._pending.get(key)
            leader = load is None or not load.joinable(loop, avoid)
            if leader:
                load = Load(loop)
                self._pending[key] = load
                self._loads += 1
            else:
                self._coalesced += 1
            assert load is not None
            if fut is not None or not leader:
                load.add_waiter(loop, fut)
            return _MISSING, load, leader

    def _complete(self, key: Hashable, load: Load, ok: bool, payload: Any, ttl: float) -> None:
        try:
            with self._lock:
                if self._pending.get(key) is load:
                    del self._pending[key]
                    if ok:
                        self._store(key, payload, ttl)
        finally:
            # Whatever storing did, the waiters get the load's outcome: none blocks forever.
            load.finish(ok, payload)

    def _abandon(self, key: Hashable, load: Load) -> None:
        with self._lock:
            if self._pending.get(key) is load:
                del self._pending[key]
        load.abandon()

    def get_or_set(self, key: Hashable, factory: Callable[[], T], ttl: float | None = None) -> T:
        """Return the cached value, or call ``factory()`` once for all concurrent callers.

        Threads missing the same key at once wait for one call. A load led by an event loop
        that is running in this very thread is not joined (that would deadlock): this call then
        runs ``factory`` itself.

        Args:
            key: The entry's key.
            factory: Called with no arguments to produce the value.
            ttl: Seconds to keep the result (``default_ttl`` when None).

        Returns:
            The cached or freshly produced value.

        Raises:
            ValueError: ``ttl`` is negative.
            Exception: Whatever ``factory`` raised (not cached).
        """
        seconds = checked_ttl(ttl, self.default_ttl)
        while True:
            value, load, leader = self._lookup_or_join(key, None)
            if load is None:
                return cast(T, value)
            if leader:
                try:
                    result = factory()
                except Exception as exc:
                    self._complete(key, load, False, exc, seconds)
                    raise
                except BaseException:
                    self._abandon(key, load)  # KeyboardInterrupt and the like: others retry
                    raise
                self._complete(key, load, True, result, seconds)
                return result
            try:
                return cast(T, load.wait_sync())
            except Abandoned:
                continue

    async def get_or_set_async(
        self, key: Hashable, factory: Callable[[], Awaitable[T]], ttl: float | None = None
    ) -> T:
        """Return the cached value, or await ``factory()`` once for all concurrent callers.

        The load runs in a task of its own, so cancelling any waiter, even the first, leaves the
        load running for the others. Waiters on other event loops or threads join the same load.

        Args:
            key: The entry's key.
            factory: Called with no arguments; returns an awaitable producing the value.
            ttl: Seconds to keep the result (``default_ttl`` when None).

        Returns:
            The cached or freshly produced value.

        Raises:
            ValueError: ``ttl`` is negative.
            Exception: Whatever the factory raised (not cached).
        """
        if ttl is not None and ttl < 0:
            checked_ttl(ttl, 0.0)  # raises; checked before a hit as on a miss
        # try/except rather than .get(): about 20 ns less on a hit, which the "async hit vs
        # async_lru" row of bench_cache measures; a miss pays the KeyError instead.
        try:
            value, expires = self._data[key]
        except KeyError:
            pass
        else:
            if expires > self._timer():
                try:
                    self._data.move_to_end(key)
                except KeyError:
                    pass
                self._hits += 1
                return value
        # The miss path, inlined for the common case (the load runs on this very loop; the
        # "1,000 misses" row of bench_cache and the stampede rows of bench_providers): a
        # stampede of waiters each pays one future and one suspension, no extra coroutine.
        seconds = self.default_ttl if ttl is None else checked_ttl(ttl, 0.0)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:
            load = self._pending.get(key)
            if load is not None and load.loop is loop and loop not in blocked_loops.get():
                # A load in flight on this loop: join it (it cannot be finished, see
                # `_lookup_or_join`; a value stored since our read is no fresher than it).
                self._misses += 1
                self._coalesced += 1
                load.waiters.append((loop, fut))
            else:
                load = None
        if load is None:
            value, load, leader = self._lookup_or_join(key, loop, fut)
            if load is None:
                return cast(T, value)
            if leader:
                load.task = start_task(loop, self._run_load(key, load, factory, seconds))
            elif load.loop is not loop:
                return await self._wait_retry_async(key, factory, seconds, False, load, fut, loop)
        try:
            return cast(T, await fut)
        except Abandoned:
            return await self._load_async(key, factory, seconds)
        except asyncio.CancelledError:
            fut.cancel()  # so finish() skips it; a done future is left as it is
            raise

    def join_nowait(self, key: Hashable) -> asyncio.Future[T] | None:
        """A future for the load of ``key`` in flight on the running loop, or None.

        The cheapest wait for a load this loop already leads (the other callers of a
        stampede): no lookup that fails and no coroutine, where `get_or_set_async` pays for
        both (the "200 cold gets vs cheapest floor" rows of bench_providers). Await the
        future; when it raises `Abandoned` the load ended without a result, and
        `get_or_set_async` loads again. Cancelling the future leaves the load to the others.

        Returns None, so that the caller goes through `get_or_set_async`, when no load of
        ``key`` is in flight on this loop, when a live value is cached (a refresh in flight
        must not hold up a lookup that has an answer), or when this loop is blocked waiting
        for the current call (the blocked-loops rule).
        """
        load = self._pending.get(key)
        if load is None:
            return None
        loop = asyncio.get_running_loop()
        if load.loop is not loop or loop in blocked_loops.get():
            return None
        entry = self._data.get(key)
        if entry is not None and entry[1] > self._timer():
            return None
        # The load runs on this loop, so only this thread can finish it: it is still in flight
        # under the lock below, as `_lookup_or_join` would find it.
        fut: asyncio.Future[T] = loop.create_future()
        with self._lock:
            self._misses += 1
            self._coalesced += 1
            load.waiters.append((loop, fut))
        return fut

    async def refresh_async(
        self, key: Hashable, factory: Callable[[], Awaitable[T]], ttl: float | None = None
    ) -> T:
        """Load a new value for ``key`` even if a live one is cached, coalescing like a miss.

        Concurrent refreshes (and misses) of one key share one factory call. On success the
        new value replaces the entry; on failure the old entry stays as it was.

        Args:
            key: The entry's key.
            factory: Called with no arguments; returns an awaitable producing the value.
            ttl: Seconds to keep the result (``default_ttl`` when None).

        Returns:
            The freshly produced value.

        Raises:
            ValueError: ``ttl`` is negative.
            Exception: Whatever the factory raised.
        """
        return await self._load_async(key, factory, checked_ttl(ttl, self.default_ttl), force=True)

    async def _load_async(
        self,
        key: Hashable,
        factory: Callable[[], Awaitable[T]],
        seconds: float,
        force: bool = False,
    ) -> T:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        value, load, leader = self._lookup_or_join(key, loop, fut, force)
        if load is None:
            return cast(T, value)
        if leader:
            load.task = start_task(loop, self._run_load(key, load, factory, seconds))
        return await self._wait_retry_async(key, factory, seconds, force, load, fut, loop)

    async def _wait_retry_async(
        self,
        key: Hashable,
        factory: Callable[[], Awaitable[T]],
        seconds: float,
        force: bool,
        load: Load,
        fut: asyncio.Future[Any],
        loop: asyncio.AbstractEventLoop,
    ) -> T:
        """Wait for ``load`` (joined with ``fut``); if it is abandoned, look up or load again."""
        while True:
            try:
                return cast(T, await load.wait_async(fut, loop))
            except Abandoned:
                pass
            fut = loop.create_future()
            value, next_load, leader = self._lookup_or_join(key, loop, fut, force)
            if next_load is None:
                return cast(T, value)
            load = next_load
            if leader:
                load.task = start_task(loop, self._run_load(key, load, factory, seconds))

    async def _run_load(
        self, key: Hashable, load: Load, factory: Callable[[], Awaitable[T]], seconds: float
    ) -> None:
        try:
            result = await factory()
        except Exception as exc:
            self._complete(key, load, False, exc, seconds)
        except asyncio.CancelledError:
            if being_cancelled():
                self._abandon(key, load)  # our loop shuts down or an owner cancelled the load
                raise
            # The factory itself ended in CancelledError (it awaited a future someone else
            # cancelled): a failure of this load, or every waiter would load again forever.
            failure = RuntimeError("the factory raised CancelledError without being cancelled")
            self._complete(key, load, False, failure, seconds)
        except BaseException:
            # Cancelled because our loop is shutting down, or KeyboardInterrupt: nobody got a
            # value, so the waiters start a new load instead of failing with our exception.
            self._abandon(key, load)
            raise
        else:
            self._complete(key, load, True, result, seconds)
        finally:
            load.task = None

    def load_tasks(self) -> list[asyncio.Task[Any]]:
        """The tasks of the async loads in flight (for an owner shutting down)."""
        with self._lock:
            return [load.task for load in self._pending.values() if load.task is not None]
