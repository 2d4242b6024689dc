"""NumberText: a number read from a secrets file, kept as the text it was written as.

Its own module so that JSON files are read without importing PyYAML (`_yaml_text`).
"""

from __future__ import annotations

__all__ = ["NumberText"]


class NumberText(str):
    """A number (in JSON, also NaN or Infinity) as the text it was written as."""

    __slots__ = ()
