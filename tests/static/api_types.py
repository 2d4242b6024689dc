"""Type pins of the public API, checked by ``mypy --strict`` (never run, never collected).

`nox -s typecheck` and tests/unit/test_static_types.py check this file: every `assert_type`
below is an error for mypy if the library's annotations drift.
"""

from __future__ import annotations

from typing import Any

from typing_extensions import assert_type

from simpletuner_secrets import (
    CachedFunction,
    CacheStats,
    ExplainResult,
    ManagerCacheStats,
    ManagerStats,
    ProviderCallStats,
    SecretsManager,
    TTLCache,
    cached,
    validate_key,
)


async def manager_results(manager: SecretsManager) -> None:
    """The manager's lookups, writes and reports."""
    assert_type(await manager.get("HF_TOKEN"), str | None)
    assert_type(await manager.get("HF_TOKEN", "fallback"), str)
    assert_type(await manager.set_secret("hf-token2", "value"), None)
    assert_type(await manager.set_hf_token("value"), None)
    assert_type(await manager.delete_secret("HF_TOKEN"), bool)
    explained = await manager.explain("HF_TOKEN")
    assert_type(explained, ExplainResult)
    assert_type(explained["provider"], str | None)
    assert_type(explained["age_s"], float | None)
    assert_type(explained["cached"], bool)
    stats = manager.stats()
    assert_type(stats, ManagerStats)
    assert_type(stats["cache"], ManagerCacheStats)
    assert_type(stats["cache"]["max_stale"], float)
    assert_type(stats["cache"]["hits"], int)
    assert_type(stats["providers"]["env"], ProviderCallStats)
    assert_type(stats["providers"]["env"]["failing"], bool)
    assert_type(stats["providers"]["env"]["avg_latency_ms"], float | None)


def sync_results(manager: SecretsManager) -> None:
    """The sync facade returns the same shapes."""
    assert_type(manager.sync.get("HF_TOKEN"), str | None)
    assert_type(manager.sync.get("HF_TOKEN", "fallback"), str)
    assert_type(manager.sync.set_secret("hf-token2", "value"), None)
    assert_type(manager.sync.explain("HF_TOKEN"), ExplainResult)
    assert_type(manager.sync.stats(), ManagerStats)


def cache_results(cache: TTLCache[int]) -> None:
    """TTLCache's stats, and `validate_key`."""
    assert_type(cache.stats(), CacheStats)
    assert_type(cache.stats()["pending"], int)
    assert_type(validate_key("hf-token2"), str)


@cached(ttl=5.0)
def lookup(user_id: int, *, region: str = "eu") -> dict[str, Any]:
    """A cached sync function."""
    return {"user": user_id, "region": region}


@cached(ttl=5.0, key_prefix="perm:")
async def permissions(user_id: int) -> list[str]:
    """A cached async function."""
    return [str(user_id)]


class Repository:
    """A cached method."""

    @cached()
    def find(self, name: str) -> int:
        """The method's result type survives; its class attribute keeps the cache."""
        return len(name)


async def cached_signatures() -> None:
    """`cached` keeps the wrapped function's parameters and result."""
    wrapper: CachedFunction[..., dict[str, Any]] = lookup
    assert_type(wrapper.cache_clear(), int)
    assert_type(lookup(1), dict[str, Any])
    assert_type(lookup(1, region="us"), dict[str, Any])
    assert_type(await permissions(3), list[str])
    assert_type(lookup.cache_clear(), int)
    assert_type(lookup.cache, TTLCache[Any])
    assert_type(Repository().find("x"), int)
    assert_type(Repository.find.cache_clear(), int)
    # Wrong arguments are type errors (each ignore is itself checked: an unused one fails).
    lookup("not an int")  # type: ignore[arg-type]
    lookup(1, "positional region")  # type: ignore[call-arg]
    await permissions()  # type: ignore[call-arg]
