"""Measure how long the event loop stalls while something runs: a task ticking every 5 ms."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def max_gap_during(awaitable: Awaitable[T]) -> tuple[float, T]:
    """Run ``awaitable`` while a task ticks every 5 ms; return the longest tick gap seen."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.02)
    try:
        result = await awaitable
    finally:
        done.set()
        await ticker
    return max(gaps), result
