"""Rotation: forced refreshes rate-limited per document, and the watcher that tells
subscribers when a key's resolved value changes (SPEC 10). `SecretsManager` owns one of each,
and has its rotation methods (and `get_many`, `require`) from `RotationMethods`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import threading
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Hashable,
    Iterable,
    Sequence,
)
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import _fork
from ._events import call_safely
from ._flight import require_asyncio, running_loop
from ._resolver import Mode, Resolver, Slot
from .errors import MissingSecretError, ProviderError, SecretsError
from .keys import normalize_key
from .providers.base import DocumentSecretProvider

__all__ = ["ChangeWatcher", "Refresher", "RotationMethods", "missing", "resolve_many"]

logger = logging.getLogger("simpletuner_secrets")

#: Seconds between two looks of the change watcher at the keys it watches (a file edit or a
#: new environment variable has no refresh to announce it).
POLL_S = 1.0

Lookup = Callable[[str], Awaitable[str | None]]


async def resolve_many(lookup: Lookup, nkeys: Sequence[str]) -> list[str | None]:
    """Every key's answer in one fan-out: all lookups at once, so each document is fetched
    once (concurrent misses coalesce); the first failure cancels the rest."""
    if not nkeys:
        return []
    tasks = [asyncio.ensure_future(lookup(nkey)) for nkey in nkeys]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        tasks.clear()  # a finished task's repr shows its result: not for a traceback's locals


def missing(resolver: Resolver, nkey: str, *others: str) -> MissingSecretError:
    """The error for absent keys (`SecretsManager.require`, required keys at startup): the
    keys, the providers asked, and those failing now."""
    asked = [s.name for s in resolver.slots]
    failed = [s.name for s in resolver.slots if s.stats.failing]
    return MissingSecretError(nkey, asked, failed, others)


@dataclass(eq=False)
class _Forced:
    """The last forced refresh of one document: when it started, and its outcome."""

    started: float
    done: concurrent.futures.Future[None] = field(default_factory=concurrent.futures.Future)


class Refresher:
    """`SecretsManager.refresh`: fetch documents again now, at most once per
    ``min_interval`` seconds each; a call within that interval waits for the last one.

    Args:
        resolver: The manager's resolver.
        min_interval: Seconds between two forced fetches of one document.
    """

    def __init__(self, resolver: Resolver, min_interval: float) -> None:
        if min_interval < 0:
            raise ValueError(f"min_refresh_interval must be >= 0, got {min_interval!r}")
        self.resolver = resolver
        self.min_interval = float(min_interval)
        self._last: dict[Hashable, _Forced] = {}
        self._lock = threading.Lock()
        _fork.track(self)

    def targets(self, nkey: str | None) -> list[tuple[Slot, Hashable]]:
        """The documents (and per-key answers) that could answer ``nkey``; all when None."""
        found: list[tuple[Slot, Hashable]] = []
        cached = None
        for slot in self.resolver.slots:
            if slot.mode is Mode.LIVE:
                if isinstance(slot.provider, DocumentSecretProvider):
                    found.append((slot, (id(slot), "live")))  # the file: its own copy dropped
            elif slot.mode is Mode.DOCUMENT or nkey is not None:
                found.append((slot, slot.cache_key(nkey or "")))
            else:  # every answer of a per-key provider now cached
                if cached is None:
                    cached = self.resolver.cache.keys_snapshot()
                found += [(slot, k) for k in cached if isinstance(k, tuple) and k[0] == id(slot)]
        return found

    async def refresh(self, nkey: str | None) -> None:
        """Refresh every target of ``nkey`` at once.

        Raises:
            ProviderError: With ``on_provider_error="raise"``, a refresh failed.
        """
        waits = [self._refresh_one(slot, ckey) for slot, ckey in self.targets(nkey)]
        outcomes = await asyncio.gather(*waits, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                if isinstance(outcome, ProviderError) and self.resolver.on_provider_error == "skip":
                    continue
                raise outcome

    async def _refresh_one(self, slot: Slot, ckey: Hashable) -> None:
        now = self.resolver.timer()
        with self._lock:
            last = self._last.get(ckey)
            lead = last is None or now - last.started >= self.min_interval
            if lead:
                last = self._last[ckey] = _Forced(now)
        assert last is not None
        if lead:
            # In a task of its own: cancelling this caller does not cancel the refresh that
            # other callers within the interval wait for.
            task = asyncio.ensure_future(self._fetch(slot, ckey))
            task.add_done_callback(lambda t: _settle(t, last.done))
        # shield: a cancelled caller must not cancel the outcome the others wait for.
        await asyncio.shield(asyncio.wrap_future(last.done))

    async def _fetch(self, slot: Slot, ckey: Hashable) -> None:
        resolver = self.resolver
        provider = slot.provider
        if slot.mode is Mode.LIVE:
            assert isinstance(provider, DocumentSecretProvider)
            provider.invalidate()  # the next lookup reads the file again
            return
        assert isinstance(ckey, tuple)
        nkey: str = ckey[1]
        if isinstance(provider, DocumentSecretProvider) and slot.mode is Mode.DOCUMENT:
            fetch: Callable[[], Awaitable[Any]] = provider.load_document
        else:

            def fetch() -> Awaitable[str | None]:
                return provider.get(nkey)

        got = resolver.cache.peek(ckey)
        previous = None if got is None else got[0]
        try:
            await resolver.cache.refresh_async(
                ckey, lambda: resolver.fetch_entry(slot, ckey[1], fetch, previous)
            )
        except ProviderError as exc:
            if previous is not None:
                resolver.refresh_failed(slot, previous, exc)  # stale-if-error, backoff, event
            else:
                logger.warning("provider %s: refresh failed: %s", slot.name, exc)
            raise

    def reset_after_fork(self) -> None:
        """In a forked child: the parent's refreshes are not this process's."""
        self._lock = threading.Lock()
        self._last = {}


def _settle(task: asyncio.Task[None], done: concurrent.futures.Future[None]) -> None:
    if done.done():
        return
    if task.cancelled():
        done.set_exception(SecretsError("the refresh was cancelled (its event loop closed)"))
        return
    exc = task.exception()
    if exc is None:
        done.set_result(None)
    else:
        done.set_exception(exc)


_UNKNOWN: Any = object()


@dataclass(eq=False)
class _Watched:
    callbacks: list[Callable[[str, str | None], Any]] = field(default_factory=list)
    value: Any = _UNKNOWN
    seq: int = -1


class ChangeWatcher:
    """`SecretsManager.on_change` and `watch`: each change of a watched key's resolved value,
    seen by any refresh or by the watcher's own look every `poll_s` seconds, runs the key's
    callbacks once.

    Args:
        lookup: The manager's lookup (a normalized key to its value).
        resolver: The manager's resolver (its events and background tasks).
        background: Starts a coroutine on the sync facade's loop, for callers outside a loop.
    """

    def __init__(
        self,
        lookup: Lookup,
        resolver: Resolver,
        background: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self.lookup = lookup
        self.resolver = resolver
        self.background = background
        self.poll_s = POLL_S
        self._watched: dict[str, _Watched] = {}
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._polling = False
        resolver.events.on_document_changed = self._document_changed
        _fork.track(self)

    def subscribe(
        self, nkey: str, callback: Callable[[str, str | None], Any], *, here: bool = True
    ) -> Callable[[], None]:
        """Run ``callback(key, value)`` on each change of ``nkey``; returns the unsubscriber.

        The watcher's look runs on the caller's event loop (``here`` and one runs), else on
        the sync facade's loop.
        """
        with self._lock:
            self._watched.setdefault(nkey, _Watched()).callbacks.append(callback)
            start = not self._polling
            self._polling = True
        if start:
            loop = running_loop() if here else None
            if loop is not None:
                self.resolver.spawn(self._poll())
            else:
                self.background(self._poll())

        def unsubscribe() -> None:
            with self._lock:
                watched = self._watched.get(nkey)
                if watched is not None and callback in watched.callbacks:
                    watched.callbacks.remove(callback)
                    if not watched.callbacks:
                        del self._watched[nkey]

        return unsubscribe

    def watched_keys(self) -> list[str]:
        """The keys that have subscribers now."""
        return list(self._watched)

    def has_seen(self, nkey: str) -> bool:
        """Whether ``nkey``'s value was looked at since it was first watched."""
        watched = self._watched.get(nkey)
        return watched is not None and watched.value is not _UNKNOWN

    async def _poll(self) -> None:
        try:
            while not self.resolver.closed:
                with self._lock:
                    if not self._watched:
                        return
                await self.check()
                await asyncio.sleep(self.poll_s)
        finally:
            with self._lock:
                self._polling = False

    def _document_changed(self) -> None:
        if self._watched and running_loop() is not None:
            self.resolver.spawn(self.check())

    async def check(self) -> None:
        """Look at every watched key once; run the callbacks of those that changed."""
        for nkey in list(self._watched):
            await self.observe(nkey)

    async def observe(self, nkey: str) -> str | None:
        """Resolve ``nkey`` and record it; the callbacks run if it changed since last seen."""
        seq = next(self._seq)
        try:
            value = await self.lookup(nkey)
        except SecretsError:
            return None  # a failing provider is not a change; the next look tries again
        with self._lock:
            watched = self._watched.get(nkey)
            if watched is None or seq < watched.seq:
                return value  # unwatched meanwhile, or a later look already recorded
            watched.seq = seq
            old, watched.value = watched.value, value
            if old is _UNKNOWN or old == value:
                return value
            callbacks = list(watched.callbacks)
        self.resolver.events.emit("changed", self._answering(nkey), nkey)
        for callback in callbacks:
            call_safely(callback, "on_change", nkey, value)
        return value

    def _answering(self, nkey: str) -> str:
        """The name of the provider answering ``nkey`` now from its cache, else ``""``."""
        for slot in self.resolver.slots:
            if slot.mode is Mode.LIVE:
                if slot.provider.peek(nkey):
                    return slot.name
                continue
            entry = self.resolver.cached_entry(slot, nkey)
            if entry is None:
                continue
            value = entry.value.get(nkey) if slot.mode is Mode.DOCUMENT else entry.value
            if value:
                return slot.name
        return ""

    async def watch(self, nkey: str) -> AsyncIterator[str | None]:
        """The current value of ``nkey``, then each change (`SecretsManager.watch`)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()

        def changed(_key: str, value: str | None) -> None:
            if running_loop() is loop:
                queue.put_nowait(value)
            else:
                loop.call_soon_threadsafe(queue.put_nowait, value)

        unsubscribe = self.subscribe(nkey, changed)
        try:
            last = await self.observe(nkey)
            yield last
            while True:
                value = await queue.get()
                if value != last:  # a change seen before the first look answered
                    last = value
                    yield value
        finally:
            unsubscribe()

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock; the parent's look did not survive the fork."""
        self._lock = threading.Lock()
        self._polling = False


class RotationMethods:
    """`SecretsManager`'s several-key lookups and rotation methods (a base class of it): thin
    calls into `resolve_many`, `missing`, its `Refresher` and its `ChangeWatcher`."""

    resolver: Resolver
    refresher: Refresher
    changes: ChangeWatcher

    if TYPE_CHECKING:

        async def get(self, key: str) -> str | None: ...

    async def get_many(self, keys: Iterable[str]) -> dict[str, str | None]:
        """Look up several keys in one fan-out (each document fetched once).

        Returns:
            Each key as given -> its value, or None.
        """
        given = list(dict.fromkeys(keys))
        values = await resolve_many(self.get, [normalize_key(k) for k in given])
        return dict(zip(given, values, strict=True))

    async def require(self, key: str) -> str:
        """Return the value of ``key``.

        Raises:
            MissingSecretError: No provider has it (the providers asked, and failing, named).
        """
        value = await self.get(key)
        if value is None:
            raise missing(self.resolver, normalize_key(key))
        return value

    async def refresh(self, key: str | None = None) -> None:
        """Fetch again now the documents that could answer ``key`` (all when None): at most
        once per ``min_refresh_interval`` each; within it, wait for the last fetch instead.

        Raises:
            ProviderError: With ``on_provider_error="raise"``, a fetch failed (otherwise the
                last good answers stay, with a warning).
        """
        require_asyncio()
        await self.refresher.refresh(None if key is None else normalize_key(key))
        await self.changes.check()  # the subscribers hear of a change before this returns

    def on_change(self, key: str, callback: Callable[[str, str | None], Any]) -> Callable[[], None]:
        """Call ``callback(key, value)`` once for each change of ``key``'s resolved value.

        Returns:
            The function that unsubscribes.
        """
        return self.changes.subscribe(normalize_key(key), callback)

    def watch(self, key: str) -> AsyncIterator[str | None]:
        """``async for value in m.watch(key)``: the current value, then each change."""
        return self.changes.watch(normalize_key(key))
