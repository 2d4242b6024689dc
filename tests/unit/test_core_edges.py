"""Edges of the cache, the manager and the sync facade: factories ending in CancelledError,
one backoff per failed refresh, recently used entries kept, jittered freshness, a `set` racing
a load, nested `cached` keys, purges on reads, and the facade's thread racing close or start.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

import pytest

from simpletuner_secrets._loop_thread import LoopThread
from simpletuner_secrets.cache import TTLCache, cached
from simpletuner_secrets.errors import ProviderError, SecretsError
from simpletuner_secrets.providers.base import SecretProvider

from .test_manager import DocProvider, FakeClock, make
from .test_manager import KeyProvider as BaseKeyProvider


class KeyProvider(BaseKeyProvider):
    """The manager tests' key-by-key provider, recording which keys it was asked."""

    def __init__(self, data: Mapping[str, str]) -> None:
        super().__init__(data)
        self.asked: list[str] = []

    async def get(self, key: str) -> str | None:
        self.asked.append(key)
        return await super().get(key)


# -- manager -----------------------------------------------------------------------------


async def test_one_failed_refresh_backs_off_once_however_many_lookups_waited() -> None:
    """One failed refresh counts once, however many stale lookups joined it: the first retry
    comes after at most 1 s, not after 2**9 s (capped 60 s) for ten waiters."""
    clock = FakeClock()
    doc = DocProvider({"A": "value-a"}, delay=0.05)
    m = make(doc, clock=clock, cache_ttl=10)
    assert await m.get("A") == "value-a"
    clock.now += 20  # stale, well inside max_stale
    doc.fail = True
    results = await asyncio.gather(*(m.get("A") for _ in range(10)))
    assert results == ["value-a"] * 10
    assert doc.loads == 2  # one refresh for all ten
    entry = m.resolver.cache.peek((id(m.resolver.slots[0]), None))
    assert entry is not None
    assert entry[0].failures == 1
    assert entry[0].retry_at - clock.now <= 1.0  # first retry after at most 1 s
    await m.aclose()


async def test_manager_cache_evicts_least_recently_used_not_first_inserted() -> None:
    """A key read on every request stays cached; the least recently used one is evicted, not
    the first inserted (fast-path hits must count as use)."""
    keys = KeyProvider({"A": "value-a", "B": "value-b", "C": "value-c"})
    m = make(keys, cache_max_size=2)
    assert await m.get("A") == "value-a"
    assert await m.get("B") == "value-b"
    assert await m.get("A") == "value-a"  # A is now the most recently used
    assert await m.get("C") == "value-c"  # evicts the least recently used: B
    assert await m.get("A") == "value-a"
    assert keys.asked == ["A", "B", "C"]  # A still cached
    await m.aclose()


# -- TTLCache ----------------------------------------------------------------------------


async def test_factory_raising_cancelled_error_does_not_spin_forever() -> None:
    """A factory that ends in CancelledError while its task is not being cancelled (it awaited
    a future someone else cancelled) fails its load; it is not taken for a loop shutdown that
    would make the waiter load again, forever."""
    cache: TTLCache[str] = TTLCache()
    calls = 0

    async def factory() -> str:
        nonlocal calls
        calls += 1
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        fut.cancel()
        return await fut

    # The waiter gets the load's failure, not a CancelledError of its own (it was not
    # cancelled), and nothing is cached.
    with pytest.raises(RuntimeError, match="CancelledError without being cancelled"):
        try:
            await asyncio.wait_for(cache.get_or_set_async("k", factory), 10.0)
        except asyncio.TimeoutError:
            pytest.fail(f"get_or_set_async spun for 10 s; the factory ran {calls} times")
    assert calls == 1
    assert "k" not in cache and cache.stats()["pending"] == 0


def test_cached_keys_tell_nested_types_apart() -> None:
    """Nested arguments keep their types too: f((1,)) and f((True,)) (or frozensets of them)
    are different calls."""

    @cached()
    def show(x: object) -> str:
        return repr(x)

    assert show((1,)) == "(1,)"
    assert show((True,)) == "(True,)"


def test_get_misses_purge_expired_entries_every_cleanup_interval() -> None:
    """Expired entries are purged at least every ``cleanup_interval`` while the cache is read,
    not only when it is written to."""
    clock = FakeClock()
    cache: TTLCache[int] = TTLCache(default_ttl=1, cleanup_interval=10, timer=clock)
    for i in range(5):
        cache.set(f"k{i}", i)
    clock.now += 20
    assert cache.get("other") is None  # a miss, after cleanup_interval
    assert cache.stats()["size"] == 0


# -- sync facade -------------------------------------------------------------------------


class _HookLock:
    """A lock that runs ``hook`` once, before its first acquisition by the test thread."""

    def __init__(self, hook: Any) -> None:
        self._lock = threading.Lock()
        self._hook = hook
        self._owner = threading.get_ident()

    def __enter__(self) -> Any:
        if self._hook is not None and threading.get_ident() == self._owner:
            hook, self._hook = self._hook, None
            hook()
        return self._lock.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__(*exc)


def test_sync_call_racing_close_does_not_start_a_new_loop_thread() -> None:
    """A sync call racing `close()` raises SecretsError and starts no new background loop
    thread after the old one was stopped (a leaked thread and loop per race)."""
    m = make(KeyProvider({"A": "value-a"}))
    facade = m.sync

    def close_meanwhile() -> None:
        t = threading.Thread(target=facade.close)
        t.start()
        t.join()

    facade._lock = _HookLock(close_meanwhile)  # type: ignore[assignment]
    with pytest.raises(SecretsError):
        facade.get("A")
    leaked = facade._runner
    if leaked is not None:
        leaked.stop()  # clean up before failing
    assert leaked is None, "a background loop thread was started after close()"


# -- providers ending in CancelledError, stats, freshness, races -------------------------


class CancellingProvider(SecretProvider):
    """A custom provider whose back-end call ends in CancelledError without the task being
    cancelled (it awaited a future another party cancelled)."""

    name = "cancelling"

    def __init__(self) -> None:
        self.calls = 0

    async def get(self, key: str) -> str | None:
        self.calls += 1
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        fut.cancel()
        return await fut


@pytest.mark.parametrize("on_provider_error", ["skip", "raise"])
async def test_manager_get_ends_when_a_provider_raises_cancelled_error(
    on_provider_error: str,
) -> None:
    """A provider ending in CancelledError (not cancelled itself) is a failing provider: the
    lookup ends, skipping it or raising ProviderError, instead of reloading forever."""
    provider = CancellingProvider()
    m = make(provider, provider_timeout=0.2, on_provider_error=on_provider_error)
    try:
        lookup = asyncio.wait_for(m.get("A", default="fallback"), 10.0)
        if on_provider_error == "skip":
            assert await lookup == "fallback"
        else:
            with pytest.raises(ProviderError, match="failed with CancelledError"):
                await lookup
    except asyncio.TimeoutError:
        pytest.fail(f"get() did not end in 10 s; the provider was called {provider.calls} times")
    finally:
        await m.aclose()
    assert provider.calls == 1
    stats = m.stats()["providers"]["cancelling"]
    assert (stats["calls"], stats["errors"], stats["timeouts"]) == (1, 1, 0)


async def test_cold_lookup_counts_one_cache_miss() -> None:
    """A cold lookup counts one cache miss, not one for the first read and one for the load."""
    m = make(KeyProvider({"A": "value-a"}))
    assert await m.get("A") == "value-a"
    assert m.stats()["cache"]["misses"] == 1
    await m.aclose()


async def test_jittered_freshness_is_not_cut_short_by_the_cache_ttl(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An entry fresh by its own jittered TTL (up to 1.1 x cache_ttl) is still cached with a
    small max_stale: the upper half of the jitter is not lost (nor is the fresh answer)."""
    from simpletuner_secrets import manager as manager_module

    monkeypatch.setattr(manager_module.random, "uniform", lambda a, b: b)  # jitter at +10%
    clock = FakeClock()
    doc = DocProvider({"A": "value-a"})
    m = make(doc, clock=clock, cache_ttl=100, max_stale=0)
    assert await m.get("A") == "value-a"
    clock.now += 105  # fresh until 110 by the entry's own reckoning
    doc.fail = True
    assert await m.get("A") == "value-a"  # still fresh: served (refresh-ahead may fail)
    await m.aclose()


async def test_set_during_a_load_is_not_overwritten_by_the_older_load() -> None:
    """A `set` while a load of the key is in flight wins: the older load gives its waiters
    its result but does not overwrite the newer value."""
    cache: TTLCache[str] = TTLCache()
    release = asyncio.Event()

    async def slow_old() -> str:
        await release.wait()
        return "old"

    waiter = asyncio.create_task(cache.get_or_set_async("k", slow_old))
    await asyncio.sleep(0)
    cache.set("k", "new")
    release.set()
    assert await waiter == "old"  # the waiter gets its load's result, fine
    assert cache.get("k") == "new"


def test_first_sync_call_is_not_refused_while_the_loop_thread_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A background thread slow to start its loop (a busy machine; here the poll interval is
    shortened instead) is not taken for a closed manager: the first call gets its value."""
    import time

    from simpletuner_secrets import sync as sync_module

    monkeypatch.setattr(sync_module, "_ALIVE_POLL_S", 0.01)
    original = LoopThread._run

    def slow_start(self: Any) -> None:
        time.sleep(0.1)
        original(self)

    monkeypatch.setattr(LoopThread, "_run", slow_start)
    m = make(KeyProvider({"A": "value-a"}))
    try:
        assert m.sync.get("A") == "value-a"
    finally:
        m.sync.close()


async def test_negative_ttl_is_refused_on_a_hit_too() -> None:
    """A negative ``ttl`` is refused on a hit as on a miss (as `get_or_set` does)."""
    cache: TTLCache[str] = TTLCache()
    cache.set("k", "v")

    async def factory() -> str:
        return "other"

    with pytest.raises(ValueError):
        await cache.get_or_set_async("k", factory, ttl=-1)
