"""The sync facade: warm reads touch no loop; cold ones work from scripts, threads and loops."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from collections.abc import Mapping

import pytest

from simpletuner_secrets.errors import SecretsError
from simpletuner_secrets.manager import SecretsManager
from simpletuner_secrets.providers.base import DocumentSecretProvider, SecretProvider
from simpletuner_secrets.testing import InMemorySecretProvider


class SlowDoc(DocumentSecretProvider):
    """A document provider that takes a while and counts its loads."""

    name = "doc"

    def __init__(self, data: Mapping[str, str], delay: float = 0.05) -> None:
        super().__init__()
        self.data = dict(data)
        self.delay = delay
        self.loads = 0

    async def load_document(self) -> Mapping[str, str]:
        self.loads += 1
        await asyncio.sleep(self.delay)
        return self.data


def test_sync_get_in_a_plain_script_context() -> None:
    """A blocking get works with no running loop and shares the manager's cache."""
    doc = SlowDoc({"K": "v"})
    m = SecretsManager([doc])
    try:
        assert m.sync.get("k") == "v"
        assert m.sync.get("K") == "v"
        assert m.sync.get("NOPE", "d") == "d"
        assert doc.loads == 1
    finally:
        m.sync.close()
    assert m.closed


def test_warm_sync_get_touches_no_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once warm, sync.get answers without submitting anything to the background loop."""
    m = SecretsManager([SlowDoc({"K": "v"})])
    try:
        assert m.sync.get("K") == "v"

        def refuse(*args: object) -> None:
            raise AssertionError("the background loop was used")

        monkeypatch.setattr(m.sync, "_run", refuse)
        assert m.sync.get("K") == "v"
    finally:
        monkeypatch.undo()
        m.sync.close()


def test_sixteen_threads_share_one_load() -> None:
    """16 threads calling sync.get at once get the value from one document load."""
    doc = SlowDoc({"K": "v"}, delay=0.1)
    m = SecretsManager([doc])
    barrier = threading.Barrier(16)
    results: list[str | None] = []

    def worker() -> None:
        barrier.wait()
        results.append(m.sync.get("K"))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    m.sync.close()
    assert results == ["v"] * 16
    assert doc.loads == 1


async def test_sync_get_inside_a_running_loop_does_not_deadlock() -> None:
    """A legacy helper calling sync.get inside an async handler gets the value, no deadlock."""
    doc = SlowDoc({"K": "v"}, delay=0.1)
    m = SecretsManager([doc])
    # The caller's loop leads a load of the same key, then blocks in the sync facade.
    leader = asyncio.create_task(m.get("K"))
    await asyncio.sleep(0.01)
    assert m.sync.get("K") == "v"
    assert await leader == "v"
    # The async API keeps working on the caller's loop afterwards.
    assert await m.get("K") == "v"
    await m.aclose()


def test_sync_writes_and_explain(tmp_path: object) -> None:
    """explain, stats and clear_cache exist on the facade too."""
    m = SecretsManager([SlowDoc({"LONGER_THAN_TWELVE": "abcdefghijklmnop"})])
    try:
        info = m.sync.explain("longer-than-twelve")
        assert info["provider"] == "doc" and info["value"] == "ab**********"
        assert m.sync.stats()["providers"]["doc"]["calls"] == 1
        m.sync.clear_cache()
        assert m.sync.get("LONGER_THAN_TWELVE") == "abcdefghijklmnop"
    finally:
        m.sync.close()
    with pytest.raises(SecretsError, match="closed"):
        m.sync.get("X")


def test_sync_facade_in_a_subprocess_script_exits_cleanly() -> None:
    """A script that never closes the facade still exits promptly with its output."""
    script = textwrap.dedent(
        """
        import asyncio
        from simpletuner_secrets.manager import SecretsManager
        from simpletuner_secrets.providers.base import SecretProvider

        class P(SecretProvider):
            name = "p"
            async def get(self, key):
                await asyncio.sleep(0.01)
                return "value-" + key

        m = SecretsManager([P()])
        print(m.sync.get("hf-token"))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "value-HF_TOKEN"


def test_close_while_calls_are_in_flight_never_hangs_them() -> None:
    """Calls racing close() get their value or a clear SecretsError, within seconds."""
    m = SecretsManager([SlowDoc({"K": "v"}, delay=1.0)])
    outcomes: list[object] = []

    def call() -> None:
        try:
            outcomes.append(m.sync.get("K"))
        except SecretsError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    threading.Event().wait(0.2)
    m.sync.close()
    late = threading.Thread(target=call)
    late.start()
    for t in [*threads, late]:
        t.join(10)
        assert not t.is_alive(), "a sync call hung across close()"
    assert len(outcomes) == 5
    for outcome in outcomes:
        assert outcome == "v" or (isinstance(outcome, SecretsError) and "closed" in str(outcome)), (
            outcome
        )


def test_stopping_a_facade_whose_loop_thread_died_does_not_wait() -> None:
    """A background loop whose thread already ended (its loop stopped, not closed) is closed
    at once by close(), not after a 10 s wait for a drain nobody runs."""
    import time as _time

    m = SecretsManager([InMemorySecretProvider({"K": "v"})])
    assert m.sync.get("K") == "v"
    runner = m.sync._runner
    assert runner is not None
    runner.loop.call_soon_threadsafe(runner.loop.stop)
    runner._thread.join(5)
    assert not runner._thread.is_alive()
    start = _time.monotonic()
    m.sync.stop_loop()
    # The bug waited 10 s for the drain; a busy machine needs far less than 5 s for none.
    assert _time.monotonic() - start < 5.0
    assert runner.loop.is_closed()
    m.sync.close()


class WhereAsked(SecretProvider):
    """A key-by-key back-end noting the event loop and thread each call ran on."""

    name = "where"

    def __init__(self) -> None:
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.threads: list[threading.Thread] = []

    async def get(self, key: str) -> str | None:
        self.loops.append(asyncio.get_running_loop())
        self.threads.append(threading.current_thread())
        return f"value-of-{key}"


def test_cold_sync_calls_share_one_long_lived_loop_and_thread() -> None:
    """Every cold sync call runs on the same background loop and thread, kept between calls."""
    provider = WhereAsked()
    m = SecretsManager([provider])
    try:
        for key in ("A", "B", "C"):  # distinct keys: each call is cold
            assert m.sync.get(key) == f"value-of-{key}"
        assert len(provider.loops) == 3
        first_loop, first_thread = provider.loops[0], provider.threads[0]
        assert all(loop is first_loop for loop in provider.loops), provider.loops
        assert all(t is first_thread for t in provider.threads), provider.threads
        # Still running between calls: the facade's own loop, not the caller's thread.
        runner = m.sync._runner
        assert runner is not None and runner.loop is first_loop and first_loop.is_running()
        assert first_thread is not threading.current_thread() and first_thread.is_alive()
    finally:
        m.sync.close()
