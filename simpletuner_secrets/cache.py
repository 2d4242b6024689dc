"""TTLCache: a thread-safe LRU + TTL cache whose misses coalesce across tasks, threads and loops.

Hits take no lock; writes, evictions and loads do. The clock is injectable so tests tick it.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

from . import _fork
from ._flight import Load, SingleFlight, checked_ttl
from .reports import CacheStats

__all__ = [
    "CachedFunction",
    "SecondChanceCache",
    "TTLCache",
    "cached",
    "get_provider_config_cache",
    "get_user_permission_cache",
    "invalidate_provider_cache",
    "invalidate_user_cache",
]

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")
R_co = TypeVar("R_co", covariant=True)


class TTLCache(SingleFlight[T]):
    """A thread-safe cache with per-entry TTL, true LRU eviction and single-flight loading.

    Hits are lock-free reads of an `OrderedDict` (safe under the GIL); every mutation holds a
    lock. `get_or_set` and `get_or_set_async` coalesce concurrent misses on a key, across tasks,
    threads and event loops, into one factory call whose result (or exception) every waiter
    receives. Exceptions are not cached; ``None`` results are.

    Args:
        default_ttl: Seconds an entry lives when `set` is given no ``ttl``.
        max_size: Most entries held; inserting a new key at capacity evicts the least recently
            used one.
        cleanup_interval: Expired entries are purged at least this often while the cache is
            written to or read (a miss checks).
        timer: Monotonic clock returning seconds; inject a fake one in tests.

    Raises:
        ValueError: A negative TTL or interval, or ``max_size`` below 1.
    """

    def __init__(
        self,
        default_ttl: float = 300.0,
        max_size: int = 1000,
        cleanup_interval: float = 60.0,
        *,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if default_ttl < 0:
            raise ValueError(f"default_ttl must be >= 0, got {default_ttl!r}")
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size!r}")
        if cleanup_interval < 0:
            raise ValueError(f"cleanup_interval must be >= 0, got {cleanup_interval!r}")
        self.default_ttl = float(default_ttl)
        self.max_size = int(max_size)
        self.cleanup_interval = float(cleanup_interval)
        self._timer = timer
        # key -> (value, expires_at); order is recency, most recent last.
        self._data: OrderedDict[Hashable, tuple[T, float]] = OrderedDict()
        self._pending: dict[Hashable, Load] = {}
        self._lock = threading.Lock()
        self._next_cleanup = timer() + self.cleanup_interval
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._expirations = 0
        self._loads = 0
        self._coalesced = 0
        _fork.track(self)

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock, and no load in flight (the parent's threads and
        loops that ran them are gone); the entries are kept."""
        self._lock = threading.Lock()
        self._pending = {}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size={len(self._data)}, max_size={self.max_size}, "
            f"default_ttl={self.default_ttl})"
        )

    # -- reads ---------------------------------------------------------------------------

    @overload
    def get(self, key: Hashable) -> T | None: ...
    @overload
    def get(self, key: Hashable, default: R) -> T | R: ...

    def get(self, key: Hashable, default: Any = None) -> Any:
        """Return the live value for ``key``, refreshing its recency.

        Args:
            key: The entry's key.
            default: Returned when the key is missing or expired.

        Returns:
            The cached value, or ``default``.
        """
        try:
            value, expires = self._data[key]
        except KeyError:
            self._misses += 1
            if self._timer() >= self._next_cleanup:
                self.purge_expired()  # a cache that is only read still sheds expired entries
            return default
        if expires > self._timer():
            try:
                self._data.move_to_end(key)
            except KeyError:
                pass  # deleted by another thread since we read it; the value was live
            self._hits += 1
            return value
        self._expire(key)
        self._misses += 1
        return default

    def __contains__(self, key: object) -> bool:
        try:
            entry = self._data[key]
        except (KeyError, TypeError):
            return False
        return entry[1] > self._timer()

    def __len__(self) -> int:
        """Return the number of live (unexpired) entries."""
        now = self._timer()
        return sum(1 for _, (_, expires) in self._snapshot() if expires > now)

    def keys_snapshot(self) -> list[Hashable]:
        """Every key held, expired ones not yet purged included (a copy)."""
        return [key for key, _ in self._snapshot()]

    def values_snapshot(self) -> list[T]:
        """Every value held, expired ones not yet purged included (a copy)."""
        return [value for _, (value, _) in self._snapshot()]

    def _snapshot(self) -> list[tuple[Hashable, tuple[T, float]]]:
        """The entries, copied in one C call.

        Lock-free hits reorder the dict (`move_to_end`) while the lock is held elsewhere, so no
        loop may iterate the dict itself: it would raise "OrderedDict mutated during
        iteration". ``list()`` copies it without running Python code in between, so no other
        thread can touch it meanwhile; a garbage collection that runs a finalizer in the middle
        could, and then the copy is simply taken again.
        """
        while True:
            try:
                return list(self._data.items())
            except RuntimeError:
                continue

    # -- writes --------------------------------------------------------------------------

    def set(self, key: Hashable, value: T, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``default_ttl`` when None).

        ``ttl=0`` stores an entry that is already expired. Setting a key makes it the most
        recently used; inserting a new key at capacity evicts the least recently used one.

        Args:
            key: The entry's key.
            value: The value; ``None`` is a value like any other.
            ttl: Seconds to live.

        Raises:
            ValueError: ``ttl`` is negative.
        """
        seconds = checked_ttl(ttl, self.default_ttl)
        with self._lock:
            # A load of the key in flight is older than this value: it must not overwrite it
            # (its waiters still get its result).
            self._pending.pop(key, None)
            self._store(key, value, seconds)

    def _store(self, key: Hashable, value: T, seconds: float) -> None:
        # Caller holds the lock.
        now = self._timer()
        if now >= self._next_cleanup:
            self._purge(now)
        data = self._data
        if key in data:
            data[key] = (value, now + seconds)
            data.move_to_end(key)
            return
        if len(data) >= self.max_size:
            data.popitem(last=False)
            self._evictions += 1
        data[key] = (value, now + seconds)

    def _expire(self, key: Hashable) -> None:
        with self._lock:
            now = self._timer()
            entry = self._data.get(key)
            if entry is not None and entry[1] <= now:
                del self._data[key]
                self._expirations += 1
            if now >= self._next_cleanup:
                self._purge(now)

    def _purge(self, now: float) -> int:
        # Caller holds the lock.
        dead = [k for k, (_, expires) in self._snapshot() if expires <= now]
        for k in dead:
            self._data.pop(k, None)
        self._expirations += len(dead)
        self._next_cleanup = now + self.cleanup_interval
        return len(dead)

    def purge_expired(self) -> int:
        """Remove every expired entry now.

        Returns:
            How many entries were removed.
        """
        with self._lock:
            return self._purge(self._timer())

    def delete(self, key: Hashable) -> bool:
        """Remove ``key``; an in-flight load of it will not be stored.

        Args:
            key: The entry's key.

        Returns:
            Whether a live entry was removed.
        """
        with self._lock:
            self._pending.pop(key, None)
            entry = self._data.pop(key, None)
            return entry is not None and entry[1] > self._timer()

    def clear(self) -> int:
        """Remove every entry; in-flight loads will not be stored.

        Returns:
            How many entries were removed.
        """
        with self._lock:
            count = len(self._data)
            self._data.clear()
            self._pending.clear()
            return count

    def invalidate_prefix(self, prefix: str) -> int:
        """Remove every entry whose key starts with ``prefix``.

        String keys match by `str.startswith`; keys made by `cached` match by their function
        name with its ``key_prefix``.

        Args:
            prefix: The prefix to match.

        Returns:
            How many entries were removed.
        """
        return self._remove_where(lambda k: _key_text(k).startswith(prefix))

    def _remove_where(self, doomed: Callable[[Hashable], bool]) -> int:
        with self._lock:
            keys = [k for k, _ in self._snapshot() if doomed(k)]
            for k in keys:
                del self._data[k]
            for k in [k for k in self._pending if doomed(k)]:
                del self._pending[k]
            return len(keys)

    # -- introspection -------------------------------------------------------------------

    def stats(self) -> CacheStats:
        """Return a snapshot of the cache's size and counters (a `CacheStats`).

        Returns:
            ``size`` (entries held, expired ones not yet purged included), ``max_size``,
            ``expired_count`` (held entries already expired), ``default_ttl``, ``hits``,
            ``misses``, ``evictions`` (LRU capacity evictions), ``expirations`` (expired
            entries removed), ``loads`` (factory calls), ``coalesced`` (callers that joined a
            load already in flight), ``pending`` (loads in flight).
        """
        now = self._timer()
        with self._lock:
            entries = self._snapshot()
            expired = sum(1 for _, (_, expires) in entries if expires <= now)
            return {
                "size": len(entries),
                "max_size": self.max_size,
                "expired_count": expired,
                "default_ttl": self.default_ttl,
                "hits": self._hits,
                "misses": self._misses,
                "evictions": self._evictions,
                "expirations": self._expirations,
                "loads": self._loads,
                "coalesced": self._coalesced,
                "pending": len(self._pending),
            }

    def peek(self, key: Hashable) -> tuple[T, float] | None:
        """Return ``(value, seconds_left)`` for ``key`` even if expired, without touching stats.

        ``seconds_left`` is negative for an expired entry not yet purged.
        """
        entry = self._data.get(key)
        if entry is None:
            return None
        return entry[0], entry[1] - self._timer()


class Marked(Protocol):
    """A value that records whether it answered a lookup (see `SecondChanceCache`)."""

    used: bool


M = TypeVar("M", bound=Marked)


class SecondChanceCache(TTLCache[M]):
    """A `TTLCache` whose fast-path readers only mark entries used, instead of reordering.

    The manager's lookups read entries without any call into the cache (one dict read and one
    attribute store: the ``warm get`` rows of ``bench_manager``); an insert at capacity gives
    each used entry at the front a second chance (moved to the end, mark cleared) and evicts
    the first unused one. An entry looked up at least once per round of the cache is never
    evicted.
    """

    def _store(self, key: Hashable, value: M, seconds: float) -> None:
        # Caller holds the lock.
        data = self._data
        if key not in data and len(data) >= self.max_size:
            for _ in range(len(data)):
                front = next(iter(data))
                entry = data[front][0]
                if not entry.used:
                    break
                entry.used = False
                data.move_to_end(front)
        super()._store(key, value, seconds)

    def entries(self) -> Mapping[Hashable, tuple[M, float]]:
        """The live mapping of key to ``(value, expires_at)``, for lock-free fast-path reads.

        Read it with ``.get(key)`` only: iterating it races the cache's writers.
        """
        return self._data

    def touch(self, key: Hashable) -> M | None:
        """The live value for ``key`` (recency refreshed, counted as a hit), else None with
        nothing counted: the load that follows a miss counts it."""
        try:
            value, expires = self._data[key]
        except KeyError:
            return None
        if expires <= self._timer():
            return None
        try:
            self._data.move_to_end(key)
        except KeyError:
            pass
        self._hits += 1
        return value


# -- keys for `cached` -------------------------------------------------------------------


class _CallKey(tuple[Any, ...]):
    """A `cached` key: the function's name (with ``key_prefix``) then the typed arguments.

    Arguments keep their types (``f(1)``, ``f(True)`` and ``f("1")`` differ) and positional
    and keyword arguments stay apart, so no two different calls share an entry.
    """

    __slots__ = ()

    @property
    def name(self) -> str:
        return cast(str, self[0])


def _key_text(key: Hashable) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, _CallKey):
        return key.name
    return ""


def _typed(value: Any) -> Any:
    """``value`` with its type, and the types of what a tuple or frozenset holds: ``(1,)``,
    ``(True,)`` and ``(1.0,)`` compare equal but are different calls."""
    kind = type(value)
    if kind is tuple:
        return (kind, tuple(_typed(v) for v in value))
    if kind is frozenset:
        return (kind, frozenset(_typed(v) for v in value))
    return (kind, value)


def _call_key(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _CallKey:
    typed_args = tuple(_typed(a) for a in args)
    typed_kwargs = tuple(sorted((k, _typed(v)) for k, v in kwargs.items()))
    return _CallKey((name, typed_args, typed_kwargs))


class CachedFunction(Protocol[P, R_co]):
    """What `cached` returns: the function with its own signature, plus its cache.

    Attributes:
        cache: The `TTLCache` holding its results.
    """

    cache: TTLCache[Any]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def cache_clear(self) -> int:
        """Drop this function's cached results; returns how many were dropped."""
        ...

    # A decorated method: the class attribute is the wrapper itself, an instance's is bound
    # (its parameters are then not checked, its result type is kept).
    @overload
    def __get__(
        self, instance: None, owner: type[Any] | None = None
    ) -> CachedFunction[P, R_co]: ...
    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None) -> Callable[..., R_co]: ...


def cached(
    ttl: float = 60.0, key_prefix: str = "", *, cache: TTLCache[Any] | None = None
) -> Callable[[Callable[P, R]], CachedFunction[P, R]]:
    """Cache a sync or async function's results, coalescing concurrent calls.

    Each call's key is ``key_prefix`` + the function's qualified name + its typed arguments, so
    different calls never collide. The wrapper keeps the function's signature for type
    checkers (`CachedFunction`) and has ``cache`` (the `TTLCache` used) and ``cache_clear()``.

    Args:
        ttl: Seconds to keep each result.
        key_prefix: Prepended to the function's name in keys; `TTLCache.invalidate_prefix`
            with it drops the function's entries.
        cache: A cache to share; by default each decorated function gets its own (1,000
            entries).

    Returns:
        The decorator.

    Raises:
        ValueError: ``ttl`` is negative.
        TypeError: At call time, an argument is not hashable.
    """
    if ttl < 0:
        raise ValueError(f"ttl must be >= 0, got {ttl!r}")

    def decorate(func: Callable[P, R]) -> CachedFunction[P, R]:
        store: TTLCache[Any] = cache if cache is not None else TTLCache(default_ttl=ttl)
        name = f"{key_prefix}{func.__module__}.{func.__qualname__}"
        wrapper: Any
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                key = _call_key(name, args, kwargs)
                return await store.get_or_set_async(key, lambda: func(*args, **kwargs), ttl)

            wrapper = async_wrapper
        else:

            @functools.wraps(func)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                key = _call_key(name, args, kwargs)
                return store.get_or_set(key, lambda: func(*args, **kwargs), ttl)

            wrapper = sync_wrapper
        wrapper.cache = store
        # This function's entries only (exact name): another cached function sharing the
        # cache under a longer name keeps its own.
        wrapper.cache_clear = lambda: store._remove_where(
            lambda k: isinstance(k, _CallKey) and k.name == name
        )
        return cast(CachedFunction[P, R], wrapper)

    return decorate


# -- process-wide caches -----------------------------------------------------------------

_globals_lock = threading.Lock()


def _new_globals_lock() -> None:
    global _globals_lock
    _globals_lock = threading.Lock()


_fork.after_fork(_new_globals_lock)
_provider_config_cache: TTLCache[Any] | None = None
_user_permission_cache: TTLCache[Any] | None = None


def get_provider_config_cache() -> TTLCache[Any]:
    """Return the process-wide provider-settings cache (300 s TTL, 100 entries)."""
    global _provider_config_cache
    if _provider_config_cache is None:
        with _globals_lock:
            if _provider_config_cache is None:
                _provider_config_cache = TTLCache(default_ttl=300.0, max_size=100)
    return _provider_config_cache


def get_user_permission_cache() -> TTLCache[Any]:
    """Return the process-wide user-permission cache (60 s TTL, 500 entries)."""
    global _user_permission_cache
    if _user_permission_cache is None:
        with _globals_lock:
            if _user_permission_cache is None:
                _user_permission_cache = TTLCache(default_ttl=60.0, max_size=500)
    return _user_permission_cache


def invalidate_user_cache(user_id: object) -> int:
    """Drop every permission entry of one user (keys ``user:{user_id}:...``).

    Returns:
        How many entries were removed.
    """
    return get_user_permission_cache().invalidate_prefix(f"user:{user_id}:")


def invalidate_provider_cache(provider: str) -> int:
    """Drop every settings entry of one provider (keys ``provider:{provider}:...``).

    Returns:
        How many entries were removed.
    """
    return get_provider_config_cache().invalidate_prefix(f"provider:{provider}:")
