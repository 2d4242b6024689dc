"""Check the built wheel and sdist hold what an installed package needs (`nox -s package`).

Run as ``python tests/package_check.py DIST_DIR`` after ``python -m build --outdir DIST_DIR``;
exits non-zero naming every problem. The unit suite imports `problems` for its own checks.
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

#: Files the wheel must carry, relative to its root.
WHEEL_FILES = (
    "simpletuner_secrets/__init__.py",
    "simpletuner_secrets/py.typed",
    "simpletuner_secrets/providers/aws.py",
    "simpletuner_secrets/providers/vault.py",
    "simpletuner_secrets/integrations/fastapi.py",
)
#: Files the sdist must carry, relative to its top folder.
SDIST_FILES = ("pyproject.toml", "README.md", "simpletuner_secrets/py.typed")


def problems(dist: Path) -> list[str]:
    """What is wrong with the one wheel and one sdist in ``dist`` (empty: nothing)."""
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    found: list[str] = []
    if len(wheels) != 1 or len(sdists) != 1:
        return [f"expected one wheel and one sdist in {dist}, found {wheels + sdists}"]
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
        metadata = next((n for n in names if n.endswith(".dist-info/METADATA")), None)
        entry_points = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), "")
        found += [f"wheel lacks {name}" for name in WHEEL_FILES if name not in names]
        found += [f"wheel holds a test file {n}" for n in names if n.startswith("tests/")]
        if metadata is None:
            found.append("wheel has no METADATA")
        else:
            text = wheel.read(metadata).decode()
            if "Requires-Python: >=3.10" not in text:
                found.append("METADATA does not say Requires-Python: >=3.10")
        if not entry_points or "simpletuner-secrets = " not in wheel.read(entry_points).decode():
            found.append("wheel does not declare the simpletuner-secrets console script")
    with tarfile.open(sdists[0]) as sdist:
        members = {m.name.partition("/")[2] for m in sdist.getmembers()}
        found += [f"sdist lacks {name}" for name in SDIST_FILES if name not in members]
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: package_check.py DIST_DIR", file=sys.stderr)
        return 2
    found = problems(Path(argv[1]))
    for problem in found:
        print(problem, file=sys.stderr)
    if not found:
        print("wheel and sdist hold what they must (py.typed included)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
