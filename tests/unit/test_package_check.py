"""tests/package_check.py, which `nox -s package` runs on the built wheel and sdist, catches a
wheel without py.typed (and accepts a complete pair)."""

from __future__ import annotations

import ast
import io
import sys
import tarfile
import zipfile
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = None

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


def test_nox_runs_every_python_the_package_admits() -> None:
    """noxfile's PYTHONS are 3.10 to 3.13, requires-python's floor is the first of them, and
    the trove classifiers name each; tests and typecheck run on all of them, the long faults
    on the newest (their shorter variants are in tests)."""
    root = Path(__file__).resolve().parents[2]
    tree = ast.parse((root / "noxfile.py").read_text())
    assigned = {
        node.targets[0].id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    pythons = ast.literal_eval(assigned["PYTHONS"])
    assert pythons == ["3.10", "3.11", "3.12", "3.13"]
    sessions = {
        node.name: ast.unparse(node.decorator_list[0])
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.decorator_list
    }
    for name in ("tests", "typecheck"):
        assert sessions[name] == "nox.session(python=PYTHONS)", name
    assert sessions["faults"] == "nox.session(python=LATEST)"
    assert ast.literal_eval(assigned["WORKERS"])[0] == "-n"
    text = (root / "pyproject.toml").read_text()
    if tomllib is not None:
        project = tomllib.loads(text)["project"]
        assert project["requires-python"] == f">={pythons[0]}"
        for version in pythons:
            assert f"Programming Language :: Python :: {version}" in project["classifiers"]
    else:
        assert f'requires-python = ">={pythons[0]}"' in text
