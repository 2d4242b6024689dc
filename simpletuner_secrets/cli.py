"""The `simpletuner-secrets` command line, built on the public API only."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    from . import __version__

    print(f"simpletuner-secrets {__version__}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
