"""The process-wide manager: `get_secrets_manager` and its kin, and the retirement that
`SecretsManager.reset()` applies so that lookups through the old manager answer from the new.

The manager module registers how a new manager is built (`build_with`) when it is imported;
this module names the class for types only, so the two import nothing of each other in a cycle.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import _fork
from .errors import SecretsError

if TYPE_CHECKING:
    from .manager import SecretsManager

__all__ = [
    "build_with",
    "closed_get",
    "get_secrets_manager",
    "installed_manager",
    "replace_installed",
    "retire_installed",
    "set_secrets_manager",
    "successor_of",
]


def _unregistered() -> SecretsManager:
    raise RuntimeError("simpletuner_secrets.manager registers the factory when imported")


_build: Callable[[], SecretsManager] = _unregistered
_instance: SecretsManager | None = None
_instance_lock = threading.Lock()
# Managers that `reset()` took out: lookups that meet one closed retry on the new manager.
_retired: weakref.WeakSet[SecretsManager] = weakref.WeakSet()


def _new_instance_lock() -> None:
    global _instance_lock
    _instance_lock = threading.Lock()


_fork.after_fork(_new_instance_lock)


def build_with(factory: Callable[[], SecretsManager]) -> None:
    """Have `get_secrets_manager` build a new process-wide manager with ``factory()``."""
    global _build
    _build = factory


def get_secrets_manager() -> SecretsManager:
    """Return the process-wide manager, creating it once (thread-safe), or again once the
    installed one is closed."""
    global _instance
    manager = _instance
    if manager is None or manager.closed:
        with _instance_lock:
            if _instance is None or _instance.closed:
                # A closed process-wide manager (its app shut down, `aclose()` called) is
                # replaced rather than handed out to fail every call.
                _instance = _build()
            manager = _instance
    return manager


def set_secrets_manager(manager: SecretsManager) -> None:
    """Install ``manager`` as the process-wide manager."""
    global _instance
    with _instance_lock:
        _instance = manager


def installed_manager() -> SecretsManager | None:
    """The process-wide manager when one is installed, without creating one (for the
    integrations and the pytest plugin)."""
    return _instance


def replace_installed(expected: SecretsManager, replacement: SecretsManager | None) -> None:
    """Install ``replacement`` (None: nothing) if ``expected`` is still the installed manager."""
    global _instance
    with _instance_lock:
        if _instance is expected:
            _instance = replacement


def retire_installed() -> SecretsManager | None:
    """Take the process-wide manager out (`SecretsManager.reset`) and return it, retired:
    lookups still in flight on it, or made through a reference taken before, answer from the
    next process-wide manager (`successor_of`) rather than fail with "closed"."""
    global _instance
    with _instance_lock:
        old, _instance = _instance, None
    if old is not None:
        _retired.add(old)
    return old


def successor_of(manager: SecretsManager) -> SecretsManager | None:
    """The process-wide manager when `retire_installed` retired ``manager`` (and it is not
    ``manager`` again); otherwise None."""
    if manager not in _retired:
        return None
    current = get_secrets_manager()
    return None if current is manager else current


async def closed_get(manager: SecretsManager, key: str, default: str | None) -> str | None:
    """A lookup that met ``manager`` closed: answered by its successor (`successor_of`).

    Raises:
        SecretsError: ``manager`` has no successor (it was closed, not retired).
    """
    successor = manager.successor()
    if successor is None:
        raise SecretsError(
            "this SecretsManager is closed; SecretsManager.reset() and "
            "get_secrets_manager() give a new process-wide one"
        )
    return await successor.get(key, default)
