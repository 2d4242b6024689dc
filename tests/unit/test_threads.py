"""`_threads`: the library's worker threads and per-loop limits (no anyio on the way)."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import pytest

from simpletuner_secrets import _threads
from simpletuner_secrets._threads import Limiter, LoopLimiters, run_sync

#: A hang guard only: each step below takes milliseconds.
GUARD_S = 30.0

_REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="none")


async def test_a_call_returns_its_result_and_raises_its_own_error() -> None:
    """run_sync hands back func(*args) and raises the call's exception unchanged."""

    def fails() -> None:
        raise LookupError("from the thread")

    assert await run_sync(divmod, 7, 2) == (3, 1)
    with pytest.raises(LookupError, match="from the thread"):
        await run_sync(fails)


async def test_the_call_sees_the_callers_context_variables() -> None:
    """The thread runs in a copy of the caller's context (a request id set by middleware)."""
    _REQUEST.set("req-42")
    assert await run_sync(_REQUEST.get) == "req-42"


def wait_idle(pool: _threads._Pool, count: int) -> None:
    """Block until ``pool`` has ``count`` idle workers (a worker goes idle just after its job)."""
    deadline = time.monotonic() + GUARD_S
    while len(pool._idle) != count:
        assert time.monotonic() < deadline, "hang guard"
        time.sleep(0.001)


def test_idle_workers_are_reused_and_no_job_waits_behind_a_running_one() -> None:
    """Jobs in turn reuse one idle daemon thread; a job submitted while every worker is busy
    starts on a new thread at once."""
    pool = _threads._Pool("reuse-test")
    seen: list[threading.Thread] = []
    ran = threading.Event()

    def record() -> None:
        seen.append(threading.current_thread())
        ran.set()

    pool.submit(record)
    assert ran.wait(GUARD_S)
    wait_idle(pool, 1)
    ran.clear()
    pool.submit(record)
    assert ran.wait(GUARD_S)
    assert seen[1] is seen[0] and seen[0].daemon and seen[0].name == "reuse-test"
    wait_idle(pool, 1)
    release = threading.Event()
    pool.submit(lambda: release.wait(GUARD_S))  # takes the one idle worker
    ran.clear()
    pool.submit(record)
    try:
        assert ran.wait(GUARD_S)  # not held behind the blocked job
        assert seen[2] is not seen[0]
    finally:
        release.set()


async def test_run_sync_uses_the_librarys_daemon_workers() -> None:
    """run_sync runs on the library's named daemon worker threads, not asyncio's executor."""
    thread = await run_sync(threading.current_thread)
    assert thread.daemon and thread.name == "simpletuner-secrets worker"


async def test_a_cancelled_caller_stops_waiting_and_its_token_comes_back_with_the_thread() -> None:
    """With one token: cancelling the caller ends its wait at once, the next call waits
    until the cancelled call's thread returns, then runs."""
    limiter = LoopLimiters(1).current()
    release = threading.Event()
    started = threading.Event()

    def blocking() -> str:
        started.set()
        release.wait(GUARD_S)
        return "late"

    first = asyncio.ensure_future(run_sync(blocking, limiter=limiter))
    assert await asyncio.to_thread(started.wait, GUARD_S)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(first, GUARD_S)
    second = asyncio.ensure_future(run_sync(lambda: "second", limiter=limiter))
    await asyncio.sleep(0.05)
    assert not second.done()  # the token is still the running call's
    release.set()
    assert await asyncio.wait_for(second, GUARD_S) == "second"


async def test_a_limiter_serves_waiters_in_turn_and_survives_a_cancelled_waiter() -> None:
    """Limiter: a cancelled waiter gives up its place; the tokens are all back at the end."""
    limiter = Limiter(1)
    await limiter.acquire()
    order: list[str] = []

    async def take(name: str) -> None:
        await limiter.acquire()
        order.append(name)
        limiter.release()

    a, b, c = (asyncio.ensure_future(take(n)) for n in "abc")
    await asyncio.sleep(0)
    b.cancel()
    await asyncio.sleep(0)
    limiter.release()
    await asyncio.wait_for(asyncio.gather(a, c), GUARD_S)
    assert b.cancelled() and order == ["a", "c"]
    await asyncio.wait_for(limiter.acquire(), GUARD_S)  # one token, free again
    limiter.release()
    assert limiter._free == 1 and not limiter._waiters


async def test_a_waiter_cancelled_as_it_is_handed_the_token_passes_it_on() -> None:
    """A token handed to a waiter whose task is cancelled in the same step is not lost."""
    limiter = Limiter(1)
    await limiter.acquire()
    first = asyncio.ensure_future(limiter.acquire())
    second = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    limiter.release()  # hands the token to `first`'s future...
    first.cancel()  # ...whose task is cancelled before it resumes
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.wait_for(second, GUARD_S)  # the token went on to `second`
    assert first.cancelled()
    limiter.release()
    assert limiter._free == 1


def test_a_limiter_goes_with_its_event_loop() -> None:
    """A loop's limiter, once waited on, does not keep that loop alive (no leak per loop)."""
    limiters = LoopLimiters(1)

    async def contend() -> weakref.ref[asyncio.AbstractEventLoop]:
        limiter = limiters.current()
        await limiter.acquire()
        waiter = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0)
        limiter.release()
        await waiter
        limiter.release()
        return weakref.ref(asyncio.get_running_loop())

    loop_ref = asyncio.run(contend())
    gc.collect()
    assert loop_ref() is None
    assert len(limiters._by_loop) == 0


def test_an_idle_worker_ends_after_its_idle_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker idle for IDLE_S ends; the next call starts a new one."""
    monkeypatch.setattr(_threads, "IDLE_S", 0.05)
    pool = _threads._Pool("idle-test")
    started = threading.Event()
    threads: list[threading.Thread] = []

    def job() -> None:
        threads.append(threading.current_thread())
        started.set()

    pool.submit(job)
    assert started.wait(GUARD_S)
    threads[0].join(GUARD_S)
    assert not threads[0].is_alive() and pool._idle == []
    started.clear()
    pool.submit(job)
    assert started.wait(GUARD_S)
    assert threads[1] is not threads[0]


def test_a_call_that_never_returns_does_not_hold_the_interpreters_exit() -> None:
    """A process whose lookup timed out on a call stuck in a worker thread exits at once."""
    script = textwrap.dedent(
        """
        import asyncio, threading
        from simpletuner_secrets._threads import run_sync

        async def main():
            try:
                await asyncio.wait_for(run_sync(threading.Event().wait), 0.2)
            except asyncio.TimeoutError:
                print("timed out")

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "timed out"
