"""TTLCache: LRU + TTL semantics on a fake clock, counters, and single-flight under concurrency."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from simpletuner_secrets import _flight
from simpletuner_secrets import cache as cache_module
from simpletuner_secrets.cache import (
    TTLCache,
    cached,
    get_provider_config_cache,
    get_user_permission_cache,
    invalidate_provider_cache,
    invalidate_user_cache,
)
from tests.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(clock: FakeClock, **kwargs: Any) -> TTLCache[Any]:
    return TTLCache(timer=clock, **kwargs)


# -- basics --------------------------------------------------------------------------------


def test_defaults_match_the_design() -> None:
    """The constructor defaults are the design's: 300 s, 1,000 entries, 60 s cleanup."""
    c: TTLCache[int] = TTLCache()
    assert (c.default_ttl, c.max_size, c.cleanup_interval) == (300.0, 1000, 60.0)


def test_set_get_and_default(clock: FakeClock) -> None:
    """A stored value comes back; a missing key gives the default."""
    c = make(clock)
    c.set("a", 1)
    assert c.get("a") == 1
    assert c.get("b") is None
    assert c.get("b", "dflt") == "dflt"


def test_entry_expires_after_its_ttl(clock: FakeClock) -> None:
    """An entry is live strictly before its TTL has passed and gone after."""
    c = make(clock, default_ttl=10)
    c.set("a", 1)
    clock.tick(9.999)
    assert c.get("a") == 1
    clock.tick(0.001)
    assert c.get("a") is None
    assert "a" not in c


def test_per_key_ttl_overrides_default(clock: FakeClock) -> None:
    """A ttl given to set wins over default_ttl."""
    c = make(clock, default_ttl=10)
    c.set("short", 1, ttl=1)
    c.set("long", 2, ttl=100)
    clock.tick(50)
    assert c.get("short") is None
    assert c.get("long") == 2


def test_ttl_zero_expires_at_once(clock: FakeClock) -> None:
    """ttl=0 stores nothing readable."""
    c = make(clock)
    c.set("a", 1, ttl=0)
    assert c.get("a") is None


def test_negative_ttl_raises(clock: FakeClock) -> None:
    """A negative ttl is refused everywhere it can be given."""
    c = make(clock)
    with pytest.raises(ValueError, match="ttl"):
        c.set("a", 1, ttl=-1)
    with pytest.raises(ValueError, match="ttl"):
        c.get_or_set("a", lambda: 1, ttl=-0.5)
    with pytest.raises(ValueError, match="default_ttl"):
        TTLCache(default_ttl=-1)
    with pytest.raises(ValueError, match="max_size"):
        TTLCache(max_size=0)


async def test_negative_ttl_raises_async(clock: FakeClock) -> None:
    """get_or_set_async refuses a negative ttl on a miss."""
    c = make(clock)

    async def factory() -> int:
        return 1

    with pytest.raises(ValueError, match="ttl"):
        await c.get_or_set_async("a", factory, ttl=-1)


def test_none_is_cached_like_any_value(clock: FakeClock) -> None:
    """A factory returning None is not called again while the entry lives."""
    c = make(clock)
    calls = []
    assert c.get_or_set("a", lambda: calls.append(1)) is None
    assert c.get_or_set("a", lambda: calls.append(1)) is None
    assert calls == [1]
    assert "a" in c


def test_uses_monotonic_clock_by_default() -> None:
    """Without an injected timer the cache reads time.monotonic, not the wall clock."""
    c: TTLCache[int] = TTLCache()
    assert c._timer is time.monotonic


# -- LRU -----------------------------------------------------------------------------------


def test_evicts_exactly_the_least_recently_used(clock: FakeClock) -> None:
    """At capacity, a new key evicts the LRU entry, and a hit refreshes recency."""
    c = make(clock, max_size=3)
    for k in "abc":
        c.set(k, k)
    assert c.get("a") == "a"  # a is now most recent: b is the LRU
    c.set("d", "d")
    assert "b" not in c
    assert all(k in c for k in "acd")
    assert c.stats()["evictions"] == 1
    assert c.stats()["size"] == 3


def test_overwriting_a_key_refreshes_recency_without_eviction(clock: FakeClock) -> None:
    """Setting an existing key at capacity evicts nothing and makes it most recent."""
    c = make(clock, max_size=2)
    c.set("a", 1)
    c.set("b", 2)
    c.set("a", 3)
    assert c.stats()["evictions"] == 0
    c.set("c", 4)
    assert "b" not in c
    assert c.get("a") == 3


def test_eviction_is_constant_time(clock: FakeClock) -> None:
    """Evicting from a full 50,000-entry cache touches one entry, not all of them."""
    c = make(clock, max_size=50_000)
    for i in range(50_000):
        c.set(i, i)
    calls = 0
    real = c._data.popitem

    def counting_popitem(last: bool = True) -> Any:
        nonlocal calls
        calls += 1
        return real(last=last)

    c._data.popitem = counting_popitem  # type: ignore[method-assign]
    c.set("new", 1)
    assert calls == 1
    assert 0 not in c and 1 in c


# -- removal, prefix, stats, cleanup ------------------------------------------------------


def test_delete_clear_and_prefix(clock: FakeClock) -> None:
    """delete, clear and invalidate_prefix report what they removed."""
    c = make(clock)
    for k in ("user:1:a", "user:1:b", "user:10:a", "other"):
        c.set(k, 1)
    assert c.delete("other") is True
    assert c.delete("other") is False
    assert c.invalidate_prefix("user:1:") == 2
    assert "user:10:a" in c
    assert len(c) == 1
    assert c.clear() == 1
    assert len(c) == 0


def test_len_counts_live_entries_only(clock: FakeClock) -> None:
    """len() ignores entries whose TTL has passed, even before they are purged."""
    c = make(clock)
    c.set("a", 1, ttl=1)
    c.set("b", 1, ttl=10)
    clock.tick(5)
    assert len(c) == 1
    assert c.stats()["expired_count"] == 1


def test_stats_counters(clock: FakeClock) -> None:
    """stats() reports size, limits and hit/miss/load counters."""
    c = make(clock, default_ttl=5, max_size=10)
    c.set("a", 1)
    c.get("a")
    c.get("zz")
    c.get_or_set("b", lambda: 2)
    s = c.stats()
    for field in ("size", "max_size", "expired_count", "default_ttl", "hits", "misses"):
        assert field in s
    assert s["size"] == 2 and s["max_size"] == 10 and s["default_ttl"] == 5.0
    assert s["hits"] == 1 and s["misses"] == 2 and s["loads"] == 1
    assert s["evictions"] == 0 and s["coalesced"] == 0


def test_expired_entries_are_purged_every_cleanup_interval(clock: FakeClock) -> None:
    """A write after cleanup_interval removes every expired entry, not just the one touched."""
    c = make(clock, default_ttl=1, cleanup_interval=60)
    for i in range(100):
        c.set(i, i)
    clock.tick(30)
    c.set("x", 1)
    assert c.stats()["size"] == 101  # not yet: the interval has not passed
    clock.tick(31)
    c.set("y", 1)
    assert c.stats()["size"] == 1
    assert c.stats()["expirations"] == 101


def test_peek_shows_expired_entries(clock: FakeClock) -> None:
    """peek returns an expired entry with negative time left and does not count a hit."""
    c = make(clock)
    c.set("a", 1, ttl=1)
    clock.tick(3)
    assert c.peek("a") == (1, -2.0)
    assert c.peek("zz") is None
    assert c.stats()["hits"] == 0


# -- sync single-flight --------------------------------------------------------------------


def test_factory_exception_is_not_cached(clock: FakeClock) -> None:
    """A raising factory propagates and the next call tries again."""
    c = make(clock)

    def boom() -> int:
        raise RuntimeError("backend down")

    with pytest.raises(RuntimeError, match="backend down"):
        c.get_or_set("a", boom)
    assert c.get_or_set("a", lambda: 7) == 7


def test_sixteen_threads_one_factory_call() -> None:
    """16 threads missing one key at once run the factory once and all get its value."""
    c: TTLCache[int] = TTLCache()
    calls = 0
    start = threading.Barrier(16)
    results: list[int] = []

    def factory() -> int:
        nonlocal calls
        calls += 1
        time.sleep(0.1)
        return 42

    def worker() -> None:
        start.wait()
        results.append(c.get_or_set("k", factory))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == 1
    assert results == [42] * 16
    assert c.stats()["coalesced"] == 15


def test_thread_waiters_all_get_the_exception() -> None:
    """Every thread waiting on a failing load gets that exception; nothing is cached."""
    c: TTLCache[int] = TTLCache()
    start = threading.Barrier(8)
    errors: list[BaseException] = []
    calls = 0

    def factory() -> int:
        nonlocal calls
        calls += 1
        time.sleep(0.1)
        raise KeyError("nope")

    def worker() -> None:
        start.wait()
        try:
            c.get_or_set("k", factory)
        except KeyError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == 1
    assert len(errors) == 8
    assert "k" not in c


# -- async single-flight -------------------------------------------------------------------


async def test_thousand_tasks_one_factory_call() -> None:
    """1,000 tasks missing one key run the factory once and all get its result."""
    c: TTLCache[int] = TTLCache()
    calls = 0

    async def factory() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return 7

    results = await asyncio.gather(*(c.get_or_set_async("k", factory) for _ in range(1000)))
    assert calls == 1
    assert results == [7] * 1000
    assert c.get("k") == 7
    s = c.stats()
    assert s["loads"] == 1 and s["coalesced"] == 999


async def test_async_factory_exception_reaches_every_waiter_and_is_not_cached() -> None:
    """A failing async load raises in every waiter, once, and is retried on the next call."""
    c: TTLCache[int] = TTLCache()
    calls = 0

    async def factory() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise ConnectionError("unreachable")

    outcomes = await asyncio.gather(
        *(c.get_or_set_async("k", factory) for _ in range(50)), return_exceptions=True
    )
    assert calls == 1
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    assert "k" not in c

    async def good() -> int:
        return 1

    assert await c.get_or_set_async("k", good) == 1


async def test_cancelling_the_first_waiter_does_not_cancel_the_load() -> None:
    """The waiter that started the load can be cancelled; the others still get the value."""
    c: TTLCache[str] = TTLCache()
    started = asyncio.Event()
    calls = 0

    async def factory() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.sleep(0.05)
        return "v"

    first = asyncio.create_task(c.get_or_set_async("k", factory))
    await started.wait()
    others = [asyncio.create_task(c.get_or_set_async("k", factory)) for _ in range(10)]
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.gather(*others) == ["v"] * 10
    assert calls == 1
    assert c.get("k") == "v"


async def test_waiters_of_a_cancelled_load_on_their_loop_load_again() -> None:
    """A load task cancelled under its waiters (an owner shutting down) is abandoned, not
    reported: waiters on the same loop, leader included, start one new load and get its value."""
    c: TTLCache[str] = TTLCache()
    calls = 0
    first_started = asyncio.Event()

    async def factory() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            first_started.set()
            await asyncio.sleep(10)
        await asyncio.sleep(0.01)
        return f"v{calls}"

    waiters = [asyncio.create_task(c.get_or_set_async("k", factory)) for _ in range(20)]
    await first_started.wait()
    (load,) = c.load_tasks()
    load.cancel()
    assert await asyncio.gather(*waiters) == ["v2"] * 20
    assert calls == 2
    assert c.stats()["loads"] == 2


async def test_a_miss_joins_a_refresh_in_flight_on_its_loop() -> None:
    """A miss while a forced refresh of the key is loading waits for that refresh."""
    c: TTLCache[str] = TTLCache()
    calls = 0

    async def factory() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return f"v{calls}"

    refresh = asyncio.create_task(c.refresh_async("k", factory))
    await asyncio.sleep(0)
    assert await c.get_or_set_async("k", factory) == "v1"
    assert await refresh == "v1"
    assert calls == 1
    assert c.stats()["coalesced"] == 1


async def gated_load(
    c: TTLCache[str], key: str, value: str
) -> tuple[asyncio.Task[str], asyncio.Event]:
    """Start a load of ``key`` that returns ``value`` once the returned event is set; it is in
    flight when this returns."""
    gate = asyncio.Event()

    async def factory() -> str:
        await gate.wait()
        return value

    task = asyncio.create_task(c.get_or_set_async(key, factory))
    await asyncio.sleep(0)
    return task, gate


async def test_join_nowait_waits_for_the_load_in_flight_on_its_loop() -> None:
    """`join_nowait` hands a caller a future of the load this loop leads, counted as
    coalesced; with no load in flight it returns None (the caller looks up as usual)."""
    c: TTLCache[str] = TTLCache()
    assert c.join_nowait("k") is None
    leader, gate = await gated_load(c, "k", "v")
    waiters = [c.join_nowait("k") for _ in range(3)]
    assert all(w is not None for w in waiters)
    waiters[0].cancel()  # type: ignore[union-attr]  # leaves the load to the others
    gate.set()
    assert await leader == "v"
    assert [await w for w in waiters[1:]] == ["v", "v"]  # type: ignore[misc]
    assert c.stats()["loads"] == 1 and c.stats()["coalesced"] == 3
    assert c.join_nowait("k") is None  # done: the value is cached


async def test_join_nowait_leaves_a_live_value_to_the_lookup() -> None:
    """While a forced refresh of a key with a live value loads, `join_nowait` returns None: a
    lookup that has an answer does not wait for the refresh."""
    c: TTLCache[str] = TTLCache()
    c.set("k", "old")
    gate = asyncio.Event()

    async def factory() -> str:
        await gate.wait()
        return "new"

    refresh = asyncio.create_task(c.refresh_async("k", factory))
    await asyncio.sleep(0)
    assert c.join_nowait("k") is None
    assert await c.get_or_set_async("k", factory) == "old"
    gate.set()
    assert await refresh == "new"


async def test_join_nowait_does_not_join_another_loop_or_a_blocked_one() -> None:
    """A load led by another loop, or by this loop while it is listed as blocked (a sync
    facade call waits on it), is not joined by `join_nowait`."""
    c: TTLCache[str] = TTLCache()
    leader, gate = await gated_load(c, "k", "here")
    token = _flight.blocked_loops.set(frozenset({asyncio.get_running_loop()}))
    try:
        assert c.join_nowait("k") is None
    finally:
        _flight.blocked_loops.reset(token)

    async def elsewhere() -> object:
        return c.join_nowait("k")

    assert await asyncio.to_thread(asyncio.run, elsewhere()) is None
    gate.set()
    assert await leader == "here"
    assert c.stats()["coalesced"] == 0


async def test_cancelling_every_waiter_still_stores_the_result() -> None:
    """With all waiters cancelled the load finishes and warms the cache, leaving no task."""
    c: TTLCache[str] = TTLCache()
    done = asyncio.Event()

    async def factory() -> str:
        await asyncio.sleep(0.02)
        done.set()
        return "v"

    tasks = [asyncio.create_task(c.get_or_set_async("k", factory)) for _ in range(5)]
    await asyncio.sleep(0)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await done.wait()
    await asyncio.sleep(0)
    assert c.get("k") == "v"
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_cancelled_waiter_with_failing_load_leaves_no_warning() -> None:
    """A waiter cancelled just as the load fails leaves no 'exception was never retrieved'."""
    c: TTLCache[int] = TTLCache()
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    waiters: list[asyncio.Task[int]] = []

    async def factory() -> int:
        await asyncio.sleep(0.01)
        # Runs after the waiters' futures get the exception but before the waiters wake.
        loop.call_soon(lambda: [t.cancel() for t in waiters])
        raise RuntimeError("fail")

    waiters.extend(asyncio.create_task(c.get_or_set_async("k", factory)) for _ in range(20))
    outcomes = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes)
    del outcomes, waiters[:]
    gc.collect()
    await asyncio.sleep(0)
    assert reported == []


async def test_no_pending_task_after_load() -> None:
    """After a load completes no task, and no pending entry, remains."""
    c: TTLCache[int] = TTLCache()

    async def factory() -> int:
        return 1

    await asyncio.gather(*(c.get_or_set_async(i % 3, factory) for i in range(30)))
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert c.stats()["pending"] == 0


async def test_delete_during_load_keeps_the_stale_result_out() -> None:
    """A key deleted while its load runs is not stored by that load."""
    c: TTLCache[str] = TTLCache()
    task, release = await gated_load(c, "k", "old")
    c.delete("k")
    release.set()
    assert await task == "old"
    assert "k" not in c


def test_four_event_loops_in_four_threads_one_factory_call() -> None:
    """Four threads each running asyncio.run on the same missing key share one load."""
    c: TTLCache[int] = TTLCache()
    calls = 0
    lock = threading.Lock()
    start = threading.Barrier(4)
    results: list[int] = []

    async def factory() -> int:
        nonlocal calls
        with lock:
            calls += 1
        await asyncio.sleep(0.2)
        return 99

    def worker() -> None:
        start.wait()
        results.append(asyncio.run(c.get_or_set_async("k", factory)))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert calls == 1
    assert results == [99] * 4


def test_waiters_reload_when_the_leading_loop_dies() -> None:
    """If the loop running a load ends, waiters on other loops load again instead of hanging."""
    c: TTLCache[str] = TTLCache()
    leader_started = threading.Event()
    calls: list[str] = []

    async def slow_factory() -> str:
        calls.append("leader")
        leader_started.set()
        await asyncio.sleep(60)
        return "never"

    async def leader() -> None:
        task = asyncio.create_task(c.get_or_set_async("k", slow_factory))
        await asyncio.sleep(0.1)
        task.cancel()  # the waiter goes; the load task is cancelled when asyncio.run ends

    async def quick_factory() -> str:
        calls.append("follower")
        return "fresh"

    results: list[str] = []

    def follower() -> None:
        leader_started.wait()
        results.append(asyncio.run(c.get_or_set_async("k", quick_factory)))

    t = threading.Thread(target=follower)
    t.start()
    asyncio.run(leader())
    t.join(10)
    assert not t.is_alive()
    assert results == ["fresh"]
    assert calls == ["leader", "follower"]


def test_thread_waiter_reloads_when_the_leading_loop_dies() -> None:
    """A blocking get_or_set waiting on a load whose loop ends loads again by itself."""
    c: TTLCache[str] = TTLCache()
    started = threading.Event()

    async def slow_factory() -> str:
        started.set()
        await asyncio.sleep(60)
        return "never"

    async def leader() -> None:
        task = asyncio.create_task(c.get_or_set_async("k", slow_factory))
        await asyncio.sleep(0.1)
        task.cancel()

    results: list[str] = []

    def follower() -> None:
        started.wait()
        results.append(c.get_or_set("k", lambda: "sync"))

    t = threading.Thread(target=follower)
    t.start()
    asyncio.run(leader())
    t.join(10)
    assert results == ["sync"]


def test_waiters_reload_when_the_leading_loop_is_stopped_not_closed() -> None:
    """A load whose loop stopped (kept for a later run_until_complete) does not hang others."""
    c: TTLCache[str] = TTLCache()

    async def slow_factory() -> str:
        await asyncio.sleep(60)
        return "never"

    async def start_both() -> None:
        await asyncio.wait_for(
            asyncio.gather(
                c.get_or_set_async("a", slow_factory), c.get_or_set_async("s", slow_factory)
            ),
            0.05,
        )

    async def quick() -> str:
        return "async"

    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(asyncio.TimeoutError):
            loop.run_until_complete(start_both())
        assert c.stats()["pending"] == 2  # both load tasks wait in the stopped loop
        results: dict[str, str] = {}

        def follower() -> None:
            results["a"] = asyncio.run(c.get_or_set_async("a", quick))
            results["s"] = c.get_or_set("s", lambda: "sync")

        t = threading.Thread(target=follower)
        t.start()
        t.join(10)
        assert not t.is_alive(), "a waiter hung on a load of a stopped loop"
        assert results == {"a": "async", "s": "sync"}
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0.01))
        loop.close()


async def test_sync_call_inside_the_leading_loop_does_not_deadlock() -> None:
    """get_or_set from code running on the loop that leads the load loads on its own."""
    c: TTLCache[str] = TTLCache()
    started = asyncio.Event()

    async def slow_factory() -> str:
        started.set()
        await asyncio.sleep(0.05)
        return "async"

    task = asyncio.create_task(c.get_or_set_async("k", slow_factory))
    await started.wait()
    # This blocks the loop; joining the load it leads would never finish.
    assert c.get_or_set("k", lambda: "sync") == "sync"
    assert await task == "async"


async def test_blocked_loops_are_not_joined_across_threads() -> None:
    """A load led by a loop listed in blocked_loops is not joined from another thread."""
    c: TTLCache[str] = TTLCache()
    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def slow_factory() -> str:
        started.set()
        await asyncio.sleep(0.05)
        return "leader"

    task = asyncio.create_task(c.get_or_set_async("k", slow_factory))
    await started.wait()

    async def own() -> str:
        return "own"

    def in_other_thread() -> str:
        token = _flight.blocked_loops.set(frozenset({loop}))
        try:
            return asyncio.run(c.get_or_set_async("k", own))
        finally:
            _flight.blocked_loops.reset(token)

    result: list[str] = []
    t = threading.Thread(target=lambda: result.append(in_other_thread()))
    t.start()
    t.join(5)  # the loop is blocked here on purpose, as a sync facade caller would block it
    assert result == ["own"]
    assert await task == "leader"


async def test_sync_and_async_callers_share_one_load() -> None:
    """A thread calling get_or_set joins a load an async task leads on another loop."""
    c: TTLCache[int] = TTLCache()
    calls = 0
    started = asyncio.Event()

    async def factory() -> int:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.sleep(0.1)
        return 5

    task = asyncio.create_task(c.get_or_set_async("k", factory))
    await started.wait()
    from_thread = await asyncio.to_thread(c.get_or_set, "k", lambda: -1)
    assert from_thread == 5
    assert await task == 5
    assert calls == 1


# -- decorator and globals ------------------------------------------------------------------


def test_cached_keys_do_not_collide() -> None:
    """f('a,b') vs f('a','b'), f(1) vs f('1') vs f(True), args vs kwargs are distinct."""
    seen: list[tuple[Any, ...]] = []

    @cached(ttl=60)
    def f(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
        seen.append(args)
        return (args, tuple(sorted(kwargs.items())))

    assert f("a,b") != f("a", "b")
    assert f(1) != f("1")
    f(True)
    f(x=1)
    f(1)
    assert len(seen) == 6  # the repeated f(1) came from the cache


async def test_cached_async_coalesces_and_caches() -> None:
    """An async function decorated with cached runs once for concurrent identical calls."""
    calls = 0

    @cached(ttl=60, key_prefix="svc:")
    async def fetch(x: int) -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return x * 2

    results = await asyncio.gather(*(fetch(3) for _ in range(20)))
    assert results == [6] * 20
    assert calls == 1
    assert await fetch(4) == 8
    assert fetch.cache.invalidate_prefix("svc:") == 2  # type: ignore[attr-defined]
    assert await fetch(3) == 6
    assert calls == 3


def test_cached_rejects_unhashable_arguments() -> None:
    """Unhashable arguments raise TypeError instead of silently skipping the cache."""

    @cached()
    def f(x: Any) -> Any:
        return x

    with pytest.raises(TypeError):
        f([1, 2])


def test_global_caches_have_the_design_settings() -> None:
    """The two process-wide caches: provider config 300 s/100, user permissions 60 s/500."""
    p, u = get_provider_config_cache(), get_user_permission_cache()
    assert (p.default_ttl, p.max_size) == (300.0, 100)
    assert (u.default_ttl, u.max_size) == (60.0, 500)
    assert get_provider_config_cache() is p


def test_global_cache_creation_is_thread_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads racing to create a global cache all get the same instance."""
    monkeypatch.setattr(cache_module, "_user_permission_cache", None)
    barrier = threading.Barrier(8)
    got: list[TTLCache[Any]] = []

    def worker() -> None:
        barrier.wait()
        got.append(get_user_permission_cache())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(g) for g in got}) == 1


def test_invalidate_helpers_use_exact_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    """invalidate_user_cache(1) leaves user 10 alone; invalidate_provider_cache likewise."""
    monkeypatch.setattr(cache_module, "_user_permission_cache", None)
    monkeypatch.setattr(cache_module, "_provider_config_cache", None)
    users, providers = get_user_permission_cache(), get_provider_config_cache()
    users.set("user:1:read", True)
    users.set("user:10:read", True)
    providers.set("provider:aws:region", "x")
    providers.set("provider:aws2:region", "y")
    assert invalidate_user_cache(1) == 1
    assert "user:10:read" in users
    assert invalidate_provider_cache("aws") == 1
    assert "provider:aws2:region" in providers


def _run_many(fn: Callable[[], None], n: int) -> None:
    threads = [threading.Thread(target=fn) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_concurrent_writers_and_readers_keep_the_bound() -> None:
    """8 threads writing and reading distinct keys never push the cache past max_size."""
    c: TTLCache[int] = TTLCache(max_size=100)

    def worker() -> None:
        for i in range(5000):
            c.set(i % 300, i)
            c.get((i * 7) % 300)
            if i % 50 == 0:
                c.delete(i % 300)

    _run_many(worker, 8)
    assert c.stats()["size"] <= 100
    assert len(c._data) == c.stats()["size"]


async def test_refresh_async_replaces_a_live_entry_and_coalesces() -> None:
    """refresh_async loads anew despite a live entry, once for concurrent callers."""
    c: TTLCache[int] = TTLCache()
    c.set("k", 1)
    calls = 0

    async def factory() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return 2

    assert await asyncio.gather(*(c.refresh_async("k", factory) for _ in range(10))) == [2] * 10
    assert calls == 1
    assert c.get("k") == 2


async def test_failed_refresh_keeps_the_old_entry() -> None:
    """A refresh whose factory raises leaves the previous value in place."""
    c: TTLCache[int] = TTLCache()
    c.set("k", 1)

    async def factory() -> int:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        await c.refresh_async("k", factory)
    assert c.get("k") == 1


def test_cache_clear_drops_only_its_own_function() -> None:
    """Two cached functions sharing a cache, one name a prefix of the other: clear is exact."""
    shared: TTLCache[Any] = TTLCache()

    @cached(cache=shared)
    def f(x: int) -> int:
        return x

    @cached(cache=shared)
    def f2(x: int) -> int:
        return x * 2

    f(1)
    f2(1)
    assert len(shared) == 2
    f.cache_clear()  # type: ignore[attr-defined]
    assert len(shared) == 1
    f2.cache_clear()  # type: ignore[attr-defined]
    assert len(shared) == 0
