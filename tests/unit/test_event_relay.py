"""`LoopRelay`: a provider's own events (``login``, ``token_renewed``) reported from worker
threads reach the manager's listeners on the loop that used the provider, on a small fake."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Callable, Mapping

import pytest

from simpletuner_secrets import SecretsEvent, SecretsManager
from simpletuner_secrets._events import EventKind, LoopRelay
from simpletuner_secrets.providers.base import DocumentSecretProvider
from tests.clock import FakeClock

SECRET = "relay-secret-value-5d1e"
GUARD_S = 10.0


class ThreadedLogin(DocumentSecretProvider):
    """Logs in from a worker thread and reports it there, as the Vault provider does."""

    name = "vaultish"

    def __init__(self) -> None:
        super().__init__()
        self.relay = LoopRelay()
        self.reporter_threads: list[int] = []

    def bind_events(self, emit: Callable[[EventKind], None]) -> None:
        self.relay.bind(emit)

    def _login(self) -> None:
        self.reporter_threads.append(threading.get_ident())
        self.relay("login")

    async def load_document(self) -> Mapping[str, str]:
        self.relay.note_loop()
        await asyncio.to_thread(self._login)
        return {"K": SECRET}


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until ``condition`` holds (a wide hang guard, not a timing)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GUARD_S
    while not condition():
        assert loop.time() < deadline, "condition never held"
        await asyncio.sleep(0.001)


async def test_an_event_from_a_worker_thread_reaches_an_async_listener_on_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A login reported in a worker thread runs an async on_event in a task on the manager's
    loop (no 'no event loop' warning), with the kind and provider only."""
    provider = ThreadedLogin()
    got: list[tuple[SecretsEvent, int, asyncio.AbstractEventLoop]] = []

    async def listener(event: SecretsEvent) -> None:
        got.append((event, threading.get_ident(), asyncio.get_running_loop()))

    with caplog.at_level(logging.WARNING, logger="simpletuner_secrets"):
        async with SecretsManager(
            [provider], cache_ttl=60, timer=FakeClock(), rng=random.Random(1), on_event=listener
        ) as m:
            assert await m.get("K") == SECRET
            await until(lambda: bool(got))
            loop = asyncio.get_running_loop()
    assert [event for event, _, _ in got] == [SecretsEvent("login", "vaultish")]
    assert got[0][1] == threading.get_ident() and got[0][2] is loop
    assert provider.reporter_threads and provider.reporter_threads[0] != threading.get_ident()
    assert caplog.records == []


async def test_a_sync_listener_runs_on_the_loop_not_in_the_reporting_thread() -> None:
    """A sync on_event runs on the loop's thread: the thread that logged in only schedules."""
    provider = ThreadedLogin()
    threads: list[int] = []
    async with SecretsManager(
        [provider],
        cache_ttl=60,
        timer=FakeClock(),
        rng=random.Random(1),
        on_event=lambda event: threads.append(threading.get_ident()),
    ) as m:
        await m.get("K")
        await until(lambda: bool(threads))
    assert threads == [threading.get_ident()]
    assert provider.reporter_threads[0] not in threads


def test_an_event_after_the_loop_closed_is_dropped_quietly() -> None:
    """Reported once the loop that used the provider has closed: dropped, never raised."""
    relay = LoopRelay()
    seen: list[EventKind] = []
    relay.bind(seen.append)

    async def use() -> None:
        relay.note_loop()

    asyncio.run(use())
    worker = threading.Thread(target=relay, args=("token_renewed",))
    worker.start()
    worker.join(GUARD_S)
    assert not worker.is_alive()
    relay("login")
    assert seen == []


def test_nothing_is_kept_while_no_manager_listens() -> None:
    """Unbound (no manager): reporting does nothing and no loop is remembered."""
    relay = LoopRelay()

    async def use() -> None:
        relay.note_loop()
        relay("login")

    asyncio.run(use())
    assert relay._loop is None
