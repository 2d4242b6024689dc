"""A cancellation storm: 10,000 gets cancelled at random moments over a chain of slow providers.

Afterwards no task is left pending, every answer that was delivered was right, the cache
answers correctly and its counters add up (every get either answered or was cancelled, counted
where it happened; every cache miss led or joined a load; every load was one back-end call that
finished), and nothing was reported: no "Task was destroyed but it is pending", no exception
never retrieved, no warning. The same storm also runs in a fresh interpreter whose stderr must
stay empty.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from simpletuner_secrets import SecretsManager
from simpletuner_secrets.providers.base import SecretProvider
from simpletuner_secrets.providers.env import EnvironmentSecretProvider
from simpletuner_secrets.providers.file import FileSecretProvider
from simpletuner_secrets.testing import InMemorySecretProvider
from tests.clock import FakeClock

ROOT = Path(__file__).resolve().parents[2]
KEY_COUNT = 200
GETS = 10_000


def expected_value(i: int) -> str | None:
    """env (i % 10 == 0) > file (1) > memory document (2-5) > per-key back-end (6, 7)."""
    slot = i % 10
    if slot == 0:
        return f"env-{i}"
    if slot == 1:
        return f"file-{i}"
    if 2 <= slot <= 5:
        return f"mem-{i}"
    if slot in (6, 7):
        return f"slow-{i}"
    return None


class SlowPerKey(SecretProvider):
    """A key-by-key back-end taking 5-30 ms an answer."""

    name = "slow"

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self.calls = 0
        self.finished = 0

    async def get(self, key: str) -> str | None:
        self.calls += 1
        await asyncio.sleep(self._rng.uniform(0.005, 0.03))
        self.finished += 1
        i = int(key[1:])
        return f"slow-{i}" if i % 10 in (6, 7) else None


def build_manager(
    directory: Path, seed: int, timer: FakeClock | None = None
) -> tuple[SecretsManager, InMemorySecretProvider]:
    environ = {f"STORM_K{i}": f"env-{i}" for i in range(0, KEY_COUNT, 10)}
    path = directory / "secrets.json"
    path.write_text(json.dumps({f"K{i}": f"file-{i}" for i in range(KEY_COUNT) if i % 10 == 1}))
    path.chmod(0o600)
    memory = InMemorySecretProvider(
        {f"K{i}": f"mem-{i}" for i in range(KEY_COUNT) if 2 <= i % 10 <= 5}, latency=0.02
    )
    chain = [
        EnvironmentSecretProvider(prefix="STORM", environ=environ),
        FileSecretProvider(path),
        memory,
        SlowPerKey(seed),
    ]
    # A short TTL so that loads and background refreshes are in flight throughout the storm.
    if timer is not None:
        return SecretsManager(chain, cache_ttl=0.2, provider_timeout=2.0, timer=timer), memory
    return SecretsManager(chain, cache_ttl=0.2, provider_timeout=2.0), memory


async def storm(directory: Path, gets: int = GETS, seed: int | None = None) -> dict[str, Any]:
    """Run the storm on the running loop; check everything; return the figures."""
    seed = random.randrange(2**32) if seed is None else seed
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    manager, memory = build_manager(directory, seed)
    here = asyncio.current_task()
    start = time.perf_counter()
    try:
        # Where each get ended, counted as it happened (a task cancelled before its first
        # step runs none of its code: it is counted as never started).
        started = waiting_cancels = in_flight_cancels = answered = 0

        async def get_later(i: int, delay: float) -> str | None:
            nonlocal started, waiting_cancels, in_flight_cancels, answered
            started += 1
            if delay:
                try:
                    await asyncio.sleep(delay)
                except asyncio.CancelledError:
                    waiting_cancels += 1  # cancelled before it reached the manager
                    raise
            try:
                value = await manager.get(f"K{i}")
            except asyncio.CancelledError:
                in_flight_cancels += 1  # cancelled inside the manager, not before it
                raise
            answered += 1
            return value

        async def cancel_later(task: asyncio.Task[Any], delay: float) -> None:
            await asyncio.sleep(delay)
            task.cancel()

        keys: list[int] = []
        tasks: list[asyncio.Task[str | None]] = []
        cancellers = []
        for n in range(gets):
            i = rng.randrange(KEY_COUNT)
            keys.append(i)
            # Staggered over ~0.5 s so that loads, refreshes and hits all get cancelled.
            task = asyncio.ensure_future(get_later(i, rng.choice((0.0, rng.uniform(0, 0.5)))))
            tasks.append(task)
            cancellers.append(asyncio.ensure_future(cancel_later(task, rng.uniform(0, 0.55))))
            if n % 500 == 0:
                await asyncio.sleep(0)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*cancellers)
        storm_s = time.perf_counter() - start

        cancelled = sum(isinstance(r, asyncio.CancelledError) for r in results)
        others = [r for r in results if isinstance(r, BaseException)]
        others = [r for r in others if not isinstance(r, asyncio.CancelledError)]
        assert not others, others[:3]
        counted = (gets - started, waiting_cancels, in_flight_cancels, answered)
        assert answered + cancelled == gets, counted
        assert (gets - started) + waiting_cancels + in_flight_cancels == cancelled, counted
        wrong = [
            (i, r)
            for i, r in zip(keys, results, strict=True)
            if not isinstance(r, BaseException) and r != expected_value(i)
        ]
        assert not wrong, wrong[:3]

        # Loads whose waiters were all cancelled still finish (they run in their own tasks);
        # after that nothing may be left.
        for _ in range(500):  # at most 5 s
            if asyncio.all_tasks() == {here}:
                break
            await asyncio.sleep(0.01)
        left = asyncio.all_tasks() - {here}
        assert not left, sorted(repr(t.get_coro()) for t in left)[:5]
        cache = manager.stats()["cache"]
        assert cache["pending"] == 0, cache
        assert cache["size"] <= cache["max_size"]
        # Every miss led a load or joined one; every load was one call to a cached back-end
        # (the environment and the file are read live), and each of those calls finished.
        assert cache["misses"] == cache["loads"] + cache["coalesced"], cache
        assert cache["coalesced"] > 0, cache
        slow = manager.providers[3]
        assert isinstance(slow, SlowPerKey)
        assert cache["loads"] == memory.loads + slow.calls, (cache, memory.loads, slow.calls)
        assert slow.finished == slow.calls, (slow.finished, slow.calls)
        calls = {name: p["calls"] for name, p in manager.stats()["providers"].items()}
        assert (calls["memory"], calls["slow"]) == (memory.loads, slow.calls), calls

        # The cache is consistent: every key answers right, from cache or after a reload.
        for i in range(KEY_COUNT):
            assert await asyncio.wait_for(manager.get(f"K{i}"), 5) == expected_value(i)
        providers = manager.stats()["providers"]
        assert all(p["errors"] == 0 and p["timeouts"] == 0 for p in providers.values()), providers
        await manager.aclose()
        gc.collect()
        await asyncio.sleep(0)
        assert not reported, [c.get("message") for c in reported][:5]
        return {
            "seed": seed,
            "gets": gets,
            "cancelled": cancelled,
            "in_flight_cancels": in_flight_cancels,
            "completed": answered,
            "storm_s": storm_s,
            "memory_loads": memory.loads,
            "cache": cache,
        }
    finally:
        if not manager.closed:
            await manager.aclose()
        loop.set_exception_handler(previous_handler)


async def test_cancellation_storm_leaves_nothing_behind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """10,000 gets cancelled at random: no task left, right answers, nothing reported."""
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        figures = await storm(tmp_path)
    print(
        f"\nstorm: {figures['gets']} gets, {figures['cancelled']} cancelled "
        f"({figures['in_flight_cancels']} inside a manager call), "
        f"{figures['completed']} answered, {figures['storm_s']:.2f} s, memory loads "
        f"{figures['memory_loads']}, cache loads {figures['cache']['loads']} coalesced "
        f"{figures['cache']['coalesced']} (seed {figures['seed']})"
    )
    # The storm's own shares, whatever the library: half the gets wait uniform(0, 0.5) s before
    # the manager and each is cancelled at uniform(0, 0.55) s, so 0.5 x 0.25 / 0.55 = 23% are
    # cancelled while they wait (2,273 of 10,000, about 42 either way); 20% is six of those
    # spreads below. Cancellations inside a manager call depend on how long its loads take:
    # 87-220 of 10,000 seen here (fewer on a quiet machine); a library that swallowed them
    # would have none.
    assert figures["cancelled"] > figures["gets"] // 5
    assert figures["completed"] > figures["gets"] // 10
    assert figures["in_flight_cancels"] > 25
    asyncio_records = [r for r in caplog.records if r.name == "asyncio"]
    assert not asyncio_records, [r.getMessage() for r in asyncio_records][:3]
    library_warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not library_warnings, [r.getMessage() for r in library_warnings][:3]


async def test_cancelling_every_waiter_of_a_load_still_fills_the_cache(tmp_path: Path) -> None:
    """All 100 waiters of one cold load cancelled at once: the load finishes and is cached."""
    # A clock that stands still: the 0.2 s TTL's random first refresh ahead (anywhere in its
    # first 0.16 s) would otherwise fall before the lookup below about one run in four.
    manager, memory = build_manager(tmp_path, seed=1, timer=FakeClock())
    async with manager:
        tasks = [asyncio.ensure_future(manager.get("K2")) for _ in range(100)]
        await asyncio.sleep(0.005)  # the document load (20 ms) is in flight
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        await asyncio.sleep(0.05)
        assert memory.loads == 1
        assert await manager.get("K2") == "mem-2"
        await asyncio.sleep(0.05)  # long enough for a (wrong) background load to be counted
        assert memory.loads == 1  # the cancelled load's document was kept


SUBPROCESS = """
import asyncio, gc, sys
from pathlib import Path
from tests.reliability.test_cancellation import storm

figures = asyncio.run(storm(Path(sys.argv[1]), int(sys.argv[2])))
gc.collect()
print(figures["cancelled"], figures["completed"])
"""


def test_cancellation_storm_in_a_fresh_interpreter_reports_nothing(tmp_path: Path) -> None:
    """The storm in its own interpreter (-W error): stderr stays empty through exit."""
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", SUBPROCESS, str(tmp_path), "5000"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    cancelled, completed = map(int, proc.stdout.split())
    assert cancelled + completed == 5000 and cancelled > 0 and completed > 0
