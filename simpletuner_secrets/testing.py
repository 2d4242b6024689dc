"""Helpers for tests: an in-memory provider that behaves like a remote back-end.

`InMemorySecretProvider` loads one document per refresh like the AWS and Vault providers, so a
`SecretsManager` caches and coalesces it the same way. It counts its loads, can be slowed down
and can be made to fail, which is what tests of code using secrets usually need.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from .errors import ProviderError
from .keys import normalize_key
from .providers.base import DocumentSecretProvider, document_from_mapping

__all__ = ["InMemorySecretProvider"]


class InMemorySecretProvider(DocumentSecretProvider):
    """A writable provider holding its secrets in a dict.

    Args:
        secrets: Initial secrets; keys are matched by their normalized form, numbers and
            booleans come back as their JSON text, like from a JSON document.
        latency: Seconds each document load waits, to imitate a network round trip.
        name: The provider's name in logs, stats and ``explain``.

    Attributes:
        loads: How many times the document was loaded (back-end requests).
        failure: When set, every load raises `ProviderError` with this message.
    """

    name = "memory"

    def __init__(
        self,
        secrets: Mapping[str, Any] | None = None,
        *,
        latency: float = 0.0,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self._data: dict[str, Any] = {normalize_key(k): v for k, v in (secrets or {}).items()}
        self.latency = latency
        self.loads = 0
        self.failure: str | None = None

    async def load_document(self) -> Mapping[str, str]:
        """Return the secrets as a document (non-empty values as text), after ``latency``."""
        self.loads += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.failure is not None:
            raise ProviderError(f"{self.name}: {self.failure}", provider=self.name)
        return document_from_mapping(self._data, provider=self.name, source="memory")

    async def set(self, key: str, value: str) -> None:
        """Store ``value`` under ``key`` and forget the loaded document."""
        self._data[normalize_key(key)] = value
        self.invalidate()

    async def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it was there."""
        found = self._data.pop(normalize_key(key), None) is not None
        self.invalidate()
        return found

    def __repr__(self) -> str:
        return f"InMemorySecretProvider(name={self.name!r}, keys={len(self._data)})"
