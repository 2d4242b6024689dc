"""Measure how long the event loop stalls while something runs: a task ticking every 5 ms.

A stall is measured as the CPU time the loop's thread spent between two ticks
(`time.thread_time`), not their wall-clock distance: code blocking the loop (an SDK model
parsed on it, a document converted on it) burns the loop thread's CPU, while a busy shared
machine that merely descheduled the process does not, so a loaded CI run cannot fail a
correct library. The wall-clock gaps are kept for messages.

What this cannot see: a worker thread holding the GIL in one long C call (``json.loads`` of a
large document) delays the loop without the loop thread burning CPU. Such cases are bounded by
size limits (Vault's ``max_document_size``) and measured by wall clock in the README.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass
class Beats:
    """The gaps between ticks: loop-thread CPU time and wall-clock time, in seconds."""

    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)

    @property
    def max_busy(self) -> float:
        return max(self.cpu, default=0.0)

    @property
    def max_wall(self) -> float:
        return max(self.wall, default=0.0)


async def beat(beats: Beats, done: asyncio.Event) -> None:
    """Tick every 5 ms until ``done``, recording each gap in ``beats``."""
    last_cpu, last_wall = time.thread_time(), time.perf_counter()
    while not done.is_set():
        await asyncio.sleep(0.005)
        cpu, wall = time.thread_time(), time.perf_counter()
        beats.cpu.append(cpu - last_cpu)
        beats.wall.append(wall - last_wall)
        last_cpu, last_wall = cpu, wall


#: A wall-clock gap this long fails whatever its CPU time: a hang guard (a blocking sleep or
#: socket read on the loop burns no CPU), wide enough that a busy machine cannot trip it.
HANG_GUARD_S = 1.0


async def max_gap_during(
    awaitable: Awaitable[T], hang_guard: float = HANG_GUARD_S
) -> tuple[float, T]:
    """Run ``awaitable`` while a task ticks every 5 ms; return the longest stall (loop-thread
    CPU time between two ticks) and the awaitable's result.

    Args:
        awaitable: What to run.
        hang_guard: The wall-clock gap that fails whatever its CPU time. Work whose worker
            thread holds the GIL in long C calls (a many-megabyte document) delays the loop
            by wall clock, more so on a loaded machine: such tests pass a wider guard.

    Raises:
        AssertionError: A wall-clock gap reached ``hang_guard``.
    """
    beats = Beats()
    done = asyncio.Event()
    ticker = asyncio.create_task(beat(beats, done))
    await asyncio.sleep(0.02)
    try:
        result = await awaitable
    finally:
        done.set()
        await ticker
    assert beats.max_wall < hang_guard, f"the loop did not tick for {beats.max_wall:.2f} s"
    return beats.max_busy, result
