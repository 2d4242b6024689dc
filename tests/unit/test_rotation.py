"""SPEC 10 on small fake providers and the fake clock: get_many, require, refresh, on_change,
watch, on_event, and their sync facade twins."""

from __future__ import annotations

import asyncio
import itertools
import logging
import pickle
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest

from simpletuner_secrets import (
    MissingSecretError,
    ProviderError,
    SecretsError,
    SecretsEvent,
    SecretsManager,
)
from simpletuner_secrets._events import EVENT_KINDS, EventKind
from simpletuner_secrets.keys import normalize_key
from simpletuner_secrets.providers.base import DocumentSecretProvider, SecretProvider
from tests.clock import FakeClock

SECRET = "rotation-secret-value-v1"
ROTATED = "rotation-secret-value-v2"


class Doc(DocumentSecretProvider):
    """A remote document (like AWS or Vault): one load answers every key."""

    def __init__(self, data: Mapping[str, str], name: str = "doc") -> None:
        super().__init__()
        self.name = name  # type: ignore[misc]
        self.data = dict(data)
        self.loads = 0
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def load_document(self) -> Mapping[str, str]:
        self.loads += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ProviderError(f"{self.name}: backend down", provider=self.name)
        return {normalize_key(k): v for k, v in self.data.items()}


class PerKey(SecretProvider):
    """A custom provider answering key by key."""

    name = "perkey"

    def __init__(self, data: Mapping[str, str]) -> None:
        self.data = dict(data)
        self.calls: list[str] = []

    async def get(self, key: str) -> str | None:
        self.calls.append(key)
        return self.data.get(key)


class Live(SecretProvider):
    """A live provider (like the environment): read every time, never cached."""

    name = "live"
    cache_answers = False

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def peek(self, key: str) -> str | None:
        return self.data.get(key)

    async def get(self, key: str) -> str | None:
        return self.data.get(key)


class Authenticating(Doc):
    """A provider that reports its own logins (the `EventSource` protocol)."""

    def bind_events(self, emit: Callable[[EventKind], None]) -> None:
        self.emit = emit

    async def load_document(self) -> Mapping[str, str]:
        self.emit("login")
        return await super().load_document()


def manager(*providers: SecretProvider, clock: FakeClock, **kwargs: Any) -> SecretsManager:
    return SecretsManager(
        list(providers), cache_ttl=60, timer=clock, rng=random.Random(3), **kwargs
    )


def past_refresh_at(m: SecretsManager, clock: FakeClock) -> None:
    """Move the clock just past the first provider's refresh ahead, before its freshness ends."""
    entry = m.resolver.cached_entry(m.resolver.slots[0], "K")
    assert entry is not None and entry.refresh_at + 0.01 < entry.fresh_until
    clock.now = max(clock.now, entry.refresh_at + 0.01)


async def settle(condition: Callable[[], bool], guard_s: float = 10.0) -> None:
    """Yield to the loop until ``condition`` holds (a wide hang guard, not a timing)."""
    deadline = time.monotonic() + guard_s
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.001)


# -- get_many and require --------------------------------------------------------------


async def test_get_many_fetches_each_document_once_and_keys_by_the_given_spelling() -> None:
    """get_many of three keys over two documents: one load each, answers keyed as asked."""
    clock = FakeClock()
    a, b = Doc({"HF_TOKEN": SECRET}, "a"), Doc({"API_KEY": "k", "HF_TOKEN": "lower"}, "b")
    async with manager(a, b, clock=clock) as m:
        got = await m.get_many(["hf-token", "api.key", "NOWHERE"])
        assert got == {"hf-token": SECRET, "api.key": "k", "NOWHERE": None}
        assert (a.loads, b.loads) == (1, 1)


async def test_get_many_raises_the_first_failure_and_leaves_no_task_behind() -> None:
    """With on_provider_error="raise", a failing document fails get_many; no lookup stays."""
    clock = FakeClock()
    bad = Doc({"X": "1"})
    bad.fail = True
    async with manager(bad, clock=clock, on_provider_error="raise") as m:
        before = len(asyncio.all_tasks())
        with pytest.raises(ProviderError):
            await m.get_many(["X", "Y", "Z"])
        assert len(asyncio.all_tasks()) == before


async def test_require_returns_the_value_and_names_what_was_asked_when_absent() -> None:
    """require raises MissingSecretError naming the key, the providers and the failing ones."""
    clock = FakeClock()
    ok, down = Doc({"HF_TOKEN": SECRET}, "ok"), Doc({}, "down")
    down.fail = True
    async with manager(ok, down, clock=clock) as m:
        assert await m.require("hf-token") == SECRET
        with pytest.raises(MissingSecretError) as caught:
            await m.require("db.password")
    err = caught.value
    assert isinstance(err, SecretsError)
    assert err.key == "DB_PASSWORD" and err.providers == ["ok", "down"] and err.failed == ["down"]
    assert str(err) == "secret DB_PASSWORD is not set (providers asked: ok, down; failing: down)"
    assert SECRET not in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert (again.key, again.failed) == ("DB_PASSWORD", ["down"])


# -- refresh ---------------------------------------------------------------------------


async def test_refresh_fetches_a_fresh_document_again_and_sees_the_rotation() -> None:
    """refresh() reloads a document still fresh in the cache; the next get sees the new value."""
    clock = FakeClock()
    doc = Doc({"DB_PASSWORD": SECRET})
    async with manager(doc, clock=clock) as m:
        assert await m.get("DB_PASSWORD") == SECRET
        doc.data["DB_PASSWORD"] = ROTATED
        assert await m.get("DB_PASSWORD") == SECRET  # cached: the rotation is not seen yet
        await m.refresh("db-password")
        assert await m.get("DB_PASSWORD") == ROTATED
        assert doc.loads == 2


async def test_refresh_is_rate_limited_per_document_by_min_refresh_interval() -> None:
    """Within min_refresh_interval a second refresh fetches nothing; after it, one more fetch."""
    clock = FakeClock()
    doc = Doc({"K": "v"})
    async with manager(doc, clock=clock, min_refresh_interval=5.0) as m:
        await m.get("K")
        for _ in range(10):
            await m.refresh()
        assert doc.loads == 2
        clock.tick(4.9)
        await m.refresh("K")
        assert doc.loads == 2
        clock.tick(0.2)
        await m.refresh("K")
        assert doc.loads == 3


async def test_concurrent_refreshes_share_one_fetch_and_all_wait_for_it() -> None:
    """Fifty refresh() calls at once: one fetch; none returns before that fetch finished."""
    clock = FakeClock()
    doc = Doc({"K": SECRET})
    async with manager(doc, clock=clock) as m:
        await m.get("K")
        doc.gate = asyncio.Event()
        doc.data["K"] = ROTATED
        calls = [asyncio.ensure_future(m.refresh()) for _ in range(50)]
        await settle(lambda: doc.loads == 2)
        await asyncio.sleep(0)
        assert not any(c.done() for c in calls)
        doc.gate.set()
        await asyncio.gather(*calls)
        assert doc.loads == 2
        assert m.resolver.peek("K") == ROTATED


async def test_cancelling_the_first_refresh_does_not_cancel_it_for_the_others() -> None:
    """The caller that started a refresh is cancelled; another caller still gets it done."""
    clock = FakeClock()
    doc = Doc({"K": SECRET})
    async with manager(doc, clock=clock) as m:
        await m.get("K")
        doc.gate = asyncio.Event()
        doc.data["K"] = ROTATED
        first = asyncio.ensure_future(m.refresh())
        await settle(lambda: doc.loads == 2)
        second = asyncio.ensure_future(m.refresh())
        await asyncio.sleep(0)
        first.cancel()
        doc.gate.set()
        await second
        assert first.cancelled() and m.resolver.peek("K") == ROTATED and doc.loads == 2


async def test_failed_refresh_keeps_the_last_good_value_or_raises_when_asked() -> None:
    """A failing refresh keeps serving the old value under "skip"; "raise" raises it."""
    clock = FakeClock()
    doc = Doc({"K": SECRET})
    async with manager(doc, clock=clock) as m:
        await m.get("K")
        doc.fail = True
        await m.refresh()
        assert await m.get("K") == SECRET
    strict_doc = Doc({"K": SECRET})
    async with manager(strict_doc, clock=clock, on_provider_error="raise") as m:
        await m.get("K")
        strict_doc.fail = True
        with pytest.raises(ProviderError):
            await m.refresh("K")
        assert await m.get("K") == SECRET


async def test_refresh_of_a_per_key_provider_fetches_only_the_keys_it_concerns() -> None:
    """refresh(key) re-asks that key only; refresh() re-asks every key cached for it."""
    clock = FakeClock()
    custom = PerKey({"A": "1", "B": "2"})
    async with manager(custom, clock=clock) as m:
        await m.get_many(["A", "B"])
        assert sorted(custom.calls) == ["A", "B"]
        await m.refresh("a")
        assert sorted(custom.calls) == ["A", "A", "B"]
        clock.tick(1.5)
        await m.refresh()
        assert sorted(custom.calls) == ["A", "A", "A", "B", "B"]


async def test_refresh_makes_the_file_like_live_provider_read_again() -> None:
    """A live document provider (the file) is invalidated by refresh(), not left as it was."""
    clock = FakeClock()

    class FileLike(Doc):
        cache_answers = False
        invalidated = 0

        def invalidate(self) -> None:
            self.invalidated += 1
            super().invalidate()

    file_like = FileLike({"K": "v"})
    async with manager(file_like, clock=clock) as m:
        await m.refresh()
        assert file_like.invalidated == 1
        await m.refresh()
        assert file_like.invalidated == 1  # within min_refresh_interval


def test_negative_min_refresh_interval_is_refused() -> None:
    """min_refresh_interval < 0 is a ValueError naming the setting."""
    with pytest.raises(ValueError, match="min_refresh_interval"):
        SecretsManager([], min_refresh_interval=-1)


# -- on_change and watch ----------------------------------------------------------------


async def test_on_change_runs_once_per_change_seen_by_a_forced_refresh() -> None:
    """A rotation seen by refresh() calls the callback once; an unchanged refresh does not."""
    clock = FakeClock()
    doc = Doc({"DB_PASSWORD": SECRET})
    seen: list[tuple[str, str | None]] = []
    async with manager(doc, clock=clock) as m:
        m.changes.poll_s = 3600  # only refreshes tell here
        stop = m.on_change("db-password", lambda k, v: seen.append((k, v)))
        await m.get("DB_PASSWORD")
        await m.refresh()
        assert seen == []
        doc.data["DB_PASSWORD"] = ROTATED
        clock.tick(2)
        await m.refresh()
        assert seen == [("DB_PASSWORD", ROTATED)]
        clock.tick(2)
        await m.refresh()
        assert seen == [("DB_PASSWORD", ROTATED)]
        stop()
        doc.data["DB_PASSWORD"] = "third"
        clock.tick(2)
        await m.refresh()
        assert seen == [("DB_PASSWORD", ROTATED)]


async def test_on_change_hears_a_refresh_ahead_and_a_removal() -> None:
    """A background refresh-ahead that brings a new value, then one that drops it, tell both."""
    clock = FakeClock()
    doc = Doc({"K": SECRET})
    seen: list[str | None] = []
    async with manager(doc, clock=clock) as m:
        m.changes.poll_s = 3600
        m.on_change("K", lambda _k, v: seen.append(v))
        await m.get("K")
        await m.changes.check()
        doc.data["K"] = ROTATED
        past_refresh_at(m, clock)
        assert await m.get("K") == SECRET  # answered at once, refreshed in the background
        await settle(lambda: seen == [ROTATED])
        del doc.data["K"]
        past_refresh_at(m, clock)
        await m.get("K")
        await settle(lambda: seen == [ROTATED, None])


async def test_on_change_async_callback_is_awaited_in_a_task() -> None:
    """An async callback runs to its end in a task of its own."""
    clock = FakeClock()
    doc = Doc({"K": SECRET})
    done = asyncio.Event()
    got: list[str | None] = []

    async def callback(_key: str, value: str | None) -> None:
        await asyncio.sleep(0)
        got.append(value)
        done.set()

    async with manager(doc, clock=clock) as m:
        m.on_change("K", callback)
        await m.changes.check()
        doc.data["K"] = ROTATED
        clock.tick(2)
        await m.refresh()
        await asyncio.wait_for(done.wait(), 10)
        assert got == [ROTATED]


async def test_a_higher_provider_starting_to_answer_is_a_change_seen_by_the_watcher() -> None:
    """A live provider above the document starts answering: the watcher's look reports it."""
    clock = FakeClock()
    live, doc = Live(), Doc({"K": SECRET})
    seen: list[str | None] = []
    async with manager(live, doc, clock=clock) as m:
        m.changes.poll_s = 0.01
        m.on_change("K", lambda _k, v: seen.append(v))
        await m.changes.check()
        live.data["K"] = "from-live"
        await settle(lambda: seen == ["from-live"])


async def test_a_failing_callback_is_logged_without_the_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A callback that raises is logged (its exception's type only), and others still run."""
    clock = FakeClock()
    doc = Doc({"K": SECRET})
    later: list[str | None] = []

    def broken(_key: str, value: str | None) -> None:
        raise RuntimeError(f"bad {value}")

    async with manager(doc, clock=clock) as m:
        m.changes.poll_s = 3600
        m.on_change("K", broken)
        m.on_change("K", lambda _k, v: later.append(v))
        await m.changes.check()
        doc.data["K"] = ROTATED
        clock.tick(2)
        with caplog.at_level(logging.WARNING, "simpletuner_secrets"):
            await m.refresh()
    assert later == [ROTATED]
    assert "on_change callback raised RuntimeError" in caplog.text
    assert ROTATED not in caplog.text and SECRET not in caplog.text


async def test_watch_yields_the_current_value_then_each_change() -> None:
    """async for over watch(key): the value now, then each rotation, once each."""
    clock = FakeClock()
    doc = Doc({"K": SECRET})
    async with manager(doc, clock=clock) as m:
        m.changes.poll_s = 3600
        watcher = m.watch("k")
        assert await anext(watcher) == SECRET
        doc.data["K"] = ROTATED
        clock.tick(2)
        await m.refresh()
        assert await asyncio.wait_for(anext(watcher), 10) == ROTATED
        await watcher.aclose()  # type: ignore[attr-defined]
        assert "K" not in m.changes.watched_keys()


# -- on_event ---------------------------------------------------------------------------


async def test_on_event_reports_refresh_failure_stale_service_and_recovery() -> None:
    """A provider outage and its end produce the events SPEC 10 names, none holding a value."""
    clock = FakeClock()
    doc = Doc({"K": SECRET})
    events: list[SecretsEvent] = []
    async with manager(doc, clock=clock, on_event=events.append, max_stale=3600) as m:
        await m.get("K")
        doc.fail = True
        clock.tick(70)  # past freshness: revalidate, fail, serve stale
        assert await m.get("K") == SECRET
        assert await m.get("K") == SECRET  # backing off: stale at once
        doc.fail = False
        clock.tick(120)
        assert await m.get("K") == SECRET
    kinds = [e.kind for e in events]
    assert kinds == [
        "refresh_failed",
        "provider_failed",
        "stale_served",
        "stale_served",
        "provider_recovered",
        "refreshed",
    ]
    assert {e.provider for e in events} == {"doc"}
    failed = events[0]
    assert failed.age_s == 70 and failed.key is None
    assert set(kinds) <= EVENT_KINDS
    assert all(SECRET not in repr(e) for e in events)


async def test_on_event_reports_changes_and_a_providers_own_login() -> None:
    """A changed key is an event naming the key and provider; a provider's login one too."""
    clock = FakeClock()
    doc = Authenticating({"K": SECRET}, "vaultish")
    events: list[SecretsEvent] = []
    async with manager(doc, clock=clock, on_event=events.append) as m:
        m.changes.poll_s = 3600
        m.on_change("K", lambda _k, _v: None)
        await m.changes.check()
        doc.data["K"] = ROTATED
        clock.tick(2)
        await m.refresh()
    assert SecretsEvent("login", "vaultish") in events
    assert SecretsEvent("changed", "vaultish", "K") in events
    assert all(ROTATED not in repr(e) and SECRET not in repr(e) for e in events)


async def test_an_async_on_event_listener_runs_in_a_task() -> None:
    """on_event may be a coroutine function: each event is awaited in a task."""
    clock = FakeClock()
    doc = Doc({"K": SECRET})
    got: list[str] = []

    async def listener(event: SecretsEvent) -> None:
        got.append(event.kind)

    async with manager(doc, clock=clock, on_event=listener) as m:
        await m.get("K")
        clock.tick(2)
        await m.refresh()
        await settle(lambda: got == ["refreshed"])


# -- the sync facade --------------------------------------------------------------------


def test_sync_facade_has_get_many_require_refresh_and_on_change() -> None:
    """The blocking twins work from a plain thread, on_change included."""
    clock = FakeClock()
    doc = Doc({"K": SECRET})
    m = manager(doc, clock=clock)
    seen: list[str | None] = []
    try:
        assert m.sync.get_many(["k", "none"]) == {"k": SECRET, "none": None}
        assert m.sync.require("K") == SECRET
        with pytest.raises(MissingSecretError, match="NONE"):
            m.sync.require("none")
        m.changes.poll_s = 3600
        m.sync.on_change("K", lambda _k, v: seen.append(v))
        deadline = time.monotonic() + 10
        while m.changes.watched_keys() != ["K"] or not m.changes.has_seen("K"):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        doc.data["K"] = ROTATED
        clock.tick(2)
        m.sync.refresh("K")
        assert seen == [ROTATED]
        assert doc.loads == 2
    finally:
        m.sync.close()


async def test_get_many_of_no_keys_is_an_empty_dict_without_a_lookup() -> None:
    """get_many([]) answers {} and asks no provider."""
    clock = FakeClock()
    doc = Doc({"K": "v"})
    async with manager(doc, clock=clock) as m:
        assert await m.get_many([]) == {}
        assert doc.loads == 0


async def test_a_busy_process_asks_the_back_end_once_per_ttl_not_per_refresh_ahead() -> None:
    """Looked up every 50 ms for 600 s at TTL 5 s: about 120 fetches (refresh-ahead at 80% of a
    lifetime would make 150), and the value served is never older than 1.2 lifetimes."""
    clock = FakeClock()
    doc = Doc({"K": "v"})
    async with SecretsManager([doc], cache_ttl=5, timer=clock, rng=random.Random(5)) as m:
        for _ in range(12_000):
            await m.get("K")
            for _ in range(3):
                await asyncio.sleep(0)  # the background refresh-ahead runs
            entry = m.resolver.cached_entry(m.resolver.slots[0], "K")
            assert entry is not None and clock.now - entry.fetched_at <= 5 * 1.1 * 1.2 + 0.05
            clock.tick(0.05)
    assert 118 <= doc.loads <= 123


async def test_a_lookup_past_freshness_does_not_wait_for_a_slow_refresh_ahead() -> None:
    """A refresh ahead still running when the entry goes stale: lookups get the last good
    value at once instead of joining it (the fleet saw 5 s lookups behind a slow back-end)."""
    clock = FakeClock()
    doc = Doc({"K": SECRET})
    async with manager(doc, clock=clock) as m:
        assert await m.get("K") == SECRET
        doc.gate = asyncio.Event()
        doc.data["K"] = ROTATED
        clock.tick(53)  # past refresh_at, before fresh_until: a background refresh starts
        assert await m.get("K") == SECRET
        await settle(lambda: doc.loads == 2)
        clock.tick(20)  # past fresh_until while that refresh is still running
        assert await asyncio.wait_for(m.get("K"), 2) == SECRET
        doc.gate.set()
        await settle(lambda: m.resolver.peek("K") == ROTATED)
        assert doc.loads == 2


async def test_an_edit_of_the_secrets_file_is_a_change_seen_by_the_watcher(tmp_path: Any) -> None:
    """Another process rewrites the secrets file: once its re-check is due, on_change hears."""
    import json

    from simpletuner_secrets import FileSecretProvider

    clock = FakeClock()
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"DB_PASSWORD": SECRET}))
    path.chmod(0o600)
    seen: list[str | None] = []
    file = FileSecretProvider(path, timer=clock)
    async with manager(file, clock=clock) as m:
        m.changes.poll_s = 0.01
        m.on_change("DB_PASSWORD", lambda _k, v: seen.append(v))
        await m.changes.check()
        path.write_text(json.dumps({"DB_PASSWORD": ROTATED}))
        clock.tick(1.5)  # past the file's one-second re-check
        await settle(lambda: seen == [ROTATED])


async def test_on_change_hears_a_rotation_that_the_recovery_after_an_outage_brings() -> None:
    """The back-end fails, comes back with a rotated value: the recovering refresh tells."""
    clock = FakeClock()
    doc = Doc({"K": SECRET})
    seen: list[str | None] = []
    async with manager(doc, clock=clock) as m:
        m.changes.poll_s = 3600  # only the refresh's own hook tells here
        m.on_change("K", lambda _k, v: seen.append(v))
        await m.changes.check()
        doc.fail = True
        clock.tick(70)
        assert await m.get("K") == SECRET  # stale
        doc.fail, doc.data["K"] = False, ROTATED
        clock.tick(5)  # past the first backoff
        assert await m.get("K") == ROTATED
        await settle(lambda: seen == [ROTATED])


def test_a_refreshed_entry_carries_at_most_a_fifth_of_a_life_from_the_previous_one() -> None:
    """new_entry after a still-fresh entry starts its life where that one ends, capped at 20%
    of a life (a forced refresh just after a fetch carries no whole lifetime over)."""
    from simpletuner_secrets._freshness import Policy

    policy = Policy(ttl=10.0, jitter=0.0)
    rng = random.Random(1)
    first = policy.new_entry("v1", 0.0, rng)
    assert (first.refresh_at, first.fresh_until) == (8.0, 10.0)
    ahead = policy.new_entry("v2", 8.5, rng, previous=first)  # refreshed ahead at 8.5
    assert (ahead.fetched_at, ahead.refresh_at, ahead.fresh_until) == (8.5, 18.0, 20.0)
    forced = policy.new_entry("v3", 8.6, rng, previous=ahead)  # forced just after
    assert forced.fresh_until == 8.6 + 2.0 + 10.0
    stale = policy.new_entry("v4", 30.0, rng, previous=forced)  # past freshness: from now
    assert stale.fresh_until == 40.0


async def test_a_processs_two_documents_refresh_half_a_ttl_apart_and_stay_there() -> None:
    """Two remote documents looked up every 50 ms for 100 TTLs: each is refreshed about once
    per TTL, nearly always one TTL after its last refresh, and the two stay half a TTL apart
    (jitter alone lets them drift into step: the drift is a random walk of +-10% a TTL)."""
    clock = FakeClock()
    first, second = Doc({"A": SECRET}, name="first"), Doc({"B": SECRET}, name="second")
    loads: dict[str, list[float]] = {"first": [], "second": []}
    for doc in (first, second):
        original = doc.load_document

        async def timed(
            doc: Doc = doc, original: Callable[[], Awaitable[Mapping[str, str]]] = original
        ) -> Mapping[str, str]:
            loads[doc.name].append(clock.now)
            return await original()

        doc.load_document = timed  # type: ignore[method-assign]
    async with SecretsManager([first, second], cache_ttl=5, timer=clock, rng=random.Random(9)) as m:
        for _ in range(10_000):
            assert await m.get("A") == SECRET and await m.get("B") == SECRET
            for _ in range(3):
                await asyncio.sleep(0)  # the background refreshes run
            clock.tick(0.05)
    assert all(95 <= len(times) <= 103 for times in loads.values()), loads
    for times in loads.values():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert sum(abs(g - 5.0) <= 0.06 for g in gaps) >= 0.85 * len(gaps), gaps
    # Over the last 20 TTLs, each refresh of the second is half a TTL from the first's.
    late = [t for t in loads["second"] if t >= 400.0]
    offsets = [min(abs(t - f) for f in loads["first"]) for t in late]
    assert sum(abs(o - 2.5) <= 0.2 for o in offsets) >= 0.85 * len(offsets), offsets


async def test_a_forked_child_redraws_the_refresh_of_the_entries_it_inherits() -> None:
    """After a fork, an entry the child inherited is refreshed ahead at a point drawn in the
    child (between the fork and a tenth of a TTL before its freshness ends), not at its
    parent's `refresh_at`, where every preforked worker would refresh it at once."""

    class Draws:
        """uniform() answers these shares of each band in turn: the parent's schedule, a
        life, the child's redraw."""

        def __init__(self) -> None:
            self.shares = iter([0.1, 0.5, 0.7])

        def uniform(self, a: float, b: float) -> float:
            return a + (b - a) * next(self.shares)

    clock = FakeClock()
    doc = Doc({"K": SECRET})
    async with SecretsManager([doc], cache_ttl=10, timer=clock, rng=Draws()) as m:
        first = clock.now
        assert await m.get("K") == SECRET  # schedule at 0.1 of the TTL, a life of 10 s
        (inherited,) = m.resolver.cache.values_snapshot()
        assert inherited.refresh_at == pytest.approx(first + 1.0)  # the parent's schedule
        clock.tick(0.5)
        m.resolver.reset_after_fork()
        # Fresh until first + 10, so the window ends at first + 9: 0.3 of the 8.5 s left.
        assert inherited.refresh_at == pytest.approx(first + 0.5 + 8.5 * 0.3)
        assert inherited.fresh_until == pytest.approx(first + 10.0)
        clock.tick(1.0)  # past the parent's point: no refresh in the child yet
        assert await m.get("K") == SECRET
        assert doc.loads == 1


async def test_a_forked_child_draws_a_refresh_schedule_of_its_own() -> None:
    """After a fork (`reset_after_fork`, which the child runs) the next fetch draws a new
    offset into the TTL: preforked workers do not all keep their parent's schedule."""

    class Draws:
        """uniform() answers these shares of each band in turn: the parent's schedule, a
        life, the child's schedule, a life."""

        def __init__(self) -> None:
            self.shares = iter([0.1, 0.5, 0.7, 0.5])

        def uniform(self, a: float, b: float) -> float:
            return a + (b - a) * next(self.shares)

    clock = FakeClock()
    doc = Doc({"K": SECRET})
    async with SecretsManager([doc], cache_ttl=10, timer=clock, rng=Draws()) as m:
        slot = m.resolver.slots[0]
        first = clock.now
        assert await m.get("K") == SECRET  # draws the schedule (0.1 of the TTL), then a life
        assert m.resolver.schedule(slot, None) == pytest.approx(first + 1.0)
        clock.tick(3.0)
        m.resolver.reset_after_fork()
        m.clear_cache()
        assert await m.get("K") == SECRET  # the child's own draw, from its own first fetch
        assert m.resolver.schedule(slot, None) == pytest.approx(first + 3.0 + 7.0)
