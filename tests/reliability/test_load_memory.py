"""Load and memory: many tasks and threads on one manager, and a million distinct lookups.

The chain is environment + secrets file + an in-memory back-end with 5 ms of latency (the
real-server variant lives with the integration tests). Figures are printed (run with ``-s``)
and quoted in the README's reliability section.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from simpletuner_secrets import SecretsManager
from simpletuner_secrets.providers.base import SecretProvider
from simpletuner_secrets.providers.env import EnvironmentSecretProvider
from simpletuner_secrets.providers.file import FileSecretProvider
from simpletuner_secrets.testing import InMemorySecretProvider
from tests.clock import BandMiddle

PREFIX = "STLOADTEST"
KEYS = [f"K{i}" for i in range(500)]
TASKS = 1000
GETS_PER_TASK = 100
THREADS = 8


def rss_kb() -> int:
    """Resident set size of this process in kB (Linux /proc)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def expected_value(i: int) -> str | None:
    """Environment beats file beats memory; i % 10 in (8, 9) is absent everywhere."""
    slot = i % 10
    if slot == 0:
        return f"env-{i}"
    if slot in (1, 2):
        return f"file-{i}"
    if slot < 8:
        return f"mem-{i}"
    return None


class TimedMemory(InMemorySecretProvider):
    """The in-memory back-end, noting when each document load started."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started: list[float] = []

    async def load_document(self) -> Mapping[str, str]:
        self.started.append(time.monotonic())
        return await super().load_document()


def build_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[EnvironmentSecretProvider, FileSecretProvider, TimedMemory]:
    for i in range(0, 500, 10):
        monkeypatch.setenv(f"{PREFIX}_K{i}", f"env-{i}")
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({f"K{i}": f"file-{i}" for i in range(500) if i % 10 in (1, 2)}))
    path.chmod(0o600)
    memory = TimedMemory({f"K{i}": f"mem-{i}" for i in range(500) if i % 10 < 8}, latency=0.005)
    return EnvironmentSecretProvider(prefix=PREFIX), FileSecretProvider(path), memory


@pytest.mark.parametrize(
    ("cache_ttl", "pause_s"),
    [
        pytest.param(300.0, 0.0, id="one-window"),
        pytest.param(0.5, 0.03, id="windows-of-0.5s"),
    ],
)
async def test_1000_tasks_and_8_threads_share_one_load_per_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_ttl: float, pause_s: float
) -> None:
    """1,000 tasks x 100 gets over 500 keys plus 8 sync threads: no error, one load a window."""
    env, file, memory = build_chain(tmp_path, monkeypatch)
    manager = SecretsManager([env, file, memory], cache_ttl=cache_ttl, rng=BandMiddle())
    stop = threading.Event()
    thread_gets = [0] * THREADS
    thread_errors: list[str] = []

    def hammer(n: int) -> None:
        rng = random.Random(n)
        while not stop.is_set():
            i = rng.randrange(500)
            try:
                got = manager.sync.get(KEYS[i])
            except Exception as exc:
                thread_errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if got != expected_value(i):
                thread_errors.append(f"K{i}: wrong answer")
            thread_gets[n] += 1
            if pause_s:
                time.sleep(pause_s / 10)

    async def task(n: int) -> int:
        rng = random.Random(10_000 + n)
        wrong = 0
        for _ in range(GETS_PER_TASK):
            i = rng.randrange(500)
            if await manager.get(KEYS[i]) != expected_value(i):
                wrong += 1
            if pause_s:
                await asyncio.sleep(rng.uniform(0, pause_s))
            elif rng.random() < 0.1:
                await asyncio.sleep(0)
        return wrong

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(THREADS)]
    gc.collect()
    rss_before = rss_kb()
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    try:
        results = await asyncio.gather(*(task(n) for n in range(TASKS)), return_exceptions=True)
    finally:
        stop.set()
        for thread in threads:
            await asyncio.to_thread(thread.join, 30)
    elapsed = time.perf_counter() - start
    rss_growth = rss_kb() - rss_before
    await manager.aclose()

    errors = [r for r in results if isinstance(r, BaseException)]
    wrong = sum(r for r in results if isinstance(r, int))
    stats = manager.stats()
    print(
        f"\nload ttl={cache_ttl}: {TASKS} tasks x {GETS_PER_TASK} gets + {sum(thread_gets)} "
        f"sync gets from {THREADS} threads in {elapsed:.2f} s; errors {len(errors)}, wrong "
        f"{wrong}, thread errors {len(thread_errors)}; memory loads {memory.loads}, file "
        f"parses {file.parses}; RSS +{rss_growth} kB"
    )
    assert not errors, errors[:3]
    assert wrong == 0
    assert not thread_errors, thread_errors[:3]
    assert all(gets > 0 for gets in thread_gets), thread_gets
    assert all(p["errors"] == 0 and p["timeouts"] == 0 for p in stats["providers"].values())
    assert file.parses == 1  # the file never changed: re-checked by stat, parsed once
    assert stats["providers"]["memory"]["calls"] == memory.loads
    if cache_ttl >= elapsed:
        assert memory.loads == 1
    else:
        # With every random draw at the middle of its band, a life is one TTL and this
        # document's first refresh ahead falls at 75% of it (`BandMiddle`, the third place in
        # the chain), later ones one TTL apart; all the lookups of a window (1,000 tasks, 8
        # threads, two event loops) share its load, so no two loads are closer than 40% of a
        # TTL (a load that did not coalesce would be a gap of about nothing).
        shortest_window = 0.4 * cache_ttl
        gaps = [b - a for a, b in zip(memory.started, memory.started[1:], strict=False)]
        assert memory.loads >= 2
        assert min(gaps) >= shortest_window, gaps  # never two loads in one window
    assert rss_growth < 64 * 1024


class AlwaysAbsent(SecretProvider):
    """A key-by-key back-end that has nothing: every distinct key is one cached absence."""

    name = "per-key"

    def __init__(self) -> None:
        self.calls = 0

    async def get(self, key: str) -> str | None:
        self.calls += 1
        return None


async def measure_distinct_misses(
    manager: SecretsManager, count: int
) -> tuple[float, int, int, int]:
    """Look up ``count`` distinct absent keys; return (seconds, max cache size, growth kB
    after the first fifth, growth kB over the remaining four fifths)."""
    await manager.get("WARM_UP")
    gc.collect()
    base = rss_kb()
    fifth = count // 5
    largest = 0
    after_first_fifth = 0
    start = time.perf_counter()
    for i in range(count):
        assert await manager.get(f"absent-key-{i}") is None
        if i % 10_000 == 0:
            largest = max(largest, manager.stats()["cache"]["size"])
        if i == fifth:
            gc.collect()
            after_first_fifth = rss_kb()
    elapsed = time.perf_counter() - start
    largest = max(largest, manager.stats()["cache"]["size"])
    gc.collect()
    end = rss_kb()
    return elapsed, largest, after_first_fifth - base, end - after_first_fifth


async def test_a_million_distinct_absent_keys_keep_memory_flat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,000,000 distinct absent keys on env + file + memory: no per-key memory is kept."""
    env, file, memory = build_chain(tmp_path, monkeypatch)
    # The middle of every band: a first refresh ahead 120 s in, not anywhere in the first
    # 240 s (a random one fell inside this 8 s run once, and the document loaded twice).
    async with SecretsManager(
        [env, file, memory], cache_max_size=10_000, rng=BandMiddle()
    ) as manager:
        elapsed, largest, early, late = await measure_distinct_misses(manager, 1_000_000)
        stats = manager.stats()
    print(
        f"\n1,000,000 distinct absent keys (env + file + memory): {elapsed:.2f} s, cache size "
        f"max {largest}, RSS +{early} kB in the first 200k, +{late} kB in the next 800k; "
        f"memory loads {memory.loads}"
    )
    assert largest <= 10_000
    assert memory.loads == 1
    assert all(p["errors"] == 0 for p in stats["providers"].values())
    assert early < 16 * 1024  # memo tables of normalize_key and the environment are capped
    assert late < 4 * 1024  # flat: nothing grows with the number of distinct keys


async def test_distinct_absent_keys_on_a_per_key_back_end_stay_within_cache_max_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """150,000 distinct absent keys cached one by one: 10,000 entries at most, memory flat."""
    env, _, _ = build_chain(tmp_path, monkeypatch)
    per_key = AlwaysAbsent()
    async with SecretsManager([env, per_key], cache_max_size=10_000) as manager:
        elapsed, largest, early, late = await measure_distinct_misses(manager, 150_000)
        cache = manager.stats()["cache"]
    print(
        f"\n150,000 distinct absent keys (env + per-key back-end, cache_max_size=10,000): "
        f"{elapsed:.2f} s, cache size max {largest}, evictions {cache['evictions']}, RSS "
        f"+{early} kB in the first 30k, +{late} kB in the next 120k"
    )
    assert largest == 10_000
    assert cache["size"] == 10_000
    assert cache["evictions"] >= 150_000 - 10_000
    assert cache["pending"] == 0
    assert per_key.calls == 150_001  # every distinct key asked once (plus the warm-up)
    assert early < 32 * 1024  # 10,000 entries
    assert late < 4 * 1024  # flat once the cache is full
