"""The freshness policy: how long a cached answer is fresh, when it is refreshed, how long it
may be served stale, how failed refreshes back off. Pure: no I/O, no clock of its own.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Entry", "Freshness", "Policy", "RandomSource", "decide"]


class RandomSource(Protocol):
    """What the policy draws jitter from: the `random` module, or a seeded `random.Random`."""

    def uniform(self, a: float, b: float) -> float: ...


#: Share of a TTL of freshness left after a refresh ahead that is not at the default point (a
#: scheduled one brought forward, or one a forked child drew again): time for it to finish.
_LEFT_AFTER_REFRESH = 0.1


class Freshness(enum.Enum):
    """What to do with a cached entry at a given moment (see `decide`)."""

    #: Serve it.
    FRESH = "fresh"
    #: Serve it, and refresh it in the background before it goes stale.
    REFRESH_AHEAD = "refresh ahead"
    #: Past freshness while refreshes fail and back off: serve the last good answer.
    SERVE_STALE = "serve stale"
    #: Past freshness and no backoff pending: refresh now, serve the last good answer on failure.
    REVALIDATE = "revalidate"
    #: Too old to serve even stale: a new answer, or the failure.
    RELOAD = "reload"


@dataclass(eq=False, slots=True)
class Entry:
    """A cached answer (a document, or one key's value) and its freshness."""

    value: Any = field(repr=False)  # a document or a secret: never in a repr
    fetched_at: float
    fresh_until: float
    refresh_at: float
    failures: int = 0
    retry_at: float = 0.0
    refreshing: bool = False
    #: Answered a lookup since eviction last came round (second-chance eviction).
    used: bool = False


@dataclass(frozen=True, slots=True)
class Policy:
    """The manager's freshness settings.

    Args:
        ttl: Seconds an answer is fresh, before jitter.
        jitter: Each entry's lifetime is ``ttl`` times a factor drawn from
            ``[1 - jitter, 1 + jitter]``, so a fleet does not expire together.
        refresh_ahead_at: Share of an entry's lifetime after which a lookup refreshes it in the
            background. An entry that starts a chain of refreshes (the first fetch of a
            document, or one after its answer expired) is refreshed ahead at a random point
            of that share instead (a random phase, drawn from ``(0, refresh_ahead_at]`` of its
            lifetime; the lifetime itself stays in the jitter band), so that processes that
            start or recover together do not keep refreshing together (see `new_entry`). The
            cost is at most one early request per chain. With ``jitter`` 0 nothing is drawn:
            every refresh ahead falls at ``refresh_ahead_at``.
        max_stale: Seconds past freshness that the last good answer may still be served while
            refreshes fail.
        max_backoff: Failed refreshes retry after 1, 2, 4 ... seconds (halved at random), at
            most this long apart.
    """

    ttl: float
    jitter: float = 0.1
    refresh_ahead_at: float = 0.8
    max_stale: float = 86_400.0
    max_backoff: float = 60.0

    @property
    def longest_life(self) -> float:
        """How long a cache must keep an entry: its longest freshness plus ``max_stale``."""
        return self.ttl * (1.0 + self.jitter) + self.max_stale

    def new_entry(
        self,
        value: Any,
        now: float,
        rng: RandomSource,
        previous: Entry | None = None,
        grid: float | None = None,
    ) -> Entry:
        """An entry fetched at ``now``, with a jittered lifetime.

        When it replaces ``previous`` while that one is still fresh (a refresh ahead of
        expiry), its lifetime starts where the previous one's ends, by at most the
        refresh-ahead share of a lifetime: the back-end is asked once per ``ttl`` (jittered),
        not once per ``refresh_ahead_at x ttl``, and no answer is served past
        ``(1 + (1 - refresh_ahead_at)) x`` its lifetime.

        Otherwise (no previous entry, or an expired one) it starts a chain: its refresh ahead
        falls at a random point of the first ``refresh_ahead_at`` of its lifetime (a random
        phase), and each later refresh about one ``ttl`` after the one before. A fleet whose
        first fetches happen together then has its refreshes spread over four fifths of the
        TTL window from the first one on; with the drift alone (+-``jitter`` a cycle) it would
        stay bunched for many cycles. The lifetime, and so the oldest an answer served fresh
        can be, is unchanged.

        ``grid`` (any time on the chain's schedule: ``grid + k x ttl``) pins refreshes ahead
        to that schedule instead. A chain's first refresh ahead falls at the schedule's first
        point, when that is within the first ``refresh_ahead_at`` of its life (else at the
        random phase above). Each later one falls at the first point at least half a ``ttl``
        after its fetch, or earlier if need be so that a tenth of a ``ttl`` of freshness is
        left after it; its life starts ``1 - refresh_ahead_at`` of it after the fetch (the
        oldest answer served fresh stays within the bound above). The resolver draws each
        process a random schedule and puts each document a share of the TTL apart from the
        others: with jitter alone, one process's refreshes drift into step with another's
        (the drift is a random walk of +-``jitter`` a cycle); a schedule keeps them where
        they were drawn (the "steady: busiest second" row of ``bench_fleet``).
        """
        life = self.ttl * rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)
        if self.jitter <= 0 or self.ttl <= 0:
            grid = None  # no jitter, no draw: every refresh ahead at refresh_ahead_at
        if previous is not None and previous.fresh_until > now:
            if grid is None:
                start = now + min(previous.fresh_until - now, life * (1.0 - self.refresh_ahead_at))
            else:
                # From a point of the schedule, the next one is a TTL on: it fits unless the
                # life drawn is short; then the refresh comes a little early, and the one
                # after it is back on the schedule.
                start = now + life * (1.0 - self.refresh_ahead_at)
                point = _next_point(grid, self.ttl, now + 0.5 * self.ttl)
                return Entry(
                    value,
                    now,
                    start + life,
                    min(point, start + life - _LEFT_AFTER_REFRESH * self.ttl),
                )
            return Entry(value, now, start + life, start + life * self.refresh_ahead_at)
        if grid is not None:
            point = _next_point(grid, self.ttl, now + 0.02 * self.ttl)
            if point <= now + life * self.refresh_ahead_at:
                return Entry(value, now, now + life, point)
        # 1 - uniform(0, 1) is in (0, 1]: never a refresh ahead due at the fetch itself.
        phase = 1.0 - rng.uniform(0.0, 1.0) if self.jitter > 0 else 1.0
        return Entry(value, now, now + life, now + life * self.refresh_ahead_at * phase)

    def inherited(self, entry: Entry, now: float, rng: RandomSource) -> None:
        """Move the refresh ahead of ``entry``, a forked child's copy of its parent's, to a
        random point between ``now`` and a tenth of a ``ttl`` before its freshness ends.

        Workers forked together from one parent (gunicorn ``--preload``, a fork pool) would
        otherwise all refresh it at the parent's ``refresh_at``: one request per worker in the
        same second. The refresh after that one falls on the child's own schedule
        (`new_entry`). The life is kept; an entry already due, or a `Policy` without jitter,
        is left as it is.
        """
        latest = entry.fresh_until - _LEFT_AFTER_REFRESH * self.ttl
        if self.jitter <= 0 or self.ttl <= 0 or entry.refresh_at <= now or latest <= now:
            return
        # 1 - uniform(0, 1) is in (0, 1]: never due at the fork itself.
        entry.refresh_at = now + (latest - now) * (1.0 - rng.uniform(0.0, 1.0))

    def backoff(self, failures: int, rng: RandomSource) -> float:
        """Seconds to wait before retrying after the ``failures``-th failure in a row."""
        return min(self.max_backoff, 2.0 ** (failures - 1)) * rng.uniform(0.5, 1.0)


def _next_point(grid: float, period: float, after: float) -> float:
    """The first time of ``grid + k x period`` (any whole k) that is not before ``after``."""
    return grid + math.ceil((after - grid) / period) * period


def decide(entry: Entry, now: float, policy: Policy) -> Freshness:
    """The one freshness decision: what a lookup does with ``entry`` at ``now``.

    Rules, in order: past ``fresh_until + max_stale`` it is `RELOAD`; before ``fresh_until``
    it is `FRESH`, or `REFRESH_AHEAD` once ``refresh_at`` has passed (unless a refresh is
    already running or a failed one is backing off); past freshness it is `SERVE_STALE` while
    a failed refresh backs off or a refresh ahead is still running, else `REVALIDATE`.
    """
    if now >= entry.fresh_until + policy.max_stale:
        return Freshness.RELOAD
    if now < entry.fresh_until:
        if now >= entry.refresh_at and not entry.refreshing and now >= entry.retry_at:
            return Freshness.REFRESH_AHEAD
        return Freshness.FRESH
    if now < entry.retry_at or entry.refreshing:
        # Backing off, or a refresh ahead still running (a slow back-end): waiting for it
        # would stall the lookup up to provider_timeout; the last good answer serves.
        return Freshness.SERVE_STALE
    return Freshness.REVALIDATE
