"""Developer sessions: tests, faults, lint, typecheck, package, bench.

`nox -s tests` is the command the README and CI run; it needs only Python and pip, and runs the
suite on every Python in `PYTHONS` (a Python missing from the machine is skipped locally and
fails on CI, where nox sets ``error_on_missing_interpreters``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nox
import nox.command

nox.options.sessions = ["tests", "lint", "typecheck", "package"]
nox.options.reuse_existing_virtualenvs = True

#: Every Python `requires-python` admits and the suite is run on.
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
#: The one Python for sessions whose result does not depend on it (ruff, building).
LATEST = PYTHONS[-1]


def tests_impl(session: nox.Session, *pytest_args: str) -> None:
    """Install the package with every extra the tests need and run pytest."""
    session.install("-e", ".[all,test]")
    session.run("pytest", *pytest_args, *session.posargs)


#: Three pytest-xdist workers, each taking a whole test file at a time (a file's servers and
#: fixtures stay in one process). Most tests wait on servers and child processes: on two
#: cores the suite took 485 s serially, 273 s on two workers and 210 s on three.
WORKERS = ("-n", "3", "--dist", "loadfile")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole test suite, real OpenBao and moto servers included (long variants aside)."""
    tests_impl(session, *WORKERS, "-m", "not long")


@nox.session(python=LATEST)
def faults(session: nox.Session) -> None:
    """The long fault and crash variants (CI runs them too), on one Python: they load the file
    provider's atomic writes with thousands of SIGKILLs, which no interpreter version changes;
    their shorter variants run on every Python in `tests`."""
    tests_impl(session, "-m", "long", "tests/faults", "tests/reliability")


@nox.session(python=LATEST)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHONS)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package, for each Python (its own stubs and `sys.version_info`
    branches), then the typed API test file (`reveal_type`/`assert_type` pins)."""
    # pytest: the package ships a pytest plugin module.
    session.install("-e", ".[all]", "mypy>=1.10", "pytest>=8.0", "types-PyYAML")
    version = ["--python-version", str(session.python)]
    session.run("mypy", "--strict", *version, "simpletuner_secrets")
    session.run("mypy", "--strict", *version, "tests/static")


@nox.session(python=LATEST)
def package(session: nox.Session) -> None:
    """Build the wheel and sdist, run `twine check --strict`, and check what they hold
    (`py.typed` among it) with tests/package_check.py."""
    session.install("build>=1.0", "twine>=5.0")
    dist = Path(session.create_tmp()) / "dist"
    shutil.rmtree(dist, ignore_errors=True)  # the session's tmp folder outlives a run
    session.run("python", "-m", "build", "--outdir", str(dist), ".")
    session.run("python", "-c", _TWINE_CHECK, str(dist))
    session.run("python", "tests/package_check.py", str(dist))


# `twine check` over every file of the folder (a glob nox would not expand itself).
_TWINE_CHECK = (
    "import pathlib, subprocess, sys; "
    "files = sorted(str(p) for p in pathlib.Path(sys.argv[1]).iterdir()); "
    "sys.exit(subprocess.call([sys.executable, '-m', 'twine', 'check', '--strict', *files]))"
)


# The benchmark results in the README were measured on 3.11: keep them comparable.
@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmarks against the alternatives, printed as ratios; ``-- --check`` fails the session
    when a target is missed (every script still runs, then the session fails)."""
    session.install("-e", ".[all,test]", "matplotlib")
    failed = []
    for script in (
        "bench_cache.py",
        "bench_manager.py",
        "bench_providers.py",
        "bench_service.py",
        "bench_file_io.py",
        "bench_fleet.py",
        "bench_startup.py",
    ):
        try:
            session.run("python", f"benchmarks/{script}", *session.posargs)
        except nox.command.CommandFailed:  # what session.run raises on a non-zero exit
            failed.append(script)
    session.run("python", "benchmarks/chart.py")
    if failed:
        session.error(f"missed targets or errors in {', '.join(failed)}")
