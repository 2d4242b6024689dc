"""SecretsManager.reset() while lookups are in flight: they finish, or answer from the new one."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from simpletuner_secrets import SecretProvider, SecretsManager, get_secrets_manager
from simpletuner_secrets import manager as manager_module


class Slow(SecretProvider):
    """A custom provider whose every answer takes 5 ms."""

    name = "slow"

    async def get(self, key: str) -> str | None:
        await asyncio.sleep(0.005)
        return "value"


class SlowChain(SecretsManager):
    """What `get_secrets_manager()` builds in this test: no cache, every lookup a call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__([Slow()], cache_ttl=0, max_stale=0)


@pytest.fixture
def slow_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(manager_module, "SecretsManager", SlowChain)
    SecretsManager.reset()
    yield
    SecretsManager.reset()


def test_reset_under_traffic_fails_no_lookup(slow_default: None) -> None:
    """Sync and async callers of the process-wide manager never fail while it is reset."""
    errors: list[str] = []
    answers: list[str | None] = []
    stop = threading.Event()

    def sync_caller() -> None:
        while not stop.is_set():
            try:
                answers.append(get_secrets_manager().sync.get("K"))
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    def async_caller() -> None:
        async def loop() -> None:
            while not stop.is_set():
                try:
                    answers.append(await get_secrets_manager().get("K"))
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")

        asyncio.run(loop())

    threads = [threading.Thread(target=sync_caller) for _ in range(3)]
    threads += [threading.Thread(target=async_caller) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(15):
            time.sleep(0.05)
            SecretsManager.reset()
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)  # a hang guard
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert answers and set(answers) == {"value"}
