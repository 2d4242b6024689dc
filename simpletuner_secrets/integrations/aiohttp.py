"""aiohttp integration: a cleanup context that owns the app's manager, and a lookup helper.

`setup` registers the manager's startup and shutdown; ``await get_secret(request, key)`` reads
through it (sub-applications see their parent's manager).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Literal, overload

from . import (
    missing_extra,
    raise_unchained,
    start_with_required,
    stop_manager,
    unavailable_report,
)

try:
    from aiohttp import web
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise missing_extra("aiohttp", "aiohttp") from exc

from ..errors import SecretsError
from ..keys import normalize_key
from ..manager import SecretsManager, get_secrets_manager

__all__ = ["SECRETS_MANAGER_KEY", "get_manager", "get_secret", "setup"]

logger = logging.getLogger("simpletuner_secrets")

#: The application key that holds the app's manager: ``app[SECRETS_MANAGER_KEY]``.
SECRETS_MANAGER_KEY: web.AppKey[SecretsManager] = web.AppKey(
    "simpletuner_secrets.manager", SecretsManager
)


def setup(
    app: web.Application,
    manager: SecretsManager | None = None,
    *,
    close: bool | None = None,
    required: Iterable[str] = (),
) -> None:
    """Give ``app`` a secrets manager for its lifetime, through a cleanup context.

    At startup the manager is stored under `SECRETS_MANAGER_KEY` and installed as the
    process-wide manager (`set_secrets_manager`); at cleanup the previous process-wide
    manager is put back and the manager is closed (`SecretsManager.aclose`).

    Args:
        app: The application (call before it starts).
        manager: The manager to use. None: the installed process-wide manager when there is
            an open one (a test's, say), else a new `SecretsManager()` created at startup.
        close: Close the manager at cleanup. None: only when it was created here.
        required: Keys resolved at startup in one `SecretsManager.get_many` fan-out; when
            one is absent, startup fails with `MissingSecretError` naming every absent key.
            Their documents are then cached, so the first requests call no provider.
    """
    required = tuple(required)

    async def secrets_context(app: web.Application) -> AsyncIterator[None]:
        chosen, created, previous, installed = await start_with_required(
            manager, None, required, close
        )
        app[SECRETS_MANAGER_KEY] = chosen
        try:
            yield
        finally:
            await stop_manager(chosen, previous, installed, created if close is None else close)

    app.cleanup_ctx.append(secrets_context)


def get_manager(request: web.Request) -> SecretsManager:
    """Return the manager serving ``request``: its app's (or a parent app's), else the
    process-wide one."""
    manager = request.config_dict.get(SECRETS_MANAGER_KEY)
    return manager if manager is not None else get_secrets_manager()


@overload
async def get_secret(
    request: web.Request, key: str, default: str | None = ..., *, required: Literal[True]
) -> str: ...


@overload
async def get_secret(
    request: web.Request, key: str, default: str, *, required: bool = ...
) -> str: ...


@overload
async def get_secret(
    request: web.Request, key: str, default: str | None = ..., *, required: bool = ...
) -> str | None: ...


async def get_secret(
    request: web.Request, key: str, default: str | None = None, *, required: bool = False
) -> str | None:
    """Return the value of ``key`` through the request's manager.

    Args:
        request: The request being handled.
        key: Any spelling of the key.
        default: Returned when no provider has the key.
        required: Raise ``HTTPServiceUnavailable`` (503, a JSON error naming the key, never a
            value) when the key is absent or a provider failure leaves it unknown.

    Returns:
        The value, or ``default``.

    Raises:
        web.HTTPServiceUnavailable: ``required`` and the secret is not available.
        SecretsError: Not ``required`` and the manager raised (a failing provider with
            ``on_provider_error="raise"``, a closed manager).
    """
    manager = get_manager(request)
    if not required:
        return await manager.get(key, default)
    nkey = normalize_key(key)
    error: SecretsError | None = None
    value: str | None = None
    try:
        value = await manager.get(nkey, default)
    except SecretsError as exc:
        error = exc
    if error is None and value is not None:
        return value
    report = unavailable_report(manager, nkey, error)
    error = None  # the 503 is raised from a frame that no longer holds the error
    if report is None:
        raise_unchained(_unavailable(f"secret {nkey} is not configured"))
    detail, cause = report
    logger.warning("secret %s unavailable for a request: %s", nkey, cause)
    raise_unchained(_unavailable(detail))


def _unavailable(detail: str) -> web.HTTPServiceUnavailable:
    return web.HTTPServiceUnavailable(
        text=json.dumps({"detail": detail}), content_type="application/json"
    )
