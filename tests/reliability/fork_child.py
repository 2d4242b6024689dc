"""Run by test_fork.py in a subprocess: a manager used, then the process forked.

Scenarios (argv[1]):
- ``after-use``: the parent reads through the sync facade (its loop thread runs), forks; the
  child reads a cold key, a key answered after the file's re-check is due, and resets the
  process-wide manager.
- ``load-in-flight``: the parent forks while a slow load runs on the facade's loop; the child
  reads the same key and must not wait for the parent's load.
- ``multiprocessing``: a fork-context pool's workers read through the process-wide manager.
- ``preforked``: eight children forked from one parent that loaded a document each draw the
  refresh ahead of the entry they inherit (with the default ``random`` source): not one
  second for all of them.

Prints ``OK`` and exits 0 on success; any failure is an exception (exit 1).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from simpletuner_secrets import (
    DocumentSecretProvider,
    EnvironmentSecretProvider,
    FileSecretProvider,
    SecretsManager,
    get_secrets_manager,
    set_secrets_manager,
)

CHILD_TIMEOUT_S = 60  # a hang guard: every child answers in well under a second


class Slow(DocumentSecretProvider):
    """A remote document that takes ``delay`` seconds to load."""

    name = "slow"

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def load_document(self) -> Mapping[str, str]:
        await asyncio.sleep(self.delay)
        return {"SLOW": "slow-value", "COLD": "cold-value", "WARM": "warm-value"}


def wait_child(pid: int) -> None:
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            assert code == 0, f"the child exited {code}"
            return
        time.sleep(0.01)
    os.kill(pid, 9)
    raise AssertionError("the child hung")


def in_child(body: object) -> None:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body()  # type: ignore[operator]
            code = 0
        except BaseException as exc:
            print(f"child failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        finally:
            os._exit(code)
    wait_child(pid)


def after_use(tmp: Path) -> None:
    secrets = tmp / "secrets.json"
    secrets.write_text('{"FILE_KEY": "file-value"}')
    secrets.chmod(0o600)
    manager = SecretsManager(
        [EnvironmentSecretProvider(), FileSecretProvider(secrets), Slow(0.0)], cache_ttl=60
    )
    set_secrets_manager(manager)
    assert manager.sync.get("WARM") == "warm-value"  # the facade's loop thread now runs
    assert manager.sync.get("FILE_KEY") == "file-value"

    def child() -> None:
        m = get_secrets_manager()
        assert m is manager
        assert m.sync.get("WARM") == "warm-value"  # cached, kept across the fork
        m.clear_cache()
        assert m.sync.get("COLD") == "cold-value"  # needs a loop: a new one in the child
        time.sleep(1.1)  # the file's once-a-second re-check is due
        assert m.sync.get("FILE_KEY") == "file-value"
        assert asyncio.run(m.get("COLD")) == "cold-value"  # and from another loop
        SecretsManager.reset()  # closes the old manager without error
        assert m.closed

    in_child(child)
    # The parent is untouched by its child.
    assert manager.sync.get("COLD") == "cold-value"
    SecretsManager.reset()


def load_in_flight(tmp: Path) -> None:
    manager = SecretsManager([Slow(2.0)], cache_ttl=60)
    started = threading.Event()

    def reader() -> None:
        started.set()
        assert manager.sync.get("SLOW") == "slow-value"

    thread = threading.Thread(target=reader)
    thread.start()
    started.wait()
    time.sleep(0.3)  # the load is in flight on the facade's loop

    def child() -> None:
        start = time.monotonic()
        assert manager.sync.get("SLOW") == "slow-value"
        # Its own load (2 s), not a wait on the parent's, which never ends here.
        assert time.monotonic() - start < CHILD_TIMEOUT_S / 2

    in_child(child)
    thread.join()
    manager.sync.close()


def pool_worker(key: str) -> tuple[int, str | None]:
    return os.getpid(), get_secrets_manager().sync.get(key)


def with_multiprocessing(tmp: Path) -> None:
    secrets = tmp / "secrets.json"
    secrets.write_text('{"POOL_KEY": "pool-value"}')
    secrets.chmod(0o600)
    manager = SecretsManager([FileSecretProvider(secrets), Slow(0.0)], cache_ttl=60)
    set_secrets_manager(manager)
    assert manager.sync.get("POOL_KEY") == "pool-value"
    context = multiprocessing.get_context("fork")
    with context.Pool(2) as pool:
        first = pool.map_async(pool_worker, ["POOL_KEY", "COLD"] * 4).get(CHILD_TIMEOUT_S)
        time.sleep(1.1)  # past the file's re-check in the workers too
        second = pool.map_async(pool_worker, ["POOL_KEY", "COLD"] * 4).get(CHILD_TIMEOUT_S)
    values = [value for _, value in first + second]
    assert values == ["pool-value", "cold-value"] * 8, values
    SecretsManager.reset()


def preforked(tmp: Path) -> None:
    manager = SecretsManager([Slow(0.0)], cache_ttl=60)
    assert asyncio.run(manager.get("WARM")) == "warm-value"
    (parent,) = manager.resolver.cache.values_snapshot()
    forked_at = time.monotonic()

    def child() -> None:
        (inherited,) = manager.resolver.cache.values_snapshot()
        (tmp / f"refresh-{os.getpid()}").write_text(repr(inherited.refresh_at))

    for _ in range(8):
        in_child(child)
    drawn = [float(path.read_text()) for path in tmp.glob("refresh-*")]
    assert len(drawn) == 8, drawn
    assert len(set(drawn)) == 8, f"children share refresh points: {drawn}"
    latest = parent.fresh_until - 0.1 * 60
    assert all(forked_at < d <= latest for d in drawn), (forked_at, drawn, latest)
    assert parent.refresh_at not in drawn


def main() -> None:
    scenario, tmp = sys.argv[1], Path(sys.argv[2])
    {
        "after-use": after_use,
        "load-in-flight": load_in_flight,
        "multiprocessing": with_multiprocessing,
        "preforked": preforked,
    }[scenario](tmp)
    print("OK", flush=True)


if __name__ == "__main__":
    main()
