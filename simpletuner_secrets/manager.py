"""SecretsManager: priority resolution over the provider chain, with caching and refresh.

Every resolution decision lives here; the sync facade and the CLI only drive it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from .cache import TTLCache, _being_cancelled
from .errors import ConfigurationError, ProviderError, SecretsError
from .keys import CLOUD_WEBHOOK_SECRET, HF_TOKEN, REPLICATE_API_TOKEN, normalize_key
from .providers.base import NOT_CACHED, DocumentSecretProvider, SecretProvider

if TYPE_CHECKING:
    from .providers.file import FileSecretProvider
    from .sync import SyncSecretsManager

__all__ = [
    "SecretsManager",
    "get_secrets_manager",
    "mask",
    "set_secrets_manager",
]

logger = logging.getLogger("simpletuner_secrets")

OnError = Literal["skip", "raise"]

# Each entry's TTL is cache_ttl times a factor drawn from this range.
_JITTER_LOW, _JITTER_HIGH = 0.9, 1.1
# Refresh a hot entry in the background once this share of its TTL has passed.
_REFRESH_AHEAD_AT = 0.8
# Failed refreshes retry after 1, 2, 4 ... seconds (jittered), at most this long apart.
_MAX_BACKOFF_S = 60.0

if sys.version_info >= (3, 11):
    _timeout = asyncio.timeout
else:  # pragma: no cover - Python 3.10

    def _timeout(delay: float) -> Any:
        import anyio

        return anyio.fail_after(delay)


def _expired(deadline: Any) -> bool:
    """Whether ``provider_timeout`` itself ran out (asyncio's Timeout, or anyio's scope)."""
    if deadline is None:
        return True
    expired = getattr(deadline, "expired", None)
    if callable(expired):
        return bool(expired())
    return bool(getattr(deadline, "cancel_called", True))


def mask(value: str | None) -> str | None:
    """Mask a secret for display: 12 or more characters show their first 2, shorter ones none.

    Args:
        value: The secret, or None.

    Returns:
        The masked text (``"hf**********"``, ``"********"``), or None.
    """
    if value is None:
        return None
    if len(value) >= 12:
        return value[:2] + "*" * 10
    return "*" * 8


@dataclass(eq=False, slots=True)
class _Entry:
    """A cached answer (a document, or one key's value) and its freshness."""

    value: Any = field(repr=False)  # a document or a secret: never in a repr
    fetched_at: float
    fresh_until: float
    refresh_at: float
    failures: int = 0
    retry_at: float = 0.0
    refreshing: bool = False
    used: bool = False  # answered a lookup since eviction last came round (see _EntryCache)


class _EntryCache(TTLCache[_Entry]):
    """The manager's cache: least recently used entries go first, without reordering on hits.

    A fast-path hit only marks its entry used (one attribute store); an insert at capacity
    gives each used entry at the front a second chance (moved to the end, mark cleared) and
    evicts the first unused one. An entry looked up at least once per round of the cache is
    never evicted, and the hot path stays free of `move_to_end`.
    """

    def _store(self, key: Hashable, value: _Entry, seconds: float) -> None:
        # Caller holds the lock.
        data = self._data
        if key not in data and len(data) >= self.max_size:
            for _ in range(len(data)):
                front = next(iter(data))
                entry = data[front][0]
                if not entry.used:
                    break
                entry.used = False
                data.move_to_end(front)
        super()._store(key, value, seconds)

    def _touch(self, key: Hashable) -> _Entry | None:
        """The live entry for ``key`` (recency refreshed, counted as a hit), else None with
        nothing counted: the load that follows a miss counts it."""
        try:
            entry, expires = self._data[key]
        except KeyError:
            return None
        if expires <= self._timer():
            return None
        try:
            self._data.move_to_end(key)
        except KeyError:
            pass
        self._hits += 1
        return entry


@dataclass(eq=False)
class _ProviderStats:
    calls: int = 0
    errors: int = 0
    timeouts: int = 0
    stale_served: int = 0
    total_latency_s: float = 0.0
    last_latency_s: float | None = None
    failing: bool = False

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "stale_served": self.stale_served,
            "avg_latency_ms": round(self.total_latency_s / self.calls * 1000, 3)
            if self.calls
            else None,
            "last_latency_ms": None
            if self.last_latency_s is None
            else round(self.last_latency_s * 1000, 3),
        }


# How the manager asks a provider: live/self-managed, whole documents, or key by key.
_LIVE, _DOCUMENT, _PER_KEY = 0, 1, 2


@dataclass(eq=False)
class _Slot:
    provider: SecretProvider
    mode: int
    stats: _ProviderStats = field(default_factory=_ProviderStats)

    @property
    def name(self) -> str:
        return self.provider.name


def _mode_of(provider: SecretProvider) -> int:
    if not provider.cache_answers:
        return _LIVE
    if isinstance(provider, DocumentSecretProvider):
        return _DOCUMENT
    return _PER_KEY


def _provider_class(module: str, name: str) -> Any:
    """A built-in provider class, imported only when its settings ask for it."""
    import importlib

    return getattr(importlib.import_module(f".providers.{module}", __package__), name)


def _consume(task: asyncio.Task[Any]) -> None:
    # A lookup nobody waits for any more: retrieve its outcome so asyncio does not warn.
    if not task.cancelled():
        task.exception()


class SecretsManager:
    """Resolve secrets from a chain of providers, highest priority first, with caching.

    The environment is read live; the file provider keeps its own one-second re-check; every
    other provider's answers are cached for ``cache_ttl`` (+-10% jitter) and refreshed in the
    background shortly before they expire. Concurrent misses share one back-end call per
    provider. When a refresh fails the last good value keeps being served (stale-if-error)
    for up to ``max_stale`` seconds.

    Args:
        providers: The chain, highest priority first. None builds it from ``config`` and the
            environment: environment, file, AWS (when a secret name is set and aioboto3 is
            installed), Vault (when an address and token are set and hvac is installed).
        config: Settings: ``file_path``, ``aws_secret_name``, ``aws_region``,
            ``aws_endpoint_url``, ``vault_url``, ``vault_token``, ``vault_path``,
            ``vault_mount_point``, ``env_prefix``.
        cache_ttl: Seconds a cached answer stays fresh.
        cache_max_size: Most cached answers (absent keys included); the least recently used
            go first.
        on_provider_error: ``"skip"`` logs a failing provider and asks the next one;
            ``"raise"`` raises `ProviderError` when the failing provider could still have
            decided the answer.
        provider_timeout: Seconds any provider call may take; a timeout is a failure.
        max_stale: Seconds past freshness that a last good value may still be served while
            refreshes fail.
        environ: The environment to build the chain from (defaults to ``os.environ``).

    Raises:
        ValueError: A negative TTL or timeout, or an unknown ``on_provider_error``.
    """

    REPLICATE_API_TOKEN: ClassVar[str] = REPLICATE_API_TOKEN
    HF_TOKEN: ClassVar[str] = HF_TOKEN
    WEBHOOK_SECRET: ClassVar[str] = CLOUD_WEBHOOK_SECRET

    def __init__(
        self,
        providers: Sequence[SecretProvider] | None = None,
        config: Mapping[str, Any] | None = None,
        *,
        cache_ttl: float = 300.0,
        cache_max_size: int = 10_000,
        on_provider_error: OnError = "skip",
        provider_timeout: float = 5.0,
        max_stale: float = 86_400.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if on_provider_error not in ("skip", "raise"):
            raise ValueError(
                f"on_provider_error must be 'skip' or 'raise', got {on_provider_error!r}"
            )
        for label, number in (
            ("cache_ttl", cache_ttl),
            ("provider_timeout", provider_timeout),
            ("max_stale", max_stale),
        ):
            if number < 0:
                raise ValueError(f"{label} must be >= 0, got {number!r}")
        self.config: dict[str, Any] = dict(config or {})
        self.cache_ttl = float(cache_ttl)
        self.on_provider_error: OnError = on_provider_error
        self.provider_timeout = float(provider_timeout)
        self.max_stale = float(max_stale)
        self._environ = environ
        chain = list(providers) if providers is not None else self._build_chain()
        self._slots = [_Slot(p, _mode_of(p)) for p in chain]
        self._cache = _EntryCache(
            # An entry is fresh for up to cache_ttl x 1.1 (jitter), then may serve stale for
            # max_stale: the cache keeps it that long; `_cached` enforces each entry's own end.
            default_ttl=self.cache_ttl * _JITTER_HIGH + self.max_stale,
            max_size=cache_max_size,
        )
        self._timer = time.monotonic
        self._fast_hits = 0  # answers the fast path gave without touching the cache's counters
        self._background: set[asyncio.Task[Any]] = set()
        self._closed = False
        # Done when the first aclose() has finished, so that a concurrent one waits for it.
        self._close_done: concurrent.futures.Future[None] | None = None
        self._sync: SyncSecretsManager | None = None
        self._sync_lock = threading.Lock()
        self._writer: FileSecretProvider | None = None

    def __repr__(self) -> str:
        names = ", ".join(s.name for s in self._slots)
        return f"{type(self).__name__}(providers=[{names}], cache_ttl={self.cache_ttl})"

    # -- chain -------------------------------------------------------------------------

    def _build_chain(self) -> list[SecretProvider]:
        from .providers.env import EnvironmentSecretProvider
        from .providers.file import FileSecretProvider

        environ = os.environ if self._environ is None else self._environ
        cfg = self.config
        chain: list[SecretProvider] = [
            EnvironmentSecretProvider(prefix=cfg.get("env_prefix") or ""),
            FileSecretProvider(cfg.get("file_path")),
        ]
        for build in (self._build_aws, self._build_vault):
            provider = build(environ)
            if provider is not None:
                chain.append(provider)
        return chain

    def _build_aws(self, environ: Mapping[str, str]) -> SecretProvider | None:
        if not (self.config.get("aws_secret_name") or environ.get("SIMPLETUNER_AWS_SECRET_NAME")):
            logger.debug("aws provider left out: no aws_secret_name / SIMPLETUNER_AWS_SECRET_NAME")
            return None
        try:
            factory = _provider_class("aws", "AWSSecretsManagerProvider")
            provider: SecretProvider = factory(config=self.config, environ=environ)
        except ImportError as exc:
            logger.debug("aws provider left out: %s", exc)
            return None
        except (ConfigurationError, ValueError) as exc:
            logger.warning("aws provider left out: %s", exc)
            return None
        return provider

    def _build_vault(self, environ: Mapping[str, str]) -> SecretProvider | None:
        url = self.config.get("vault_url") or environ.get("VAULT_ADDR")
        if not url:
            logger.debug("vault provider left out: no vault_url / VAULT_ADDR")
            return None
        try:
            factory = _provider_class("vault", "HashiCorpVaultProvider")
            provider: SecretProvider = factory(config=self.config, environ=environ)
        except ImportError as exc:
            logger.debug("vault provider left out: %s", exc)
            return None
        except ConfigurationError as exc:
            # Configured, but wrongly (an address without a scheme...): say so out loud.
            logger.warning("vault provider left out: %s", exc)
            return None
        missing: list[str] = getattr(provider, "missing_settings", list)()
        if missing:
            logger.warning(
                "vault provider left out: its settings are partial, missing %s",
                ", ".join(missing),
            )
            return None
        return provider

    @property
    def providers(self) -> list[SecretProvider]:
        """The chain, highest priority first."""
        return [s.provider for s in self._slots]

    # -- lookups ---------------------------------------------------------------------

    async def get(self, key: str, default: str | None = None) -> str | None:
        """Return the value of the highest-priority provider that has ``key``.

        Args:
            key: Any spelling of the key (``"hf-token"`` finds ``HF_TOKEN``).
            default: Returned when no provider has the key.

        Returns:
            The value, or ``default``.

        Raises:
            ValueError: The key is empty or invalid.
            ProviderError: With ``on_provider_error="raise"``, a provider that could still
                have decided the answer failed.
            SecretsError: The manager is closed.
        """
        if self._closed:
            raise SecretsError("this SecretsManager is closed")
        nkey = normalize_key(key)
        value = self._peek(nkey)
        if value is NOT_CACHED:
            value = await self._resolve(nkey)
        return default if value is None else value

    def _peek(self, nkey: str) -> Any:
        """The fast path: answer from live reads and fresh cache entries, or `NOT_CACHED`."""
        now = self._timer()
        data = self._cache._data
        for slot in self._slots:
            mode = slot.mode
            if mode == _LIVE:
                value = slot.provider.peek(nkey)
            else:
                ckey = (id(slot), None) if mode == _DOCUMENT else (id(slot), nkey)
                got = data.get(ckey)
                if got is None:
                    return NOT_CACHED
                entry = got[0]
                if not entry.used:
                    entry.used = True  # kept recent: see _EntryCache
                if now >= entry.refresh_at:
                    return NOT_CACHED  # let the slow path refresh it (ahead, or stale-if-error)
                value = entry.value.get(nkey) if mode == _DOCUMENT else entry.value
            if value is NOT_CACHED:
                return NOT_CACHED
            if value:
                self._fast_hits += 1
                return value
        self._fast_hits += 1
        return None

    async def _resolve(self, nkey: str) -> str | None:
        """The slow path: ask every undecided provider at once, answer in priority order."""
        tasks: list[asyncio.Task[str | None]] = []
        try:
            for slot in self._slots:
                tasks.append(asyncio.ensure_future(self._ask(slot, nkey)))
            for slot, task in zip(self._slots, tasks, strict=True):
                try:
                    value = await task
                except ProviderError as exc:
                    self._provider_failed(slot, exc)
                    continue
                if value:
                    return value
            return None
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
                    task.add_done_callback(_consume)
                elif not task.cancelled():
                    task.exception()

    def _provider_failed(self, slot: _Slot, exc: ProviderError) -> None:
        if self.on_provider_error == "raise":
            raise exc
        if not slot.stats.failing:
            slot.stats.failing = True
            logger.warning("provider %s failed and is skipped: %s", slot.name, exc)

    async def _ask(self, slot: _Slot, nkey: str) -> str | None:
        """One provider's answer for ``nkey``, through the cache where it applies."""
        mode = slot.mode
        if mode == _LIVE:
            value = slot.provider.peek(nkey)
            if value is NOT_CACHED:
                value = await self._call(slot, lambda: slot.provider.get(nkey))
            return value or None
        if mode == _DOCUMENT:
            provider = slot.provider
            assert isinstance(provider, DocumentSecretProvider)
            document = await self._cached(slot, (id(slot), None), provider.load_document)
            value = document.get(nkey)
        else:
            value = await self._cached(slot, (id(slot), nkey), lambda: slot.provider.get(nkey))
        return value or None

    async def _call(self, slot: _Slot, fetch: Callable[[], Awaitable[Any]]) -> Any:
        """Call a provider within ``provider_timeout``, counting calls, errors and latency."""
        stats = slot.stats
        if self._closed:
            # A lookup in flight when the manager closed: its provider is closed, and this is
            # no provider failure to skip, so it ends the lookup.
            raise SecretsError("this SecretsManager was closed during the lookup")
        start = self._timer()
        failure: ProviderError | None = None
        deadline: Any = None
        try:
            async with _timeout(self.provider_timeout) as deadline:
                result = await fetch()
        except TimeoutError as exc:
            stats.errors += 1
            if _expired(deadline):
                stats.timeouts += 1
                failure = ProviderError(
                    f"{slot.name}: no answer within {self.provider_timeout:g} s",
                    provider=slot.name,
                )
            else:
                # The provider's own TimeoutError (its client's read timeout, say), raised
                # before ours: a failure like any other, not "no answer within".
                failure = ProviderError(
                    f"{slot.name}: failed with {type(exc).__name__}", provider=slot.name
                )
        except ProviderError:
            stats.errors += 1
            raise
        except asyncio.CancelledError:
            if _being_cancelled():
                raise
            # The provider ended in CancelledError without being cancelled (it awaited a
            # future someone else cancelled): a failure like any other.
            stats.errors += 1
            failure = ProviderError(f"{slot.name}: failed with CancelledError", provider=slot.name)
        except Exception as exc:
            stats.errors += 1
            # A custom provider broke its contract; name the failure, not its message
            # (which might quote a value). Raised below, outside this handler, so that the
            # provider's exception is not even its context.
            failure = ProviderError(
                f"{slot.name}: failed with {type(exc).__name__}", provider=slot.name
            )
        finally:
            elapsed = self._timer() - start
            stats.calls += 1
            stats.total_latency_s += elapsed
            stats.last_latency_s = elapsed
        if failure is not None:
            raise failure
        if stats.failing:
            stats.failing = False
            logger.info("provider %s answers again", slot.name)
        return result

    def _new_entry(self, value: Any) -> _Entry:
        now = self._timer()
        # A fleet does not expire together.
        ttl = self.cache_ttl * random.uniform(_JITTER_LOW, _JITTER_HIGH)
        return _Entry(value, now, now + ttl, now + ttl * _REFRESH_AHEAD_AT)

    async def _fetch_entry(self, slot: _Slot, fetch: Callable[[], Awaitable[Any]]) -> _Entry:
        return self._new_entry(await self._call(slot, fetch))

    async def _cached(
        self, slot: _Slot, ckey: tuple[int, str | None], fetch: Callable[[], Awaitable[Any]]
    ) -> Any:
        """A cached answer, refreshed ahead of expiry, served stale while refreshes fail."""
        cache = self._cache
        entry = cache._touch(ckey)  # a hit counts; a miss is counted once, below
        now = self._timer()

        def load() -> Awaitable[_Entry]:
            return self._fetch_entry(slot, fetch)

        if entry is None:
            return (await cache.get_or_set_async(ckey, load)).value
        if now >= entry.fresh_until + self.max_stale:
            # Too old to serve even stale: a new value, or the failure.
            return (await cache.refresh_async(ckey, load)).value
        if now < entry.fresh_until:
            # Not while a failed refresh backs off: a dead back-end is not asked on every lookup.
            if now >= entry.refresh_at and not entry.refreshing and now >= entry.retry_at:
                entry.refreshing = True
                self._spawn(self._refresh_ahead(slot, ckey, entry, load))
            return entry.value
        if now < entry.retry_at:
            slot.stats.stale_served += 1
            return entry.value
        try:
            return (await cache.refresh_async(ckey, load)).value
        except ProviderError as exc:
            slot.stats.stale_served += 1
            # Every lookup that joined the refresh gets its failure; the first one counts it
            # (and moves retry_at ahead), so one failure backs off once.
            if self._timer() >= entry.retry_at:
                self._refresh_failed(slot, entry, exc)
            return entry.value

    def _refresh_failed(self, slot: _Slot, entry: _Entry, exc: ProviderError) -> None:
        """Count a failed refresh of ``entry``: back off its retries, warn once per streak."""
        entry.failures += 1
        slot.stats.failing = True  # so that the first success after the outage is logged
        backoff = min(_MAX_BACKOFF_S, 2.0 ** (entry.failures - 1)) * random.uniform(0.5, 1.0)
        entry.retry_at = self._timer() + backoff
        if entry.failures == 1:
            age = self._timer() - entry.fetched_at
            logger.warning(
                "provider %s: refresh failed (%s); serving the last good answer, %.0f s old, "
                "and retrying",
                slot.name,
                exc,
                age,
            )

    async def _refresh_ahead(
        self,
        slot: _Slot,
        ckey: tuple[int, str | None],
        entry: _Entry,
        load: Callable[[], Awaitable[_Entry]],
    ) -> None:
        try:
            await self._cache.refresh_async(ckey, load)
        except ProviderError as exc:
            self._refresh_failed(slot, entry, exc)
        except SecretsError:
            pass  # the manager closed meanwhile: nothing to refresh for
        finally:
            # Also when cancelled (its loop shutting down): a later lookup may refresh again.
            entry.refreshing = False

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- conveniences ------------------------------------------------------------------

    async def get_replicate_token(self) -> str | None:
        """Return ``REPLICATE_API_TOKEN``, or None."""
        return await self.get(REPLICATE_API_TOKEN)

    async def get_hf_token(self) -> str | None:
        """Return ``HF_TOKEN``, or None."""
        return await self.get(HF_TOKEN)

    async def get_webhook_secret(self) -> str | None:
        """Return ``CLOUD_WEBHOOK_SECRET``, or None."""
        return await self.get(CLOUD_WEBHOOK_SECRET)

    # -- writes ------------------------------------------------------------------------

    def _file_provider(self) -> FileSecretProvider:
        from .providers.file import FileSecretProvider

        if self._writer is None:
            wanted = self.config.get("file_path")
            for slot in self._slots:
                provider = slot.provider
                if isinstance(provider, FileSecretProvider) and (
                    wanted is None or Path(wanted).expanduser() == provider.path
                ):
                    self._writer = provider
                    break
            else:
                self._writer = FileSecretProvider(wanted)
        return self._writer

    def _forget(self, nkey: str) -> None:
        for slot in self._slots:
            if slot.mode == _PER_KEY:
                self._cache.delete((id(slot), nkey))

    def _warn_if_shadowed(self, nkey: str) -> None:
        for slot in self._slots:
            if slot.provider is self._writer:
                return
            if slot.mode == _LIVE and slot.provider.peek(nkey):
                logger.warning(
                    "%s was written to the secrets file, but provider %s has it too and still wins",
                    nkey,
                    slot.name,
                )
                return

    async def set_secret(self, key: str, value: str) -> None:
        """Write ``key`` to the secrets file (the configured ``file_path``, else the default).

        Args:
            key: Any spelling of the key.
            value: The secret; must be a non-empty string.

        Raises:
            ValueError: The key or value is empty.
            SecretFileError: The file could not be written.
        """
        if self._closed:
            raise SecretsError("this SecretsManager is closed")
        nkey = normalize_key(key)
        writer = self._file_provider()
        await writer.set(nkey, value)
        self._forget(nkey)
        self._warn_if_shadowed(nkey)

    async def set_replicate_token(self, token: str) -> None:
        """Write ``REPLICATE_API_TOKEN`` to the secrets file."""
        await self.set_secret(REPLICATE_API_TOKEN, token)

    async def delete_secret(self, key: str) -> bool:
        """Remove ``key`` from the secrets file.

        Returns:
            Whether the file held the key.
        """
        if self._closed:
            raise SecretsError("this SecretsManager is closed")
        nkey = normalize_key(key)
        removed = await self._file_provider().delete(nkey)
        self._forget(nkey)
        return removed

    def get_secrets_file_path(self) -> Path:
        """Return the secrets file that reads and writes use."""
        return self._file_provider().path

    # -- introspection ---------------------------------------------------------------

    def clear_cache(self) -> None:
        """Forget every cached answer; the next lookups ask the back-ends again."""
        self._cache.clear()
        for slot in self._slots:
            provider = slot.provider
            if isinstance(provider, DocumentSecretProvider):
                provider.invalidate()  # the file provider's own copy included

    async def explain(self, key: str) -> dict[str, Any]:
        """Say which provider answers ``key`` and how fresh the answer is, value masked.

        Returns:
            ``key`` (normalized), ``provider`` (name or None), ``value`` (masked), ``cached``
            (answered from the manager's cache without a back-end call), ``stale`` (served
            past its freshness because refreshes fail), ``age_s`` (seconds since fetched).
        """
        nkey = normalize_key(key)
        before = {
            id(s): self._cache.peek((id(s), None if s.mode == _DOCUMENT else nkey))
            for s in self._slots
        }
        value = await self.get(nkey)
        info: dict[str, Any] = {
            "key": nkey,
            "provider": None,
            "value": mask(value),
            "cached": False,
            "stale": False,
            "age_s": None,
        }
        if value is None:
            return info
        now = self._timer()
        for slot in self._slots:
            if slot.mode == _LIVE:
                answer = slot.provider.peek(nkey)
                if answer is NOT_CACHED:
                    try:
                        answer = await self._ask(slot, nkey)
                    except ProviderError:
                        if self.on_provider_error == "raise":
                            raise
                        continue  # get() skipped it too
                if answer:
                    info["provider"] = slot.name
                    return info
                continue
            ckey = (id(slot), None if slot.mode == _DOCUMENT else nkey)
            got = self._cache.peek(ckey)
            if got is None:
                continue
            entry = got[0]
            answer = entry.value.get(nkey) if slot.mode == _DOCUMENT else entry.value
            if answer:
                info["provider"] = slot.name
                earlier = before[id(slot)]
                info["cached"] = earlier is not None and earlier[0] is entry
                info["stale"] = now >= entry.fresh_until
                info["age_s"] = round(now - entry.fetched_at, 3)
                return info
        return info

    def stats(self) -> dict[str, Any]:
        """Return cache counters and, per provider, calls, errors, timeouts and latency."""
        cache = self._cache.stats()
        cache["hits"] += self._fast_hits
        return {
            "cache": cache,
            "providers": {s.name: s.stats.snapshot() for s in self._slots},
        }

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def sync(self) -> SyncSecretsManager:
        """The blocking facade sharing this manager's cache (created on first use)."""
        if self._sync is None:
            with self._sync_lock:
                if self._sync is None:
                    from .sync import SyncSecretsManager

                    self._sync = SyncSecretsManager(self)
        return self._sync

    @property
    def closed(self) -> bool:
        """Whether `aclose` has been called."""
        return self._closed

    async def aclose(self) -> None:
        """Close every provider's clients and the sync facade's loop. Safe to call twice.

        A call made while another is closing returns once that one has finished.
        """
        if self._closed:
            done = self._close_done
            if done is not None and not done.done():
                # shield: cancelling this second caller must not disturb the first.
                await asyncio.shield(asyncio.wrap_future(done))
            return
        self._closed = True
        self._close_done = concurrent.futures.Future()
        try:
            await self._cancel_background()
            # Providers first: clients bound to the sync facade's loop are closed while it runs.
            for slot in self._slots:
                try:
                    await slot.provider.aclose()
                except Exception as exc:
                    logger.warning(
                        "provider %s did not close cleanly: %s", slot.name, type(exc).__name__
                    )
            if self._writer is not None and all(
                s.provider is not self._writer for s in self._slots
            ):
                await self._writer.aclose()
        finally:
            try:
                sync = self._sync
                if sync is not None and not sync._owns_running_loop():
                    # From any other loop, stop the facade's loop now (SyncSecretsManager.close,
                    # running on that loop, stops it itself once this returns).
                    await asyncio.to_thread(sync._shutdown)
            finally:
                self._close_done.set_result(None)

    async def _cancel_background(self) -> None:
        """Cancel background refreshes and loads in flight, so that no provider is called
        after it is closed: this loop's are awaited, other loops' cancelled on their loop."""
        current = asyncio.get_running_loop()
        here: list[asyncio.Task[Any]] = []
        for task in [*self._background, *self._cache._load_tasks()]:
            loop = task.get_loop()
            if loop is current:
                task.cancel()
                here.append(task)
            else:
                try:
                    loop.call_soon_threadsafe(task.cancel)
                except RuntimeError:
                    pass  # that loop is closed: its tasks are gone with it
        if here:
            await asyncio.gather(*here, return_exceptions=True)

    async def __aenter__(self) -> SecretsManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @classmethod
    def reset(cls) -> None:
        """Drop the process-wide manager; the next `get_secrets_manager` builds a new one."""
        global _instance
        with _instance_lock:
            old, _instance = _instance, None
        if old is not None and old._sync is not None:
            old._sync.close()


_instance: SecretsManager | None = None
_instance_lock = threading.Lock()


def get_secrets_manager() -> SecretsManager:
    """Return the process-wide manager, creating it once (thread-safe)."""
    global _instance
    manager = _instance
    if manager is None:
        with _instance_lock:
            if _instance is None:
                _instance = SecretsManager()
            manager = _instance
    return manager


def set_secrets_manager(manager: SecretsManager) -> None:
    """Install ``manager`` as the process-wide manager."""
    global _instance
    with _instance_lock:
        _instance = manager


def installed_manager() -> SecretsManager | None:
    """The process-wide manager when one is installed, without creating one (for the
    integrations and the pytest plugin)."""
    return _instance


def replace_installed(expected: SecretsManager, replacement: SecretsManager | None) -> None:
    """Install ``replacement`` (None: nothing) if ``expected`` is still the installed manager."""
    global _instance
    with _instance_lock:
        if _instance is expected:
            _instance = replacement
