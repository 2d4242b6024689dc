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
