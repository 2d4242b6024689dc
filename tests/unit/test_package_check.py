"""tests/package_check.py, which `nox -s package` runs on the built wheel and sdist, catches a
wheel without py.typed (and accepts a complete pair)."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

from tests.package_check import SDIST_FILES, WHEEL_FILES, problems

METADATA = "Metadata-Version: 2.3\nName: simpletuner-secrets\nRequires-Python: >=3.10\n"
ENTRY_POINTS = "[console_scripts]\nsimpletuner-secrets = simpletuner_secrets.cli:main\n"


def build(dist: Path, wheel_files: tuple[str, ...], sdist_files: tuple[str, ...]) -> None:
    with zipfile.ZipFile(dist / "simpletuner_secrets-0.1.0-py3-none-any.whl", "w") as wheel:
        for name in wheel_files:
            wheel.writestr(name, "")
        wheel.writestr("simpletuner_secrets-0.1.0.dist-info/METADATA", METADATA)
        wheel.writestr("simpletuner_secrets-0.1.0.dist-info/entry_points.txt", ENTRY_POINTS)
    with tarfile.open(dist / "simpletuner_secrets-0.1.0.tar.gz", "w:gz") as sdist:
        for name in sdist_files:
            info = tarfile.TarInfo(f"simpletuner_secrets-0.1.0/{name}")
            sdist.addfile(info, io.BytesIO(b""))


def test_a_complete_wheel_and_sdist_pass(tmp_path: Path) -> None:
    """Every required file present: no problem reported."""
    build(tmp_path, WHEEL_FILES, SDIST_FILES)
    assert problems(tmp_path) == []


def test_a_wheel_without_py_typed_is_reported(tmp_path: Path) -> None:
    """A wheel missing py.typed (type checkers would ignore the annotations) is a problem."""
    build(tmp_path, tuple(f for f in WHEEL_FILES if not f.endswith("py.typed")), SDIST_FILES)
    assert problems(tmp_path) == ["wheel lacks simpletuner_secrets/py.typed"]


def test_the_source_tree_ships_py_typed() -> None:
    """The marker file exists in the package the wheel is built from."""
    root = Path(__file__).resolve().parents[2]
    assert (root / "simpletuner_secrets" / "py.typed").is_file()
    assert "simpletuner_secrets/py.typed" in WHEEL_FILES
