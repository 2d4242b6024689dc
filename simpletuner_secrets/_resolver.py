"""The resolver: the chain's answers for a key, in priority order, through the manager's cache.

It holds the fast path (`peek`, no I/O), the fan-out over the providers, the timed provider
call with its counters, and the background refreshes. `SecretsManager` owns one.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import sys
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from . import _fork
from ._events import EventHub, EventSource
from ._flight import Abandoned, being_cancelled, blocked_loops, start_task
from ._freshness import Entry, Freshness, Policy, RandomSource, decide
from .cache import SecondChanceCache
from .errors import ProviderError, SecretsError
from .providers.base import NOT_CACHED, DocumentSecretProvider, SecretProvider
from .reports import ManagerCacheStats, ManagerStats, ProviderCallStats

if TYPE_CHECKING:
    from ._references import References

#: What a reference value starts with (`_references.SCHEMES`, repeated here so that the
#: resolver does not import the references module unless references are enabled).
_SCHEMES = ("vault://", "aws://", "file://")

__all__ = ["Mode", "OnError", "ProviderStats", "Resolver", "Slot"]

logger = logging.getLogger("simpletuner_secrets")

OnError = Literal["skip", "raise"]

if sys.version_info >= (3, 11):
    _timeout = asyncio.timeout
else:  # pragma: no cover - Python 3.10

    @contextlib.asynccontextmanager
    async def _timeout(delay: float) -> AsyncIterator[Any]:
        # asyncio.timeout is 3.11+; anyio's scope is a plain (sync) context manager, used
        # here as `async with` like asyncio's. Its expiry raises the builtin TimeoutError.
        import anyio

        with anyio.fail_after(delay) as scope:
            yield scope


def _expired(deadline: Any) -> bool:
    """Whether ``provider_timeout`` itself ran out (asyncio's Timeout, or anyio's scope)."""
    if deadline is None:
        return True
    expired = getattr(deadline, "expired", None)
    if callable(expired):
        return bool(expired())
    return bool(getattr(deadline, "cancel_called", True))


class Mode(enum.Enum):
    """How the resolver asks a provider."""

    #: Live or self-managed (environment, file): asked every time, never cached here.
    LIVE = "live"
    #: A whole document per refresh, cached once for every key.
    DOCUMENT = "document"
    #: Key by key (a custom provider), each answer cached.
    PER_KEY = "per key"

    @classmethod
    def of(cls, provider: SecretProvider) -> Mode:
        if not provider.cache_answers:
            return cls.LIVE
        if isinstance(provider, DocumentSecretProvider):
            return cls.DOCUMENT
        return cls.PER_KEY


# Module-level aliases for the hot paths: an Enum member read through its class costs ~60 ns
# on CPython 3.11, a global ~8 ns (the warm-get rows of bench_manager).
_LIVE, _DOCUMENT, _PER_KEY = Mode.LIVE, Mode.DOCUMENT, Mode.PER_KEY


@dataclass(eq=False)
class ProviderStats:
    """One provider's counters, as `SecretsManager.stats` shows them."""

    calls: int = 0
    errors: int = 0
    timeouts: int = 0
    stale_served: int = 0
    total_latency_s: float = 0.0
    last_latency_s: float | None = None
    failing: bool = False

    def snapshot(self) -> ProviderCallStats:
        return {
            "calls": self.calls,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "stale_served": self.stale_served,
            "avg_latency_ms": round(self.total_latency_s / self.calls * 1000, 3)
            if self.calls
            else None,
            "last_latency_ms": None
            if self.last_latency_s is None
            else round(self.last_latency_s * 1000, 3),
            "failing": self.failing,
        }


@dataclass(eq=False)
class Slot:
    """A provider's place in the chain, with its mode and counters."""

    provider: SecretProvider
    mode: Mode
    stats: ProviderStats = field(default_factory=ProviderStats)
    #: The cache key of this provider's document (made once: the fast path reads it).
    document_key: tuple[int, None] = field(init=False)
    #: Where this provider's refreshes fall in the process's schedule, as a share of the
    #: TTL (see `Resolver.schedule`).
    share: float = 0.0

    def __post_init__(self) -> None:
        self.document_key = (id(self), None)

    @property
    def name(self) -> str:
        return self.provider.name

    def cache_key(self, nkey: str) -> tuple[int, str | None]:
        """The cache key of this provider's answer for ``nkey`` (its document, or the key)."""
        return (id(self), None if self.mode is _DOCUMENT else nkey)


def _spread(n: int) -> float:
    """The ``n``-th of 0, 1/2, 1/4, 3/4, 1/8...: any first few are evenly spread in [0, 1)."""
    share, step = 0.0, 0.5
    while n:
        if n & 1:
            share += step
        n >>= 1
        step /= 2
    return share


def _consume(task: asyncio.Task[Any]) -> None:
    # A lookup nobody waits for any more: retrieve its outcome so asyncio does not warn.
    if not task.cancelled():
        task.exception()


class _Tally:
    """What one lookup counted (answers from the cache, fetches, stale answers)."""

    __slots__ = ("fetched", "hits", "stale")

    def __init__(self) -> None:
        self.hits = 0
        self.fetched = 0
        self.stale: list[Slot] = []


#: The counts of the lookup being resolved, for the lookups that join it (`Resolver.resolve`);
#: the fan-out's tasks inherit it.
_tally: ContextVar[_Tally | None] = ContextVar("simpletuner_secrets_lookup", default=None)


class _Flight:
    """A lookup in flight: its loop, the futures of the lookups that joined it, its counts."""

    __slots__ = ("loop", "tally", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiters: list[asyncio.Future[Any]] = []
        self.tally = _Tally()


class Resolver:
    """The chain's answer for a key: the fast path, the fan-out, the cache, the refreshes.

    Args:
        providers: The chain, highest priority first.
        policy: The freshness policy.
        max_size: Most cached answers.
        on_provider_error: ``"skip"`` or ``"raise"`` (see `SecretsManager`).
        provider_timeout: Seconds any provider call may take.
        timer: Monotonic clock.
        rng: Source of jitter.
        references: Resolves reference values (``vault://``...); None leaves them as they are.
    """

    def __init__(
        self,
        providers: Sequence[SecretProvider],
        policy: Policy,
        *,
        max_size: int,
        on_provider_error: OnError,
        provider_timeout: float,
        timer: Callable[[], float],
        rng: RandomSource,
        references: References | None = None,
    ) -> None:
        self.slots = [Slot(p, Mode.of(p), share=_spread(i)) for i, p in enumerate(providers)]
        self.references = references
        self.policy = policy
        self.on_provider_error: OnError = on_provider_error
        self.provider_timeout = provider_timeout
        self.timer = timer
        self.rng = rng
        # The cache keeps an entry as long as it may serve (fresh, then stale); `cached`
        # applies each entry's own end.
        self.cache: SecondChanceCache[Entry] = SecondChanceCache(
            default_ttl=policy.longest_life, max_size=max_size, timer=timer
        )
        # The cache's live mapping, read by `peek` without a call (it is never replaced).
        self._entries = self.cache.entries()
        self.closed = False
        self.fast_hits = 0  # answers the fast path gave without touching the cache's counters
        # Cached answers the slow path gave (fresh), and those it had to fetch first.
        self.slow_hits = 0
        self.fetched = 0
        self._background: set[asyncio.Task[Any]] = set()
        self._anchor: float | None = None  # this process's schedule: see `schedule`
        self._resolving: dict[str, _Flight] = {}  # the lookups in flight, by key: `resolve`
        # Events and the call probe (SPEC 10): reached from the slow paths only.
        self.events = EventHub()
        for slot in self.slots:
            if isinstance(slot.provider, EventSource):
                slot.provider.bind_events(self.events.emitter(slot.name))
        _fork.track(self)

    def reset_after_fork(self) -> None:
        """In a forked child: the parent's background refreshes are gone with its threads,
        so no entry is left marked as refreshing (the cache resets its own loads); each
        inherited entry's refresh ahead is drawn again, and the child's schedule is its own,
        so that workers forked together do not refresh together."""
        self._background = set()
        self._resolving = {}  # the parent's lookups in flight are gone with its loops
        self._anchor = None  # a schedule of the child's own, not its parent's
        now = self.timer()
        for entry in self.cache.values_snapshot():
            entry.refreshing = False
            self.policy.inherited(entry, now, self.rng)

    # -- the fast path ----------------------------------------------------------------

    def peek(self, nkey: str) -> Any:
        """Answer from live reads and fresh cache entries, or `NOT_CACHED`. No I/O.

        Kept inline on purpose (no `decide` call, no cache method): the "warm await m.get"
        and "warm m.sync.get" rows of ``bench_manager`` measure it.
        """
        now = self.timer()
        data = self._entries
        for slot in self.slots:
            mode = slot.mode
            if mode is _LIVE:
                value = slot.provider.peek(nkey)
            else:
                got = data.get(slot.document_key if mode is _DOCUMENT else (id(slot), nkey))
                if got is None:
                    return NOT_CACHED
                entry = got[0]
                if not entry.used:
                    entry.used = True  # kept recent: see SecondChanceCache
                if now >= entry.refresh_at:
                    return NOT_CACHED  # let the slow path decide (refresh ahead, stale...)
                value = entry.value.get(nkey) if mode is _DOCUMENT else entry.value
            if value is NOT_CACHED:
                return NOT_CACHED
            if value:
                if self.references is not None and value.startswith(_SCHEMES):
                    value = self.references.peek(self, value)
                    if value is NOT_CACHED:
                        return NOT_CACHED
                self.fast_hits += 1
                return value
        self.fast_hits += 1
        return None

    # -- the slow path ----------------------------------------------------------------

    async def resolve(self, nkey: str) -> str | None:
        """The chain's answer for ``nkey``; concurrent lookups of a key on one loop share one.

        The first caller fans out (`fan_out`); the others on its loop wait on a future each,
        so a stampede of cold lookups pays one fan-out per key, not one per caller (its
        tasks, its cache calls; no benchmark row measures it yet, see the CHANGELOG). A joiner's
        cancellation cancels only its own future; when the first caller is cancelled, its
        joiners look up again (one of them first). The answer, or the error, is the first
        caller's: the others began while it was in flight, and a write or a cache clear
        (`forget`, `clear`) ends the sharing. Each joiner is counted as the first caller's
        lookup was (hit, miss or stale).
        """
        loop = asyncio.get_running_loop()
        while True:
            flight = self._resolving.get(nkey)
            if flight is None or flight.loop is not loop or loop in blocked_loops.get():
                break
            fut = loop.create_future()
            flight.waiters.append(fut)
            try:
                value = await fut
            except Abandoned:
                continue  # the first caller was cancelled: look up again
            except asyncio.CancelledError:
                fut.cancel()  # so the first caller skips it; a done future is left as it is
                raise
            except Exception:
                self._count_joined(flight.tally)
                raise
            self._count_joined(flight.tally)
            return value  # type: ignore[no-any-return]
        mine = _Flight(loop)
        if flight is None:
            self._resolving[nkey] = mine
        token = _tally.set(mine.tally)
        ok = False
        outcome: Any = Abandoned()
        try:
            outcome = await self.fan_out(nkey)
            ok = True
            return outcome  # type: ignore[no-any-return]
        except Exception as exc:
            outcome = exc
            raise
        finally:
            _tally.reset(token)
            if self._resolving.get(nkey) is mine:
                del self._resolving[nkey]
            for fut in mine.waiters:
                if not fut.done():
                    if ok:
                        fut.set_result(outcome)
                    else:
                        fut.set_exception(outcome)
            # No local holds the answer once the frame is left (error trackers record them).
            mine.waiters.clear()
            outcome = fut = None  # type: ignore[assignment]

    def _count_joined(self, tally: _Tally) -> None:
        """Count a lookup that joined another as that one was counted."""
        self.slow_hits += tally.hits
        self.fetched += tally.fetched
        for slot in tally.stale:
            slot.stats.stale_served += 1

    async def fan_out(self, nkey: str) -> str | None:
        """Ask every provider at once; answer in priority order as soon as it is decided."""
        tasks: list[asyncio.Task[str | None]] = []
        loop = asyncio.get_running_loop()
        value: str | None = None
        try:
            for slot in self.slots:
                tasks.append(start_task(loop, self.ask(slot, nkey)))
            for slot, asking in zip(self.slots, tasks, strict=True):
                try:
                    value = await asking
                except ProviderError as exc:
                    self._provider_failed(slot, exc)
                    continue
                if value:
                    if self.references is not None and value.startswith(_SCHEMES):
                        try:
                            value = await self.references.resolve(self, value)
                        except ProviderError as exc:
                            self._provider_failed(slot, exc)
                            continue
                    return value
            return None
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
                    task.add_done_callback(_consume)
                elif not task.cancelled():
                    task.exception()
            # A finished task's repr shows its result: on an error's traceback, this frame's
            # locals must hold no answer (error trackers record them).
            tasks.clear()
            value = asking = task = None  # type: ignore[assignment]

    def _provider_failed(self, slot: Slot, exc: ProviderError) -> None:
        if self.closed:
            # Its client was closed under it by aclose: not the provider's failure.
            raise SecretsError("this SecretsManager was closed during the lookup") from None
        if self.on_provider_error == "raise":
            raise exc
        if not slot.stats.failing:
            slot.stats.failing = True
            logger.warning("provider %s failed and is skipped: %s", slot.name, exc)
            self.events.emit("provider_failed", slot.name)

    async def ask(self, slot: Slot, nkey: str) -> str | None:
        """One provider's answer for ``nkey``, through the cache where it applies."""
        mode = slot.mode
        provider = slot.provider
        if mode is _LIVE:
            value = provider.peek(nkey)
            if value is NOT_CACHED:
                value = await self.call(slot, lambda: provider.get(nkey))
            return value or None
        if mode is _DOCUMENT:
            assert isinstance(provider, DocumentSecretProvider)
            document = await self._cached(slot, slot.cache_key(nkey), provider.load_document)
            value = document.get(nkey)
        else:
            value = await self._cached(slot, slot.cache_key(nkey), lambda: provider.get(nkey))
        return value or None

    async def call(self, slot: Slot, fetch: Callable[[], Awaitable[Any]]) -> Any:
        """Call a provider within ``provider_timeout``, counting calls, errors and latency."""
        stats = slot.stats
        if self.closed:
            # A lookup in flight when the manager closed: its provider is closed, and this is
            # no provider failure to skip, so it ends the lookup.
            raise SecretsError("this SecretsManager was closed during the lookup")
        start = self.timer()
        # Wall time for the message: how long the caller really waited (the timer may be fake).
        wall_start = time.monotonic()
        failure: ProviderError | None = None
        deadline: Any = None
        # --- observation hook (SPEC 10, OpenTelemetry): None unless instrumented.
        probe = self.events.probe
        token = None if probe is None else probe.start(slot.name, None)
        outcome = "cancelled"  # unless one of the branches below says otherwise
        try:
            async with _timeout(self.provider_timeout) as deadline:
                result = await fetch()
            outcome = "ok"
        except TimeoutError as exc:
            stats.errors += 1
            outcome = "error"
            if _expired(deadline):
                outcome = "timeout"
                stats.timeouts += 1
                waited = time.monotonic() - wall_start
                failure = ProviderError(
                    f"{slot.name}: no answer within {self.provider_timeout:g} s "
                    f"(timed out; gave up after {waited:.1f} s)",
                    provider=slot.name,
                )
            else:
                # The provider's own TimeoutError (its client's read timeout, say), raised
                # before ours: a failure like any other, not "no answer within".
                failure = ProviderError(
                    f"{slot.name}: failed with {type(exc).__name__}", provider=slot.name
                )
        except ProviderError:
            stats.errors += 1
            outcome = "error"
            raise
        except asyncio.CancelledError:
            if being_cancelled():
                raise
            # The provider ended in CancelledError without being cancelled (it awaited a
            # future someone else cancelled): a failure like any other.
            stats.errors += 1
            outcome = "error"
            failure = ProviderError(f"{slot.name}: failed with CancelledError", provider=slot.name)
        except Exception as exc:
            stats.errors += 1
            outcome = "error"
            # A custom provider broke its contract; name the failure, not its message
            # (which might quote a value). Raised below, outside this handler, so that the
            # provider's exception is not even its context.
            failure = ProviderError(
                f"{slot.name}: failed with {type(exc).__name__}", provider=slot.name
            )
        finally:
            elapsed = self.timer() - start
            stats.calls += 1
            stats.total_latency_s += elapsed
            stats.last_latency_s = elapsed
            if probe is not None:
                probe.end(token, slot.name, outcome, elapsed)
        if failure is not None:
            raise failure
        if stats.failing:
            stats.failing = False
            logger.info("provider %s answers again", slot.name)
            self.events.emit("provider_recovered", slot.name)
        return result

    async def fetch_entry(
        self,
        slot: Slot,
        key: str | None,
        fetch: Callable[[], Awaitable[Any]],
        previous: Entry | None,
    ) -> Entry:
        """Fetch a new entry (``key`` None for a document); when it replaces ``previous``,
        say so (`refreshed`) and, when the answer differs, tell the change watcher."""
        value = await self.call(slot, fetch)
        now = self.timer()
        if previous is not None:
            self.events.emit("refreshed", slot.name, None, now - previous.fetched_at)
            if previous.value != value:
                self.events.document_changed()
        return self.policy.new_entry(value, now, self.rng, previous, self.schedule(slot, key))

    def schedule(self, slot: Slot, key: str | None) -> float:
        """A time on the refresh schedule of ``slot``'s document (or of its ``key``).

        Each process draws one random offset into the TTL from its first fetch on (again in
        a forked child); each document sits a share of the TTL apart from the others (0, 1/2,
        1/4, 3/4... in chain order), and each key of a per-key provider at a share taken from
        its name. A process's refreshes are then spread over the TTL, and stay where they
        were drawn (`Policy.new_entry`).
        """
        ttl = self.policy.ttl
        if self._anchor is None:
            self._anchor = self.timer() + self.rng.uniform(0.0, ttl)
        share = slot.share if key is None else slot.share + zlib.crc32(key.encode()) / 2**32
        return self._anchor + (share % 1.0) * ttl

    async def _cached(
        self, slot: Slot, ckey: tuple[int, str | None], fetch: Callable[[], Awaitable[Any]]
    ) -> Any:
        """A cached answer, refreshed ahead of expiry, served stale while refreshes fail."""
        cache = self.cache
        entry = cache.touch(ckey)  # a hit counts; a miss is counted once, by the load
        tally = _tally.get()  # the lookup's own counts, for the lookups that joined it

        async def load() -> Entry:
            if entry is not None:
                # This lookup decided on `entry`, but on another loop (the sync facade's, a
                # thread's) a refresh may have replaced it since: a lookup that read it just
                # before, or two that both saw it due at once. Its answer is newer than
                # anything this decision was about, so it is the result, with no request.
                # Checked inside the load, so no other load of the key can store meanwhile.
                current = cache.peek(ckey)
                if current is not None and current[0] is not entry:
                    return current[0]
            return await self.fetch_entry(slot, ckey[1], fetch, entry)

        if entry is None:
            self.fetched += 1
            if tally is not None:
                tally.fetched += 1
            return (await cache.get_or_set_async(ckey, load)).value
        verdict = decide(entry, self.timer(), self.policy)
        if verdict is Freshness.FRESH:
            self.slow_hits += 1
            if tally is not None:
                tally.hits += 1
            return entry.value
        if verdict is Freshness.REFRESH_AHEAD:
            self.slow_hits += 1
            if tally is not None:
                tally.hits += 1
            entry.refreshing = True
            self.spawn(self._refresh_ahead(slot, ckey, entry, load))
            return entry.value
        if verdict is Freshness.RELOAD:
            # Too old to serve even stale: a new value, or the failure.
            self.fetched += 1
            if tally is not None:
                tally.fetched += 1
            return (await cache.refresh_async(ckey, load)).value
        if verdict is Freshness.SERVE_STALE:
            slot.stats.stale_served += 1
            if tally is not None:
                tally.stale.append(slot)
            self.events.emit("stale_served", slot.name, ckey[1], self.timer() - entry.fetched_at)
            return entry.value
        try:  # Freshness.REVALIDATE
            fresh = (await cache.refresh_async(ckey, load)).value
            self.fetched += 1
            if tally is not None:
                tally.fetched += 1
            return fresh
        except ProviderError as exc:
            slot.stats.stale_served += 1
            if tally is not None:
                tally.stale.append(slot)
            # Every lookup that joined the refresh gets its failure; the first one counts it
            # (and moves retry_at ahead), so one failure backs off once.
            if self.timer() >= entry.retry_at:
                self.refresh_failed(slot, entry, exc)
            self.events.emit("stale_served", slot.name, ckey[1], self.timer() - entry.fetched_at)
            return entry.value

    def refresh_failed(self, slot: Slot, entry: Entry, exc: ProviderError) -> None:
        """Count a failed refresh of ``entry``: back off its retries, warn once per streak."""
        entry.failures += 1
        age = self.timer() - entry.fetched_at
        self.events.emit("refresh_failed", slot.name, None, age)
        if not slot.stats.failing:
            slot.stats.failing = True  # so that the first success after the outage is logged
            self.events.emit("provider_failed", slot.name)
        entry.retry_at = self.timer() + self.policy.backoff(entry.failures, self.rng)
        if entry.failures == 1:
            logger.warning(
                "provider %s: refresh failed (%s); serving the last good answer, %.0f s old, "
                "and retrying",
                slot.name,
                exc,
                age,
            )

    async def _refresh_ahead(
        self,
        slot: Slot,
        ckey: tuple[int, str | None],
        entry: Entry,
        load: Callable[[], Awaitable[Entry]],
    ) -> None:
        try:
            await self.cache.refresh_async(ckey, load)
        except ProviderError as exc:
            self.refresh_failed(slot, entry, exc)
        except SecretsError:
            pass  # the manager closed meanwhile: nothing to refresh for
        finally:
            # Also when cancelled (its loop shutting down): a later lookup may refresh again.
            entry.refreshing = False

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run ``coro`` in a background task held until it ends."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- references -------------------------------------------------------------------

    def reference_slot(self, target: SecretProvider) -> Slot:
        """A slot outside the chain for a document that references read."""
        return Slot(target, Mode.DOCUMENT)

    async def cached_document(self, slot: Slot, fetch: Callable[[], Awaitable[Any]]) -> Any:
        """``slot``'s document through the cache: coalesced, refreshed ahead, stale-if-error."""
        return await self._cached(slot, slot.cache_key(""), fetch)

    def peek_document(self, slot: Slot) -> Any:
        """``slot``'s cached document while it needs no refresh, else `NOT_CACHED`. No I/O."""
        got = self._entries.get(slot.cache_key(""))
        if got is None or self.timer() >= got[0].refresh_at:
            return NOT_CACHED
        return got[0].value

    async def close_references(self) -> None:
        """Close the providers built for references."""
        if self.references is not None:
            await self.references.aclose()

    # -- housekeeping -----------------------------------------------------------------

    def cached_entry(self, slot: Slot, nkey: str) -> Entry | None:
        """The entry holding ``slot``'s answer for ``nkey``, even if stale, else None."""
        got = self.cache.peek(slot.cache_key(nkey))
        return None if got is None else got[0]

    def forget(self, nkey: str) -> None:
        """Drop the per-key answers for ``nkey`` (after a write)."""
        # Lookups from now on do not join one that began before the write.
        self._resolving.pop(nkey, None)
        for slot in self.slots:
            if slot.mode is Mode.PER_KEY:
                self.cache.delete(slot.cache_key(nkey))

    def clear(self) -> None:
        """Forget every cached answer, the document providers' own copies included."""
        self._resolving.clear()  # and lookups from now on join none that began before
        self.cache.clear()
        for slot in self.slots:
            provider = slot.provider
            if isinstance(provider, DocumentSecretProvider):
                provider.invalidate()

    def stats(self) -> ManagerStats:
        """Cache counters and, per provider, calls, errors, timeouts and latency."""
        counts = self.cache.stats()
        cache: ManagerCacheStats = {
            **counts,
            "hits": counts["hits"] + self.fast_hits,
            # The settings the user gave, not the cache's internal lifetime (freshness + stale).
            "default_ttl": self.policy.ttl,
            "max_stale": self.policy.max_stale,
        }
        answer: ManagerStats = {
            "cache": cache,
            "providers": {s.name: self._provider_stats(s) for s in self.slots},
            # Answers given from the cache, after a fetch, or stale (each cached answer a
            # lookup consulted: the fast path counts one per lookup).
            "lookups": {
                "hit": self.fast_hits + self.slow_hits,
                "miss": self.fetched,
                "stale": sum(s.stats.stale_served for s in self.slots),
            },
        }
        if self.references is not None:
            answer["references"] = self.references.stats()
        return answer

    async def aclose(self) -> None:
        """Mark closed, cancel the background work, then close every provider (one that fails
        to close is logged and the others still close)."""
        self.closed = True
        await self.cancel_background()
        for slot in self.slots:
            try:
                await slot.provider.aclose()
            except Exception as exc:
                logger.warning(
                    "provider %s did not close cleanly: %s", slot.name, type(exc).__name__
                )
        await self.close_references()

    @staticmethod
    def _provider_stats(slot: Slot) -> ProviderCallStats:
        snapshot = slot.stats.snapshot()
        snapshot.update(slot.provider.counters())  # type: ignore[typeddict-item]
        auth = slot.provider.auth_status()
        if auth is not None:
            snapshot["auth"] = auth  # logins, renewals, the token's remaining TTL
        return snapshot

    async def cancel_background(self) -> None:
        """Cancel background refreshes and loads in flight, so that no provider is called
        after it is closed: this loop's are awaited, other loops' cancelled on their loop."""
        current = asyncio.get_running_loop()
        here: list[asyncio.Task[Any]] = []
        for task in [*self._background, *self.cache.load_tasks()]:
            loop = task.get_loop()
            if loop is current:
                task.cancel()
                here.append(task)
            else:
                try:
                    loop.call_soon_threadsafe(task.cancel)
                except RuntimeError:
                    pass  # that loop is closed: its tasks are gone with it
        if here:
            await asyncio.gather(*here, return_exceptions=True)
