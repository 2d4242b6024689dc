"""Settings read from environment variables: their names, and parsers that refuse a bad value
with a `ConfigurationError` naming the variable, never quoting what it holds.

A value pasted into the wrong variable may be a secret, so no message here repeats it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

from ._resolver import OnError
from .errors import ConfigurationError

__all__ = [
    "ENV_AWS_CONNECT_TIMEOUT",
    "ENV_AWS_READ_TIMEOUT",
    "ENV_AWS_VERSION_STAGE",
    "ENV_CACHE_MAX_SIZE",
    "ENV_CACHE_TTL",
    "ENV_ENV_PREFIX",
    "ENV_MAX_FILE_SIZE",
    "ENV_MAX_STALE",
    "ENV_ON_PROVIDER_ERROR",
    "ENV_PROVIDER_TIMEOUT",
    "ENV_SECRETS_FILE",
    "ENV_STRICT_PERMISSIONS",
    "SETTINGS_VARIABLES",
    "ManagerSettings",
    "env_choice",
    "env_flag",
    "env_integer",
    "env_seconds",
    "env_text",
]

S = TypeVar("S", bound=str)

# The manager.
ENV_CACHE_TTL: Final = "SIMPLETUNER_CACHE_TTL"
ENV_CACHE_MAX_SIZE: Final = "SIMPLETUNER_CACHE_MAX_SIZE"
ENV_ON_PROVIDER_ERROR: Final = "SIMPLETUNER_ON_PROVIDER_ERROR"
ENV_PROVIDER_TIMEOUT: Final = "SIMPLETUNER_PROVIDER_TIMEOUT"
ENV_MAX_STALE: Final = "SIMPLETUNER_MAX_STALE"
# The environment provider.
ENV_ENV_PREFIX: Final = "SIMPLETUNER_ENV_PREFIX"
# The file provider.
ENV_SECRETS_FILE: Final = "SIMPLETUNER_SECRETS_FILE"
ENV_STRICT_PERMISSIONS: Final = "SIMPLETUNER_STRICT_PERMISSIONS"
ENV_MAX_FILE_SIZE: Final = "SIMPLETUNER_MAX_FILE_SIZE"
# The AWS provider (its secret name, region and endpoint are read in its own module).
ENV_AWS_VERSION_STAGE: Final = "SIMPLETUNER_AWS_VERSION_STAGE"
ENV_AWS_CONNECT_TIMEOUT: Final = "SIMPLETUNER_AWS_CONNECT_TIMEOUT"
ENV_AWS_READ_TIMEOUT: Final = "SIMPLETUNER_AWS_READ_TIMEOUT"

#: Every variable above (the README documents each; a test holds it to that).
SETTINGS_VARIABLES: Final = (
    ENV_CACHE_TTL,
    ENV_CACHE_MAX_SIZE,
    ENV_ON_PROVIDER_ERROR,
    ENV_PROVIDER_TIMEOUT,
    ENV_MAX_STALE,
    ENV_ENV_PREFIX,
    ENV_SECRETS_FILE,
    ENV_STRICT_PERMISSIONS,
    ENV_MAX_FILE_SIZE,
    ENV_AWS_VERSION_STAGE,
    ENV_AWS_CONNECT_TIMEOUT,
    ENV_AWS_READ_TIMEOUT,
)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def env_text(environ: Mapping[str, str], name: str) -> str | None:
    """The variable as stripped text; unset, empty and whitespace-only count as unset."""
    raw = environ.get(name)
    if raw is None:
        return None
    return raw.strip() or None


def _refuse(name: str, wanted: str) -> ConfigurationError:
    # The value is never quoted: it may be a secret set into the wrong variable.
    return ConfigurationError(
        f"environment variable {name} must be {wanted} (its value is not shown)"
    )


def env_seconds(environ: Mapping[str, str], name: str, *, positive: bool = False) -> float | None:
    """A duration in seconds from ``name``, or None when it is unset.

    Args:
        environ: The environment.
        name: The variable.
        positive: Refuse 0 as well as negative numbers.

    Raises:
        ConfigurationError: Not a finite number, or out of range; the variable is named.
    """
    text = env_text(environ, name)
    if text is None:
        return None
    wanted = "a number of seconds " + ("> 0" if positive else ">= 0")
    try:
        number = float(text)
    except ValueError:
        raise _refuse(name, wanted) from None
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        raise _refuse(name, wanted)
    return number


def env_integer(environ: Mapping[str, str], name: str, *, minimum: int = 1) -> int | None:
    """A whole number >= ``minimum`` from ``name``, or None when it is unset.

    Raises:
        ConfigurationError: Not a whole number, or below ``minimum``; the variable is named.
    """
    text = env_text(environ, name)
    if text is None:
        return None
    wanted = f"a whole number >= {minimum}"
    try:
        number = int(text.replace("_", ""), 10)
    except ValueError:
        raise _refuse(name, wanted) from None
    if number < minimum:
        raise _refuse(name, wanted)
    return number


def env_flag(environ: Mapping[str, str], name: str) -> bool | None:
    """A boolean from ``name`` (``1/true/yes/on``, ``0/false/no/off``, any case), or None.

    Raises:
        ConfigurationError: Anything else; the variable is named.
    """
    text = env_text(environ, name)
    if text is None:
        return None
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _refuse(name, "one of 1, true, yes, on, 0, false, no, off")


def env_choice(environ: Mapping[str, str], name: str, choices: tuple[S, ...]) -> S | None:
    """One of ``choices`` (any case) from ``name``, or None when it is unset.

    Raises:
        ConfigurationError: Anything else; the variable and the choices are named.
    """
    text = env_text(environ, name)
    if text is None:
        return None
    for choice in choices:
        if text.lower() == choice.lower():
            return choice
    raise _refuse(name, "one of " + ", ".join(choices))


@dataclass(frozen=True)
class ManagerSettings:
    """The `SecretsManager` settings, each from its argument, else its variable, else the
    default (`resolve`)."""

    cache_ttl: float = 300.0
    cache_max_size: int = 10_000
    on_provider_error: OnError = "skip"
    provider_timeout: float = 5.0
    max_stale: float = 86_400.0

    @classmethod
    def resolve(
        cls,
        environ: Mapping[str, str],
        *,
        cache_ttl: float | None,
        cache_max_size: int | None,
        on_provider_error: OnError | None,
        provider_timeout: float | None,
        max_stale: float | None,
    ) -> ManagerSettings:
        """Each setting from its argument when given, else its variable, else the default.

        Raises:
            ValueError: An argument out of range, or an unknown ``on_provider_error``.
            ConfigurationError: A variable's value is malformed (the variable named).
        """
        if on_provider_error is not None and on_provider_error not in ("skip", "raise"):
            raise ValueError(
                f"on_provider_error must be 'skip' or 'raise', got {on_provider_error!r}"
            )
        for label, number in (
            ("cache_ttl", cache_ttl),
            ("provider_timeout", provider_timeout),
            ("max_stale", max_stale),
        ):
            if number is not None and not number >= 0:  # NaN refused too
                raise ValueError(f"{label} must be >= 0, got {number!r}")
        if cache_max_size is not None and cache_max_size < 1:
            raise ValueError(f"cache_max_size must be >= 1, got {cache_max_size!r}")
        defaults = cls()

        def pick(given: float | None, name: str, default: float) -> float:
            if given is not None:
                return float(given)
            found = env_seconds(environ, name)
            return default if found is None else found

        size = cache_max_size
        if size is None:
            size = env_integer(environ, ENV_CACHE_MAX_SIZE, minimum=1)
        mode = on_provider_error
        if mode is None:
            mode = env_choice(environ, ENV_ON_PROVIDER_ERROR, ("skip", "raise"))
        return cls(
            cache_ttl=pick(cache_ttl, ENV_CACHE_TTL, defaults.cache_ttl),
            cache_max_size=defaults.cache_max_size if size is None else size,
            on_provider_error=defaults.on_provider_error if mode is None else mode,
            provider_timeout=pick(
                provider_timeout, ENV_PROVIDER_TIMEOUT, defaults.provider_timeout
            ),
            max_stale=pick(max_stale, ENV_MAX_STALE, defaults.max_stale),
        )
