"""TTLCache checked against a plain reference model by a hypothesis state machine."""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from simpletuner_secrets.cache import TTLCache

KEYS = st.sampled_from(["a", "b", "c", "d", "e", "user:1:x", "user:10:x"])
TTLS = st.sampled_from([None, 0.0, 1.0, 2.5, 10.0])
MAX_SIZE = 3
DEFAULT_TTL = 5.0
CLEANUP = 7.0


class Model:
    """The obvious implementation: a list in recency order and a dict of expiries."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.order: list[str] = []
        self.entries: dict[str, tuple[Any, float]] = {}
        self.next_cleanup = now + CLEANUP
        self.hits = self.misses = self.evictions = self.loads = 0

    def _touch(self, key: str) -> None:
        self.order.remove(key)
        self.order.append(key)

    def _remove(self, key: str) -> None:
        self.order.remove(key)
        del self.entries[key]

    def purge_if_due(self) -> None:
        if self.now >= self.next_cleanup:
            for k in [k for k, (_, e) in self.entries.items() if e <= self.now]:
                self._remove(k)
            self.next_cleanup = self.now + CLEANUP

    def store(self, key: str, value: Any, ttl: float | None) -> None:
        self.purge_if_due()
        expires = self.now + (DEFAULT_TTL if ttl is None else ttl)
        if key in self.entries:
            self.entries[key] = (value, expires)
            self._touch(key)
            return
        if len(self.entries) >= MAX_SIZE:
            self._remove(self.order[0])
            self.evictions += 1
        self.entries[key] = (value, expires)
        self.order.append(key)

    def get(self, key: str) -> Any:
        entry = self.entries.get(key)
        if entry is not None and entry[1] > self.now:
            self.hits += 1
            self._touch(key)
            return entry[0]
        if entry is not None:
            self._remove(key)
        self.purge_if_due()  # a miss checks for a purge too
        self.misses += 1
        return None

    def live(self) -> set[str]:
        return {k for k, (_, e) in self.entries.items() if e > self.now}


class CacheMachine(RuleBasedStateMachine):
    """Random operation sequences; after each one the cache must agree with the model."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 100.0
        self.cache: TTLCache[Any] = TTLCache(
            default_ttl=DEFAULT_TTL, max_size=MAX_SIZE, cleanup_interval=CLEANUP, timer=self.clock
        )
        self.model = Model(self.now)
        self.counter = 0

    def clock(self) -> float:
        return self.now

    @rule(key=KEYS, ttl=TTLS)
    def set(self, key: str, ttl: float | None) -> None:
        self.counter += 1
        self.cache.set(key, self.counter, ttl)
        self.model.store(key, self.counter, ttl)

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        assert self.cache.get(key) == self.model.get(key)

    @rule(key=KEYS, ttl=TTLS)
    def get_or_set(self, key: str, ttl: float | None) -> None:
        self.counter += 1
        expected = self.model.get(key)
        if expected is None:
            # The model's miss above is the cache's one miss; the load stores the value.
            expected = self.counter
            self.model.loads += 1
            self.model.store(key, expected, ttl)
        assert self.cache.get_or_set(key, lambda: self.counter, ttl) == expected

    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        was_live = key in self.model.live()
        if key in self.model.entries:
            self.model._remove(key)
        assert self.cache.delete(key) == was_live

    @rule(prefix=st.sampled_from(["user:1:", "user:", "a", "zzz"]))
    def invalidate_prefix(self, prefix: str) -> None:
        doomed = [k for k in self.model.entries if k.startswith(prefix)]
        for k in doomed:
            self.model._remove(k)
        assert self.cache.invalidate_prefix(prefix) == len(doomed)

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.5, 4.0, 8.0]))
    def tick(self, seconds: float) -> None:
        self.now += seconds
        self.model.now = self.now

    @rule()
    def clear(self) -> None:
        assert self.cache.clear() == len(self.model.entries)
        self.model.entries.clear()
        self.model.order.clear()

    @invariant()
    def agrees_with_model(self) -> None:
        stats = self.cache.stats()
        assert list(self.cache._data) == self.model.order
        assert len(self.cache) == len(self.model.live())
        assert stats["size"] == len(self.model.entries) <= MAX_SIZE
        assert stats["expired_count"] == len(self.model.entries) - len(self.model.live())
        assert stats["hits"] == self.model.hits
        assert stats["misses"] == self.model.misses
        assert stats["evictions"] == self.model.evictions
        assert stats["loads"] == self.model.loads
        for key in self.model.live():
            assert key in self.cache


CacheMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestCacheAgainstModel = CacheMachine.TestCase
TestCacheAgainstModel.__doc__ = "The cache agrees with the reference model on every step."
