"""simpletuner-secrets: async-first secrets from environment, file, AWS and Vault, cached.

The AWS and Vault providers (and the Vault auth methods) are imported on first use, so
their SDKs stay optional.
"""

from __future__ import annotations

from typing import Any

from ._events import SecretsEvent
from .cache import (
    CachedFunction,
    TTLCache,
    cached,
    get_provider_config_cache,
    get_user_permission_cache,
    invalidate_provider_cache,
    invalidate_user_cache,
)
from .errors import (
    ConfigurationError,
    MissingSecretError,
    ProviderError,
    SecretFileError,
    SecretsError,
)
from .keys import CLOUD_WEBHOOK_SECRET, HF_TOKEN, REPLICATE_API_TOKEN, normalize_key, validate_key
from .manager import SecretsManager, get_secrets_manager, set_secrets_manager
from .providers import DocumentSecretProvider, SecretProvider
from .providers.env import EnvironmentSecretProvider
from .providers.file import FileSecretProvider
from .reports import (
    CacheStats,
    ExplainResult,
    ManagerCacheStats,
    ManagerStats,
    ProviderCallStats,
)
from .sync import SyncSecretsManager

__version__ = "0.1.0"

_LAZY = {
    "AWSSecretsManagerProvider": ".providers.aws",
    "HashiCorpVaultProvider": ".providers.vault",
    "SecretsDirectoryProvider": ".providers.directory",
    "VaultAgentAuth": ".providers.vault",
    "VaultAppRoleAuth": ".providers.vault",
    "VaultCertAuth": ".providers.vault",
    "VaultJWTAuth": ".providers.vault",
    "VaultKubernetesAuth": ".providers.vault",
    "VaultTokenAuth": ".providers.vault",
    "VaultUserpassAuth": ".providers.vault",
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
    "CacheStats",
    "CachedFunction",
    "ConfigurationError",
    "DocumentSecretProvider",
    "EnvironmentSecretProvider",
    "ExplainResult",
    "FileSecretProvider",
    "HashiCorpVaultProvider",
    "ManagerCacheStats",
    "ManagerStats",
    "MissingSecretError",
    "ProviderCallStats",
    "ProviderError",
    "SecretFileError",
    "SecretProvider",
    "SecretsDirectoryProvider",
    "SecretsError",
    "SecretsEvent",
    "SecretsManager",
    "SyncSecretsManager",
    "TTLCache",
    "VaultAgentAuth",
    "VaultAppRoleAuth",
    "VaultCertAuth",
    "VaultJWTAuth",
    "VaultKubernetesAuth",
    "VaultTokenAuth",
    "VaultUserpassAuth",
    "__version__",
    "cached",
    "get_provider_config_cache",
    "get_secrets_manager",
    "get_user_permission_cache",
    "invalidate_provider_cache",
    "invalidate_user_cache",
    "normalize_key",
    "set_secrets_manager",
    "validate_key",
]
