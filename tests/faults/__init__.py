"""Fault injection against the real back-ends: a TCP fault proxy, then Vault, AWS and file faults.

The helpers here are shared by the fault test modules: the timing budget every case is held
to, the warnings the library logged, and an optional record of measured times.
"""

from __future__ import annotations

import json
import logging
import os
import time

import pytest

#: Cache TTL of the managers under test (jittered +-10% by the manager).
TTL = 0.3
#: The managers' provider_timeout.
TIMEOUT = 1.0
#: What a faulty lookup may take beyond TIMEOUT on a busy two-core machine.
MARGIN = 0.5
#: A sleep that outlasts any jittered TTL.
PAST_TTL = TTL * 1.1 + 0.05

#: When set, every measured time is appended to this file as one JSON line.
TIMINGS_ENV = "SIMPLETUNER_FAULT_TIMINGS"


def record(case: str, **seconds: float) -> None:
    """Append measured times of ``case`` to the file named by ``$SIMPLETUNER_FAULT_TIMINGS``."""
    target = os.environ.get(TIMINGS_ENV)
    if not target:
        return
    line = {"case": case, **{k: round(v, 4) for k, v in seconds.items()}}
    with open(target, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


def library_warnings(caplog: pytest.LogCaptureFixture, containing: str = "") -> list[str]:
    """The WARNING (or worse) messages logged by the library, optionally filtered."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("simpletuner_secrets")
        and r.levelno >= logging.WARNING
        and containing in r.getMessage()
    ]


class Stopwatch:
    """Seconds since creation, on the monotonic clock."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start
