"""The freshness policy on its own: decide(), new entries and backoff, without a manager."""

from __future__ import annotations

import random

import pytest

from simpletuner_secrets._freshness import Entry, Freshness, Policy, decide

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
    """Lifetimes spread over ttl x [0.9, 1.1]; refresh-ahead sits at 80% of each."""
    rng = random.Random(1)
    lives = []
    for _ in range(1000):
        e = POLICY.new_entry("v", 10.0, rng)
        lives.append(e.fresh_until - 10.0)
        assert e.refresh_at - 10.0 == pytest.approx(0.8 * lives[-1])
    assert 90.0 <= min(lives) < 91.0 and 109.0 < max(lives) <= 110.0
    assert POLICY.longest_life == pytest.approx(110.0 + 50.0)


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
