"""simpletuner-secrets: async-first secrets from environment, file, AWS and Vault, cached."""

from __future__ import annotations

from .errors import ConfigurationError, ProviderError, SecretFileError, SecretsError
from .keys import CLOUD_WEBHOOK_SECRET, HF_TOKEN, REPLICATE_API_TOKEN, normalize_key
from .providers import DocumentSecretProvider, SecretProvider

__version__ = "0.1.0"

__all__ = [
    "CLOUD_WEBHOOK_SECRET",
    "HF_TOKEN",
    "REPLICATE_API_TOKEN",
    "ConfigurationError",
    "DocumentSecretProvider",
    "ProviderError",
    "SecretFileError",
    "SecretProvider",
    "SecretsError",
    "__version__",
    "normalize_key",
]
