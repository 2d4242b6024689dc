"""simpletuner-secrets: async-first secrets from environment, file, AWS and Vault, cached.

The AWS and Vault providers are imported on first use, so their SDKs stay optional.
"""

from __future__ import annotations

from typing import Any

from .cache import (
    TTLCache,
    cached,
    get_provider_config_cache,
    get_user_permission_cache,
    invalidate_provider_cache,
    invalidate_user_cache,
)
from .errors import ConfigurationError, ProviderError, SecretFileError, SecretsError
from .keys import CLOUD_WEBHOOK_SECRET, HF_TOKEN, REPLICATE_API_TOKEN, normalize_key
from .manager import SecretsManager, get_secrets_manager, set_secrets_manager
from .providers import DocumentSecretProvider, SecretProvider
from .providers.env import EnvironmentSecretProvider
from .providers.file import FileSecretProvider
from .sync import SyncSecretsManager

__version__ = "0.1.0"

_LAZY = {
    "AWSSecretsManagerProvider": ".providers.aws",
    "HashiCorpVaultProvider": ".providers.vault",
    "SecretsDirectoryProvider": ".providers.directory",
}


def __getattr__(name: str) -> Any:
    # The AWS and Vault modules are loaded on first use, not at import.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CLOUD_WEBHOOK_SECRET",
    "HF_TOKEN",
    "REPLICATE_API_TOKEN",
    "AWSSecretsManagerProvider",
    "ConfigurationError",
    "DocumentSecretProvider",
    "EnvironmentSecretProvider",
    "FileSecretProvider",
    "HashiCorpVaultProvider",
    "ProviderError",
    "SecretFileError",
    "SecretProvider",
    "SecretsDirectoryProvider",
    "SecretsError",
    "SecretsManager",
    "SyncSecretsManager",
    "TTLCache",
    "__version__",
    "cached",
    "get_provider_config_cache",
    "get_secrets_manager",
    "get_user_permission_cache",
    "invalidate_provider_cache",
    "invalidate_user_cache",
    "normalize_key",
    "set_secrets_manager",
]
