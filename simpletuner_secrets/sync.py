"""SyncSecretsManager: the blocking facade over SecretsManager, for scripts and legacy code.

A thin driver: warm answers come straight from the manager's cache; anything else runs on one
long-lived background event loop. No resolution decision is made here.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from concurrent.futures import CancelledError as FuturesCancelled
from concurrent.futures import TimeoutError as FuturesTimeout
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

from . import _fork
from ._flight import blocked_loops
from ._loop_thread import LoopThread
from .errors import SecretsError
from .keys import CLOUD_WEBHOOK_SECRET, HF_TOKEN, REPLICATE_API_TOKEN, normalize_key
from .providers.base import NOT_CACHED
from .reports import ExplainResult, ManagerStats

if TYPE_CHECKING:
    from .manager import SecretsManager

__all__ = ["SyncSecretsManager"]

T = TypeVar("T")

#: How often a blocked caller checks that the background loop still runs.
_ALIVE_POLL_S = 0.5


class SyncSecretsManager:
    """Blocking twins of `SecretsManager`'s methods, sharing its cache.

    A warm ``get`` reads the manager's cache and the environment directly, touching no event
    loop. A cold one runs on a background loop owned by this facade. Safe from many threads at
    once, and from code already running inside an event loop (that loop is blocked while it
    waits, so loads it leads are not joined: the call loads on its own instead of deadlocking).

    Args:
        manager: The async manager to drive.
    """

    def __init__(self, manager: SecretsManager) -> None:
        self._manager = manager
        self._runner: LoopThread | None = None
        self._lock = threading.Lock()
        _fork.track(self)

    def reset_after_fork(self) -> None:
        """In a forked child: the background loop's thread did not survive the fork; the next
        call starts a new one. The old loop is dropped unclosed (it still says it runs)."""
        self._lock = threading.Lock()
        self._runner = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._manager!r})"

    def _run(self, make: Callable[[], Awaitable[T]]) -> T:
        with self._lock:
            # Under the lock that `_shutdown` takes: a call racing close() cannot start a new
            # loop thread after the old one was stopped.
            if self._manager.closed:
                raise SecretsError("this SecretsManager is closed")
            if self._runner is None:
                self._runner = LoopThread()
            runner = self._runner
        try:
            caller_loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            caller_loop = None
        if caller_loop is runner.loop:
            raise RuntimeError(
                "the sync facade was called from its own background loop; await the async API"
            )
        blocked = blocked_loops.get()
        if caller_loop is not None:
            blocked = blocked | {caller_loop}

        async def call() -> T:
            blocked_loops.set(blocked)  # this task's own context: nothing leaks out
            return await make()

        try:
            future = runner.submit(call())
        except RuntimeError:  # its loop closed under us: close() ran meanwhile
            raise SecretsError("this SecretsManager is closed") from None
        while True:
            try:
                return future.result(timeout=_ALIVE_POLL_S)
            except FuturesTimeout:
                if not runner.alive():
                    # close() stopped the loop before this call ran: it never will.
                    future.cancel()
                    raise SecretsError("this SecretsManager was closed during the call") from None
            except FuturesCancelled:
                raise SecretsError("this SecretsManager was closed during the call") from None

    @overload
    def get(self, key: str) -> str | None: ...
    @overload
    def get(self, key: str, default: str) -> str: ...
    @overload
    def get(self, key: str, default: str | None) -> str | None: ...

    def get(self, key: str, default: str | None = None) -> str | None:
        """Blocking `SecretsManager.get`."""
        manager = self._manager
        resolver = manager.resolver
        if not resolver.closed:
            value = resolver.peek(normalize_key(key))
            if value is not NOT_CACHED:
                return default if value is None else value
        try:
            return self._run(lambda: manager.get(key, default))
        except SecretsError:
            successor = manager.successor() if manager.closed else None
            if successor is None:
                raise
            return successor.sync.get(key, default)  # reset() retired this manager meanwhile

    def get_many(self, keys: Iterable[str]) -> dict[str, str | None]:
        """Blocking `SecretsManager.get_many`."""
        given = list(keys)
        return self._run(lambda: self._manager.get_many(given))

    def require(self, key: str) -> str:
        """Blocking `SecretsManager.require`."""
        return self._run(lambda: self._manager.require(key))

    def refresh(self, key: str | None = None) -> None:
        """Blocking `SecretsManager.refresh`."""
        self._run(lambda: self._manager.refresh(key))

    def on_change(self, key: str, callback: Callable[[str, str | None], Any]) -> Callable[[], None]:
        """`SecretsManager.on_change`; the watcher and the callbacks run on this facade's
        background loop thread."""
        return self._manager.changes.subscribe(normalize_key(key), callback, here=False)

    def start_background(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` on the background loop without waiting for it (internal)."""
        with self._lock:
            if self._runner is None:
                self._runner = LoopThread()
            runner = self._runner
        runner.submit(coro)

    def get_replicate_token(self) -> str | None:
        """Blocking `SecretsManager.get_replicate_token`."""
        return self.get(REPLICATE_API_TOKEN)

    def get_hf_token(self) -> str | None:
        """Blocking `SecretsManager.get_hf_token`."""
        return self.get(HF_TOKEN)

    def get_webhook_secret(self) -> str | None:
        """Blocking `SecretsManager.get_webhook_secret`."""
        return self.get(CLOUD_WEBHOOK_SECRET)

    def set_secret(self, key: str, value: str) -> None:
        """Blocking `SecretsManager.set_secret`."""
        box = [value]  # handed on without staying in this frame's locals (see `_write`)
        del value
        self._write(lambda secret: self._manager.set_secret(key, secret), box)

    def _write(self, write: Callable[[str], Awaitable[None]], box: list[str]) -> None:
        # The caller's value arrives in a one-item box, emptied as the write starts or on
        # failure: no frame an error passes keeps it in its locals (error trackers record them).
        try:
            self._run(lambda: write(box.pop()))
        finally:
            box.clear()

    def set_replicate_token(self, token: str) -> None:
        """Blocking `SecretsManager.set_replicate_token`."""
        box = [token]  # handed on without staying in this frame's locals (see `_write`)
        del token
        self._write(self._manager.set_replicate_token, box)

    def set_hf_token(self, token: str) -> None:
        """Blocking `SecretsManager.set_hf_token`."""
        box = [token]  # handed on without staying in this frame's locals (see `_write`)
        del token
        self._write(self._manager.set_hf_token, box)

    def delete_secret(self, key: str) -> bool:
        """Blocking `SecretsManager.delete_secret`."""
        return self._run(lambda: self._manager.delete_secret(key))

    def explain(self, key: str) -> ExplainResult:
        """Blocking `SecretsManager.explain`."""
        return self._run(lambda: self._manager.explain(key))

    def clear_cache(self) -> None:
        """Same as `SecretsManager.clear_cache`."""
        self._manager.clear_cache()

    def stats(self) -> ManagerStats:
        """Same as `SecretsManager.stats`."""
        return self._manager.stats()

    def get_secrets_file_path(self) -> Path:
        """Same as `SecretsManager.get_secrets_file_path`."""
        return self._manager.get_secrets_file_path()

    def close(self) -> None:
        """Close the manager (providers' clients included) and stop the background loop."""
        try:
            if not self._manager.closed:
                self._run(self._manager.aclose)
        finally:
            self.stop_loop()

    def owns_running_loop(self) -> bool:
        """Whether the caller runs on this facade's background loop (internal)."""
        runner = self._runner
        try:
            return runner is not None and asyncio.get_running_loop() is runner.loop
        except RuntimeError:
            return False

    def loop_running(self) -> bool:
        """Whether the background loop thread was started and still runs (internal)."""
        runner = self._runner
        return runner is not None and runner.alive()

    def stop_loop(self) -> None:
        """Stop the background loop and its thread, without closing the manager (internal)."""
        with self._lock:
            runner, self._runner = self._runner, None
        if runner is not None:
            runner.stop()

    def __enter__(self) -> SyncSecretsManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
