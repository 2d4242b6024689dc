"""The manager's writes: which secrets file they go to, a warning when a write is shadowed by a
higher-priority provider, and `SecretsManager`'s write methods (`WriteMethods`)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._flight import require_asyncio
from ._resolver import Mode, Resolver
from .errors import SecretsError
from .keys import HF_TOKEN, REPLICATE_API_TOKEN, normalize_key, validate_key

if TYPE_CHECKING:
    from .providers.file import FileSecretProvider

__all__ = ["FileWrites", "WriteMethods"]

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


class WriteMethods:
    """`SecretsManager`'s writes to the secrets file (a base class of it): the manager's
    `FileWrites` does them, once the manager is checked open and the key against the grammar."""

    resolver: Resolver
    _writes: FileWrites

    async def set_secret(self, key: str, value: str) -> None:
        """Write ``key`` to the secrets file (the configured ``file_path``, else the default).

        Args:
            key: A key in the key grammar (`validate_key`): ASCII letters, digits, ``_``,
                ``-`` and ``.``, starting with a letter or ``_``.
            value: The secret; must be a non-empty string.

        The key is stored normalized (``"hf-token2"`` stores ``HF_TOKEN2``; `validate_key`
        returns that name without writing).

        Raises:
            ValueError: The key is outside the grammar (``"my key"``, ``"../etc/x"``), or the
                value is empty.
            SecretFileError: The file could not be written.
        """
        # The value leaves this frame's locals before anything can raise: error trackers and
        # `capture_locals` tracebacks record every local of every frame an error passes.
        box = [value]
        del value
        try:
            self._check_open()
            nkey = validate_key(key)
        except BaseException:
            box.clear()
            raise
        await self._writes.set(nkey, box)

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

        Any key that `normalize_key` accepts may be deleted, also one outside the key
        grammar that another tool wrote.

        Returns:
            Whether the file held the key.
        """
        self._check_open()
        return await self._writes.delete(normalize_key(key))

    def get_secrets_file_path(self) -> Path:
        """Return the secrets file that reads and writes use."""
        return self._writes.provider().path

    def _check_open(self) -> None:
        if self.resolver.closed:
            raise SecretsError("this SecretsManager is closed")
        require_asyncio()
