"""FastAPI integration: secrets as dependencies, and a lifespan that owns the manager.

``Depends(secret("HF_TOKEN"))`` injects a value or answers 503 with a JSON error (never a
value); `secrets_lifespan` creates the manager at startup and closes it at shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal, overload

from . import (
    ManagerFactory,
    missing_extra,
    raise_unchained,
    start_with_required,
    stop_manager,
    unavailable_report,
)

try:
    from fastapi import HTTPException
    from starlette.applications import Starlette
    from starlette.requests import HTTPConnection
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise missing_extra("FastAPI", "fastapi") from exc

from ..errors import SecretsError
from ..keys import normalize_key
from ..manager import SecretsManager, get_secrets_manager

__all__ = ["get_manager", "secret", "secrets_lifespan"]

logger = logging.getLogger("simpletuner_secrets")

#: The ``app.state`` attribute that holds the app's manager.
STATE_ATTRIBUTE = "secrets_manager"

_StatelessLifespan = Callable[[Any], AbstractAsyncContextManager[None]]
_StatefulLifespan = Callable[[Any], AbstractAsyncContextManager[Mapping[str, Any]]]


def get_manager(connection: HTTPConnection) -> SecretsManager:
    """Return the manager serving ``connection``: the app's (see `secrets_lifespan`), else
    the process-wide one.

    Usable as a dependency itself: ``Depends(get_manager)``.

    Args:
        connection: The request or websocket.

    Returns:
        ``app.state.secrets_manager`` when set, else `get_secrets_manager()`.
    """
    manager = getattr(connection.app.state, STATE_ATTRIBUTE, None)
    if isinstance(manager, SecretsManager):
        return manager
    return get_secrets_manager()


@overload
def secret(
    key: str, *, required: Literal[True] = ..., manager: SecretsManager | None = ...
) -> Callable[[HTTPConnection], Awaitable[str]]: ...


@overload
def secret(
    key: str, *, required: Literal[False], manager: SecretsManager | None = ...
) -> Callable[[HTTPConnection], Awaitable[str | None]]: ...


@overload
def secret(
    key: str, *, required: bool, manager: SecretsManager | None = ...
) -> Callable[[HTTPConnection], Awaitable[str | None]]: ...


def secret(
    key: str, *, required: bool = True, manager: SecretsManager | None = None
) -> Callable[[HTTPConnection], Awaitable[str | None]]:
    """Build a dependency that injects the value of ``key``.

    Use it as ``token: str = Depends(secret("HF_TOKEN"))`` or
    ``Annotated[str, Depends(secret("HF_TOKEN"))]``.

    Args:
        key: Any spelling of the key (normalized once, here).
        required: When True, an absent secret answers HTTP 503
            ``{"detail": "secret HF_TOKEN is not configured"}``, and one that a failing
            provider leaves unknown ``{"detail": "secret HF_TOKEN is unavailable: provider
            vault failed"}`` (the cause is logged); when False it injects None.
        manager: The manager to read from; by default the app's (`secrets_lifespan`), else
            the process-wide one.

    Returns:
        An async dependency callable.

    Raises:
        ValueError: The key is empty or invalid.
    """
    nkey = normalize_key(key)
    fixed = manager

    async def dependency(connection: HTTPConnection) -> str | None:
        source = fixed if fixed is not None else get_manager(connection)
        error: SecretsError | None = None
        value: str | None = None
        try:
            value = await source.get(nkey)
        except SecretsError as exc:
            error = exc
        if error is None and (value is not None or not required):
            return value
        report = unavailable_report(source, nkey, error)
        error = None  # the 503 is raised from a frame that no longer holds the error
        if report is None:
            raise_unchained(
                HTTPException(status_code=503, detail=f"secret {nkey} is not configured")
            )
        # A failing provider (raised, or skipped while the key is unknown) or a closed manager:
        # the client learns which secret and which provider, the log the cause.
        detail, cause = report
        logger.warning("secret %s unavailable for a request: %s", nkey, cause)
        raise_unchained(HTTPException(status_code=503, detail=detail))

    dependency.__name__ = dependency.__qualname__ = f"secret_{nkey.lower()}"
    return dependency


@overload
def secrets_lifespan(
    manager_factory: ManagerFactory | None = ...,
    *,
    lifespan: _StatelessLifespan | None = ...,
    close: bool | None = ...,
    required: Iterable[str] = ...,
) -> _StatelessLifespan: ...


@overload
def secrets_lifespan(
    manager_factory: ManagerFactory | None = ...,
    *,
    lifespan: _StatefulLifespan,
    close: bool | None = ...,
    required: Iterable[str] = ...,
) -> _StatefulLifespan: ...


def secrets_lifespan(
    manager_factory: ManagerFactory | None = None,
    *,
    lifespan: Callable[[Any], AbstractAsyncContextManager[Any]] | None = None,
    close: bool | None = None,
    required: Iterable[str] = (),
) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
    """Build a lifespan that sets up the app's manager: ``FastAPI(lifespan=secrets_lifespan())``.

    At startup the manager is stored on ``app.state.secrets_manager`` and installed as the
    process-wide manager (`set_secrets_manager`); at shutdown the previous process-wide
    manager is put back and the manager is closed (`SecretsManager.aclose`).

    Args:
        manager_factory: Builds the manager (a callable returning it, or an awaitable of it).
            None: the installed process-wide manager when there is an open one (so a test
            that installed its own, as the pytest plugin does, reaches the app), else a new
            `SecretsManager()`.
        lifespan: Your own lifespan, run inside this one (secrets are ready when it starts
            and still open while it stops); the state it yields is passed on.
        close: Close the manager at shutdown. None: only when this lifespan created it.
        required: Keys resolved at startup in one `SecretsManager.get_many` fan-out; when
            one is absent, startup fails with `MissingSecretError` naming every absent key.
            Their documents are then cached, so the first requests call no provider.

    Returns:
        A lifespan callable taking the app.

    Raises:
        MissingSecretError: At startup, a required key is absent.
    """
    required = tuple(required)

    @asynccontextmanager
    async def run(app: Starlette) -> AsyncIterator[Any]:
        manager, created, previous, installed = await start_with_required(
            None, manager_factory, required, close
        )
        had_state = hasattr(app.state, STATE_ATTRIBUTE)
        old_state = getattr(app.state, STATE_ATTRIBUTE, None)
        setattr(app.state, STATE_ATTRIBUTE, manager)
        try:
            if lifespan is None:
                yield None
            else:
                async with lifespan(app) as state:
                    yield state
        finally:
            if had_state:
                setattr(app.state, STATE_ATTRIBUTE, old_state)
            else:
                delattr(app.state, STATE_ATTRIBUTE)
            await stop_manager(manager, previous, installed, created if close is None else close)

    return run
