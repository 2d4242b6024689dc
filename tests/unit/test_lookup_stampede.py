"""Concurrent cold lookups of one key through the manager share one fan-out
(`Resolver.resolve`), and the lookups that join it keep the manager's guarantees."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from simpletuner_secrets import FileSecretProvider, SecretsManager
from simpletuner_secrets.errors import ProviderError
from simpletuner_secrets.providers.base import NOT_CACHED, DocumentSecretProvider, SecretProvider
from tests.clock import BandMiddle, FakeClock


class GatedLive(SecretProvider):
    """A live provider (never cached, every lookup asks it) whose answers wait for ``gate``;
    the n-th call answers ``value-n``, or fails when ``fail`` is set."""

    name = "gated"
    cache_answers = False

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls = 0
        self.fail = False

    def peek(self, key: str) -> str | None:
        return NOT_CACHED  # type: ignore[no-any-return]

    async def get(self, key: str) -> str | None:
        self.calls += 1
        n = self.calls
        while not self.gate.is_set():  # noqa: ASYNC110 - one gate for several loops
            await asyncio.sleep(0.001)
        if self.fail:
            raise ProviderError("gated: the back-end refused", provider=self.name)
        return f"{key.lower()}-value-{n}"


class Doc(DocumentSecretProvider):
    """A remote document; ``fail`` makes loads fail, ``gate`` holds them."""

    def __init__(self) -> None:
        super().__init__(name="doc")
        self.loads = 0
        self.fail = False
        self.gate = asyncio.Event()
        self.gate.set()

    async def load_document(self) -> Mapping[str, str]:
        self.loads += 1
        await self.gate.wait()
        if self.fail:
            raise ProviderError("doc: the back-end refused", provider=self.name)
        return {"A": "doc-value-a"}


async def until(condition: object, what: str) -> None:
    """Wait for ``condition()`` on the loop; a hang guard, far above the expected time."""
    deadline = time.monotonic() + 30
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.001)


async def test_concurrent_cold_lookups_of_a_key_share_one_fan_out() -> None:
    """50 concurrent lookups of one key ask the chain once (a live provider is called once,
    not once per lookup), and a lookup of another key asks on its own."""
    p = GatedLive()
    async with SecretsManager(providers=[p]) as m:
        callers = [asyncio.create_task(m.get("A")) for _ in range(50)]
        other = asyncio.create_task(m.get("B"))
        await until(lambda: p.calls == 2, "both keys asked")
        await asyncio.sleep(0.01)  # every caller has had its turn
        p.gate.set()
        assert await asyncio.gather(*callers) == ["a-value-1"] * 50
        assert await other == "b-value-2"
        assert p.calls == 2


async def test_a_cancelled_joiner_or_first_lookup_leaves_the_others_their_answer() -> None:
    """Cancelling a joiner ends only that lookup; cancelling the first one makes its joiners
    ask again, once for all of them, and each gets the answer."""
    p = GatedLive()
    async with SecretsManager(providers=[p]) as m:
        callers = [asyncio.create_task(m.get("A")) for _ in range(20)]
        await until(lambda: p.calls == 1, "the first lookup asked")
        await asyncio.sleep(0.01)
        callers[5].cancel()
        callers[0].cancel()
        await until(lambda: p.calls == 2, "a joiner asked again")
        p.gate.set()
        results = await asyncio.gather(*callers, return_exceptions=True)
        assert isinstance(results[0], asyncio.CancelledError)
        assert isinstance(results[5], asyncio.CancelledError)
        assert [r for i, r in enumerate(results) if i not in (0, 5)] == ["a-value-2"] * 18
        assert p.calls == 2


async def test_joined_lookups_get_the_first_lookups_error_and_the_next_asks_again() -> None:
    """With on_provider_error="raise", every joined lookup gets the first one's failure;
    the failure is not kept: the next lookup asks the provider again."""
    p = GatedLive()
    p.fail = True
    async with SecretsManager(providers=[p], on_provider_error="raise") as m:
        callers = [asyncio.create_task(m.get("A")) for _ in range(10)]
        await until(lambda: p.calls == 1, "the first lookup asked")
        await asyncio.sleep(0.01)
        p.gate.set()
        results = await asyncio.gather(*callers, return_exceptions=True)
        assert all(isinstance(r, ProviderError) for r in results), results
        assert p.calls == 1
        p.fail = False
        assert await m.get("A") == "a-value-2"


async def test_a_lookup_after_a_cache_clear_does_not_join_one_from_before() -> None:
    """A lookup made after `clear_cache` asks again rather than waiting for the answer of a
    lookup that began before it."""
    p = GatedLive()
    async with SecretsManager(providers=[p]) as m:
        before = asyncio.create_task(m.get("A"))
        await until(lambda: p.calls == 1, "the first lookup asked")
        m.clear_cache()
        after = asyncio.create_task(m.get("A"))
        await until(lambda: p.calls == 2, "the later lookup asked on its own")
        p.gate.set()
        assert await before == "a-value-1"
        assert await after == "a-value-2"


async def test_a_lookup_on_another_loop_does_not_join() -> None:
    """A lookup in flight on a thread's own loop is not joined from another loop: each loop
    asks on its own and gets its answer."""
    p = GatedLive()
    async with SecretsManager(providers=[p]) as m:
        answers: list[str | None] = []
        thread = threading.Thread(target=lambda: answers.append(asyncio.run(m.get("A"))))
        thread.start()
        try:
            await until(lambda: p.calls == 1, "the thread's lookup asked")
            here = asyncio.create_task(m.get("A"))
            await until(lambda: p.calls == 2, "this loop's lookup asked on its own")
        finally:
            p.gate.set()
            await asyncio.to_thread(thread.join, 30)
        assert await here == "a-value-2"
        assert answers == ["a-value-1"]


async def test_joined_lookups_are_counted_as_the_first_was() -> None:
    """50 concurrent cold lookups count 50 misses; 20 concurrent lookups served stale
    while a refresh fails count 20 stale answers, in the lookups and for the provider."""
    clock = FakeClock()
    doc = Doc()
    async with SecretsManager(
        providers=[doc], cache_ttl=10, max_stale=60, timer=clock, rng=BandMiddle()
    ) as m:
        doc.gate.clear()
        callers = [asyncio.create_task(m.get("A")) for _ in range(50)]
        await until(lambda: doc.loads == 1, "the load started")
        await asyncio.sleep(0.01)
        doc.gate.set()
        assert await asyncio.gather(*callers) == ["doc-value-a"] * 50
        lookups = m.stats()["lookups"]
        assert (lookups["miss"], lookups["hit"], lookups["stale"]) == (50, 0, 0)

        clock.tick(20)  # past its freshness, within max_stale
        doc.fail = True
        doc.gate.clear()
        callers = [asyncio.create_task(m.get("A")) for _ in range(20)]
        await until(lambda: doc.loads == 2, "the refresh started")
        await asyncio.sleep(0.01)
        doc.gate.set()
        assert await asyncio.gather(*callers) == ["doc-value-a"] * 20
        stats = m.stats()
        assert stats["lookups"]["stale"] == 20
        assert stats["providers"]["doc"]["stale_served"] == 20
        assert doc.loads == 2


@pytest.mark.parametrize("callers", [2, 200])
async def test_every_joined_lookup_gets_the_value(callers: int) -> None:
    """However many lookups join, each gets the value and the document loads once."""
    doc = Doc()
    async with SecretsManager(providers=[doc]) as m:
        assert (
            await asyncio.gather(*(m.get("a") for _ in range(callers))) == ["doc-value-a"] * callers
        )
        assert doc.loads == 1


async def test_a_lookup_after_a_write_does_not_join_one_from_before(tmp_path: Path) -> None:
    """A lookup made after `set_secret` wrote the key reads the written value, not the answer
    of a lookup that began before the write."""
    p = GatedLive()
    clock = FakeClock()
    secrets = FileSecretProvider(tmp_path / "secrets.json", timer=clock)
    async with SecretsManager(providers=[secrets, p], timer=clock) as m:
        before = asyncio.create_task(m.get("A"))
        await until(lambda: p.calls == 1, "the first lookup reached the lower provider")
        await m.set_secret("A", "written-value")
        clock.tick(2)  # the file is due a check: the lookup below goes the slow way
        after = asyncio.create_task(m.get("A"))
        await asyncio.sleep(0.01)
        p.gate.set()
        assert await after == "written-value"
        assert await before == "a-value-1"  # it began before the write
