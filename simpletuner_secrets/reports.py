"""The shapes of what `SecretsManager.explain`, `SecretsManager.stats` and `TTLCache.stats`
return: typed dictionaries, so that a type checker knows every field.

They are plain dicts at run time (``json.dumps`` them, compare them to literals).
"""

from __future__ import annotations

from typing import Any, TypedDict

__all__ = [
    "CacheStats",
    "ExplainResult",
    "LookupStats",
    "ManagerCacheStats",
    "ManagerStats",
    "ProviderCallStats",
]


class _ExplainFields(TypedDict):
    key: str
    provider: str | None
    value: str | None
    cached: bool
    stale: bool
    age_s: float | None


class ExplainResult(_ExplainFields, total=False):
    """Which provider answers a key, and how fresh the answer is (`SecretsManager.explain`).

    Attributes:
        key: The normalized key.
        provider: The name of the provider that answers, or None when none has it.
        value: The value masked (12 or more characters show their first 2, shorter ones
            none), or None.
        cached: Answered from the manager's cache without a back-end call.
        stale: Served past its freshness because refreshes fail.
        age_s: Seconds since the answer was fetched (cached providers), else None.
        auth: Only when the answering provider authenticates (Vault): method, mount, the
            token's remaining TTL (`SecretProvider.auth_status`).
    """

    auth: dict[str, Any]


class CacheStats(TypedDict):
    """A `TTLCache`'s size and counters (`TTLCache.stats`).

    Attributes:
        size: Entries held, expired ones not yet purged included.
        max_size: Most entries held.
        expired_count: Held entries already expired.
        default_ttl: Seconds an entry lives unless given its own TTL.
        hits: Lookups answered from the cache.
        misses: Lookups that were not.
        evictions: Least recently used entries dropped for capacity.
        expirations: Expired entries removed.
        loads: Factory calls.
        coalesced: Callers that joined a load already in flight.
        pending: Loads in flight.
    """

    size: int
    max_size: int
    expired_count: int
    default_ttl: float
    hits: int
    misses: int
    evictions: int
    expirations: int
    loads: int
    coalesced: int
    pending: int


class ManagerCacheStats(CacheStats):
    """The manager's cache: `CacheStats` with the settings the user gave.

    Attributes:
        default_ttl: The manager's ``cache_ttl`` (not the cache's internal lifetime, which
            adds ``max_stale``).
        max_stale: The manager's ``max_stale``.
    """

    max_stale: float


class _ProviderCallFields(TypedDict):
    calls: int
    errors: int
    timeouts: int
    stale_served: int
    avg_latency_ms: float | None
    last_latency_ms: float | None
    failing: bool


class ProviderCallStats(_ProviderCallFields, total=False):
    """One provider's counters in `SecretsManager.stats`.

    Attributes:
        calls: Back-end calls made (document fetches, or per-key calls).
        errors: Calls that failed (timeouts included).
        timeouts: Calls that ran out of ``provider_timeout``.
        stale_served: Answers served stale because a refresh failed.
        avg_latency_ms: Mean call latency, or None before the first call.
        last_latency_ms: The last call's latency, or None.
        failing: Whether the provider's last call failed (it is being skipped or served
            stale); False again after its next success.
        auth: Only for a provider that authenticates (Vault): logins, renewals, the token's
            remaining TTL (`SecretProvider.auth_status`).
        requests: Only for a provider that counts its own back-end requests (AWS: the
            ``GetSecretValue`` calls sent; `SecretProvider.counters`).
        documents: With ``requests``: the documents one load reads.
    """

    auth: dict[str, Any]
    requests: int
    documents: int


class LookupStats(TypedDict):
    """How lookups were answered (`SecretsManager.stats`).

    Attributes:
        hit: Cached answers a lookup consulted (the fast path counts one per lookup).
        miss: Answers that needed a fetch.
        stale: Answers served stale because a refresh failed.
    """

    hit: int
    miss: int
    stale: int


class _ManagerStatsFields(TypedDict):
    cache: ManagerCacheStats
    providers: dict[str, ProviderCallStats]
    lookups: LookupStats


class ManagerStats(_ManagerStatsFields, total=False):
    """`SecretsManager.stats`: the cache, each provider's counters by provider name, how
    lookups were answered, and (with ``resolve_references``) each reference target's
    counters by name."""

    references: dict[str, ProviderCallStats]
