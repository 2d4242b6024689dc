"""Framework integrations: FastAPI, aiohttp and pydantic-settings, one optional module each.

Import the one you use (``simpletuner_secrets.integrations.fastapi``, ``.aiohttp``,
``.pydantic``); each needs its extra, and nothing here imports a framework. The helpers below
are shared by those modules and the pytest plugin; they are not part of the public API.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import NoReturn

from .. import _fork
from .._rotation import missing
from ..errors import SecretsError
from ..keys import normalize_key
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


# Each manager installed by an app (or a test fixture) -> the manager its shutdown puts back.
# Apps do not always stop in the reverse order of their start (aiohttp cleans a parent app
# before its sub-apps): a manager stopping under another one hands its own predecessor on.
_replaced: dict[SecretsManager, SecretsManager | None] = {}
_replaced_lock = threading.Lock()


def _new_replaced_lock() -> None:
    global _replaced_lock
    _replaced_lock = threading.Lock()


_fork.after_fork(_new_replaced_lock)


def install(manager: SecretsManager, previous: SecretsManager | None) -> None:
    """Install ``manager`` as the process-wide manager, remembering what it replaced."""
    with _replaced_lock:
        _replaced[manager] = previous
    set_secrets_manager(manager)


def uninstall(manager: SecretsManager, previous: SecretsManager | None) -> None:
    """Put back what ``manager`` replaced, if it is still installed; if it is not, whatever
    was installed on top of it will put back ``manager``'s own predecessor instead."""
    with _replaced_lock:
        previous = _replaced.pop(manager, previous)
        for other, target in _replaced.items():
            if target is manager:
                _replaced[other] = previous
    replace_installed(manager, None if previous is not None and previous.closed else previous)


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
        created = manager is not previous  # a factory may hand back the installed manager
    if manager is None:
        if previous is not None and not previous.closed:
            return previous, False, previous, False
        manager = SecretsManager()
        created = True
    if manager is previous:
        return manager, created, previous, False
    install(manager, previous)
    return manager, created, previous, True


async def require_all(manager: SecretsManager, keys: Iterable[str]) -> None:
    """Resolve ``keys`` in one `SecretsManager.get_many` (warming the cache for the first
    requests) and fail naming every absent one.

    Raises:
        MissingSecretError: Some are absent (all of them named).
    """
    values = await manager.get_many(normalize_key(k) for k in keys)
    absent = [k for k, v in values.items() if v is None]
    values.clear()  # the values found: not for the frame locals of the error's traceback
    if absent:
        raise missing(manager.resolver, *absent)


async def start_with_required(
    manager: SecretsManager | None,
    factory: ManagerFactory | None,
    required: Iterable[str],
    close: bool | None,
) -> tuple[SecretsManager, bool, SecretsManager | None, bool]:
    """`start_manager`, then resolve the ``required`` keys (the cache warmed for the first
    requests); when one is absent or fails, undo the start (closing the manager as shutdown
    would: ``close``, or None for "when created here") and raise.

    Raises:
        MissingSecretError: Required keys are absent (all named).
        ProviderError: With ``on_provider_error="raise"``, a provider failed.
    """
    chosen, created, previous, installed = await start_manager(manager, factory)
    try:
        await require_all(chosen, required)
    except BaseException:
        await stop_manager(chosen, previous, installed, created if close is None else close)
        raise
    return chosen, created, previous, installed


async def stop_manager(
    manager: SecretsManager,
    previous: SecretsManager | None,
    installed: bool,
    close: bool,
) -> None:
    """Undo `start_manager`: uninstall the manager if this app installed it, close it if asked."""
    if installed:
        uninstall(manager, previous)
    if close:
        await manager.aclose()
        # Closed here: it must not stay the process-wide manager (every lookup would fail).
        replace_installed(manager, None)


def unavailable_report(
    manager: SecretsManager, nkey: str, error: SecretsError | None
) -> tuple[str, str] | None:
    """Why a required secret cannot be served, when it is not simply absent.

    Args:
        manager: The manager that was asked.
        nkey: The normalized key.
        error: What the lookup raised (``on_provider_error="raise"``, a closed manager), or
            None when it answered None.

    Returns:
        ``(detail for the client, cause for the log)``: the detail names the key and the
        failing providers, never an error's text; the cause (error messages are value-free)
        goes to the log only. None when no provider failed: the secret is not configured.
    """
    if error is not None:
        provider = getattr(error, "provider", "")
        detail = f"secret {nkey} is unavailable" + (
            f": provider {provider} failed" if provider else ""
        )
        return detail, f"{type(error).__name__}: {error}"
    # Skip mode answered None: if a provider that could hold the key is failing, the key is
    # unknown rather than absent.
    failing = [name for name, counts in manager.stats()["providers"].items() if counts["failing"]]
    if not failing:
        return None
    names = ", ".join(failing)
    which = f"provider {names}" if len(failing) == 1 else f"providers {names}"
    return (
        f"secret {nkey} is unavailable: {which} failed",
        f"{which} failing and skipped (on_provider_error='skip'); see the provider warnings",
    )


def raise_unchained(error: BaseException) -> NoReturn:
    """Raise ``error`` with no cause and no context, whatever is being handled around it.

    On Python 3.10 a coroutine woken by a task that failed runs with that failure still marked
    as being handled, even after its own ``except`` block ended, so a 503 raised there would
    carry the provider's error as its context (error trackers record it, frames included).
    """
    try:
        raise error from None
    finally:
        error.__context__ = None
