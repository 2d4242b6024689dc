"""Reading a secrets file as SPEC 12 says: YAML 1.2 booleans only, and a file emptied while the
service runs (an editor's save) keeps serving the last good document, with a warning."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from simpletuner_secrets.providers.file import FileSecretProvider
from tests.clock import FakeClock

SECRET = "hf_reading_do_not_leak_7731"
EMPTY_WARNING = "is empty; serving the last good document"


def write(path: Path, text: str) -> Path:
    with open(path, "w") as out:  # in place, as an editor saving over the file does
        out.write(text)
    path.chmod(0o600)
    return path


def library_records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "simpletuner_secrets" and r.levelno == level
    ]


async def test_yaml_yes_no_on_off_are_strings_and_true_false_any_case_are_booleans(
    tmp_path: Path,
) -> None:
    """YAML 1.2: yes/no/on/off (any spelling) come back as written, at the top level and in
    nested values, and as keys; true/false in any case are booleans (JSON text)."""
    path = write(
        tmp_path / "s.yaml",
        "A: yes\nB: No\nC: on\nD: OFF\nE: y\nF: True\nG: FALSE\nH: tRuE\n"
        "NESTED: {x: on, y: [yes, false]}\non: key\n",
    )
    provider = FileSecretProvider(path)
    document = dict(await provider.document())
    assert document == {
        "A": "yes",
        "B": "No",
        "C": "on",
        "D": "OFF",
        "E": "y",
        "F": "true",
        "G": "false",
        "H": "true",
        "NESTED": '{"x":"on","y":["yes",false]}',
        "ON": "key",
    }


async def test_file_emptied_while_running_serves_the_last_good_document(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file truncated to 0 bytes (then to white space) after a good read keeps answering the
    last good values, one WARNING per state naming the path and no value; the file written
    again is read at the next check, and an INFO line says so."""
    clock = FakeClock()
    path = write(tmp_path / "s.yaml", f"A: {SECRET}\n")
    provider = FileSecretProvider(path, timer=clock)
    assert await provider.get("A") == SECRET
    with caplog.at_level(logging.INFO, logger="simpletuner_secrets"):
        write(path, "")
        for _ in range(3):
            clock.tick(1.5)
            assert await provider.get("A") == SECRET
        write(path, " \n\t\n")
        clock.tick(1.5)
        assert await provider.get("A") == SECRET
        write(path, "A: fixed\n")
        clock.tick(1.5)
        assert await provider.get("A") == "fixed"
    warnings = library_records(caplog, logging.WARNING)
    assert len(warnings) == 2 and all(EMPTY_WARNING in w and str(path) in w for w in warnings)
    infos = library_records(caplog, logging.INFO)
    assert len(infos) == 1 and str(path) in infos[0] and "reads again" in infos[0]
    assert SECRET not in caplog.text


async def test_file_empty_at_the_first_read_is_an_empty_document(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An empty file at the first read, or after the file was deleted, is an empty document
    without a warning: there is no last good document of that file to serve."""
    clock = FakeClock()
    path = write(tmp_path / "s.json", "")
    provider = FileSecretProvider(path, timer=clock)
    with caplog.at_level(logging.WARNING, logger="simpletuner_secrets"):
        assert await provider.get("A") is None
        write(path, json.dumps({"A": SECRET}))
        clock.tick(1.5)
        assert await provider.get("A") == SECRET
        path.unlink()
        clock.tick(1.5)
        assert await provider.get("A") is None
        write(path, "")
        clock.tick(1.5)
        assert await provider.get("A") is None
    assert library_records(caplog, logging.WARNING) == []


async def test_write_to_an_emptied_file_writes_the_new_key_alone(tmp_path: Path) -> None:
    """A write to a file emptied meanwhile edits the empty file (the stale document served to
    readers is not written back into it)."""
    clock = FakeClock()
    path = write(tmp_path / "s.yaml", f"A: {SECRET}\n")
    provider = FileSecretProvider(path, timer=clock)
    assert await provider.get("A") == SECRET
    write(path, "")
    clock.tick(1.5)
    assert await provider.get("A") == SECRET
    await provider.set("B", "bee")
    assert path.read_text() == "B: bee\n"
    assert await provider.get("A") is None


@pytest.mark.parametrize("name", ["s.json", "s.yaml"])
def test_lookups_during_repeated_truncate_and_rewrite_never_answer_none(
    tmp_path: Path, name: str
) -> None:
    """An editor saving over the file again and again (truncate, then write) while lookups
    re-check it each time: every lookup answers a good value, never None."""
    path = tmp_path / name
    bodies = (
        [json.dumps({"A": f"{SECRET}-{i}", "B": "x"}) for i in range(2)]
        if name.endswith(".json")
        else [f"A: {SECRET}-{i}\nB: x\n" for i in range(2)]
    )
    write(path, bodies[0])
    ticks = [0.0]

    def timer() -> float:  # every lookup is due a re-check of the file
        ticks[0] += 2.0
        return ticks[0]

    provider = FileSecretProvider(path, timer=timer)
    stop = threading.Event()
    saves = [0]

    def editor() -> None:
        while not stop.is_set():
            with open(path, "r+") as out:
                out.truncate(0)
                out.flush()
                os.fsync(out.fileno())  # the empty state is really on disk for a moment
                out.write(bodies[saves[0] % 2])
            saves[0] += 1

    async def lookups() -> list[str | None]:
        answers = []
        deadline = time.monotonic() + 60  # a hang guard only: the machine may be busy
        while len(answers) < 400 or saves[0] < 20:
            answers.append(await provider.get("A"))
            assert time.monotonic() < deadline, f"{saves[0]} saves, {len(answers)} lookups"
        return answers

    assert asyncio.run(provider.get("A")) == f"{SECRET}-0"  # the good read before the saves

    thread = threading.Thread(target=editor, daemon=True)
    logging.getLogger("simpletuner_secrets").disabled = True  # many empty states: warnings
    try:
        thread.start()
        answers = asyncio.run(lookups())
    finally:
        stop.set()
        thread.join(10)
        logging.getLogger("simpletuner_secrets").disabled = False
    assert not thread.is_alive()
    assert provider.parses > 10, "the lookups did not re-read the file"
    assert None not in answers
    assert set(answers) <= {f"{SECRET}-0", f"{SECRET}-1"}


async def test_yaml_numbers_inside_objects_and_arrays_keep_their_text(tmp_path: Path) -> None:
    """Inside a YAML object or array a JSON number keeps the text written (1.50, 2.0e+3, -0),
    as in JSON files; YAML-only forms are converted (0x1F is 31); keys follow json.dumps."""
    path = write(tmp_path / "s.yaml", "N: {a: 1.50, b: [2.0e+3, -0, 0x1F], 1: x}\nM: [1.50]\n")
    document = dict(await FileSecretProvider(path).document())
    assert document == {"N": '{"a":1.50,"b":[2.0e+3,-0,31],"1":"x"}', "M": "[1.50]"}


class _EmptiedMidRead(FileSecretProvider):
    """Reads the file empty once, with the stat of the full file: as when an editor truncates
    it between the provider's stat and its read (then writes it again, same size, same tick)."""

    empty_reads = 0

    def _read_bytes(self, path: Path, st: os.stat_result, *, is_link: bool) -> Any:
        raw, fst = super()._read_bytes(path, st, is_link=is_link)
        if self.empty_reads:
            self.empty_reads -= 1
            return b"", fst
        return raw, fst


async def test_file_emptied_mid_read_is_read_again_at_the_next_check(tmp_path: Path) -> None:
    """A read that finds the file empty while its stat says otherwise is not remembered as
    that file state: at the next check the same (full) file is read again and served."""
    clock = FakeClock()
    path = write(tmp_path / "s.json", json.dumps({"A": "old-value"}))
    provider = _EmptiedMidRead(path, timer=clock)
    assert await provider.get("A") == "old-value"
    write(path, json.dumps({"A": "new-value"}))
    provider.empty_reads = 1
    clock.tick(1.5)
    assert await provider.get("A") == "old-value"  # the last good document meanwhile
    clock.tick(1.5)
    assert await provider.get("A") == "new-value"
