"""How `export` writes secrets for other programs: POSIX shell, dotenv, JSON.

Each format reads back exactly the values written: sh through ``eval`` in a POSIX shell, dotenv
through python-dotenv with ``interpolate=False`` (with interpolation on, ``${X}`` is expanded).
"""

from __future__ import annotations

import enum
import json
import re
import shlex
from collections.abc import Mapping

__all__ = ["ExportFormat", "is_variable_name", "render"]

_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_DOTENV_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"}


class ExportFormat(str, enum.Enum):
    """The output formats of `export`."""

    SH = "sh"
    DOTENV = "dotenv"
    JSON = "json"


def is_variable_name(name: str) -> bool:
    """Whether ``name`` can be an environment variable set by a POSIX shell (and by `run`)."""
    return _VARIABLE_NAME.match(name) is not None


def _dotenv_quote(value: str) -> str:
    # Double quotes with backslash escapes for \ " and line breaks: python-dotenv's reading of
    # a double-quoted value, which holds any character, newlines and quotes included.
    return '"' + "".join(_DOTENV_ESCAPES.get(c, c) for c in value) + '"'


def render(values: Mapping[str, str], fmt: ExportFormat) -> str:
    """Render ``values`` (variable name to value) in ``fmt``, ending with a newline.

    Args:
        values: The variables, in output order. For sh and dotenv every name must pass
            `is_variable_name`.
        fmt: The format.

    Returns:
        The text to print.
    """
    if fmt is ExportFormat.JSON:
        return json.dumps(dict(values), indent=2, ensure_ascii=False) + "\n"
    if fmt is ExportFormat.SH:
        # shlex.quote: single quotes, each ' as '"'"'; inside single quotes a POSIX shell
        # expands nothing ($(...), `...`, $VAR, \ and newlines stay as they are).
        lines = [f"export {name}={shlex.quote(value)}" for name, value in values.items()]
    else:
        lines = [f"{name}={_dotenv_quote(value)}" for name, value in values.items()]
    return "".join(line + "\n" for line in lines)
