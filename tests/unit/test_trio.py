"""Under trio, the async API refuses with one clear error; the sync facade works from a thread."""

from __future__ import annotations

import pytest

from simpletuner_secrets import SecretsError, SecretsManager

from .test_manager import DocProvider, LiveProvider

trio = pytest.importorskip("trio")


def test_async_lookups_under_trio_refuse_with_one_clear_error() -> None:
    """A lookup needing I/O raises SecretsError naming asyncio and the way out, nothing else."""
    manager = SecretsManager([LiveProvider({"ENV_ONLY": "env"}), DocProvider({"K": "v"})])

    async def main() -> None:
        assert await manager.get("ENV_ONLY") == "env"  # answered without I/O: fine anywhere
        with pytest.raises(SecretsError, match=r"asyncio only.*trio\.to_thread"):
            await manager.get("K")
        with pytest.raises(SecretsError, match="asyncio only"):
            await manager.explain("K")

    trio.run(main)  # filterwarnings=error: a never-awaited coroutine would fail the test
    manager.sync.close()


def test_the_sync_facade_serves_trio_code_from_a_worker_thread() -> None:
    """trio.to_thread.run_sync(manager.sync.get, key) reads a remote document."""
    manager = SecretsManager([DocProvider({"K": "v"})])

    async def main() -> str | None:
        value: str | None = await trio.to_thread.run_sync(manager.sync.get, "K")
        return value

    assert trio.run(main) == "v"
    manager.sync.close()
