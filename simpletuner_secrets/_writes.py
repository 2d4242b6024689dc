"""The manager's writes: which secrets file they go to, and a warning when a write is
shadowed by a higher-priority provider."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._resolver import Mode, Resolver

if TYPE_CHECKING:
    from .providers.file import FileSecretProvider

__all__ = ["FileWrites"]

logger = logging.getLogger("simpletuner_secrets")


class FileWrites:
    """Writes to the chain's file provider when it is the configured one (``file_path`` /
    ``SIMPLETUNER_SECRETS_FILE``, else the default file), or else to a file provider of their
    own built from the same settings on first use."""

    def __init__(
        self, resolver: Resolver, config: Mapping[str, Any], environ: Mapping[str, str]
    ) -> None:
        self.resolver = resolver
        self.config = config
        self.environ = environ
        self.own: FileSecretProvider | None = None  # made here: closed by `aclose`
        self.writer: FileSecretProvider | None = None

    def provider(self) -> FileSecretProvider:
        """The file provider writes go to (found or made on first use)."""
        from .providers.file import FileSecretProvider

        if self.writer is None:
            configured = FileSecretProvider.from_settings(self.config, self.environ)
            wanted = configured.path if configured.explicit else None
            for slot in self.resolver.slots:
                provider = slot.provider
                if isinstance(provider, FileSecretProvider) and (
                    wanted is None or wanted == provider.path
                ):
                    self.writer = provider
                    break
            else:
                self.writer = self.own = configured
        return self.writer

    async def set(self, nkey: str, box: list[str]) -> None:
        """Write the one value in ``box`` (emptied before it can raise) under ``nkey``."""
        try:
            writer = self.provider()
        except BaseException:
            box.clear()
            raise
        await writer.set(nkey, box.pop())
        self.resolver.forget(nkey)
        self.warn_if_shadowed(nkey)

    async def delete(self, nkey: str) -> bool:
        """Remove ``nkey`` from the file; whether it was there."""
        removed = await self.provider().delete(nkey)
        self.resolver.forget(nkey)
        return removed

    def warn_if_shadowed(self, nkey: str) -> None:
        """A WARNING when a live provider above the file holds ``nkey`` too (it still wins)."""
        for slot in self.resolver.slots:
            if slot.provider is self.writer:
                return
            if slot.mode is Mode.LIVE and slot.provider.peek(nkey):
                logger.warning(
                    "%s was written to the secrets file, but provider %s has it too and still wins",
                    nkey,
                    slot.name,
                )
                return

    async def aclose(self) -> None:
        """Close the file provider made here (the chain's own close with the chain)."""
        if self.own is not None:
            await self.own.aclose()
