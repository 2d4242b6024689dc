"""FileSecretProvider: formats, locations, re-checks, atomic locked writes, hostile files."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from simpletuner_secrets.errors import SecretFileError
from simpletuner_secrets.providers import file as file_module
from simpletuner_secrets.providers.base import NOT_CACHED
from simpletuner_secrets.providers.file import FileSecretProvider
from tests.clock import FakeClock
from tests.heartbeat import max_gap_during

SECRET = "hf_do_not_leak_this_value"
WRITER_SCRIPT = Path(__file__).with_name("file_provider_writer.py")


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


# -- identity ----------------------------------------------------------------------------


async def test_identity_repr_and_lifecycle(tmp_path: Path) -> None:
    """name is "file", answers are not cached by the manager, repr shows class and path only;
    closing twice is fine and the file is still read afterwards."""
    path = write(tmp_path / "s.json", json.dumps({"A": SECRET}))
    p = FileSecretProvider(path)
    assert p.name == "file" and FileSecretProvider.cache_answers is False
    assert p.is_available()
    assert await p.get("A") == SECRET
    assert repr(p) == f"FileSecretProvider(path={str(path)!r})"
    await p.aclose()
    await p.aclose()
    write(path, json.dumps({"A": SECRET, "B": "added-after-close"}))
    p.invalidate()
    assert await p.get("B") == "added-after-close"


# -- reading -----------------------------------------------------------------------------


async def test_reads_json_and_yaml_with_json_text_for_scalars(tmp_path: Path) -> None:
    """JSON and YAML by extension; numbers and booleans come back as JSON text."""
    j = write(tmp_path / "s.json", json.dumps({"hf-token": "hf_1", "PORT": 5432, "ON": True}))
    y = write(tmp_path / "s.yaml", "HF_TOKEN: hf_2\nport: 5432\nnested: {a: 1}\nflag: false\n")
    yml = write(tmp_path / "s.yml", "A: yml\n")
    other = write(tmp_path / "secrets.conf", '{"A": "json"}')
    pj, py = FileSecretProvider(j), FileSecretProvider(y)
    assert await pj.get("HF_TOKEN") == "hf_1"
    assert await pj.get("port") == "5432"
    assert await pj.get("on") == "true"
    assert await py.get("hf-token") == "hf_2"
    assert await py.get("PORT") == "5432"
    assert await py.get("FLAG") == "false"
    assert await py.get("NESTED") == '{"a":1}'
    assert await FileSecretProvider(yml).get("A") == "yml"
    assert await FileSecretProvider(other).get("A") == "json"


async def test_yaml_numbers_and_dates_keep_their_written_text(tmp_path: Path) -> None:
    """YAML 1.1 octal, sexagesimal, hex and dates are returned as written, not converted."""
    path = write(
        tmp_path / "s.yaml",
        "PIN: 0123\nTIME: 12:34\nHEX: 0x1F\nBIG: 1_000\nDAY: 2024-01-31\nF: 1.50\n",
    )
    p = FileSecretProvider(path)
    assert await p.get("PIN") == "0123"
    assert await p.get("TIME") == "12:34"
    assert await p.get("HEX") == "0x1F"
    assert await p.get("BIG") == "1_000"
    assert await p.get("DAY") == "2024-01-31"
    assert await p.get("F") == "1.50"


async def test_keys_match_by_normalized_form(tmp_path: Path) -> None:
    """replicate-api-token finds REPLICATE_API_TOKEN, and any file spelling is found."""
    path = write(tmp_path / "s.json", json.dumps({"REPLICATE_API_TOKEN": "r8", "hf.token": "hf"}))
    p = FileSecretProvider(path)
    assert await p.get("replicate-api-token") == "r8"
    assert await p.get("HF_TOKEN") == "hf"
    assert await p.get("Hf-Token") == "hf"
    with pytest.raises(ValueError):
        await p.get("  ")


async def test_blank_bom_and_comment_only_files_are_empty_or_readable(tmp_path: Path) -> None:
    """A blank file and a comment-only YAML file are empty; a UTF-8 BOM is accepted."""
    assert await FileSecretProvider(write(tmp_path / "blank.json", " \n")).get("A") is None
    assert await FileSecretProvider(write(tmp_path / "c.yaml", "# nothing\n")).get("A") is None
    bom = tmp_path / "bom.json"
    bom.write_bytes(b'\xef\xbb\xbf{"A": "v"}')
    bom.chmod(0o600)
    assert await FileSecretProvider(bom).get("A") == "v"


async def test_null_and_empty_values_count_as_absent(tmp_path: Path) -> None:
    """A null or empty value in the file is reported as absent."""
    path = write(tmp_path / "s.json", json.dumps({"A": None, "B": "", "C": "c"}))
    p = FileSecretProvider(path)
    assert await p.get("A") is None
    assert await p.get("B") is None
    assert await p.get("C") == "c"


# -- locations ---------------------------------------------------------------------------


async def test_default_locations_in_order(tmp_path: Path) -> None:
    """Without a path: secrets.json, then .yaml, then .yml under ~/.simpletuner."""
    home = tmp_path
    assert FileSecretProvider(home=home).path == home / ".simpletuner" / "secrets.json"
    assert await FileSecretProvider(home=home).get("A") is None
    write(home / ".simpletuner" / "secrets.yml", "A: yml\n")
    assert await FileSecretProvider(home=home).get("A") == "yml"
    write(home / ".simpletuner" / "secrets.yaml", "A: yaml\n")
    p = FileSecretProvider(home=home)
    assert p.path == home / ".simpletuner" / "secrets.yaml"
    assert await p.get("A") == "yaml"
    write(home / ".simpletuner" / "secrets.json", '{"A": "json"}')
    assert await FileSecretProvider(home=home).get("A") == "json"


async def test_default_path_uses_path_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without home= the default directory is under Path.home()."""
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: tmp_path))
    assert FileSecretProvider().path == tmp_path / ".simpletuner" / "secrets.json"


async def test_explicit_path_is_used_before_it_exists(tmp_path: Path) -> None:
    """A configured path that does not exist yet is an empty document, then written to."""
    target = tmp_path / "later" / "secrets.yaml"
    p = FileSecretProvider(target)
    assert p.path == target
    assert await p.get("A") is None
    await p.set("a", "1st")
    assert yaml.safe_load(target.read_text()) == {"A": "1st"}
    assert await p.get("A") == "1st"


# -- freshness ---------------------------------------------------------------------------


async def test_external_edit_seen_within_a_second_without_reparsing_meanwhile(
    tmp_path: Path,
) -> None:
    """Within a second nothing is read; after it, a changed file is parsed again."""
    clock = FakeClock(100.0)
    path = write(tmp_path / "s.json", '{"A": "one"}')
    p = FileSecretProvider(path, timer=clock)
    assert await p.get("A") == "one"
    assert p.parses == 1
    write(path, '{"A": "two", "B": "x"}')
    clock.now += 0.5
    assert await p.get("A") == "one"  # still inside the second
    clock.now += 0.6
    assert await p.get("A") == "two"
    assert await p.get("B") == "x"
    for _ in range(3):
        clock.now += 1.1
        assert await p.get("A") == "two"
    assert p.parses == 2  # unchanged file: a stat, no parse


async def test_no_system_call_within_the_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A warm get inside the second neither stats the file nor hops to a thread."""
    clock = FakeClock(100.0)
    p = FileSecretProvider(write(tmp_path / "s.json", '{"A": "v"}'), timer=clock)
    assert await p.get("A") == "v"

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("I/O on a warm get")

    monkeypatch.setattr(os, "stat", forbidden)
    monkeypatch.setattr(os, "lstat", forbidden)
    monkeypatch.setattr(p, "load_document", forbidden)
    for _ in range(100):
        assert await p.get("a") == "v"
        assert await p.get("MISSING") is None
    assert p.peek("A") == "v"


async def test_invalidate_forces_a_fresh_parse(tmp_path: Path) -> None:
    """invalidate() makes the next get parse the file again, even inside the second."""
    clock = FakeClock(100.0)
    path = write(tmp_path / "s.json", '{"A": "one"}')
    p = FileSecretProvider(path, timer=clock)
    assert await p.get("A") == "one"
    p.invalidate()
    assert p.peek("A") is NOT_CACHED
    assert await p.get("A") == "one"
    assert p.parses == 2
    assert await p.get("A") == "one"
    assert p.parses == 2


async def test_peek_answers_only_while_the_document_is_current(tmp_path: Path) -> None:
    """peek gives the value within the second and NOT_CACHED outside it."""
    clock = FakeClock(100.0)
    p = FileSecretProvider(write(tmp_path / "s.json", '{"A": "v"}'), timer=clock)
    assert p.peek("A") is NOT_CACHED
    await p.get("A")
    assert p.peek("A") == "v"
    assert p.peek("B") is None
    clock.now += 2
    assert p.peek("A") is NOT_CACHED


async def test_concurrent_first_gets_make_one_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 concurrent first lookups of 20 keys call load_document once and parse once."""
    path = write(tmp_path / "s.json", json.dumps({f"K{i}": str(i) for i in range(20)}))
    p = FileSecretProvider(path)
    calls = 0
    original = p.load_document

    async def counting() -> Mapping[str, str]:
        nonlocal calls
        calls += 1
        return await original()

    monkeypatch.setattr(p, "load_document", counting)
    results = await asyncio.gather(*(p.get(f"k{i % 20}") for i in range(200)))
    assert results == [str(i % 20) for i in range(200)]
    assert calls == 1
    assert p.parses == 1


def test_concurrent_first_gets_from_several_event_loops_make_one_read(tmp_path: Path) -> None:
    """First lookups from 4 threads, each with its own event loop, share one read."""
    path = write(tmp_path / "s.json", json.dumps({"A": "v"}))
    p = FileSecretProvider(path)
    original = p._read_document
    reads = 0

    def slow_read(*args: Any) -> Any:
        nonlocal reads
        reads += 1
        time.sleep(0.2)  # keep the load in flight while the other loops arrive
        return original(*args)

    p._read_document = slow_read  # type: ignore[method-assign]
    barrier = threading.Barrier(4)
    results: list[str | None] = []

    def worker() -> None:
        barrier.wait()
        results.append(asyncio.run(p.get("A")))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == ["v"] * 4
    assert reads == 1


async def test_large_read_never_blocks_the_loop(tmp_path: Path) -> None:
    """Reading a ~900 KiB file leaves the event loop free (no gap over 0.1 s)."""
    big = {f"KEY_{i}": "v" * 80 for i in range(10_000)}
    path = write(tmp_path / "s.json", json.dumps(big))
    assert 850 * 1024 < path.stat().st_size < 1024 * 1024

    async def read_three_times() -> None:
        for _ in range(3):
            p = FileSecretProvider(path)
            assert await p.get("KEY_9999") == "v" * 80
            assert p.parses == 1

    gap, _ = await max_gap_during(read_three_times())
    assert gap < 0.1


# -- writing -----------------------------------------------------------------------------


async def test_writes_are_0600_in_a_0700_directory_and_keep_yaml(tmp_path: Path) -> None:
    """set creates the directory 0700 and the file 0600; a YAML file stays YAML."""
    home = tmp_path / "home"
    write(home / ".simpletuner" / "secrets.yaml", "EXISTING: x\nPORT: 5432\n")
    (home / ".simpletuner").chmod(0o700)
    p = FileSecretProvider(home=home)
    await p.set("new-key", "v")
    path = home / ".simpletuner" / "secrets.yaml"
    assert not (home / ".simpletuner" / "secrets.json").exists()
    assert yaml.safe_load(path.read_text()) == {"EXISTING": "x", "NEW_KEY": "v", "PORT": 5432}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fresh = tmp_path / "fresh"
    q = FileSecretProvider(home=fresh)
    await q.set("b", "2")
    await q.set("A", "1")
    written = fresh / ".simpletuner" / "secrets.json"
    assert stat.S_IMODE((fresh / ".simpletuner").stat().st_mode) == 0o700
    assert written.read_text() == '{\n  "B": "2",\n  "A": "1"\n}\n'  # in the order written
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    lock = fresh / ".simpletuner" / ".secrets.json.lock"
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600


async def test_looser_existing_directory_is_kept_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An existing 0755 directory is left as it is, with one warning."""
    directory = tmp_path / "d"
    directory.mkdir()
    directory.chmod(0o755)
    p = FileSecretProvider(directory / "s.json")
    with caplog.at_level(logging.WARNING, logger="simpletuner_secrets"):
        await p.set("A", "1")
        await p.set("B", "2")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o755
    assert caplog.text.count("0755") == 1


async def test_write_is_seen_at_once_by_the_next_get(tmp_path: Path) -> None:
    """After set and delete, the next get sees the change without waiting for the re-check."""
    clock = FakeClock(100.0)
    p = FileSecretProvider(write(tmp_path / "s.json", '{"A": "old"}'), timer=clock)
    assert await p.get("A") == "old"
    await p.set("A", "new")
    assert await p.get("A") == "new"
    assert await p.delete("A") is True
    assert await p.get("A") is None


async def test_set_replaces_every_spelling_and_keeps_other_keys(tmp_path: Path) -> None:
    """set stores the normalized key, dropping other spellings of it, and keeps the rest."""
    path = write(tmp_path / "s.json", json.dumps({"hf-token": "a", "hf.token": "b", "X": 1}))
    p = FileSecretProvider(path)
    await p.set("Hf_Token", "c")
    assert json.loads(path.read_text()) == {"HF_TOKEN": "c", "X": 1}
    assert await p.get("hf-token") == "c"


async def test_delete_and_refused_values(tmp_path: Path) -> None:
    """delete reports whether the key existed; empty and non-text values are refused."""
    path = tmp_path / "s.json"
    p = FileSecretProvider(path)
    assert await p.delete("missing") is False
    assert not path.exists()
    await p.set("A", "1")
    assert await p.delete("a") is True
    assert await p.delete("a") is False
    assert await p.get("A") is None
    assert json.loads(path.read_text()) == {}
    with pytest.raises(ValueError, match="empty"):
        await p.set("A", "")
    with pytest.raises(TypeError):
        await p.set("A", 5)  # type: ignore[arg-type]


async def test_write_to_malformed_file_is_refused_and_leaves_it(tmp_path: Path) -> None:
    """set on a malformed file raises and does not overwrite the user's text."""
    path = write(tmp_path / "s.json", '{"A": "x",,}')
    with pytest.raises(SecretFileError, match="line 1"):
        await FileSecretProvider(path).set("B", "y")
    assert path.read_text() == '{"A": "x",,}'


async def test_write_larger_than_the_limit_is_refused(tmp_path: Path) -> None:
    """A write that would make the file exceed max_file_size is refused."""
    path = tmp_path / "s.json"
    p = FileSecretProvider(path, max_file_size=100)
    with pytest.raises(SecretFileError, match="larger than"):
        await p.set("A", "x" * 200)
    assert not path.exists()


async def test_stale_temporary_is_removed_by_the_next_write(tmp_path: Path) -> None:
    """A crashed writer's temporary file is removed by the next write; others stay."""
    path = tmp_path / "s.json"
    p = FileSecretProvider(path)
    await p.set("A", "1")
    leftover = tmp_path / ".s.json.tmp-deadbeef"
    leftover.write_text("partial")
    unrelated = tmp_path / ".other.json.tmp-cafe"
    unrelated.write_text("not ours")
    await p.set("B", "2")
    assert not leftover.exists()
    assert unrelated.exists()
    assert json.loads(path.read_text()) == {"A": "1", "B": "2"}
    assert sorted(os.listdir(tmp_path)) == [
        ".other.json.tmp-cafe",
        ".s.json.lock",
        "s.json",
    ]


async def test_symlink_at_the_temporary_path_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A symlink planted at the temporary name is neither written through nor used."""
    path = tmp_path / "s.json"
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    planted = tmp_path / ".s.json.tmp-planted"
    planted.symlink_to(victim)
    # The planted link must survive the stale-temp sweep to reach the open() it targets.
    monkeypatch.setattr(
        FileSecretProvider, "_remove_stale_temporaries", staticmethod(lambda p: None)
    )
    monkeypatch.setattr(file_module, "_temp_suffix", iter(["planted", "fresh"]).__next__)
    await FileSecretProvider(path).set("A", SECRET)
    assert victim.read_text() == "untouched"
    assert planted.is_symlink()
    assert json.loads(path.read_text()) == {"A": SECRET}
    assert not (tmp_path / ".s.json.tmp-fresh").exists()


def test_four_processes_writing_lose_no_update(tmp_path: Path) -> None:
    """4 processes writing 25 keys each leave all 100 keys in the file."""
    path = tmp_path / "s.json"
    # The writers import the package under test (this checkout), not another installed copy.
    search = [str(Path(__file__).resolve().parents[2]), os.getenv("PYTHONPATH")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, search))}
    procs = [
        subprocess.Popen([sys.executable, str(WRITER_SCRIPT), str(path), str(n), "25"], env=env)
        for n in range(4)
    ]
    assert [proc.wait(120) for proc in procs] == [0, 0, 0, 0]
    data = json.loads(path.read_text())
    assert data == {f"P{n}_K{i}": f"v{n}-{i}" for n in range(4) for i in range(25)}
    assert not list(tmp_path.glob(".s.json.tmp-*"))


def test_file_mode_bits_after_write_survive_umask(tmp_path: Path) -> None:
    """With a permissive or a strange umask the file is 0600 and a new directory 0700."""
    for umask, name in ((0, "a"), (0o277, "b")):
        old = os.umask(umask)
        try:
            asyncio.run(FileSecretProvider(tmp_path / name / "s.json").set("A", "1"))
        finally:
            os.umask(old)
        assert stat.S_IMODE((tmp_path / name / "s.json").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o700


# -- unsafe files ------------------------------------------------------------------------


async def test_readable_by_others_warns_once_and_strict_refuses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A group-readable file is read with one warning per state, or refused when strict."""
    clock = FakeClock(100.0)
    path = write(tmp_path / "s.json", json.dumps({"A": SECRET}), mode=0o640)
    p = FileSecretProvider(path, timer=clock)
    with caplog.at_level(logging.WARNING, logger="simpletuner_secrets"):
        for _ in range(3):
            assert await p.get("A") == SECRET
            clock.now += 1.5
        path.chmod(0o604)  # a mode change alone is noticed at the next check
        assert await p.get("A") == SECRET
    warnings = [r for r in caplog.records if "readable by others" in r.getMessage()]
    assert len(warnings) == 2
    assert "0640" in warnings[0].getMessage() and str(path) in warnings[0].getMessage()
    assert "0604" in warnings[1].getMessage()
    assert SECRET not in caplog.text
    with pytest.raises(SecretFileError, match="strict") as info:
        await FileSecretProvider(path, strict_permissions=True).get("A")
    assert SECRET not in str(info.value)


async def test_symlinked_file_warns_strict_refuses_and_writes_go_through(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A symlinked secrets file is read with a warning, refused when strict, written through."""
    real = write(tmp_path / "real.json", '{"A": "v"}')
    link = tmp_path / "link.json"
    link.symlink_to(real)
    p = FileSecretProvider(link)
    with caplog.at_level(logging.WARNING, logger="simpletuner_secrets"):
        assert await p.get("A") == "v"
    assert "symlink" in caplog.text
    with pytest.raises(SecretFileError, match="symlink"):
        await FileSecretProvider(link, strict_permissions=True).get("A")
    with pytest.raises(SecretFileError, match="symlink"):
        await FileSecretProvider(link, strict_permissions=True).set("B", "w")
    await p.set("B", "w")
    assert link.is_symlink()
    assert json.loads(real.read_text()) == {"A": "v", "B": "w"}
    assert await p.get("B") == "w"


async def test_file_of_another_user_warns_and_strict_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A file owned by another user is read with a warning, refused when strict."""
    path = write(tmp_path / "s.json", '{"A": "v"}')
    monkeypatch.setattr(os, "getuid", lambda: path.stat().st_uid + 1)
    with caplog.at_level(logging.WARNING, logger="simpletuner_secrets"):
        assert await FileSecretProvider(path).get("A") == "v"
    assert "owned by another user" in caplog.text
    with pytest.raises(SecretFileError, match="another user"):
        await FileSecretProvider(path, strict_permissions=True).get("A")


async def test_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    """A path that is not a regular file (a FIFO) is refused, not opened."""
    fifo = tmp_path / "s.json"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(SecretFileError, match="not a regular file"):
        await asyncio.wait_for(FileSecretProvider(fifo).get("A"), 5)


# -- malformed and hostile files ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("s.json", '{\n  "A": "ok",\n  "HF_TOKEN": "' + SECRET + '",,\n}', 3),
        ("s.json", '{\n  "HF_TOKEN": "' + SECRET + "\n}", 2),
        ("s.yaml", "A: ok\nHF_TOKEN: [" + SECRET + "\nB: c\n", 3),
        ("s.yaml", "A: ok\n  HF_TOKEN: " + SECRET + "\n  :bad\n", 2),
        ("s.yml", "A: ok\nHF_TOKEN: '" + SECRET + "\n", 3),
    ],
)
async def test_malformed_file_names_path_and_line_never_the_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, text: str, line: int
) -> None:
    """A parse error names the file and line and quotes no secret, in messages or logs."""
    path = write(tmp_path / name, text)
    with caplog.at_level(logging.DEBUG), pytest.raises(SecretFileError) as info:
        await FileSecretProvider(path).get("A")
    message = str(info.value)
    assert str(path) in message
    assert SECRET not in message and SECRET[:8] not in message
    assert SECRET not in caplog.text
    chained: BaseException | None = info.value
    while chained is not None:  # nothing in the chain may carry the parser's quoted line
        assert chained is info.value or SECRET not in str(chained)
        chained = chained.__cause__ or chained.__context__
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__
    assert info.value.path == path
    assert info.value.line == line and f"line {line}" in message


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n", "anchors and aliases"),
        ("base: &b {k: v}\nother:\n  <<: *b\n", "anchors and aliases"),
        ("a: !!python/object/apply:os.system ['true']\n", "tags"),
        ("a: !custom x\n", "tags"),
        ("a: !!str x\n", "tags"),
        ("- just\n- a list\n", "list"),
        ("plain text\n", "str"),
        ("1: numeric key\n", "keys must be strings"),
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
    ],
)
async def test_hostile_yaml_is_refused(tmp_path: Path, text: str, reason: str) -> None:
    """Aliases, tags, non-mappings, non-string keys and deep nesting raise SecretFileError."""
    path = write(tmp_path / "s.yaml", text)
    with pytest.raises(SecretFileError, match=reason):
        await FileSecretProvider(path).get("A")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('["a", "b"]', "list"),
        ('"just a string"', "str"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply|larger than|not valid"),
    ],
)
async def test_json_that_is_not_an_object_is_refused(
    tmp_path: Path, text: str, reason: str
) -> None:
    """A JSON document that is not an object, or is absurdly nested, raises SecretFileError."""
    path = write(tmp_path / "s.json", text)
    with pytest.raises(SecretFileError, match=reason):
        await FileSecretProvider(path).get("A")


async def test_oversized_file_is_refused_before_reading(tmp_path: Path) -> None:
    """A file over max_file_size is refused without being read or parsed."""
    path = write(tmp_path / "s.json", json.dumps({"A": "x" * 2000}))
    p = FileSecretProvider(path, max_file_size=1000)
    with pytest.raises(SecretFileError, match="larger than 1000 bytes"):
        await p.get("A")
    assert p.parses == 0


async def test_corruption_keeps_last_good_document_and_deletion_empties(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file corrupted after a good read serves the last good values, warning once."""
    clock = FakeClock(100.0)
    path = write(tmp_path / "s.json", json.dumps({"A": SECRET}))
    p = FileSecretProvider(path, timer=clock)
    assert await p.get("A") == SECRET
    write(path, '{"A": "' + SECRET + '"')  # truncated
    with caplog.at_level(logging.WARNING, logger="simpletuner_secrets"):
        for _ in range(3):
            clock.now += 1.5
            assert await p.get("A") == SECRET
    assert caplog.text.count("serving the last good document") == 1
    assert SECRET not in caplog.text
    assert p.parses == 2  # the corrupted state is parsed once, not every second
    path.unlink()
    clock.now += 1.5
    assert await p.get("A") is None
    write(path, "{broken")
    clock.now += 1.5
    with pytest.raises(SecretFileError):  # the empty document of a missing file is no last good
        await p.get("A")


async def test_corruption_before_any_good_read_raises_every_time(tmp_path: Path) -> None:
    """With no good document ever read, a malformed file raises on every lookup; like a
    document, the failure is re-checked at most once a second, and a fix is then seen."""
    clock = FakeClock(100.0)
    p = FileSecretProvider(write(tmp_path / "s.json", "{"), timer=clock)
    for _ in range(2):
        with pytest.raises(SecretFileError, match="line 1"):
            await p.get("A")
    write(tmp_path / "s.json", '{"A": "fixed"}')
    with pytest.raises(SecretFileError):
        await p.get("A")  # within the second: the failure stands
    clock.now += 1.0
    assert await p.get("A") == "fixed"
    assert p.parses == 2
