"""Writers killed with SIGKILL at random moments: readers never see a partial file, no
acknowledged write is lost, and a crashed writer's temporary file goes with the next write.

A writer process (`crash_writer.py`) acknowledges each write on stdout after it returned; the
test kills it at random moments and restarts it from the first unacknowledged key until the
target is reached, while a thread of the test process reads and parses the raw file in a loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from simpletuner_secrets.providers.file import FileSecretProvider

WRITER = Path(__file__).with_name("crash_writer.py")
ROOT = Path(__file__).resolve().parents[2]
KEY = re.compile(r"K(\d+)\Z")
# The run is bounded by progress, not by a total time (a loaded machine once took 818 s for
# 862 of 1,000 YAML writes): it fails only when no write was acknowledged for this long.
STALL_S = 120.0

# YAML writes parse and dump the whole file with PyYAML's pure-Python loader (the strict loader
# needs Python hooks), about 0.11 ms per key held: 55 ms a write at 1,000 keys, 55 s for the
# whole run. 250 YAML writes keep the same kill pattern within a few seconds.
# The long variants took up to 14 min on a loaded CI machine: their hang guard is the progress
# bound (STALL_S), so pytest-timeout's per-test guard is lifted to an hour.
LONG = [pytest.mark.long, pytest.mark.timeout(3600)]
CASES = [
    pytest.param("s.json", "manager", 1000, id="json-manager-1000"),
    pytest.param("s.yaml", "manager", 250, id="yaml-manager-250"),
    # The long variants (nox -s faults): YAML writes cost ~55 ms each at 1,000 keys.
    pytest.param("s.yaml", "manager", 1000, id="yaml-manager-1000", marks=LONG),
    pytest.param("s.json", "manager", 3000, id="json-manager-3000", marks=LONG),
]


def writer_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VAULT_", "AWS_", "SIMPLETUNER_", "BAO_"))
    }
    env["HOME"] = str(home)
    # The writer imports the package under test (this checkout), not another installed copy.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def parser_for(path: Path) -> Callable[[bytes], Any]:
    if path.suffix == ".json":
        return json.loads
    return lambda raw: yaml.load(raw, Loader=yaml.CSafeLoader)


def temporaries(path: Path) -> set[str]:
    prefix = f".{path.name}.tmp-"
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return set()  # a writer killed before it made the directory
    return {name for name in names if name.startswith(prefix)}


@dataclass(eq=False)
class RawReader(threading.Thread):
    """Reads and parses the raw file in a loop; records anything a reader must never see."""

    path: Path
    stop: threading.Event = field(default_factory=threading.Event)
    reads: int = 0
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True)

    def run(self) -> None:
        parse = parser_for(self.path)
        seen: set[str] = set()
        existed = False
        while not self.stop.is_set():
            try:
                raw = self.path.read_bytes()
            except FileNotFoundError:
                if existed:
                    self.problems.append("the file vanished after it existed")
                continue
            existed = True
            self.reads += 1
            try:
                data = parse(raw)
            except Exception as exc:
                self.problems.append(f"unparsable ({type(exc).__name__}), {len(raw)} bytes")
                continue
            if not isinstance(data, dict):
                self.problems.append(f"not a mapping: {type(data).__name__}")
                continue
            for key, value in data.items():
                match = KEY.match(key)
                if match is None or value != f"value-{match.group(1)}":
                    self.problems.append(f"unexpected entry {key!r}")
            keys = set(data)
            if not keys >= seen:  # every write keeps all earlier keys
                self.problems.append(f"went backwards: lost {sorted(seen - keys)[:3]}")
            seen = keys
            time.sleep(0.001)  # leave the writer most of one of the two cores


@dataclass
class Run:
    acked: list[str]
    returncode: int
    killed: bool


def run_writer(
    path: Path, start: int, count: int, mode: str, kill_after: float | None, env: dict[str, str]
) -> Run:
    """Start a writer; once it is ready, SIGKILL it after ``kill_after`` s (None: let it end)."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(path), str(start), str(count), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    # A hang guard: a writer that never says "ready" is killed (the read below then ends).
    watchdog = threading.Timer(STALL_S, proc.kill)
    watchdog.start()
    # Byte by byte from the descriptor: a buffered readline() could swallow the first
    # acknowledged key with "ready", and communicate() reads the descriptor, not that buffer.
    first = b""
    try:
        while not first.endswith(b"\n"):
            chunk = os.read(proc.stdout.fileno(), 1)
            if not chunk:
                break
            first += chunk
    finally:
        watchdog.cancel()
    assert first == b"ready\n", (first, proc.stderr.read() if proc.stderr else "")
    killed = False
    if kill_after is not None:
        time.sleep(kill_after)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed = True
    out, err = proc.communicate(timeout=STALL_S)
    # The writer may have finished between poll() and the signal: then it was not killed.
    killed = killed and proc.returncode == -signal.SIGKILL
    if not killed:
        assert proc.returncode == 0, err
    # Only complete lines count: a key is acknowledged once its line is out.
    lines = out.split("\n")[:-1]
    return Run(acked=lines, returncode=proc.returncode, killed=killed)


@pytest.mark.parametrize(("name", "mode", "target"), CASES)
def test_sigkilled_writers_lose_no_acknowledged_write(
    tmp_path: Path, name: str, mode: str, target: int
) -> None:
    """Writers SIGKILLed at random: readers always parse a whole file, every ack is kept."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    path = tmp_path / "secrets" / name
    env = writer_env(tmp_path)
    reader = RawReader(path)
    reader.start()
    acked: list[str] = []
    runs = kills = kills_leaving_a_temp = 0
    leftovers: set[str] = set()
    last_progress = time.monotonic()
    try:
        while len(acked) < target:
            stalled = time.monotonic() - last_progress
            assert stalled < STALL_S, (
                f"no write acknowledged for {stalled:.0f} s: {len(acked)}/{target} (seed {seed})"
            )
            start = len(acked)
            run = run_writer(path, start, target - start, mode, rng.uniform(0.0, 0.6), env)
            runs += 1
            assert run.acked == [f"K{i}" for i in range(start, start + len(run.acked))]
            acked += run.acked
            if run.acked:
                last_progress = time.monotonic()
                # This run made a successful write: the previous crash's temporaries are gone.
                still = leftovers & temporaries(path)
                assert not still, f"temporaries left by a crash survived a write: {still}"
                leftovers = set()
            if run.killed:
                kills += 1
                assert run.returncode == -signal.SIGKILL
                left = temporaries(path)
                kills_leaving_a_temp += bool(left)
                leftovers |= left
    finally:
        reader.stop.set()
        reader.join(10)
    print(
        f"\n{name}: {len(acked)} acknowledged writes over {runs} runs, {kills} SIGKILLs "
        f"({kills_leaving_a_temp} left a temporary file), {reader.reads} raw reads (seed {seed})"
    )
    assert not reader.problems, (reader.problems[:5], seed)
    assert reader.reads > 0
    assert kills >= 3, f"only {kills} kills (seed {seed})"
    data = parser_for(path)(path.read_bytes())
    assert data == {f"K{i}": f"value-{i}" for i in range(target)}
    assert not temporaries(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("name", ["s.json", "s.yaml"])
def test_temporary_of_a_writer_killed_before_rename_goes_with_the_next_write(
    tmp_path: Path, name: str
) -> None:
    """Killed between fsync and rename: the file keeps its last write, the temp is swept."""
    path = tmp_path / "secrets" / name
    proc = subprocess.run(
        [sys.executable, str(WRITER), str(path), "0", "1", "die-before-rename"],
        capture_output=True,
        text=True,
        env=writer_env(tmp_path),
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout == "K0\n"
    (left,) = temporaries(path)
    temp = path.parent / left
    assert stat.S_IMODE(temp.stat().st_mode) == 0o600
    # The complete new body sat in the temporary file; the file itself still has the old one.
    assert parser_for(path)(temp.read_bytes()) == {"K0": "value-0", "K1": "value-1"}
    assert parser_for(path)(path.read_bytes()) == {"K0": "value-0"}
    provider = FileSecretProvider(path)
    assert asyncio.run(provider.get("K1")) is None
    asyncio.run(provider.set("K2", "value-2"))
    assert not temporaries(path)
    assert parser_for(path)(path.read_bytes()) == {"K0": "value-0", "K2": "value-2"}
