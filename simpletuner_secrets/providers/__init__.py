"""Secret providers: one back-end per module. SDK imports stay inside their own module."""

from __future__ import annotations

from .base import DocumentSecretProvider, SecretProvider

__all__ = ["DocumentSecretProvider", "SecretProvider"]
