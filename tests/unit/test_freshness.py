"""The freshness policy on its own: decide(), new entries and backoff, without a manager."""

from __future__ import annotations

import random

import pytest

from simpletuner_secrets._freshness import Entry, Freshness, Policy, decide
from tests.clock import FakeClock

POLICY = Policy(ttl=100.0, max_stale=50.0, max_backoff=60.0)


def entry(**kw: float | bool) -> Entry:
    fields = {"fetched_at": 0.0, "fresh_until": 100.0, "refresh_at": 80.0}
    fields.update(kw)  # type: ignore[arg-type]
    return Entry({"K": "v"}, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (0.0, Freshness.FRESH),
        (79.9, Freshness.FRESH),
        (80.0, Freshness.REFRESH_AHEAD),
        (99.9, Freshness.REFRESH_AHEAD),
        (100.0, Freshness.REVALIDATE),
        (149.9, Freshness.REVALIDATE),
        (150.0, Freshness.RELOAD),
    ],
)
def test_decide_follows_the_entry_through_its_life(now: float, expected: Freshness) -> None:
    """Fresh, refresh ahead after 80%, revalidate past freshness, reload past max_stale."""
    assert decide(entry(), now, POLICY) is expected


def test_a_refresh_running_or_backing_off_is_not_started_again() -> None:
    """In the refresh-ahead window, a running refresh or a pending backoff means FRESH."""
    assert decide(entry(refreshing=True), 90.0, POLICY) is Freshness.FRESH
    assert decide(entry(retry_at=95.0), 90.0, POLICY) is Freshness.FRESH
    assert decide(entry(retry_at=95.0), 96.0, POLICY) is Freshness.REFRESH_AHEAD


def test_past_freshness_a_pending_backoff_serves_stale() -> None:
    """While a failed refresh backs off, the stale value is served without a new attempt."""
    assert decide(entry(retry_at=120.0), 110.0, POLICY) is Freshness.SERVE_STALE
    assert decide(entry(retry_at=120.0), 121.0, POLICY) is Freshness.REVALIDATE
    assert decide(entry(retry_at=500.0), 150.0, POLICY) is Freshness.RELOAD  # max_stale wins


def test_new_entries_draw_their_lifetime_from_the_jitter_band() -> None:
    """Lifetimes spread over ttl x [0.9, 1.1], the random phase of the refresh ahead aside."""
    rng = random.Random(1)
    lives = []
    for _ in range(1000):
        e = POLICY.new_entry("v", 10.0, rng)
        lives.append(e.fresh_until - 10.0)
    assert 90.0 <= min(lives) < 91.0 and 109.0 < max(lives) <= 110.0
    assert POLICY.longest_life == pytest.approx(110.0 + 50.0)


def test_a_first_entry_is_refreshed_ahead_at_a_random_phase_of_its_first_80_percent() -> None:
    """A chain's first refresh ahead falls anywhere in (0, 80%] of its life, evenly: a random
    phase, where a fixed 80% would keep entries fetched together refreshing together."""
    rng = random.Random(2)
    shares = []
    for _ in range(2000):
        e = POLICY.new_entry("v", 10.0, rng)
        shares.append((e.refresh_at - 10.0) / (e.fresh_until - 10.0))
    assert all(0.0 < x <= 0.8 for x in shares)
    fifths = [sum(1 for x in shares if i * 0.16 <= x < (i + 1) * 0.16) for i in range(5)]
    assert min(fifths) > 0.8 * 400 and max(fifths) < 1.2 * 400, fifths


def test_an_entry_replacing_an_expired_one_starts_a_new_random_phase() -> None:
    """Past freshness (a recovery after an outage) the next refresh ahead is drawn again;
    a refresh ahead of a fresh entry keeps its chain at 80% of the new life."""
    rng = random.Random(3)
    expired = entry(fresh_until=100.0, refresh_at=80.0)
    starts = [POLICY.new_entry("v", 200.0, rng, previous=expired) for _ in range(200)]
    shares = [(e.refresh_at - 200.0) / (e.fresh_until - 200.0) for e in starts]
    assert min(shares) < 0.1 and max(shares) > 0.7
    ahead = POLICY.new_entry("v", 80.0, rng, previous=expired)
    life = ahead.fresh_until - 100.0
    assert ahead.refresh_at == pytest.approx(100.0 + 0.8 * life)


def test_without_jitter_nothing_is_drawn() -> None:
    """jitter=0: lifetime exactly ttl, first refresh ahead exactly at refresh_ahead_at."""

    class Loud:
        def uniform(self, a: float, b: float) -> float:
            assert a == b, f"drew from ({a}, {b})"
            return a

    e = Policy(ttl=10.0, jitter=0.0).new_entry("v", 0.0, Loud())
    assert (e.refresh_at, e.fresh_until) == (8.0, 10.0)


def test_a_fleet_fetching_together_spreads_its_refreshes_within_one_ttl() -> None:
    """1,000 entries fetched at the same instant, then looked up every 50 ms on a fake clock:
    in the second TTL, no tenth of the window holds 1.6x its share of the refreshes (a fixed
    80% refresh point put them all within 72-88% of the first TTL, 5x and more)."""
    clock = FakeClock(0.0)
    policy = Policy(ttl=10.0)
    rng = random.Random(4)
    entries = [policy.new_entry("v", clock(), rng) for _ in range(1000)]
    refreshes: list[float] = []
    while clock() < 30.0:
        clock.tick(0.05)
        for i, e in enumerate(entries):
            if decide(e, clock(), policy) is Freshness.REFRESH_AHEAD:
                refreshes.append(clock())
                entries[i] = policy.new_entry("v", clock(), rng, previous=e)
    second_ttl = [t for t in refreshes if 10.0 <= t < 20.0]
    tenths = [sum(1 for t in second_ttl if 10.0 + i <= t < 11.0 + i) for i in range(10)]
    mean = len(second_ttl) / 10
    assert 0.9 * 1000 <= len(second_ttl) <= 1.1 * 1000  # once per TTL, not more
    assert max(tenths) < 1.6 * mean, tenths


def test_backoff_doubles_up_to_its_bound_halved_at_random() -> None:
    """Retry delays are 2^(n-1) s times [0.5, 1], never above max_backoff."""

    class High:
        def uniform(self, a: float, b: float) -> float:
            return b

    class Low:
        def uniform(self, a: float, b: float) -> float:
            return a

    assert [POLICY.backoff(n, High()) for n in (1, 2, 3, 7, 8)] == [1.0, 2.0, 4.0, 60.0, 60.0]
    assert POLICY.backoff(3, Low()) == 2.0
