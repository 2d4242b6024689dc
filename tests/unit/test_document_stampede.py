"""`DocumentSecretProvider.get` used on its own: concurrent cold gets share one load, and the
callers that join it (through `TTLCache.join_nowait`) keep the cache's guarantees."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from simpletuner_secrets import DocumentSecretProvider, ProviderError

DOCUMENT = {"A": "doc-value-a", "B": "doc-value-b"}


class Gated(DocumentSecretProvider):
    """A remote document whose loads wait for ``gate``; ``fail`` makes the next load fail."""

    def __init__(self) -> None:
        super().__init__(name="gated")
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.loads = 0
        self.fail = False

    async def load_document(self) -> Mapping[str, str]:
        self.loads += 1
        self.started.set()
        await self.gate.wait()
        if self.fail:
            raise ProviderError("gated: the back-end refused", provider=self.name)
        return dict(DOCUMENT)


def load_tasks() -> list[asyncio.Task[object]]:
    """The cache's load tasks in flight (each runs `SingleFlight._run_load`)."""
    return [
        t
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "") == "SingleFlight._run_load"
    ]


async def test_cold_gets_share_one_load_and_a_cancelled_caller_leaves_it_to_the_others() -> None:
    """50 concurrent cold gets make one load; cancelling the first caller and a joiner ends
    only those two, and every other caller gets its key's value."""
    p = Gated()
    callers = [asyncio.create_task(p.get("A" if i % 2 else "b")) for i in range(50)]
    await p.started.wait()
    await asyncio.sleep(0)  # every caller has joined
    callers[0].cancel()
    callers[7].cancel()
    p.gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert isinstance(results[7], asyncio.CancelledError)
    expected = ["doc-value-a" if i % 2 else "doc-value-b" for i in range(50)]
    assert [r for i, r in enumerate(results) if i not in (0, 7)] == [
        e for i, e in enumerate(expected) if i not in (0, 7)
    ]
    assert p.loads == 1
    assert await p.get("A") == "doc-value-a" and p.loads == 1  # kept for document_ttl


async def test_joiners_of_an_abandoned_load_load_again() -> None:
    """A load cancelled under its callers (an owner shutting down) is abandoned: the callers
    that joined it start one new load and get its values."""
    p = Gated()
    callers = [asyncio.create_task(p.get("A")) for _ in range(20)]
    await p.started.wait()
    await asyncio.sleep(0)
    (load,) = load_tasks()
    load.cancel()
    await asyncio.sleep(0)
    p.gate.set()
    assert await asyncio.gather(*callers) == ["doc-value-a"] * 20
    assert p.loads == 2


async def test_joiners_get_the_loads_error_and_the_next_get_loads_again() -> None:
    """A failed load raises its `ProviderError` in every caller, joiners included; nothing is
    kept, so the next get loads again."""
    p = Gated()
    p.fail = True
    callers = [asyncio.create_task(p.get("A")) for _ in range(10)]
    await p.started.wait()
    p.gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, ProviderError) for r in results), results
    assert p.loads == 1
    p.fail = False
    assert await p.get("B") == "doc-value-b"
    assert p.loads == 2


async def test_a_get_after_invalidate_does_not_join_a_finished_load() -> None:
    """Once a load is done, `invalidate` makes the next get load again (no stale join)."""
    p = Gated()
    p.gate.set()
    assert await p.get("A") == "doc-value-a"
    p.invalidate()
    assert await p.get("A") == "doc-value-a"
    assert p.loads == 2


@pytest.mark.parametrize("callers", [2, 200])
async def test_every_caller_of_a_stampede_is_counted(callers: int) -> None:
    """Of ``callers`` concurrent cold gets, one leads the load and the others are counted as
    coalesced in the document cache's stats."""
    p = Gated()
    tasks = [asyncio.create_task(p.get("A")) for _ in range(callers)]
    await p.started.wait()
    p.gate.set()
    assert await asyncio.gather(*tasks) == ["doc-value-a"] * callers
    stats = p._document_cache.stats()
    assert stats["loads"] == 1 and stats["coalesced"] == callers - 1
