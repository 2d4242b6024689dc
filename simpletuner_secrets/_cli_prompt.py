"""The value of `set`: from standard input, or typed at a hidden prompt on the terminal.

The prompt runs before any event loop exists: inside `asyncio.run` the loop's own Ctrl-C
handler would only ask a task that never yields to stop, and the first Ctrl-C would be lost.
"""

from __future__ import annotations

import contextlib
import getpass
import sys

__all__ = ["Interrupted", "NoValueGiven", "read_value"]


class NoValueGiven(Exception):
    """End of input (Ctrl-D) at the hidden prompt."""


class Interrupted(Exception):
    """Ctrl-C at the hidden prompt; the terminal has been moved to a fresh line."""


def _fresh_line() -> None:
    # Where getpass wrote its prompt: the controlling terminal, else stderr.
    try:
        with open("/dev/tty", "w") as tty:
            tty.write("\n")
    except OSError:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write("\n")
            sys.stderr.flush()


def read_value(key: str) -> str:
    """Read the value to store under ``key``.

    From a terminal, a hidden prompt (nothing echoed); otherwise all of standard input, one
    trailing newline stripped.

    Args:
        key: The key, as shown in the prompt.

    Returns:
        The value (possibly empty).

    Raises:
        NoValueGiven: End of input at the prompt.
        Interrupted: Ctrl-C at the prompt.
    """
    if not sys.stdin.isatty():
        value = sys.stdin.read()
        return value[:-1] if value.endswith("\n") else value
    try:
        return getpass.getpass(f"value for {key}: ")
    except EOFError:
        _fresh_line()
        raise NoValueGiven from None
    except KeyboardInterrupt:
        _fresh_line()
        raise Interrupted from None
