"""Fault injection against the real back-ends: a TCP fault proxy, then Vault, AWS and file faults.

The helpers here are shared by the fault test modules: the timing budget every case is held
to, the warnings the library logged, an optional record of measured times, and the check of
one fault in its three documented outcomes (stale, skip, raise).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from simpletuner_secrets import ProviderError, SecretProvider, SecretsManager
from simpletuner_secrets.testing import InMemorySecretProvider

#: Cache TTL of the managers under test (jittered +-10% by the manager).
TTL = 0.3
#: The managers' provider_timeout.
TIMEOUT = 1.0
#: What a faulty lookup may take beyond TIMEOUT on a busy two-core machine. Wide on purpose:
#: a lookup the timeout does not bound waits out a stalled fault (no end) or botocore's and
#: urllib3's retries (several seconds), far past it; 0.5 s failed correct runs under load.
MARGIN = 1.5
#: A sleep that outlasts any jittered TTL.
PAST_TTL = TTL * 1.1 + 0.05

#: When set, every measured time is appended to this file as one JSON line.
TIMINGS_ENV = "SIMPLETUNER_FAULT_TIMINGS"


def record(case: str, **seconds: float) -> None:
    """Append measured times of ``case`` to the file named by ``$SIMPLETUNER_FAULT_TIMINGS``."""
    target = os.environ.get(TIMINGS_ENV)
    if not target:
        return
    line = {"case": case, **{k: round(v, 4) for k, v in seconds.items()}}
    with open(target, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


def library_warnings(caplog: pytest.LogCaptureFixture, containing: str = "") -> list[str]:
    """The WARNING (or worse) messages logged by the library, optionally filtered."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("simpletuner_secrets")
        and r.levelno >= logging.WARNING
        and containing in r.getMessage()
    ]


class Stopwatch:
    """Seconds since creation, on the monotonic clock."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start


# -- one fault, three documented outcomes ------------------------------------------------

KEY = "FAULT_KEY"
FALLBACK = "memory-fallback-value-1a2b"
STALE_WARNING = "serving the last good answer"
SKIP_WARNING = "failed and is skipped"
OUTCOMES = ("stale", "skip", "raise")


@dataclass
class Fault:
    """How to break a back-end for one case, and how its failure reads.

    Attributes:
        name: The case, for messages and the timings record.
        inject: Breaks the back-end (blocking calls allowed: run in a worker thread).
        messages: Fragments of which the failure's text holds at least one.
        min_s: The warm lookup takes at least this long: a timeout decides, not an answer.
        fast: The warm lookup must not wait at all (an error answer, a refused connection).
    """

    name: str
    inject: Callable[[], object]
    messages: tuple[str, ...]
    min_s: float = 0.0
    fast: bool = False


def manager_for(provider: SecretProvider, outcome: str) -> SecretsManager:
    """``stale``: the provider alone; ``skip``/``raise``: above an in-memory fallback."""
    chain: list[SecretProvider] = [provider]
    if outcome != "stale":
        chain.append(InMemorySecretProvider({KEY: FALLBACK}))
    return SecretsManager(
        providers=chain,
        cache_ttl=TTL,
        provider_timeout=TIMEOUT,
        on_provider_error="raise" if outcome == "raise" else "skip",
    )


async def _timed_get(manager: SecretsManager) -> tuple[float, str | ProviderError | None]:
    watch = Stopwatch()
    try:
        value = await manager.get(KEY)
    except ProviderError as exc:
        return watch.elapsed, exc
    return watch.elapsed, value


def _mentions(text: str, fault: Fault) -> bool:
    return any(fragment in text for fragment in fault.messages)


async def check_all_outcomes(
    label: str,
    fault: Fault,
    make_provider: Callable[[], SecretProvider],
    value: str,
    caplog: pytest.LogCaptureFixture,
    secrets_in_play: tuple[str, ...],
) -> dict[str, float]:
    """Inject ``fault`` once under three managers, each with a provider of its own.

    ``stale``: primed before the fault, it serves the last good ``value`` with one WARNING;
    ``skip``: cold, the fallback below answers, one WARNING; ``raise``: cold, `ProviderError`,
    nothing logged. The three lookups run at once; each must end within ``provider_timeout``
    plus `MARGIN`, and the failure must be the fault's own (named in the error or warning).

    Returns:
        Seconds each outcome's lookup took.
    """
    caplog.set_level(logging.WARNING)
    managers = {outcome: manager_for(make_provider(), outcome) for outcome in OUTCOMES}
    try:
        assert await managers["stale"].get(KEY) == value
        await asyncio.to_thread(fault.inject)
        await asyncio.sleep(PAST_TTL)
        answers = await asyncio.gather(*(_timed_get(managers[o]) for o in OUTCOMES))
        times = {o: elapsed for o, (elapsed, _) in zip(OUTCOMES, answers, strict=True)}
        got = {o: answer for o, (_, answer) in zip(OUTCOMES, answers, strict=True)}
        assert got["stale"] == value
        assert got["skip"] == FALLBACK
        error = got["raise"]
        assert isinstance(error, ProviderError), error
        assert error.provider == label and _mentions(str(error), fault), str(error)
        for outcome, elapsed in times.items():
            assert elapsed < TIMEOUT + MARGIN, f"{fault.name}/{outcome} took {elapsed:.2f} s"
        assert times["stale"] >= fault.min_s, times
        if fault.fast:
            # A fast fault fails on its own error, not by running out the timeout (judged by
            # the counters, not by wall time: a busy machine is slow, not wrong).
            for outcome in OUTCOMES:
                counted = managers[outcome].stats()["providers"][label]
                assert counted["timeouts"] == 0 and counted["errors"] >= 1, (outcome, counted)
        # The failed refresh backs off: the next lookups get the stale value without asking the
        # back-end on each one. The first backoff (0.5-1 s) may already be over when the slower
        # cold managers finish, so one retry may be due; it fails and backs off for at least
        # 1 s more. Without a backoff every lookup would ask. A wide bound guards against a hang.
        calls = managers["stale"].stats()["providers"][label]["calls"]
        for _ in range(3):
            watch = Stopwatch()
            assert await managers["stale"].get(KEY) == value
            assert watch.elapsed < TIMEOUT + MARGIN
        retries = managers["stale"].stats()["providers"][label]["calls"] - calls
        assert retries <= 1, f"no backoff: {retries} back-end calls for 3 stale lookups"
        explained = await managers["stale"].explain(KEY)
        assert explained["provider"] == label and explained["stale"] is True
    finally:
        for manager in managers.values():
            await manager.aclose()
    stale = library_warnings(caplog, STALE_WARNING)
    skipped = library_warnings(caplog, SKIP_WARNING)
    assert len(stale) == 1 and _mentions(stale[0], fault), stale
    assert len(skipped) == 1 and _mentions(skipped[0], fault), skipped
    assert len(library_warnings(caplog)) == 2, library_warnings(caplog)
    for secret in secrets_in_play:
        assert secret not in caplog.text
    for outcome, elapsed in times.items():
        record(f"{label} {fault.name} -> {outcome}", detect_s=elapsed)
    return times
