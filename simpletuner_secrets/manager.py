"""SecretsManager: priority resolution over the provider chain, with caching and refresh.

Every resolution decision lives here; the sync facade and the CLI only drive it. The
process-wide manager is kept in `_process`; the chain is built and checked in `_chain`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import random
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, overload

from . import _fork
from ._chain import build_resolver
from ._events import SecretsEvent
from ._explain import explain, mask
from ._flight import require_asyncio
from ._freshness import RandomSource
from ._process import (
    build_with,
    closed_get,
    get_secrets_manager,
    retire_installed,
    set_secrets_manager,
    successor_of,
)
from ._process import installed_manager as installed_manager
from ._process import replace_installed as replace_installed
from ._resolver import OnError
from ._rotation import ChangeWatcher, Refresher, RotationMethods
from ._settings import ManagerSettings
from ._writes import FileWrites, WriteMethods
from .errors import SecretsError
from .keys import CLOUD_WEBHOOK_SECRET, HF_TOKEN, REPLICATE_API_TOKEN, normalize_key
from .providers.base import NOT_CACHED, SecretProvider
from .reports import ExplainResult, ManagerStats

if TYPE_CHECKING:
    from .sync import SyncSecretsManager

__all__ = [
    "SecretsManager",
    "get_secrets_manager",
    "mask",
    "set_secrets_manager",
]


class SecretsManager(RotationMethods, WriteMethods):
    """Resolve secrets from a chain of providers, highest priority first, with caching.

    The environment is read live; the file provider keeps its own one-second re-check; every
    other provider's answers are cached for ``cache_ttl`` (+-10% jitter) and refreshed in the
    background shortly before they expire. Concurrent misses share one back-end call per
    provider. When a refresh fails the last good value keeps being served (stale-if-error)
    for up to ``max_stale`` seconds.

    Args:
        providers: The chain, highest priority first (names unique). None builds it from
            ``config`` and the environment: environment, secrets directory (when one is set or
            ``/run/secrets`` exists), file, AWS (when a secret name is set and aioboto3 is
            installed), Vault (when an address and token are set and hvac is installed).
        config: Settings for the default chain's providers: ``env_prefix``, ``secrets_dir``,
            ``file_path``,
            ``strict_permissions``, ``max_file_size``, ``aws_secret_name`` (several, comma-separated),
            ``aws_region``,
            ``aws_endpoint_url``, ``aws_version_stage``, ``aws_connect_timeout``,
            ``aws_read_timeout``, ``vault_url``, ``vault_token``, ``vault_path``,
            ``vault_mount_point`` and the other ``vault_*`` keys (README, "The provider
            chain"); each also has an environment variable.
        cache_ttl: Seconds a cached answer stays fresh. None: ``SIMPLETUNER_CACHE_TTL``,
            else 300.
        cache_max_size: Most cached answers (absent keys included); the least recently used
            go first. None: ``SIMPLETUNER_CACHE_MAX_SIZE``, else 10,000.
        on_provider_error: ``"skip"`` logs a failing provider and asks the next one;
            ``"raise"`` raises `ProviderError` when the failing provider could still have
            decided the answer. None: ``SIMPLETUNER_ON_PROVIDER_ERROR``, else ``"skip"``.
        provider_timeout: Seconds any provider call may take; a timeout is a failure.
            None: ``SIMPLETUNER_PROVIDER_TIMEOUT``, else 5.
        max_stale: Seconds past freshness that a last good value may still be served while
            refreshes fail. None: ``SIMPLETUNER_MAX_STALE``, else 86,400.
        environ: The environment to read settings and build the chain from (defaults to
            ``os.environ``).
        timer: Monotonic clock for every freshness decision; tests pass a fake one.
        rng: Source of the TTL and backoff jitter and of the refresh schedule's offset
            (``uniform(a, b)``); tests pass a seeded `random.Random`. The default, the `random`
            module, is reseeded in forked children; a seeded instance is not, so workers
            sharing one would share their schedule.
        min_refresh_interval: Seconds between two fetches of one document by `refresh`.
        on_event: Called with each `SecretsEvent` (sync, or async and run in a task).
        resolve_references: Replace a value that is a reference (``vault://mount/path#KEY``,
            ``aws://secret-id?stage=S#KEY``, ``aws://secret-id``, ``file:///path``) by what
            it names, read with this manager's ``config`` and environment settings and cached
            like any document. None: on when ``SIMPLETUNER_RESOLVE_REFERENCES`` is ``1``.

    Raises:
        ValueError: An argument out of range (a negative TTL or timeout, a cache size below
            1), an unknown ``on_provider_error``, or two providers of the chain sharing a
            name.
        ConfigurationError: A ``config`` key no provider reads (the nearest valid one named),
            or a settings variable (``SIMPLETUNER_CACHE_TTL``...) with a bad value (the
            variable named, its value never shown).
    """

    REPLICATE_API_TOKEN: ClassVar[str] = REPLICATE_API_TOKEN
    HF_TOKEN: ClassVar[str] = HF_TOKEN
    WEBHOOK_SECRET: ClassVar[str] = CLOUD_WEBHOOK_SECRET

    def __init__(
        self,
        providers: Sequence[SecretProvider] | None = None,
        config: Mapping[str, Any] | None = None,
        *,
        cache_ttl: float | None = None,
        cache_max_size: int | None = None,
        on_provider_error: OnError | None = None,
        provider_timeout: float | None = None,
        max_stale: float | None = None,
        environ: Mapping[str, str] | None = None,
        timer: Callable[[], float] = time.monotonic,
        rng: RandomSource = random,
        min_refresh_interval: float = 1.0,
        on_event: Callable[[SecretsEvent], Any] | None = None,
        resolve_references: bool | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ
        settings = ManagerSettings.resolve(
            environ,
            cache_ttl=cache_ttl,
            cache_max_size=cache_max_size,
            on_provider_error=on_provider_error,
            provider_timeout=provider_timeout,
            max_stale=max_stale,
        )
        self.config: dict[str, Any] = dict(config or {})
        self.cache_ttl = settings.cache_ttl
        self.on_provider_error: OnError = settings.on_provider_error
        self.provider_timeout = settings.provider_timeout
        self.max_stale = settings.max_stale
        self.resolver, self.left_out = build_resolver(
            providers,
            self.config,
            environ,
            settings,
            timer=timer,
            rng=rng,
            resolve_references=resolve_references,
        )
        # Rotation (SPEC 10): forced refreshes, change subscribers, events; see _rotation.
        self.refresher = Refresher(self.resolver, min_refresh_interval)
        self.changes = ChangeWatcher(self.get, self.resolver, self._in_background)
        if on_event is not None:
            self.resolver.events.subscribe(on_event)
        # Done when the first aclose() has finished, so that a concurrent one waits for it.
        self._close_done: concurrent.futures.Future[None] | None = None
        self._sync: SyncSecretsManager | None = None
        self._sync_lock = threading.Lock()
        self._writes = FileWrites(self.resolver, self.config, environ)
        _fork.track(self)

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock for the facade's creation (the facade, resolver,
        cache and providers reset themselves)."""
        self._sync_lock = threading.Lock()

    def __repr__(self) -> str:
        names = ", ".join(s.name for s in self.resolver.slots)
        return f"{type(self).__name__}(providers=[{names}], cache_ttl={self.cache_ttl})"

    def __del__(self) -> None:
        # Only once a sync facade's loop thread was started: it holds clients and threads
        # that only `aclose()` / `sync.close()` release.
        sync = self.__dict__.get("_sync")
        if sync is not None and sync.loop_running() and not self.closed:
            warnings.warn(
                f"{self!r} was never closed: its sync facade's loop thread and clients are "
                "still open; call sync.close() or await aclose()",
                ResourceWarning,
                stacklevel=2,
            )

    @property
    def providers(self) -> list[SecretProvider]:
        """The chain, highest priority first."""
        return [s.provider for s in self.resolver.slots]

    # -- lookups ---------------------------------------------------------------------

    @overload
    async def get(self, key: str) -> str | None: ...
    @overload
    async def get(self, key: str, default: str) -> str: ...
    @overload
    async def get(self, key: str, default: str | None) -> str | None: ...

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
        resolver = self.resolver
        if resolver.closed:
            return await closed_get(self, key, default)
        nkey = normalize_key(key)
        value = resolver.peek(nkey)
        if value is NOT_CACHED:
            require_asyncio()
            try:
                value = await resolver.resolve(nkey)
            except SecretsError:
                if not resolver.closed:
                    raise
                return await closed_get(self, key, default)  # closed during the lookup
        return default if value is None else value

    def successor(self) -> SecretsManager | None:
        """The manager that takes over lookups made on this one once closed (internal).

        After `reset()` retired this process-wide manager, lookups in flight or made through
        an old reference answer from the new process-wide manager instead of failing;
        otherwise None.
        """
        return successor_of(self)

    # -- rotation (SPEC 10): get_many, require, refresh, on_change and watch are inherited
    # from RotationMethods (_rotation), the writes (set_secret, set_replicate_token,
    # set_hf_token, delete_secret, get_secrets_file_path) from WriteMethods (_writes).

    def _in_background(self, coro: Any) -> None:
        self.sync.start_background(coro)

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

    # -- introspection ---------------------------------------------------------------

    def clear_cache(self) -> None:
        """Forget every cached answer; the next lookups ask the back-ends again."""
        self.resolver.clear()

    async def explain(self, key: str) -> ExplainResult:
        """Say which provider answers ``key`` and how fresh the answer is, value masked.

        Returns:
            ``key`` (normalized), ``provider`` (name or None), ``value`` (masked), ``cached``
            (answered from the manager's cache without a back-end call), ``stale`` (served
            past its freshness because refreshes fail), ``age_s`` (seconds since fetched),
            and ``auth`` when the answering provider authenticates (Vault: method, mount,
            the token's remaining TTL, see `SecretProvider.auth_status`).
        """
        require_asyncio()
        return await explain(self.resolver, normalize_key(key), self.get)

    def stats(self) -> ManagerStats:
        """Return cache counters and, per provider, calls, errors, timeouts, latency and
        whether it is failing now (a `ManagerStats`)."""
        return self.resolver.stats()

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
        return self.resolver.closed

    async def aclose(self) -> None:
        """Close every provider's clients and the sync facade's loop. Safe to call twice.

        A call made while another is closing returns once that one has finished.
        """
        if self.closed:
            done = self._close_done
            if done is not None and not done.done():
                # shield: cancelling this second caller must not disturb the first.
                await asyncio.shield(asyncio.wrap_future(done))
            return
        require_asyncio()
        self.resolver.closed = True
        self._close_done = concurrent.futures.Future()
        try:
            # Providers first: clients bound to the sync facade's loop are closed while it runs.
            await self.resolver.aclose()
            await self._writes.aclose()
        finally:
            try:
                sync = self._sync
                if sync is not None and not sync.owns_running_loop():
                    # From any other loop, stop the facade's loop now (SyncSecretsManager.close,
                    # running on that loop, stops it itself once this returns).
                    await asyncio.to_thread(sync.stop_loop)
            finally:
                self._close_done.set_result(None)

    async def __aenter__(self) -> SecretsManager:
        if self.closed:
            raise SecretsError(
                "this SecretsManager is closed; build a new one (or, for the process-wide one, "
                "call get_secrets_manager() again)"
            )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @classmethod
    def reset(cls) -> None:
        """Drop the process-wide manager; the next `get_secrets_manager` builds a new one.

        Allowed anywhere, also while lookups run: those in flight on the old manager, and
        later ones made through a reference to it, are answered by the new one.
        """
        old = retire_installed()
        if old is not None and old._sync is not None:
            old._sync.close()


# get_secrets_manager() builds with this; the class is looked up when it is called.
build_with(lambda: SecretsManager())
