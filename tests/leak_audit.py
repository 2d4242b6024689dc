"""Leak audit: a pytest plugin that fails any test whose logs, errors, warnings or reprs hold a secret.

Load it with ``pytest_plugins = ["tests.leak_audit"]`` (tests/conftest.py does). For each test
it knows these secrets:

- every module-level ``str`` of the test's module whose upper-case name contains ``SECRET``
  (``SECRET``, ``HF_SECRET``, ``SECRET_VALUE``...), except key names such as
  ``CLOUD_WEBHOOK_SECRET`` whose value is the name of a key;
- every value passed to `register_secret` during the test;
- the string values (8 characters or more) that every `InMemorySecretProvider` created during
  the test was given.

and looks for them, after the test, in:

- every log record emitted during the test, from any logger but the third-party ones listed in
  `IGNORED_LOGGERS` (botocore and friends log request bodies at DEBUG on purpose), with its
  formatted traceback; the library's own loggers are turned up to DEBUG for the test, so its
  debug lines are audited too;
- the message of every `SecretsError` (and subclass) created during the test, raised or not,
  caught by ``pytest.raises`` or not;
- every warning emitted during the test (that the filters let through: one turned into an
  error by ``filterwarnings = error`` is an exception, reported as such);
- the locals of every frame of the library on the traceback of every `SecretsError` raised
  out of the library during the test (and of the exceptions chained to it), as
  ``traceback.TracebackException(capture_locals=True)`` renders them: what Sentry's default
  ``include_local_variables`` and ``pytest --showlocals`` record;
- the ``repr`` of every provider, Vault auth object, `SecretsManager`, `SyncSecretsManager` and
  `TTLCache` the test
  created that is still alive at its end (held by a fixture, a module or the library; the
  audit keeps only weak references, so that garbage collection behaves as without it).

A hit fails the test at teardown, naming where the secret was found and showing it masked.
Tests that must put a value in a log on purpose carry ``@pytest.mark.leaks_allowed``.
What subprocesses print (the CLI's ``get``, README examples) is out of scope: only what
happens in the test process is audited.
"""

from __future__ import annotations

import logging
import threading
import traceback
import warnings
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import simpletuner_secrets
from simpletuner_secrets.cache import TTLCache
from simpletuner_secrets.errors import SecretsError
from simpletuner_secrets.keys import KNOWN_KEYS
from simpletuner_secrets.manager import SecretsManager
from simpletuner_secrets.providers.base import SecretProvider
from simpletuner_secrets.providers.vault import VaultAuth
from simpletuner_secrets.sync import SyncSecretsManager
from simpletuner_secrets.testing import InMemorySecretProvider

__all__ = ["IGNORED_LOGGERS", "find_leaks", "mask", "module_secrets", "register_secret"]

#: Shortest value audited: shorter ones would match ordinary words in log lines.
MIN_LENGTH = 6
#: Loggers of third-party libraries that echo request and response bodies at DEBUG by design.
IGNORED_LOGGERS = ("botocore", "aiobotocore", "boto3", "s3transfer", "urllib3", "moto", "werkzeug")
#: Loggers whose level the audit lowers to DEBUG for each test.
LIBRARY_LOGGERS = ("simpletuner_secrets",)
MARKER = "leaks_allowed"

_lock = threading.Lock()
_registered: set[str] = set()
_errors: list[str] = []
_raised: list[BaseException] = []  # held until the test's end, for their tracebacks
_objects: list[weakref.ref[Any]] = []
_installed = False


def register_secret(value: str) -> None:
    """Audit ``value`` in the current test: it must not appear in logs, errors, warnings, reprs.

    Args:
        value: The secret.

    Raises:
        ValueError: ``value`` is shorter than `MIN_LENGTH`; such a short string would match
            ordinary text.
        TypeError: ``value`` is not a str.
    """
    if not isinstance(value, str):
        raise TypeError(f"register_secret takes a str, not {type(value).__name__}")
    if len(value) < MIN_LENGTH:
        raise ValueError(f"a secret to audit must be at least {MIN_LENGTH} characters long")
    with _lock:
        _registered.add(value)


def mask(value: str) -> str:
    """How a secret is shown in the audit's own failure message: never in full."""
    return f"{value[:2]}... ({len(value)} characters)"


def module_secrets(module: ModuleType | None) -> set[str]:
    """The module-level secrets of a test module (see the module docstring)."""
    if module is None:
        return set()
    found = set()
    for name, value in vars(module).items():
        if (
            isinstance(value, str)
            and name.isupper()
            and "SECRET" in name
            and len(value) >= MIN_LENGTH
            and value != name
            and value not in KNOWN_KEYS
        ):
            found.add(value)
    return found


def find_leaks(texts: Iterable[tuple[str, str]], secrets: Iterable[str]) -> list[str]:
    """Return ``"<secret masked> in <where>"`` for every secret found in a text.

    Args:
        texts: ``(where, text)`` pairs: where the text came from, and the text.
        secrets: The values that must not appear.

    Returns:
        One line per (secret, place) found, secrets masked; empty when clean.
    """
    wanted = sorted({s for s in secrets if s}, key=len, reverse=True)
    leaks = []
    for where, text in texts:
        for secret in wanted:
            if secret in text:
                leaks.append(f"{mask(secret)} in {where}")
    return leaks


class _Recorder(logging.Handler):
    """Renders every record it sees (message and traceback) for the audit."""

    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self.texts: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(IGNORED_LOGGERS):
            return
        try:
            text = record.getMessage()
        except Exception:
            text = f"{record.msg} {record.args}"
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + "".join(traceback.format_exception(record.exc_info[1]))
        elif record.exc_text:
            text += "\n" + record.exc_text
        if record.stack_info:
            text += "\n" + record.stack_info
        self.texts.append((f"a {record.levelname} log record of {record.name!r}", text))


# -- tracking what the library creates ---------------------------------------------------


def _track_new(cls: type[Any], *args: Any, **kwargs: Any) -> Any:
    obj = object.__new__(cls)
    with _lock:
        _objects.append(weakref.ref(obj))
    return obj


def _record_error(self: SecretsError, *args: Any) -> None:
    with _lock:
        _errors.append(" ".join(str(a) for a in args))
        _raised.append(self)
    Exception.__init__(self, *args)


#: Where the library's frames come from (a test of the audit itself may add a folder).
PACKAGE_DIRS = [str(Path(simpletuner_secrets.__file__).resolve().parent)]


def _frame_local_texts(errors: list[BaseException]) -> Iterator[tuple[str, str]]:
    """The locals of the library's frames on the tracebacks of ``errors`` (raised ones)."""
    seen: set[int] = set()
    for error in errors:
        tb = error.__traceback__
        if tb is None:
            continue  # created, never raised
        if tb.tb_frame.f_code.co_filename.startswith(tuple(PACKAGE_DIRS)):
            # Caught inside the library (converted or dropped): no error tracker sees it. One
            # that reached the caller has the caller's frame first on its traceback.
            continue
        try:
            summary = traceback.TracebackException.from_exception(error, capture_locals=True)
        except Exception as exc:  # a local whose repr fails (3.11 does not guard it)
            yield "the frame locals of an error", f"<could not be rendered: {exc!r}>"
            continue
        pending = [summary]
        while pending:
            current = pending.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            for frame in current.stack:
                if frame.locals and frame.filename.startswith(tuple(PACKAGE_DIRS)):
                    where = f"a local of {frame.name} ({Path(frame.filename).name}:{frame.lineno})"
                    yield where, "\n".join(f"{k} = {v}" for k, v in frame.locals.items())
            pending += [c for c in (current.__cause__, current.__context__) if c is not None]


def _registering_init(original: Any) -> Any:
    def init(self: InMemorySecretProvider, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        values = [v for v in self._data.values() if isinstance(v, str) and len(v) >= 8]
        with _lock:
            _registered.update(values)

    init.__wrapped__ = original  # type: ignore[attr-defined]
    return init


def _install() -> None:
    # Installed once per process and left in place: CPython cannot give a class back the C
    # slot of object.__new__ once a Python __new__ has been set on it.
    global _installed
    if _installed:
        return
    for cls in (SecretProvider, SecretsManager, SyncSecretsManager, TTLCache, VaultAuth):
        if "__new__" not in vars(cls):
            cls.__new__ = _track_new  # type: ignore[method-assign,assignment]
    InMemorySecretProvider.__init__ = _registering_init(  # type: ignore[method-assign]
        InMemorySecretProvider.__init__
    )
    if "__init__" not in vars(SecretsError):
        SecretsError.__init__ = _record_error  # type: ignore[method-assign,assignment]
    _installed = True


def _live_objects() -> list[Any]:
    with _lock:
        refs = list(_objects)
    return [obj for obj in (ref() for ref in refs) if obj is not None]


def _object_texts(objects: list[Any]) -> Iterator[tuple[str, str]]:
    for obj in objects:
        try:
            text = repr(obj)
        except Exception as exc:  # a repr that fails is not a leak; say so in the text
            text = f"<repr failed: {type(exc).__name__}>"
        yield f"the repr of a {type(obj).__name__}", text


# -- pytest hooks ------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}: the test puts a secret in a log or error on purpose; skip the leak audit",
    )
    _install()


@pytest.fixture(autouse=True)
def _leak_audit(request: pytest.FixtureRequest) -> Iterator[None]:
    """Record what the test emits; afterwards fail it if a secret shows up anywhere."""
    with _lock:
        _registered.clear()
        _errors.clear()
        _raised.clear()
        _objects.clear()
    recorder = _Recorder()
    root = logging.getLogger()
    root.addHandler(recorder)
    levels = {}
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        levels[name] = logger.level
        logger.setLevel(logging.DEBUG)
    try:
        # pytest hands a test's warnings to its hooks only after teardown: too late to fail
        # the test, so they are recorded here too (filters untouched) and handed back below.
        with warnings.catch_warnings(record=True) as caught:
            yield
    finally:
        root.removeHandler(recorder)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # already filtered once: pass each on as it was
        for seen in caught:
            warnings.warn_explicit(seen.message, seen.category, seen.filename, seen.lineno)
    node = request.node
    with _lock:
        secrets = set(_registered)
        errors = list(_errors)
        raised = list(_raised)
        _raised.clear()
    warned = [str(seen.message) for seen in caught]
    if node.get_closest_marker(MARKER) is not None:
        return
    objects = _live_objects()
    secrets |= module_secrets(getattr(node, "module", None))
    if not secrets:
        return
    texts: list[tuple[str, str]] = list(recorder.texts)
    texts += [("the message of a SecretsError", text) for text in errors]
    texts += [("a warning", text) for text in warned]
    texts += list(_object_texts(objects))
    texts += list(_frame_local_texts(raised))
    leaks = find_leaks(texts, secrets)
    if leaks:
        lines = "\n  ".join(dict.fromkeys(leaks))
        pytest.fail(
            f"leak audit: a secret appeared where none may\n  {lines}\n"
            f"(mark the test @pytest.mark.{MARKER} if this is on purpose)",
            pytrace=False,
        )
