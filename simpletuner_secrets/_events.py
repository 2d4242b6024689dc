"""What the service can observe: `SecretsEvent` records and the hub that hands them out.

The resolver emits events from its slow paths only (loads, refreshes, failures); a cached
lookup never reaches this module. Listeners get names and ages, never a value.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from . import _fork

__all__ = [
    "EVENT_KINDS",
    "CallProbe",
    "EventHub",
    "EventKind",
    "EventSource",
    "LoopRelay",
    "SecretsEvent",
    "call_safely",
]

logger = logging.getLogger("simpletuner_secrets")

EventKind = Literal[
    "refreshed",
    "refresh_failed",
    "stale_served",
    "provider_failed",
    "provider_recovered",
    "changed",
    "login",
    "token_renewed",
]

#: Every kind a `SecretsEvent` may have.
EVENT_KINDS: frozenset[str] = frozenset(EventKind.__args__)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class SecretsEvent:
    """Something the cache or a provider did, for ``SecretsManager(on_event=...)``.

    Attributes:
        kind: ``refreshed`` (a cached document or answer was fetched again), ``refresh_failed``
            (that failed; the last good answer stays), ``stale_served`` (a lookup was answered
            past freshness), ``provider_failed`` (a provider started failing),
            ``provider_recovered`` (it answers again), ``changed`` (a watched key's resolved
            value changed), ``login`` / ``token_renewed`` (a provider's authentication).
        provider: The provider's name (for ``changed``: the one answering now, or ``""``).
        key: The key concerned, or None for a whole document.
        age_s: Seconds since the answer concerned was fetched, when there is one.
    """

    kind: EventKind
    provider: str
    key: str | None = None
    age_s: float | None = None


Listener = Callable[[SecretsEvent], Any]


def call_safely(callback: Callable[..., Any], what: str, *args: Any) -> None:
    """Call a user's callback; run it in a task when it returns an awaitable; log, never
    raise, what it raises (the exception's type only: its message might quote a value)."""
    try:
        result = callback(*args)
    except Exception as exc:
        logger.warning("%s callback raised %s", what, type(exc).__name__)
        return
    if inspect.isawaitable(result):
        try:
            task = asyncio.ensure_future(result)
        except RuntimeError:  # no running loop: nothing can await it
            if inspect.iscoroutine(result):
                result.close()  # no "never awaited" warning on top of this one
            logger.warning("%s callback is async but no event loop runs here", what)
            return
        _pending.add(task)
        task.add_done_callback(lambda t: _finished(t, what))


#: Callback tasks held until they end (asyncio keeps only weak references).
_pending: set[asyncio.Task[Any]] = set()


def _finished(task: asyncio.Task[Any], what: str) -> None:
    _pending.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.warning("%s callback raised %s", what, type(exc).__name__)


class CallProbe(Protocol):
    """Watches every back-end call of the resolver (the OpenTelemetry integration is one)."""

    def start(self, provider: str, key: str | None) -> Any:
        """A back-end call starts; returns a token handed to `end`."""

    def end(self, token: Any, provider: str, outcome: str, seconds: float) -> None:
        """The call ended: ``outcome`` is ``ok``, ``error``, ``timeout``, or ``cancelled``
        (its caller was cancelled: no outcome of the back-end's)."""


@runtime_checkable
class EventSource(Protocol):
    """A provider that reports its own events (``login``, ``token_renewed``).

    The manager calls `bind_events` once with a function taking the event kind; the provider
    calls it, with no value, when it logs in or renews its token, on an event loop (a
    `LoopRelay` carries the events of worker threads there).
    """

    def bind_events(self, emit: Callable[[EventKind], None]) -> None: ...


class LoopRelay:
    """Carries an `EventSource`'s events from its worker threads (a login in a load's thread,
    a renewal in a background thread) to the event loop that last used the source.

    The hub's listeners run where the resolver's own events do, on a loop: an async listener
    gets its task there, and a slow one holds up that loop's callbacks, never a login or a
    renewal. The relay only passes the event kind: nothing of the token goes along. An event
    that comes while no loop has used the source yet, or after that loop closed, is dropped
    (logged at DEBUG).
    """

    __slots__ = ("_emit", "_loop")

    def __init__(self) -> None:
        self._emit: Callable[[EventKind], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, emit: Callable[[EventKind], None]) -> None:
        """Take the function the manager gave the source (`EventSource.bind_events`)."""
        self._emit = emit

    def note_loop(self) -> None:
        """Called on an event loop each time the source is used there: the events go to that
        loop from now on. Does nothing while no manager listens."""
        if self._emit is not None:
            self._loop = asyncio.get_running_loop()

    def forget_loop(self) -> None:
        """Drop the loop (in a forked child: the parent's loop thread is gone)."""
        self._loop = None

    def __call__(self, kind: EventKind) -> None:
        """Report ``kind``, from any thread; returns at once."""
        emit, loop = self._emit, self._loop
        if emit is None:
            return
        if loop is None or loop.is_closed():
            logger.debug("event %s dropped: no open event loop has used its provider", kind)
            return
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            emit(kind)
            return
        try:
            loop.call_soon_threadsafe(emit, kind)
        except RuntimeError:  # closed meanwhile
            logger.debug("event %s dropped: its event loop closed", kind)


class EventHub:
    """The listeners of one manager: the user's ``on_event``, the integrations' own, and the
    document-change hook of the change watcher."""

    def __init__(self) -> None:
        self.listeners: tuple[Listener, ...] = ()
        #: Called with no argument after a refresh brought a different document or answer.
        self.on_document_changed: Callable[[], None] | None = None
        #: Watches back-end calls (None: nothing watches, nothing is timed for it).
        self.probe: CallProbe | None = None
        self._lock = threading.Lock()
        _fork.track(self)

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock (the listeners are kept)."""
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a listener; returns the function that removes it."""
        with self._lock:
            self.listeners = (*self.listeners, listener)

        def unsubscribe() -> None:
            with self._lock:
                self.listeners = tuple(x for x in self.listeners if x is not listener)

        return unsubscribe

    def emit(
        self,
        kind: EventKind,
        provider: str,
        key: str | None = None,
        age_s: float | None = None,
    ) -> None:
        """Hand a `SecretsEvent` to every listener (nothing is built when there is none)."""
        listeners = self.listeners
        if not listeners:
            return
        event = SecretsEvent(kind, provider, key, None if age_s is None else round(age_s, 3))
        for listener in listeners:
            call_safely(listener, "on_event", event)

    def emitter(self, provider: str) -> Callable[[EventKind], None]:
        """The function an `EventSource` provider reports its own events with."""

        def emit(kind: EventKind) -> None:
            self.emit(kind, provider)

        return emit

    def document_changed(self) -> None:
        hook = self.on_document_changed
        if hook is not None:
            hook()
