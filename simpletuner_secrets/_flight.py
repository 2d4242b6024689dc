"""Single-flight: one in-flight load per key and everyone waiting for it, across tasks,
threads and event loops. No storage: the cache decides what a finished load stores.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Coroutine
from contextvars import ContextVar
from typing import Any, TypeVar

__all__ = [
    "Abandoned",
    "Load",
    "avoided_loops",
    "being_cancelled",
    "blocked_loops",
    "running_loop",
    "start_task",
]

T = TypeVar("T")

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
