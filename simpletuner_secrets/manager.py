"""SecretsManager: priority resolution over the provider chain, with caching and refresh.

Every resolution decision lives here; the sync facade and the CLI only drive it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, overload

from . import _fork
from ._chain import check_config, check_names, default_chain
from ._flight import running_loop
from ._freshness import Policy, RandomSource
from ._resolver import Mode, OnError, Resolver
from .errors import ProviderError, SecretsError
from .keys import CLOUD_WEBHOOK_SECRET, HF_TOKEN, REPLICATE_API_TOKEN, normalize_key
from .providers.base import NOT_CACHED, LeftOut, SecretProvider

if TYPE_CHECKING:
    from ._references import References
    from .providers.file import FileSecretProvider
    from .sync import SyncSecretsManager

__all__ = [
    "SecretsManager",
    "get_secrets_manager",
    "mask",
    "set_secrets_manager",
]

logger = logging.getLogger("simpletuner_secrets")


def _require_asyncio() -> None:
    """Refuse, with one clear error, an async call made outside asyncio (trio, curio).

    The resolver, the cache's single-flight and the AWS client are asyncio code; under anyio's
    trio backend they would half-work. Trio code can use the sync facade from a worker thread.
    """
    if running_loop() is None:
        raise SecretsError(
            "SecretsManager's async methods run on asyncio only (this is not an asyncio "
            "event loop: trio?); from trio, call the sync facade in a thread: "
            "await trio.to_thread.run_sync(manager.sync.get, key)"
        )


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


class SecretsManager:
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
        config: Settings: ``secrets_dir``, ``file_path``, ``aws_secret_name`` (several,
            comma-separated), ``aws_region``,
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
        timer: Monotonic clock for every freshness decision; tests pass a fake one.
        rng: Source of the TTL and backoff jitter (``uniform(a, b)``); tests pass a seeded
            `random.Random`. The default, the `random` module, is reseeded in forked children.
        resolve_references: Replace a value that is a reference (``vault://mount/path#KEY``,
            ``aws://secret-id?stage=S#KEY``, ``aws://secret-id``, ``file:///path``) by what
            it names, read with this manager's ``config`` and environment settings and cached
            like any document. None: on when ``SIMPLETUNER_RESOLVE_REFERENCES`` is ``1``.

    Raises:
        ValueError: A negative TTL or timeout, an unknown ``on_provider_error``, or two
            providers of the chain sharing a name.
        ConfigurationError: A ``config`` key no provider reads (the nearest valid one named).
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
        timer: Callable[[], float] = time.monotonic,
        rng: RandomSource = random,
        resolve_references: bool | None = None,
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
        check_config(self.config)
        self.cache_ttl = float(cache_ttl)
        self.on_provider_error: OnError = on_provider_error
        self.provider_timeout = float(provider_timeout)
        self.max_stale = float(max_stale)
        self.left_out: list[LeftOut] = []
        environ = os.environ if environ is None else environ
        if providers is None:
            chain, self.left_out = default_chain(self.config, environ)
        else:
            chain = list(providers)
        check_names(chain)
        self.resolver = Resolver(
            chain,
            Policy(ttl=self.cache_ttl, max_stale=self.max_stale),
            max_size=cache_max_size,
            on_provider_error=on_provider_error,
            provider_timeout=self.provider_timeout,
            timer=timer,
            rng=rng,
            references=_references_for(resolve_references, chain, self.config, environ),
        )
        self._timer = timer
        # Done when the first aclose() has finished, so that a concurrent one waits for it.
        self._close_done: concurrent.futures.Future[None] | None = None
        self._sync: SyncSecretsManager | None = None
        self._sync_lock = threading.Lock()
        self._writer: FileSecretProvider | None = None
        # Set by `reset()`: lookups that meet this manager closed retry on the new one.
        self._retired = False
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
            return await self._closed_get(key, default)
        nkey = normalize_key(key)
        value = resolver.peek(nkey)
        if value is NOT_CACHED:
            _require_asyncio()
            try:
                value = await resolver.resolve(nkey)
            except SecretsError:
                if not resolver.closed:
                    raise
                return await self._closed_get(key, default)  # closed during the lookup
        return default if value is None else value

    async def _closed_get(self, key: str, default: str | None) -> str | None:
        successor = self.successor()
        if successor is None:
            raise SecretsError(
                "this SecretsManager is closed; SecretsManager.reset() and "
                "get_secrets_manager() give a new process-wide one"
            )
        return await successor.get(key, default)

    def successor(self) -> SecretsManager | None:
        """The manager that takes over lookups made on this one once closed (internal).

        After `reset()` retired this process-wide manager, lookups in flight or made through
        an old reference answer from the new process-wide manager instead of failing;
        otherwise None.
        """
        if not self._retired:
            return None
        current = get_secrets_manager()
        return None if current is self else current

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
            for provider in self.providers:
                if isinstance(provider, FileSecretProvider) and (
                    wanted is None or Path(wanted).expanduser() == provider.path
                ):
                    self._writer = provider
                    break
            else:
                self._writer = FileSecretProvider(wanted)
        return self._writer

    def _warn_if_shadowed(self, nkey: str) -> None:
        for slot in self.resolver.slots:
            if slot.provider is self._writer:
                return
            if slot.mode is Mode.LIVE and slot.provider.peek(nkey):
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
        # The value leaves this frame's locals before anything can raise: error trackers and
        # `capture_locals` tracebacks record every local of every frame an error passes.
        box = [value]
        del value
        try:
            if self.closed:
                raise SecretsError("this SecretsManager is closed")
            _require_asyncio()
            nkey = normalize_key(key)
            writer = self._file_provider()
        except BaseException:
            box.clear()
            raise
        await writer.set(nkey, box.pop())
        self.resolver.forget(nkey)
        self._warn_if_shadowed(nkey)

    def set_replicate_token(self, token: str) -> Awaitable[None]:
        """Write ``REPLICATE_API_TOKEN`` to the secrets file (await it).

        A plain function returning `set_secret`'s coroutine: no frame of its own holds the
        token while the write runs.
        """
        return self.set_secret(REPLICATE_API_TOKEN, token)

    def set_hf_token(self, token: str) -> Awaitable[None]:
        """Write ``HF_TOKEN`` to the secrets file (await it; see `set_replicate_token`)."""
        return self.set_secret(HF_TOKEN, token)

    async def delete_secret(self, key: str) -> bool:
        """Remove ``key`` from the secrets file.

        Returns:
            Whether the file held the key.
        """
        if self.closed:
            raise SecretsError("this SecretsManager is closed")
        _require_asyncio()
        nkey = normalize_key(key)
        removed = await self._file_provider().delete(nkey)
        self.resolver.forget(nkey)
        return removed

    def get_secrets_file_path(self) -> Path:
        """Return the secrets file that reads and writes use."""
        return self._file_provider().path

    # -- introspection ---------------------------------------------------------------

    def clear_cache(self) -> None:
        """Forget every cached answer; the next lookups ask the back-ends again."""
        self.resolver.clear()

    async def explain(self, key: str) -> dict[str, Any]:
        """Say which provider answers ``key`` and how fresh the answer is, value masked.

        Returns:
            ``key`` (normalized), ``provider`` (name or None), ``value`` (masked), ``cached``
            (answered from the manager's cache without a back-end call), ``stale`` (served
            past its freshness because refreshes fail), ``age_s`` (seconds since fetched).
        """
        _require_asyncio()
        resolver = self.resolver
        nkey = normalize_key(key)
        before = {id(s): resolver.cached_entry(s, nkey) for s in resolver.slots}
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
        for slot in resolver.slots:
            if slot.mode is Mode.LIVE:
                answer = slot.provider.peek(nkey)
                if answer is NOT_CACHED:
                    try:
                        answer = await resolver.ask(slot, nkey)
                    except ProviderError:
                        if self.on_provider_error == "raise":
                            raise
                        continue  # get() skipped it too
                if answer:
                    info["provider"] = slot.name
                    return info
                continue
            entry = resolver.cached_entry(slot, nkey)
            if entry is None:
                continue
            answer = entry.value.get(nkey) if slot.mode is Mode.DOCUMENT else entry.value
            if answer:
                info["provider"] = slot.name
                info["cached"] = before[id(slot)] is entry
                info["stale"] = now >= entry.fresh_until
                info["age_s"] = round(now - entry.fetched_at, 3)
                return info
        return info

    def stats(self) -> dict[str, Any]:
        """Return cache counters and, per provider, calls, errors, timeouts and latency."""
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
        _require_asyncio()
        self.resolver.closed = True
        self._close_done = concurrent.futures.Future()
        try:
            await self.resolver.cancel_background()
            # Providers first: clients bound to the sync facade's loop are closed while it runs.
            for slot in self.resolver.slots:
                try:
                    await slot.provider.aclose()
                except Exception as exc:
                    logger.warning(
                        "provider %s did not close cleanly: %s", slot.name, type(exc).__name__
                    )
            await self.resolver.close_references()
            if self._writer is not None and all(p is not self._writer for p in self.providers):
                await self._writer.aclose()
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
        global _instance
        with _instance_lock:
            old, _instance = _instance, None
        if old is not None:
            # Lookups still in flight on it, or made through a reference taken before, answer
            # from the new manager rather than fail with "closed".
            old._retired = True
            if old._sync is not None:
                old._sync.close()


def _references_for(
    argument: bool | None,
    chain: Sequence[SecretProvider],
    config: Mapping[str, Any],
    environ: Mapping[str, str],
) -> References | None:
    """The reference resolver when references are on (its module loaded only then)."""
    if argument is False or (
        argument is None and not environ.get("SIMPLETUNER_RESOLVE_REFERENCES")
    ):
        return None
    from ._references import References, references_enabled

    return References(chain, config, environ) if references_enabled(argument, environ) else None


_instance: SecretsManager | None = None
_instance_lock = threading.Lock()


def _new_instance_lock() -> None:
    global _instance_lock
    _instance_lock = threading.Lock()


_fork.after_fork(_new_instance_lock)


def get_secrets_manager() -> SecretsManager:
    """Return the process-wide manager, creating it once (thread-safe), or again once the
    installed one is closed."""
    global _instance
    manager = _instance
    if manager is None or manager.closed:
        with _instance_lock:
            if _instance is None or _instance.closed:
                # A closed process-wide manager (its app shut down, `aclose()` called) is
                # replaced rather than handed out to fail every call.
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
