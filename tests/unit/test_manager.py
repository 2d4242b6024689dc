"""SecretsManager over small fake providers: priority, fan-out, caching, refresh, errors."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from simpletuner_secrets import _process as process_module
from simpletuner_secrets import manager as manager_module
from simpletuner_secrets._freshness import Entry
from simpletuner_secrets.errors import ProviderError, SecretsError
from simpletuner_secrets.keys import normalize_key
from simpletuner_secrets.manager import (
    SecretsManager,
    get_secrets_manager,
    mask,
    set_secrets_manager,
)
from simpletuner_secrets.providers.base import NOT_CACHED, DocumentSecretProvider, SecretProvider
from tests.clock import FakeClock

SECRET = "s3cr3t-value-do-not-leak"


class KeyProvider(SecretProvider):
    """A custom provider answering key by key, with a delay and a failure switch."""

    name = "keys"

    def __init__(self, data: Mapping[str, str], *, delay: float = 0.0, label: str = "keys") -> None:
        self.data = {normalize_key(k): v for k, v in data.items()}
        self.delay = delay
        self.fail = False
        self.calls = 0
        self.label = label
        self.name = label  # several in one chain: names are unique

    async def get(self, key: str) -> str | None:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise ProviderError(f"{self.label}: backend down", provider=self.label)
        return self.data.get(normalize_key(key))


class DocProvider(DocumentSecretProvider):
    """A document provider like AWS/Vault: one load answers every key."""

    name = "doc"

    def __init__(self, data: Mapping[str, str], *, delay: float = 0.0) -> None:
        super().__init__()
        self.data = {normalize_key(k): v for k, v in data.items()}
        self.delay = delay
        self.fail = False
        self.loads = 0

    async def load_document(self) -> Mapping[str, str]:
        self.loads += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise ProviderError("doc: backend down", provider="doc")
        return dict(self.data)


class LiveProvider(SecretProvider):
    """A live provider like the environment: answers from memory, never cached."""

    name = "live"
    cache_answers = False

    def __init__(self, data: dict[str, str]) -> None:
        self.data = data

    def peek(self, key: str) -> str | None:
        return self.data.get(key) or None

    async def get(self, key: str) -> str | None:
        return self.peek(normalize_key(key))


class Meeting:
    """Providers wait here until ``expected`` of them are in flight at once: proof of
    concurrency that a busy machine cannot fake or fail (a serial caller never gets there)."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.in_flight = 0
        self.most = 0
        self.all_here = asyncio.Event()

    async def arrive(self) -> None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        if self.in_flight >= self.expected:
            self.all_here.set()
        try:
            await self.all_here.wait()
        finally:
            self.in_flight -= 1


class MeetingKeys(KeyProvider):
    """A key-by-key provider whose calls wait at a `Meeting`."""

    def __init__(self, data: Mapping[str, str], meeting: Meeting) -> None:
        super().__init__(data)
        self.meeting = meeting

    async def get(self, key: str) -> str | None:
        await self.meeting.arrive()
        return await super().get(key)


class MeetingDoc(DocProvider):
    """A document provider whose loads wait at a `Meeting`."""

    def __init__(self, data: Mapping[str, str], meeting: Meeting) -> None:
        super().__init__(data)
        self.meeting = meeting

    async def load_document(self) -> Mapping[str, str]:
        await self.meeting.arrive()
        return await super().load_document()


class HeldDoc(DocProvider):
    """A document provider whose loads wait until ``gate`` is open (it starts open)."""

    def __init__(self, data: Mapping[str, str]) -> None:
        super().__init__(data)
        self.gate = asyncio.Event()
        self.gate.set()

    async def load_document(self) -> Mapping[str, str]:
        self.loads += 1
        await self.gate.wait()
        return dict(self.data)


#: Seconds before a test that waits on behaviour gives up: a hang guard, never a measurement.
HANG_GUARD_S = 10.0


def make(*providers: SecretProvider, clock: FakeClock | None = None, **kw: Any) -> SecretsManager:
    if clock is not None:
        kw["timer"] = clock
    return SecretsManager(list(providers), **kw)


async def test_highest_priority_provider_wins() -> None:
    """The first provider in the chain that has the key decides."""
    m = make(LiveProvider({"A": "live"}), DocProvider({"A": "doc", "B": "docb"}))
    assert await m.get("a") == "live"
    assert await m.get("b") == "docb"
    assert await m.get("missing") is None
    assert await m.get("missing", default="d") == "d"


@pytest.mark.parametrize("lower_kind", ["per-key", "document"])
async def test_a_slow_higher_provider_beats_a_fast_lower_one(lower_kind: str) -> None:
    """Priority decides, not speed: a slow higher provider's value wins over a faster lower."""
    high = KeyProvider({"K": "from-high"}, delay=0.05, label="high")
    low: SecretProvider = (
        KeyProvider({"K": "from-low"}, label="low")
        if lower_kind == "per-key"
        else DocProvider({"K": "from-low"})
    )
    m = make(high, low)
    assert await m.get("K") == "from-high"
    assert await m.get("K") == "from-high"  # cached answers keep the same order
    assert high.calls == 1
    await m.aclose()


async def test_empty_value_counts_as_absent() -> None:
    """An empty value in a higher provider does not shadow a lower one."""
    m = make(LiveProvider({"A": ""}), KeyProvider({"A": ""}), DocProvider({"A": "real"}))
    assert await m.get("A") == "real"


async def test_key_spellings_are_normalized() -> None:
    """replicate-api-token finds REPLICATE_API_TOKEN in every kind of provider."""
    m = make(DocProvider({"REPLICATE_API_TOKEN": "r8"}))
    assert await m.get("replicate-api-token") == "r8"
    assert await m.get_replicate_token() == "r8"
    with pytest.raises(ValueError):
        await m.get("  ")


async def test_cold_lookup_fans_out_and_answers_when_priority_decides() -> None:
    """A cold lookup asks all three providers at once (each waits until all three are in
    flight), and the key held only by the last one is found."""
    meeting = Meeting(3)
    a, b = MeetingKeys({}, meeting), MeetingKeys({}, meeting)
    b.name = "keys-b"
    c = MeetingDoc({"K": "v"}, meeting)
    m = make(a, b, c, provider_timeout=60)  # only the hang guard ends a wait
    try:
        assert await asyncio.wait_for(m.get("K"), HANG_GUARD_S) == "v"
    except asyncio.TimeoutError:
        pytest.fail(f"at most {meeting.most} of 3 providers were in flight at once: no fan-out")
    assert meeting.most == 3
    assert (a.calls, b.calls, c.loads) == (1, 1, 1)


async def test_higher_answer_returns_without_waiting_for_lower() -> None:
    """A fast higher provider's answer does not wait for a slow lower one; nothing leaks."""
    fast = KeyProvider({"K": "fast"})
    slow = HeldDoc({"K": "slow"})
    slow.gate.clear()  # the lower load stays in flight until the answer is out
    m = make(fast, slow, provider_timeout=60)  # only the hang guard ends a wait
    try:
        assert await asyncio.wait_for(m.get("K"), HANG_GUARD_S) == "fast"
    except asyncio.TimeoutError:
        pytest.fail("the higher provider's answer waited for the lower provider's load")
    assert slow.loads == 1 and m.resolver.cache.stats()["pending"] == 1
    slow.gate.set()  # the lower load finishes by itself and warms the cache
    here = asyncio.current_task()
    for _ in range(int(HANG_GUARD_S * 100)):
        if asyncio.all_tasks() == {here}:
            break
        await asyncio.sleep(0.01)
    assert asyncio.all_tasks() == {here}
    assert slow.loads == 1 and m.resolver.cache.stats()["pending"] == 0
    assert m.resolver.cache.peek((id(m.resolver.slots[1]), None)) is not None
    await m.aclose()


async def test_concurrent_misses_make_one_call_per_provider() -> None:
    """200 concurrent cold gets of 20 keys: one document load, one get per key."""
    doc = DocProvider({f"K{i}": str(i) for i in range(20)}, delay=0.02)
    keys = KeyProvider({}, delay=0.02)
    m = make(keys, doc)
    results = await asyncio.gather(*(m.get(f"K{i % 20}") for i in range(200)))
    assert results == [str(i % 20) for i in range(200)]
    assert doc.loads == 1
    assert keys.calls == 20


async def test_answers_are_cached_for_the_ttl_with_jitter() -> None:
    """A cached answer is reused until its jittered TTL passes, then fetched again."""
    clock = FakeClock(5000.0)
    doc = DocProvider({"K": "v1"})
    m = make(doc, clock=clock, cache_ttl=100)
    assert await m.get("K") == "v1"
    entry = m.resolver.cache.peek((id(m.resolver.slots[0]), None))
    assert entry is not None
    lifetime = entry[0].fresh_until - entry[0].fetched_at
    assert 90 <= lifetime <= 110
    doc.data["K"] = "v2"
    clock.now += 50
    assert await m.get("K") == "v1"
    assert doc.loads == 1
    clock.now += 70  # past any jittered TTL
    assert await m.get("K") == "v2"
    assert doc.loads == 2


async def test_jitter_spreads_expiry_over_the_whole_band() -> None:
    """1,000 keys cached at once expire spread over 0.9-1.1 x cache_ttl, not all together."""
    clock = FakeClock()
    keys = [f"K{i}" for i in range(1000)]
    provider = KeyProvider({k: "old" for k in keys})
    m = make(provider, clock=clock, cache_ttl=100)
    assert [await m.get(k) for k in keys] == ["old"] * 1000
    lifetimes = []
    for k in keys:
        held = m.resolver.cache.peek((id(m.resolver.slots[0]), k))
        assert held is not None
        lifetimes.append(held[0].fresh_until - held[0].fetched_at)
    provider.data = {normalize_key(k): "new" for k in keys}
    clock.now += 95  # an expired entry is fetched before answering; a fresh one answers "old"
    answers = [await m.get(k) for k in keys]
    expired = answers.count("new")
    # Uniform jitter: about a quarter of the lifetimes are under 0.95 x cache_ttl.
    assert 100 < expired < 400, f"{expired} of 1000 entries had expired at 0.95 x cache_ttl"
    assert expired == sum(lifetime <= 95 for lifetime in lifetimes)
    # The lifetimes drawn cover the band, with barely a repeat.
    assert 90 <= min(lifetimes) < 92 and 108 < max(lifetimes) <= 110
    assert len(set(lifetimes)) > 900
    await m.aclose()


async def test_refresh_ahead_serves_current_value_while_refreshing() -> None:
    """Near expiry a hot entry is refreshed in the background; callers do not wait."""
    clock = FakeClock()
    doc = HeldDoc({"K": "v1"})
    m = make(doc, clock=clock, cache_ttl=100, provider_timeout=60)  # see HANG_GUARD_S
    await m.get("K")
    doc.data["K"] = "v2"
    doc.gate.clear()  # the refresh stays in flight until the lookup has answered
    entry = m.resolver.cache.peek((id(m.resolver.slots[0]), None))
    assert entry is not None
    clock.now = entry[0].refresh_at + 0.01  # inside the refresh-ahead window, still fresh
    try:
        assert await asyncio.wait_for(m.get("K"), HANG_GUARD_S) == "v1"  # served at once
    except asyncio.TimeoutError:
        pytest.fail("the lookup waited for the refresh-ahead load")
    assert len(m.resolver._background) == 1
    doc.gate.set()
    await asyncio.wait_for(asyncio.gather(*m.resolver._background), HANG_GUARD_S)
    assert doc.loads == 2
    assert await m.get("K") == "v2"
    await m.aclose()


async def test_stale_if_error_serves_last_good_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failing refresh keeps serving the last good value, warning once per streak."""
    clock = FakeClock(5000.0)
    doc = DocProvider({"K": SECRET})
    m = make(doc, clock=clock, cache_ttl=10)
    assert await m.get("K") == SECRET
    doc.fail = True
    clock.now += 20
    with caplog.at_level(logging.WARNING, logger="simpletuner_secrets"):
        for _ in range(5):
            assert await m.get("K") == SECRET
            clock.now += 0.01
    warnings = [r for r in caplog.records if "serving the last good" in r.getMessage()]
    assert len(warnings) == 1
    assert SECRET not in caplog.text
    assert m.stats()["providers"]["doc"]["stale_served"] >= 5
    explained = await m.explain("K")
    assert explained["stale"] is True and explained["provider"] == "doc"
    # Recovery: after the backoff the next refresh succeeds.
    doc.fail = False
    doc.data["K"] = "rotated"
    clock.now += 120
    with caplog.at_level(logging.INFO, logger="simpletuner_secrets"):
        assert await m.get("K") == "rotated"
    assert "provider doc answers again" in caplog.text


async def test_stale_values_expire_after_max_stale() -> None:
    """Past max_stale a failing provider counts as failed: the key is not served."""
    clock = FakeClock(5000.0)
    doc = DocProvider({"K": "v"})
    m = make(doc, clock=clock, cache_ttl=10, max_stale=30)
    await m.get("K")
    doc.fail = True
    clock.now += 50
    assert await m.get("K") is None


@pytest.mark.parametrize("on_provider_error", ["skip", "raise"])
async def test_max_stale_is_enforced_by_the_manager_before_the_cache_drops_the_entry(
    monkeypatch: pytest.MonkeyPatch, on_provider_error: str
) -> None:
    """Past fresh_until + max_stale a failing provider's last value is not served, even while
    the cache still holds the entry (the manager decides, not the cache's TTL)."""
    monkeypatch.setattr(manager_module.random, "uniform", lambda a, b: a)  # jitter at -10%
    clock = FakeClock()
    doc = DocProvider({"K": "v"})
    m = make(doc, clock=clock, cache_ttl=10, max_stale=30, on_provider_error=on_provider_error)
    assert await m.get("K") == "v"  # fresh until +9 s, servable stale until +39 s
    doc.fail = True
    clock.now += 38  # stale, inside max_stale: the last good value is served
    assert await m.get("K") == "v"
    clock.now += 2  # +40 s: past max_stale, before the cache's own expiry at +41 s
    held = m.resolver.cache.peek((id(m.resolver.slots[0]), None))
    assert held is not None and held[1] > 0, "the cache no longer holds the entry"
    if on_provider_error == "skip":
        assert await m.get("K") is None
        assert await m.get("K", default="fallback") == "fallback"
    else:
        with pytest.raises(ProviderError):
            await m.get("K")
    await m.aclose()


async def test_failing_provider_is_skipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """skip mode: a failing provider is logged once and the next one answers."""
    bad = KeyProvider({"K": SECRET})
    bad.fail = True
    m = make(bad, DocProvider({"K": "lower"}))
    with caplog.at_level(logging.WARNING, logger="simpletuner_secrets"):
        assert await m.get("K") == "lower"
        assert await m.get("K") == "lower"
    assert len([r for r in caplog.records if "failed and is skipped" in r.getMessage()]) == 1
    assert SECRET not in caplog.text


async def test_raise_mode_raises_only_when_the_failure_could_decide() -> None:
    """raise mode: a failing provider below an answering one does not raise; above, it does."""
    bad = KeyProvider({}, label="bad")
    bad.fail = True
    m = make(KeyProvider({"TOP": "t"}), bad, DocProvider({"K": "v"}), on_provider_error="raise")
    assert await m.get("TOP") == "t"
    with pytest.raises(ProviderError):
        await m.get("K")


async def test_provider_timeout_is_a_failure() -> None:
    """A provider slower than provider_timeout is skipped (or raises in raise mode)."""
    slow = KeyProvider({"K": "slow"}, delay=1.0)
    m = make(slow, DocProvider({"K": "fallback"}), provider_timeout=0.05)
    assert await m.get("K") == "fallback"
    assert m.stats()["providers"]["keys"]["timeouts"] == 1
    m2 = make(KeyProvider({"K": "x"}, delay=1.0), provider_timeout=0.05, on_provider_error="raise")
    with pytest.raises(ProviderError, match="no answer within"):
        await m2.get("K")


async def test_a_providers_own_timeout_error_is_not_reported_as_provider_timeout() -> None:
    """A provider raising TimeoutError itself (its client's read timeout) long before
    provider_timeout fails as such: not "no answer within", not counted as a timeout."""

    class TimingOut(SecretProvider):
        name = "timing-out"

        async def get(self, key: str) -> str | None:
            raise TimeoutError("read timed out")

    m = make(TimingOut(), provider_timeout=5.0, on_provider_error="raise")
    with pytest.raises(ProviderError, match="failed with TimeoutError") as info:
        await m.get("K")
    assert "no answer within" not in str(info.value)
    stats = m.stats()["providers"]["timing-out"]
    assert (stats["errors"], stats["timeouts"]) == (1, 0)


async def test_custom_provider_exception_is_wrapped_without_its_message() -> None:
    """A custom provider raising anything becomes a ProviderError naming only the type."""

    class Broken(SecretProvider):
        name = "broken"

        async def get(self, key: str) -> str | None:
            raise RuntimeError(f"leaked {SECRET}")

    m = make(Broken(), on_provider_error="raise")
    with pytest.raises(ProviderError) as info:
        await m.get("K")
    assert SECRET not in str(info.value)
    assert "RuntimeError" in str(info.value)


async def test_cache_is_bounded_for_absent_keys() -> None:
    """Many distinct absent lookups never hold more than cache_max_size answers."""
    m = make(KeyProvider({}), cache_max_size=50)
    for i in range(500):
        assert await m.get(f"ABSENT_{i}") is None
    assert m.stats()["cache"]["size"] <= 50


async def test_explain_reports_provider_cache_and_masked_value() -> None:
    """explain names the answering provider, the cache state, the age and a masked value."""
    clock = FakeClock()
    doc = DocProvider({"LONG": "abcdefghijklmnop", "SHORT": "abc"})
    m = make(LiveProvider({}), doc, clock=clock, cache_ttl=100)
    first = await m.explain("long")
    assert first["provider"] == "doc" and first["cached"] is False
    assert first["value"] == "ab**********" and first["age_s"] == 0
    clock.now += 7.25
    second = await m.explain("LONG")
    assert second["cached"] is True and second["stale"] is False
    assert second["age_s"] == 7.25  # seconds since the document was fetched
    assert doc.loads == 1
    assert (await m.explain("SHORT"))["value"] == "********"
    assert (await m.explain("NOPE"))["provider"] is None


def test_mask_rules() -> None:
    """12+ characters show the first 2; shorter values show nothing."""
    assert mask("abcdefghijkl") == "ab**********"
    assert mask("abcdefghijk") == "********"
    assert mask(None) is None


async def test_stats_has_cache_and_provider_counters() -> None:
    """stats() reports cache counters and per-provider calls, errors and latency."""
    m = make(KeyProvider({"K": "v"}))
    await m.get("K")
    await m.get("K")
    stats = m.stats()
    assert (stats["cache"]["hits"], stats["cache"]["misses"]) == (1, 1)
    assert stats["providers"]["keys"]["calls"] == 1
    assert stats["providers"]["keys"]["errors"] == 0
    assert stats["providers"]["keys"]["avg_latency_ms"] is not None


async def test_clear_cache_forces_new_fetches() -> None:
    """clear_cache makes the next get ask the back-end again."""
    doc = DocProvider({"K": "v"})
    m = make(doc)
    await m.get("K")
    m.clear_cache()
    await m.get("K")
    assert doc.loads == 2


async def test_clear_cache_rereads_the_secrets_file_at_once(tmp_path: Path) -> None:
    """clear_cache also drops the file provider's copy: an edit is seen without the 1 s wait."""
    from simpletuner_secrets import EnvironmentSecretProvider, FileSecretProvider

    path = tmp_path / "secrets.json"
    path.write_text('{"K": "before-value"}')
    path.chmod(0o600)
    m = SecretsManager([EnvironmentSecretProvider(), FileSecretProvider(path)])
    assert await m.get("K") == "before-value"
    path.write_text('{"K": "after-value-longer"}')
    m.clear_cache()
    assert await m.get("K") == "after-value-longer"


async def test_closed_manager_refuses_and_close_is_idempotent() -> None:
    """Using a closed manager raises; closing twice is fine; async with closes."""
    async with make(KeyProvider({"K": "v"})) as m:
        assert await m.get("K") == "v"
    assert m.closed
    await m.aclose()
    with pytest.raises(SecretsError, match="closed"):
        await m.get("K")


async def test_peek_fast_path_needs_every_higher_provider_decided() -> None:
    """The no-await fast path answers only when every higher provider is known."""
    doc = DocProvider({"K": "v"})
    m = make(LiveProvider({}), doc)
    assert m.resolver.peek("K") is NOT_CACHED
    await m.get("K")
    assert m.resolver.peek("K") == "v"


def test_singleton_is_created_once_across_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """get_secrets_manager from 8 threads at once returns one instance; reset drops it."""
    monkeypatch.setattr(process_module, "_instance", None)
    created: list[SecretsManager] = []
    real_init = SecretsManager.__init__

    def counting_init(self: SecretsManager, *a: Any, **kw: Any) -> None:
        created.append(self)
        real_init(self, [KeyProvider({})])

    monkeypatch.setattr(SecretsManager, "__init__", counting_init)
    barrier = threading.Barrier(8)
    got: list[SecretsManager] = []

    def worker() -> None:
        barrier.wait()
        got.append(get_secrets_manager())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(created) == 1 and len({id(g) for g in got}) == 1
    SecretsManager.reset()
    assert get_secrets_manager() is not got[0]
    mine = SecretsManager([KeyProvider({})])
    set_secrets_manager(mine)
    assert get_secrets_manager() is mine
    SecretsManager.reset()


def test_bad_arguments_are_refused() -> None:
    """Unknown error modes and negative durations raise ValueError."""
    with pytest.raises(ValueError, match="on_provider_error"):
        SecretsManager([], on_provider_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cache_ttl"):
        SecretsManager([], cache_ttl=-1)


def test_class_constants() -> None:
    """The well-known keys are class attributes too."""
    assert SecretsManager.REPLICATE_API_TOKEN == "REPLICATE_API_TOKEN"
    assert SecretsManager.HF_TOKEN == "HF_TOKEN"
    assert SecretsManager.WEBHOOK_SECRET == "CLOUD_WEBHOOK_SECRET"


def test_aclose_with_a_refresh_pending_on_the_sync_facade_loop() -> None:
    """A background refresh started by m.sync on its loop does not break aclose elsewhere."""
    clock = FakeClock(5000.0)
    doc = DocProvider({"K": SECRET})
    m = make(doc, clock=clock, cache_ttl=10)
    assert m.sync.get("K") == SECRET
    doc.delay = 5.0  # the refresh stays in flight on the facade's loop
    clock.now += 8.9  # past the refresh-ahead point (7.2-8.8 s), before expiry (9-11 s)
    assert m.sync.get("K") == SECRET
    assert len(m.resolver._background) == 1
    asyncio.run(m.aclose())
    assert m.closed and m._sync is not None and m._sync._runner is None
    deadline = time.monotonic() + 5
    while m.resolver._background and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not m.resolver._background  # cancelled on its own loop


async def test_explain_skips_a_failing_provider_like_get(tmp_path: Path) -> None:
    """In skip mode explain names the provider that answers, past a broken higher one."""
    from simpletuner_secrets import FileSecretProvider
    from simpletuner_secrets.testing import InMemorySecretProvider

    broken = tmp_path / "secrets.json"
    broken.write_text('{"A": "x",,}')
    broken.chmod(0o600)
    m = SecretsManager([FileSecretProvider(broken), InMemorySecretProvider({"HF_TOKEN": SECRET})])
    assert await m.get("HF_TOKEN") == SECRET
    info = await m.explain("HF_TOKEN")
    assert info["provider"] == "memory" and SECRET not in str(info)
    strict = SecretsManager(
        [FileSecretProvider(broken), InMemorySecretProvider({"HF_TOKEN": SECRET})],
        on_provider_error="raise",
    )
    with pytest.raises(SecretsError):
        await strict.explain("HF_TOKEN")


async def test_explain_says_not_cached_after_a_refetch() -> None:
    """An entry refetched by the lookup is reported as not cached, age 0."""
    clock = FakeClock(5000.0)
    doc = DocProvider({"K": SECRET})
    m = make(doc, clock=clock, cache_ttl=10)
    await m.get("K")
    assert (await m.explain("K"))["cached"] is True
    clock.now += 30  # expired: the next lookup fetches again
    info = await m.explain("K")
    assert doc.loads == 2 and info["cached"] is False and info["age_s"] == 0


async def test_cancelled_refresh_ahead_can_start_again() -> None:
    """A refresh-ahead cancelled mid-flight does not block later refreshes of its entry."""
    clock = FakeClock(5000.0)
    doc = DocProvider({"K": SECRET})
    m = make(doc, clock=clock, cache_ttl=10)
    await m.get("K")
    doc.delay = 0.2
    clock.now += 8.9  # past the refresh-ahead point (7.2-8.8 s), before expiry (9-11 s)
    await m.get("K")
    (task,) = m.resolver._background
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await m.get("K")  # a new refresh-ahead starts (it joins the load still in flight)
    assert len(m.resolver._background) == 1
    await asyncio.gather(*m.resolver._background)
    assert doc.loads == 2 and await m.get("K") == SECRET


def test_cache_entries_never_show_values_in_a_repr() -> None:
    """The manager's cached entries (documents, values) are left out of their repr."""
    entry = Entry({"K": SECRET}, 0.0, 1.0, 0.8)
    assert SECRET not in repr(entry)


async def test_aclose_stops_loads_in_flight_so_closed_providers_are_not_called() -> None:
    """A load left running by a timed-out lookup is cancelled by aclose, never retried."""
    doc = DocProvider({"K": SECRET}, delay=0.3)
    m = make(doc)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(m.get("K"), 0.05)
    assert m.resolver.cache.stats()["pending"] == 1
    await m.aclose()
    assert m.resolver.cache.stats()["pending"] == 0
    await asyncio.sleep(0.4)
    assert doc.loads == 1
    current = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not current] == []


async def test_a_second_aclose_waits_for_the_first_to_finish() -> None:
    """aclose() while another aclose() is closing the providers returns only once they are
    closed, on this loop and from the sync facade's thread alike."""

    class SlowClose(KeyProvider):
        closed_at: float | None = None

        async def aclose(self) -> None:
            await asyncio.sleep(0.1)
            self.closed_at = time.monotonic()

    provider = SlowClose({"K": "v"})
    m = make(provider)
    assert await m.get("K") == "v"
    first = asyncio.create_task(m.aclose())
    await asyncio.sleep(0.01)
    await m.aclose()
    assert provider.closed_at is not None, "the second aclose returned before the providers closed"
    await first

    provider2 = SlowClose({"K": "v"})
    m2 = make(provider2)
    assert m2.sync.get("K") == "v"  # starts the facade's loop thread
    first = asyncio.create_task(m2.aclose())
    await asyncio.sleep(0.01)
    await asyncio.to_thread(m2.sync.close)
    await m2.aclose()
    assert provider2.closed_at is not None
    await first


def background_drained(m: SecretsManager) -> bool:
    """Wait (blocking, up to the hang guard) until no background refresh of ``m`` is left."""
    deadline = time.monotonic() + HANG_GUARD_S
    while m.resolver._background and time.monotonic() < deadline:
        time.sleep(0.01)
    return not m.resolver._background


def test_a_refresh_decided_on_another_loop_after_one_landed_asks_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lookup on the sync facade's loop that saw an entry due just before the main loop
    refreshed it takes the refreshed answer instead of loading again."""
    from simpletuner_secrets import _resolver as resolver_module

    clock = FakeClock(5000.0)
    doc = DocProvider({"K": "v1"})
    m = make(doc, clock=clock, cache_ttl=10)
    assert asyncio.run(m.get("K")) == "v1"
    doc.data["K"] = "v2"
    clock.now += 8.9  # past the refresh-ahead point (7.2-8.8 s), before expiry (9-11 s)
    main = threading.get_ident()
    decided, refreshed = threading.Event(), threading.Event()
    real_decide = resolver_module.decide

    def decide_then_pause(entry: Entry, now: float, policy: Any) -> Any:
        verdict = real_decide(entry, now, policy)
        if threading.get_ident() != main and not decided.is_set():
            # The facade's lookup has read the entry as due; the GIL passes to the main
            # thread, whose own lookup refreshes it before this one goes on.
            decided.set()
            assert refreshed.wait(HANG_GUARD_S)
        return verdict

    monkeypatch.setattr(resolver_module, "decide", decide_then_pause)
    answers: list[str | None] = []
    facade = threading.Thread(target=lambda: answers.append(m.sync.get("K")))

    async def main_loop() -> None:
        facade.start()
        assert await asyncio.to_thread(decided.wait, HANG_GUARD_S)
        assert await m.get("K") == "v1"  # due: served, refreshed in the background
        await asyncio.wait_for(asyncio.gather(*m.resolver._background), HANG_GUARD_S)
        assert doc.loads == 2
        refreshed.set()
        await asyncio.to_thread(facade.join, HANG_GUARD_S)
        # The facade's own background refresh runs on its loop, not this one.
        assert await asyncio.to_thread(background_drained, m)
        assert answers == ["v1"]
        assert doc.loads == 2  # the stale decision joined the refresh that had landed
        assert await m.get("K") == "v2"
        await m.aclose()

    asyncio.run(main_loop())
