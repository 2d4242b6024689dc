"""What `SecretsManager.explain` and the CLI show of an answer: the provider that gave it, how
fresh it is, and the value masked."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ._resolver import Mode, Resolver, Slot
from .errors import ProviderError
from .providers.base import NOT_CACHED
from .reports import ExplainResult

__all__ = ["explain", "mask"]


def mask(value: str | None) -> str | None:
    """Mask a secret for display: 12 or more characters show their first 2, shorter ones none.

    Args:
        value: The secret, or None.

    Returns:
        The masked text (``"hf**********"``, ``"********"``), or None.
    """
    if value is None:
        return None
    if len(value) >= 12:
        return value[:2] + "*" * 10
    return "*" * 8


def _add_auth(info: ExplainResult, slot: Slot) -> None:
    # Vault and the like: login method, mount, the token's remaining TTL.
    auth = slot.provider.auth_status()
    if auth is not None:
        info["auth"] = auth


async def explain(
    resolver: Resolver, nkey: str, lookup: Callable[[str], Awaitable[str | None]]
) -> ExplainResult:
    """Look ``nkey`` up with ``lookup`` (the manager's `get`), then say which slot answered.

    Returns:
        ``key``, ``provider`` (name or None), ``value`` (masked), ``cached`` (answered from
        the cache without a back-end call), ``stale`` (served past its freshness), ``age_s``,
        and ``auth`` when the answering provider authenticates (`SecretProvider.auth_status`).
    """
    before = {id(s): resolver.cached_entry(s, nkey) for s in resolver.slots}
    value = await lookup(nkey)
    info: ExplainResult = {
        "key": nkey,
        "provider": None,
        "value": mask(value),
        "cached": False,
        "stale": False,
        "age_s": None,
    }
    if value is None:
        return info
    now = resolver.timer()
    for slot in resolver.slots:
        if slot.mode is Mode.LIVE:
            answer = slot.provider.peek(nkey)
            if answer is NOT_CACHED:
                try:
                    answer = await resolver.ask(slot, nkey)
                except ProviderError:
                    if resolver.on_provider_error == "raise":
                        raise
                    continue  # the lookup skipped it too
            if answer:
                info["provider"] = slot.name
                _add_auth(info, slot)
                return info
            continue
        entry = resolver.cached_entry(slot, nkey)
        if entry is None:
            continue
        answer = entry.value.get(nkey) if slot.mode is Mode.DOCUMENT else entry.value
        if answer:
            info["provider"] = slot.name
            _add_auth(info, slot)
            info["cached"] = before[id(slot)] is entry
            info["stale"] = now >= entry.fresh_until
            info["age_s"] = round(now - entry.fetched_at, 3)
            return info
    return info
