"""After `os.fork()`, objects of this package reset what the child cannot keep.

Only the forking thread survives a fork: locks another thread held stay held forever, the sync
facade's loop thread is gone (its loop still says it runs), loads in flight will never finish,
and clients share sockets with the parent. Each object that holds such state registers here
and gets `reset_after_fork()` called in the child, before any other code runs there; cached
values are kept. gunicorn ``--preload`` and multiprocessing's fork start method both fork.
"""

from __future__ import annotations

import os

# Imported before this module registers its hook: `random` reseeds itself in a forked child
# from a hook of its own, and hooks run in the order they were registered, so the draws of a
# child's `reset_after_fork` come from the child's own seed (each worker its own schedule).
import random  # noqa: F401
import weakref
from collections.abc import Callable
from typing import Protocol

__all__ = ["ForkAware", "after_fork", "track"]


class ForkAware(Protocol):
    """Something holding locks, threads, loads or clients that a forked child cannot use."""

    def reset_after_fork(self) -> None: ...


_tracked: weakref.WeakSet[ForkAware] = weakref.WeakSet()
_hooks: list[Callable[[], None]] = []


def track(obj: ForkAware) -> None:
    """Have ``obj.reset_after_fork()`` called in every child forked while ``obj`` lives."""
    _tracked.add(obj)


def after_fork(hook: Callable[[], None]) -> None:
    """Have ``hook()`` called in every forked child (module-level state: global locks)."""
    _hooks.append(hook)


def _reset_all() -> None:
    for hook in _hooks:
        hook()
    for obj in list(_tracked):
        obj.reset_after_fork()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reset_all)
