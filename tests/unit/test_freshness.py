"""The freshness policy on its own: decide(), new entries and backoff, without a manager."""

from __future__ import annotations

import itertools
import math
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


def _on_grid(t: float, grid: float, period: float, slack: float) -> bool:
    offset = (t - grid) % period
    return min(offset, period - offset) <= slack


def test_a_schedule_keeps_every_refresh_ahead_on_its_points() -> None:
    """With a schedule (grid), a chain looked up every 50 ms for 100 TTLs refreshes once per
    TTL, nearly always within one lookup of a point of the schedule (a life too short for the
    next point brings one refresh forward, and the next is back on it), never expiring
    between refreshes, and no answer is served fresh past 1.2 of its lifetime after its fetch."""
    clock = FakeClock(0.0)
    policy = Policy(ttl=10.0)
    rng = random.Random(6)
    grid = 3.7
    e = policy.new_entry("v", clock(), rng, grid=grid)
    assert e.refresh_at == pytest.approx(3.7)  # the first point: 37% of the first life
    refreshes: list[float] = []
    while clock() < 1000.0:
        clock.tick(0.05)
        verdict = decide(e, clock(), policy)
        assert verdict in (Freshness.FRESH, Freshness.REFRESH_AHEAD), (clock(), verdict)
        if verdict is Freshness.REFRESH_AHEAD:
            refreshes.append(clock())
            e = policy.new_entry("v", clock(), rng, previous=e, grid=grid)
            assert e.fresh_until - e.fetched_at <= 1.2 * 11.0 + 1e-9
            assert e.fresh_until - e.refresh_at >= 1.0 - 1e-9  # a tenth of a TTL left
    assert 99 <= len(refreshes) <= 101
    # Within one lookup of a point, or brought forward (a short life) by at most 0.2 TTL.
    assert sum(_on_grid(t, grid, 10.0, 0.051) for t in refreshes) >= 0.9 * len(refreshes)
    assert all(_on_grid(t, grid, 10.0, 2.05) for t in refreshes)
    gaps = [b - a for a, b in itertools.pairwise(refreshes)]
    assert all(7.9 <= gap <= 12.1 for gap in gaps)


def test_a_schedule_point_that_does_not_fit_gives_way() -> None:
    """A first point later than 80% of the first life leaves that entry to the random phase;
    a later point too close to the end of freshness is brought forward to a tenth of a TTL
    before it."""
    policy = Policy(ttl=10.0)

    class At:
        def __init__(self, *draws: float) -> None:
            self.draws = list(draws)

        def uniform(self, a: float, b: float) -> float:
            return a + (b - a) * self.draws.pop(0)

    # life 9 s (draw 0 of the band), the first point 8.5 s away: past 80% of 9 s (7.2 s).
    e = policy.new_entry("v", 0.0, At(0.0, 0.5), grid=8.5)
    assert e.refresh_at == pytest.approx(0.8 * 9.0 * 0.5)  # the random phase, drawn 0.5
    # A refresh at 2.0 of a still-fresh entry with life 9 s: fresh until 2 + 1.8 + 9 = 12.8;
    # the first point 5 s on is 8.5; it fits (<= 11.8).
    ahead = policy.new_entry("v", 2.0, At(0.0), previous=e, grid=8.5)
    assert ahead.refresh_at == pytest.approx(8.5) and ahead.fresh_until == pytest.approx(12.8)
    # The same refresh on a schedule whose point 5 s on is 12.0: brought forward to 11.8.
    early = policy.new_entry("v", 2.0, At(0.0), previous=e, grid=2.0)
    assert early.refresh_at == pytest.approx(11.8) and early.fresh_until == pytest.approx(12.8)


def test_a_forked_childs_copy_is_refreshed_ahead_at_a_point_of_its_own() -> None:
    """`inherited` moves a copy's refresh ahead to a random point between the fork and a tenth
    of a TTL before its freshness ends; a thousand children's draws cover that window."""
    policy = Policy(ttl=100.0)
    now = 10.0
    draws = []
    rng = random.Random(7)
    for _ in range(1000):
        copy = entry(fresh_until=105.0, refresh_at=80.0)
        policy.inherited(copy, now, rng)
        assert now < copy.refresh_at <= 95.0
        assert (copy.fetched_at, copy.fresh_until) == (0.0, 105.0)  # the life is kept
        draws.append(copy.refresh_at)
    # Spread over the window, not the parent's one point (80.0) for every child.
    tenths = {int((d - now) / 8.5) for d in draws}
    assert tenths == set(range(10)), sorted(tenths)
    assert sum(d == 80.0 for d in draws) == 0


def test_an_inherited_entry_already_due_or_without_jitter_keeps_its_refresh() -> None:
    """Nothing is drawn for a copy already due (the next lookup refreshes it), one too close to
    the end of its freshness, or under a `Policy` without jitter."""
    rng = random.Random(1)
    due = entry(refresh_at=8.0)
    POLICY.inherited(due, 10.0, rng)
    assert due.refresh_at == 8.0
    ending = entry(fresh_until=100.0, refresh_at=95.0)
    POLICY.inherited(ending, 91.0, rng)  # less than a tenth of a TTL of freshness is left
    assert ending.refresh_at == 95.0
    steady = entry(refresh_at=80.0)
    Policy(ttl=100.0, jitter=0.0).inherited(steady, 10.0, rng)
    assert steady.refresh_at == 80.0


def test_schedules_drawn_per_process_keep_a_fleet_from_bunching() -> None:
    """16 processes of two documents each (TTL 5 s, a lookup every 50 ms, a rolling start,
    each process a random schedule and its documents half a TTL apart): over 300 simulated
    fleets, fewer than 5% hold a second above twice the mean in a 60 s window. Jitter alone
    (the same fleets without schedules) does it in about 20%: its drift lets processes
    fall into step."""
    from simpletuner_secrets._resolver import _spread

    def fleet(rng: random.Random, scheduled: bool) -> float:
        policy, tick = Policy(ttl=5.0), 0.05
        times: list[float] = []
        starts = [i * 5.0 / 16 + rng.uniform(0.5, 1.5) for i in range(16)]
        w0 = max(starts) + 5.3
        for start in starts:
            anchor = rng.uniform(0.0, 5.0)
            for doc in range(2):
                grid = anchor + _spread(doc + 2) * 5.0 if scheduled else None
                now = start + rng.uniform(0.0, 0.3)
                times.append(now)
                e = policy.new_entry("v", now + rng.uniform(0.003, 0.03), rng, grid=grid)
                while now < w0 + 60.0:
                    # the first lookup at or after refresh_at (lookups every 50 ms)
                    now = start + math.ceil((e.refresh_at - start) / tick) * tick
                    times.append(now)
                    done = now + rng.uniform(0.003, 0.03)
                    e = policy.new_entry("v", done, rng, previous=e, grid=grid)
        bins = [0] * 60
        for t in times:
            if w0 <= t < w0 + 60.0:
                bins[int(t - w0)] += 1
        return max(bins) / (sum(bins) / 60)

    rng = random.Random(8)
    scheduled = [fleet(rng, True) for _ in range(300)]
    jittered = [fleet(rng, False) for _ in range(300)]
    assert sum(r > 2.0 for r in scheduled) < 0.05 * 300
    assert sum(r > 2.0 for r in jittered) > 0.1 * 300  # what the schedule is measured against
