"""What the built-in providers share: one settings rule, URL masking, and warn-once state."""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .. import _fork

__all__ = ["WarnOnce", "display_url", "first_setting", "mask_url", "setting", "text_setting"]


def text_setting(value: Any) -> str | None:
    """A setting as stripped text; None, empty and whitespace-only count as unset."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def first_setting(*values: Any) -> str | None:
    """The first of ``values`` that is set, by `text_setting`'s rule."""
    for value in values:
        text = text_setting(value)
        if text is not None:
            return text
    return None


def setting(
    argument: Any,
    config: Mapping[str, Any],
    config_key: str,
    environ: Mapping[str, str],
    *env_names: str,
) -> str | None:
    """The one settings rule: argument > ``config[config_key]`` > the first set variable of
    ``env_names``; blank means unset at every level."""
    return first_setting(argument, config.get(config_key), *(environ.get(n) for n in env_names))


def mask_url(url: str | None) -> str | None:
    """The URL with the password of its user info masked, for repr and messages."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        netloc = f"{parts.username or ''}:***@{host}"
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparsable URL>"


def display_url(url: str) -> str:
    """The address without user info, query or fragment, fit for messages and repr."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class WarnOnce:
    """Remembers which conditions were already reported, so each is logged once per streak.

    Thread-safe: providers report from worker threads and several event loops.
    """

    def __init__(self) -> None:
        self._seen: set[Hashable] = set()
        self._lock = threading.Lock()
        _fork.track(self)

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock."""
        self._lock = threading.Lock()

    def first(self, marker: Hashable) -> bool:
        """Whether ``marker`` is reported for the first time (and mark it reported)."""
        with self._lock:
            if marker in self._seen:
                return False
            self._seen.add(marker)
            return True

    def clear(self, marker: Hashable) -> None:
        """Forget ``marker``: the condition ended, so its next occurrence is reported again."""
        with self._lock:
            self._seen.discard(marker)
