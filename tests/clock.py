"""The suite's one fake clock: a monotonic clock that moves only when a test moves it."""

from __future__ import annotations


class FakeClock:
    """Pass it as ``timer=`` (`SecretsManager`, `TTLCache`, `FileSecretProvider`); move it with
    `tick`, or set `now`."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


class BandMiddle:
    """A `RandomSource` whose every draw is the middle of its band: lifetimes of exactly one
    TTL, the refresh schedule's offset half a TTL after the manager's first fetch (so a
    document's first refresh ahead falls at 50%, 40%, 75% or 25% of its life in the first four
    places of the chain, later places elsewhere in the first 80%), backoffs at three quarters.

    For tests that run on the real clock and count requests: with random draws, a first
    refresh ahead may fall anywhere in the first 80% of a TTL, so a long enough run sees one
    at random.
    """

    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2
