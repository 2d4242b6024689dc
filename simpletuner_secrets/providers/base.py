"""The provider contract: what every secret source implements, built-in or user-written.

`DocumentSecretProvider` is the shape of the built-in file and remote providers: they load one
whole document per refresh and answer every key from it.
"""

from __future__ import annotations

import abc
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from .._flight import Abandoned
from ..errors import ProviderError
from ..keys import normalize_key

__all__ = [
    "NOT_CACHED",
    "DocumentSecretProvider",
    "LeftOut",
    "SecretProvider",
    "document_from_mapping",
]


class _NotCached:
    """The answer of `SecretProvider.peek` when only an awaited `get` can tell."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_CACHED"


#: Returned by `SecretProvider.peek` when the provider cannot answer without I/O.
NOT_CACHED: Any = _NotCached()


@dataclass(frozen=True)
class LeftOut:
    """Why a built-in provider is not in the default chain (its `from_settings` answer).

    Attributes:
        provider: The provider's name (``"aws"``, ``"vault"``...).
        reason: What is missing or wrong, never a value.
        level: The logging level the reason deserves: `logging.DEBUG` when the provider is
            simply not configured, `logging.WARNING` when its settings are partial or wrong.
    """

    provider: str
    reason: str
    level: int = logging.DEBUG

    @property
    def misconfigured(self) -> bool:
        """Whether settings were given but could not be used (a warning, not just absent)."""
        return self.level >= logging.WARNING


class SecretProvider(abc.ABC):
    """One source of secrets in the chain.

    Subclasses set `name` and implement `get`. `get` returns ``None`` only when the key is
    absent; a back-end failure raises `ProviderError`. A provider's ``repr`` never shows a
    token or a value.

    Attributes:
        name: Short identifier used in logs, stats and the CLI (``"env"``, ``"vault"``, ...).
        cache_answers: Whether `SecretsManager` may cache this provider's answers for its
            ``cache_ttl``. Providers that manage freshness themselves (environment, file) say
            ``False``.
    """

    #: A class default; built-in providers take ``name=`` so that a chain may hold several
    #: of one kind (names are unique in a chain).
    name: str = "custom"
    cache_answers: ClassVar[bool] = True
    #: The `SecretsManager(config=...)` keys `from_settings` reads (built-in providers).
    config_keys: ClassVar[frozenset[str]] = frozenset()

    @abc.abstractmethod
    async def get(self, key: str) -> str | None:
        """Return the value of ``key``, or ``None`` when the provider does not have it.

        Args:
            key: Any spelling of the key; providers match it by its normalized form.

        Returns:
            The value, or ``None`` when absent. An empty value counts as absent.

        Raises:
            ProviderError: The back-end failed.
        """

    def peek(self, key: str) -> str | None:
        """Answer at once, without I/O, when the provider can; else return `NOT_CACHED`.

        The manager and the sync facade use this for their fast path. Providers that read
        live memory (environment) or hold a document known to be current (file) override it.

        Args:
            key: A key already normalized by `normalize_key`.

        Returns:
            The value, ``None`` when known absent, or `NOT_CACHED`.
        """
        return cast(None, NOT_CACHED)

    def is_available(self) -> bool:
        """Return whether the provider is configured and its dependencies importable."""
        return True

    def auth_status(self) -> dict[str, Any] | None:
        """How the provider authenticates, without I/O (method, mount, the token's remaining
        TTL, login counters), for `SecretsManager.explain` and ``stats``; None when it has
        nothing to say. Never a token or a login secret."""
        return None

    def rename(self, name: str | None) -> None:
        """Give this provider instance its own name (None keeps the class's).

        Args:
            name: The name used in logs, stats, `explain` and the CLI.

        Raises:
            ValueError: ``name`` is empty, or holds whitespace or a comma.
        """
        if name is None:
            return
        if (
            not isinstance(name, str)
            or not name.strip()
            or any(c.isspace() or c == "," for c in name)
        ):
            raise ValueError(f"a provider name must be a non-empty word, got {name!r}")
        self.name = name

    def counters(self) -> Mapping[str, int]:
        """Back-end counters of this provider's own, shown beside the manager's in `stats`
        (the AWS provider counts its ``GetSecretValue`` requests)."""
        return {}

    @classmethod
    def from_settings(
        cls, config: Mapping[str, Any], environ: Mapping[str, str]
    ) -> SecretProvider | LeftOut:
        """Build the provider from the manager's ``config`` and the environment.

        The default chain asks every built-in provider this; each reads only its own
        settings. A provider that cannot be built says why with a `LeftOut`.

        Args:
            config: The manager's ``config`` mapping.
            environ: The environment to read settings from.

        Returns:
            The provider, or the reason it is left out.
        """
        return cls()

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to close by default
        """Release clients and connections. Safe to call more than once."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class DocumentSecretProvider(SecretProvider):
    """A provider that loads a whole document of secrets at once and answers keys from it.

    Subclasses implement `load_document`, which fetches the document from the back-end with no
    caching. `SecretsManager` caches the document (one fetch per refresh for every key);
    standalone use goes through `get`, which coalesces concurrent loads and keeps the document
    for `document_ttl` seconds.
    """

    #: How long `get` keeps a loaded document when the provider is used on its own.
    document_ttl: float = 300.0

    def __init__(self, *, name: str | None = None) -> None:
        self.rename(name)
        from ..cache import TTLCache  # local: the cache module imports nothing from here

        self._document_cache: TTLCache[Mapping[str, str]] = TTLCache(
            default_ttl=self.document_ttl, max_size=1
        )
        # Whether `document` is this class's own, so that `get` may skip the call.
        self._plain_document = type(self).document is DocumentSecretProvider.document

    @abc.abstractmethod
    async def load_document(self) -> Mapping[str, str]:
        """Fetch the whole document from the back-end, keys normalized, values as text.

        Returns:
            A mapping of normalized key to non-empty value. A missing document is empty.

        Raises:
            ProviderError: The back-end failed or the document is malformed.
        """

    async def document(self) -> Mapping[str, str]:
        """Return the current document, loading it once for all concurrent callers."""
        return await self.load_coalesced()

    async def load_coalesced(self, ttl: float | None = None) -> Mapping[str, str]:
        """`load_document`, concurrent calls sharing one load, the result kept ``ttl`` seconds.

        Args:
            ttl: Seconds to keep the document (`document_ttl` when None; 0 only coalesces).
        """
        return await self._document_cache.get_or_set_async("document", self.load_document, ttl)

    async def get(self, key: str) -> str | None:
        """Return the value of ``key`` from the document, or ``None`` when absent."""
        if self._plain_document:
            # `document` inlined, and a load in flight joined directly: one coroutine less for
            # each caller of a stampede, two for the callers that join (the "200 cold gets vs
            # cheapest floor" rows of bench_providers).
            cache = self._document_cache
            waiter = cache.join_nowait("document")
            if waiter is not None:
                try:
                    document = await waiter
                except Abandoned:  # the load ended without a result: look up or load again
                    document = await cache.get_or_set_async("document", self.load_document)
            else:
                document = await cache.get_or_set_async("document", self.load_document)
        else:
            document = await self.document()
        return document.get(normalize_key(key))

    def invalidate(self) -> None:
        """Forget the loaded document so that the next `get` loads it again."""
        self._document_cache.clear()


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    # Numbers and booleans come back as their JSON text (5432, true); containers as JSON.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def document_from_mapping(data: Any, *, provider: str, source: str) -> dict[str, str]:
    """Turn a parsed document into ``{normalized key: text value}``.

    Keys are matched by their normalized form; ``null`` and empty values count as absent.

    Args:
        data: The parsed document (must be a mapping with string keys).
        provider: Provider name for error messages.
        source: Where the document came from (path, secret name), for error messages.

    Returns:
        The normalized document.

    Raises:
        ProviderError: ``data`` is not a mapping, or has a key that is not a valid string key.
    """
    if not isinstance(data, Mapping):
        raise ProviderError(
            f"{provider}: {source} holds a {type(data).__name__}, not an object of key/value pairs",
            provider=provider,
        )
    document: dict[str, str] = {}
    for raw_key, value in data.items():
        if not isinstance(raw_key, str):
            raise ProviderError(
                f"{provider}: {source} has a key of type {type(raw_key).__name__}; keys must be strings",
                provider=provider,
            )
        try:
            key = normalize_key(raw_key)
        except ValueError as exc:
            raise ProviderError(
                f"{provider}: {source} has an invalid key: {exc}", provider=provider
            ) from None
        if value is None:
            continue
        text = _as_text(value)
        if text:
            document[key] = text
    return document
