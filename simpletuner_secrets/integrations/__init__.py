"""Framework integrations: FastAPI, aiohttp and pydantic-settings, one optional module each.

Import the one you use (``simpletuner_secrets.integrations.fastapi``, ``.aiohttp``,
``.pydantic``); each needs its extra, and nothing here imports a framework. The helpers below
are shared by those modules and the pytest plugin; they are not part of the public API.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from ..manager import (
    SecretsManager,
    installed_manager,
    replace_installed,
    set_secrets_manager,
)

__all__: list[str] = []


#: Builds an app's manager at startup; may return the manager or an awaitable of it.
ManagerFactory = Callable[[], "SecretsManager | Awaitable[SecretsManager]"]


def missing_extra(framework: str, extra: str) -> ImportError:
    """The ImportError raised when an integration's framework is not installed."""
    return ImportError(
        f"simpletuner_secrets.integrations.{extra} needs {framework}: "
        f"pip install 'simpletuner-secrets[{extra}]'"
    )


def uninstall(manager: SecretsManager, previous: SecretsManager | None) -> None:
    """Put ``previous`` back as the process-wide manager, if ``manager`` is still the one."""
    replace_installed(manager, previous)


async def start_manager(
    manager: SecretsManager | None, factory: ManagerFactory | None
) -> tuple[SecretsManager, bool, SecretsManager | None, bool]:
    """Pick the app's manager at startup and install it as the process-wide one.

    The order: ``manager``, else what ``factory`` builds, else the installed process-wide
    manager (when open), else a new `SecretsManager`.

    Returns:
        The manager; whether it was created here; the manager installed before; whether this
        call installed it (and so must uninstall it at shutdown).
    """
    previous = installed_manager()
    created = False
    if manager is None and factory is not None:
        built = factory()
        manager = await built if inspect.isawaitable(built) else built
        created = True
    if manager is None:
        if previous is not None and not previous.closed:
            return previous, False, previous, False
        manager = SecretsManager()
        created = True
    if manager is previous:
        return manager, created, previous, False
    set_secrets_manager(manager)
    return manager, created, previous, True


async def stop_manager(
    manager: SecretsManager,
    previous: SecretsManager | None,
    installed: bool,
    close: bool,
) -> None:
    """Undo `start_manager`: uninstall the manager if this app installed it, close it if asked."""
    if installed:
        uninstall(manager, None if previous is not None and previous.closed else previous)
    if close:
        await manager.aclose()
