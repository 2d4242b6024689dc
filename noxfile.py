"""Developer sessions: tests, lint, typecheck, bench.

`nox -s tests` is the command the README and CI run; it needs only Python and pip.
"""

from __future__ import annotations

import nox
import nox.command

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = ["3.11"]


def tests_impl(session: nox.Session, *pytest_args: str) -> None:
    """Install the package with every extra the tests need and run pytest."""
    session.install("-e", ".[all,test]")
    session.run("pytest", *pytest_args, *session.posargs)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite, real OpenBao and moto servers included (long variants aside)."""
    tests_impl(session, "-m", "not long")


@nox.session(python=PYTHON)
def faults(session: nox.Session) -> None:
    """The long fault and crash variants (CI runs them too)."""
    tests_impl(session, "-m", "long", "tests/faults", "tests/reliability")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    # pytest: the package ships a pytest plugin module.
    session.install("-e", ".[all]", "mypy>=1.10", "pytest>=8.0", "types-PyYAML")
    session.run("mypy", "--strict", "simpletuner_secrets")


@nox.session(python=PYTHON)
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
        "bench_startup.py",
    ):
        try:
            session.run("python", f"benchmarks/{script}", *session.posargs)
        except nox.command.CommandFailed:  # what session.run raises on a non-zero exit
            failed.append(script)
    session.run("python", "benchmarks/chart.py")
    if failed:
        session.error(f"missed targets or errors in {', '.join(failed)}")
