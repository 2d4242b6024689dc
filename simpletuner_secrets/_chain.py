"""The default chain: every built-in provider asked, in priority order, to build itself from
the manager's ``config`` and the environment. No provider setting is named here.

`build_resolver` checks a manager's ``config`` and chain and builds its resolver over them.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._freshness import Policy, RandomSource
from ._resolver import Resolver
from .errors import ConfigurationError
from .providers.base import LeftOut, SecretProvider

if TYPE_CHECKING:
    from ._references import References
    from ._settings import ManagerSettings

__all__ = [
    "BUILT_IN_PROVIDERS",
    "build_resolver",
    "built_in_classes",
    "check_config",
    "check_names",
    "default_chain",
]

logger = logging.getLogger("simpletuner_secrets")

#: The built-in providers of the default chain, highest priority first: (module, class).
BUILT_IN_PROVIDERS: tuple[tuple[str, str], ...] = (
    ("env", "EnvironmentSecretProvider"),
    ("directory", "SecretsDirectoryProvider"),
    ("file", "FileSecretProvider"),
    ("aws", "AWSSecretsManagerProvider"),
    ("vault", "HashiCorpVaultProvider"),
)


def built_in_classes() -> list[type[SecretProvider]]:
    """The built-in provider classes, highest priority first (their modules imported)."""
    return [
        getattr(importlib.import_module(f".providers.{module}", __package__), name)
        for module, name in BUILT_IN_PROVIDERS
    ]


def check_config(config: Mapping[str, Any]) -> None:
    """Refuse a ``config`` key no built-in provider reads, naming the nearest valid one.

    Raises:
        ConfigurationError: An unknown key (``vault_adr``: did you mean ``vault_url``?).
    """
    known: set[str] = set().union(*(cls.config_keys for cls in built_in_classes()))
    for key in config:
        if key in known:
            continue
        import difflib  # only for a mistyped key: not on every start-up

        nearest = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {nearest[0]!r}?" if nearest else ""
        raise ConfigurationError(
            f"unknown config key {str(key)!r}{hint} (known: {', '.join(sorted(known))})"
        )


def check_names(chain: Sequence[SecretProvider]) -> None:
    """Refuse a chain in which two providers share a name (stats, logs and `explain` name
    providers, so each name must say which one).

    Raises:
        ValueError: A duplicate name; the message says to pass ``name=``.
    """
    seen: set[str] = set()
    for provider in chain:
        name = provider.name
        if name in seen:
            raise ValueError(
                f"two providers in the chain are named {name!r}; give each its own name "
                f"(e.g. {type(provider).__name__}(..., name={name + '-2'!r}))"
            )
        seen.add(name)


def default_chain(
    config: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[list[SecretProvider], list[LeftOut]]:
    """Build the default chain.

    Each provider left out is logged once, at the level its `LeftOut` gives.

    Args:
        config: The manager's settings.
        environ: The environment to read settings from.

    Returns:
        The chain, highest priority first, and the providers left out with their reasons.
    """
    chain: list[SecretProvider] = []
    left_out: list[LeftOut] = []
    for factory in built_in_classes():
        answer = factory.from_settings(config, environ)
        if isinstance(answer, LeftOut):
            logger.log(answer.level, "%s provider left out: %s", answer.provider, answer.reason)
            left_out.append(answer)
        else:
            chain.append(answer)
    return chain, left_out


def build_resolver(
    providers: Sequence[SecretProvider] | None,
    config: Mapping[str, Any],
    environ: Mapping[str, str],
    settings: ManagerSettings,
    *,
    timer: Callable[[], float],
    rng: RandomSource,
    resolve_references: bool | None,
) -> tuple[Resolver, list[LeftOut]]:
    """A manager's resolver: ``config`` checked, then the chain (``providers``, or None: the
    default chain) checked and cached under ``settings``.

    Returns:
        The resolver, and the providers the default chain left out (none for a given chain).

    Raises:
        ConfigurationError: A ``config`` key no provider reads (`check_config`).
        ValueError: Two providers of the chain share a name (`check_names`).
    """
    check_config(config)
    left_out: list[LeftOut] = []
    if providers is None:
        chain, left_out = default_chain(config, environ)
    else:
        chain = list(providers)
    check_names(chain)
    resolver = Resolver(
        chain,
        Policy(ttl=settings.cache_ttl, max_stale=settings.max_stale),
        max_size=settings.cache_max_size,
        on_provider_error=settings.on_provider_error,
        provider_timeout=settings.provider_timeout,
        timer=timer,
        rng=rng,
        references=_references_for(resolve_references, chain, config, environ),
    )
    return resolver, left_out


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
