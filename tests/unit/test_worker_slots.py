"""`WorkerSlots`: a bounded number of blocking calls per loop, cancellable while they run."""

from __future__ import annotations

import asyncio
import threading

import pytest

from simpletuner_secrets.providers._common import WorkerSlots

#: A hang guard only: each step below takes milliseconds.
GUARD_S = 30.0


@pytest.mark.parametrize("daemon", [None, "slots-test"], ids=["pooled-threads", "named-threads"])
async def test_a_cancelled_caller_stops_waiting_and_the_slot_frees_when_the_thread_returns(
    daemon: str | None,
) -> None:
    """Cancelling a caller ends its wait at once; its slot stays taken until the call returns."""
    slots = WorkerSlots(1, daemon=daemon)
    release = threading.Event()
    started = threading.Event()
    threads: list[threading.Thread] = []

    def blocking() -> str:
        threads.append(threading.current_thread())
        started.set()
        release.wait(GUARD_S)
        return "late"

    first = asyncio.create_task(slots.run(blocking))
    assert await asyncio.to_thread(started.wait, GUARD_S)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(first, GUARD_S)
    # The one slot is still held by the running call: a second caller waits for it.
    second = asyncio.create_task(slots.run(lambda: "second"))
    await asyncio.sleep(0.05)
    assert not second.done()
    release.set()
    assert await asyncio.wait_for(second, GUARD_S) == "second"
    # Daemon threads either way: a call still running never holds the interpreter's exit.
    assert threads[0].daemon
    assert threads[0].name == (daemon or "simpletuner-secrets worker")


async def test_a_daemon_call_hands_back_its_result_and_its_error() -> None:
    """The named variant returns the call's result and raises the call's own exception."""
    slots = WorkerSlots(2, daemon="slots-test")

    def fails() -> None:
        raise LookupError("from the thread")

    assert await asyncio.wait_for(slots.run(lambda: 42), GUARD_S) == 42
    with pytest.raises(LookupError, match="from the thread"):
        await asyncio.wait_for(slots.run(fails), GUARD_S)
