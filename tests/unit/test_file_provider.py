"""FileSecretProvider: formats, locations, re-checks, atomic locked writes, hostile files."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from simpletuner_secrets.errors import SecretFileError
from simpletuner_secrets.providers.base import NOT_CACHED
from simpletuner_secrets.providers.file import FileSecretProvider

SECRET = "hf_do_not_leak_this_value"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


async def test_reads_json_and_yaml_with_json_text_for_scalars(tmp_path: Path) -> None:
    """JSON and YAML by extension; numbers and booleans come back as JSON text."""
    j = write(tmp_path / "s.json", json.dumps({"hf-token": "hf_1", "PORT": 5432, "ON": True}))
    y = write(tmp_path / "s.yaml", "HF_TOKEN: hf_2\nport: 5432\nnested: {a: 1}\n")
    pj, py = FileSecretProvider(j), FileSecretProvider(y)
    assert await pj.get("HF_TOKEN") == "hf_1"
    assert await pj.get("port") == "5432"
    assert await pj.get("on") == "true"
    assert await py.get("hf-token") == "hf_2"
    assert await py.get("NESTED") == '{"a":1}'


async def test_default_locations_in_order(tmp_path: Path) -> None:
    """Without a path: secrets.json, then .yaml, then .yml under ~/.simpletuner."""
    home = tmp_path
    p = FileSecretProvider(home=home)
    assert p.path == home / ".simpletuner" / "secrets.json"
    write(home / ".simpletuner" / "secrets.yml", "A: yml\n")
    assert await FileSecretProvider(home=home).get("A") == "yml"
    write(home / ".simpletuner" / "secrets.yaml", "A: yaml\n")
    assert await FileSecretProvider(home=home).get("A") == "yaml"
    write(home / ".simpletuner" / "secrets.json", '{"A": "json"}')
    assert await FileSecretProvider(home=home).get("A") == "json"


async def test_explicit_path_is_used_before_it_exists(tmp_path: Path) -> None:
    """A configured path that does not exist yet is an empty document, then written to."""
    target = tmp_path / "later" / "secrets.yaml"
    p = FileSecretProvider(target)
    assert await p.get("A") is None
    await p.set("a", "1st")
    assert target.exists()
    assert await p.get("A") == "1st"


async def test_external_edit_seen_within_a_second_without_reparsing_meanwhile(
    tmp_path: Path,
) -> None:
    """Within a second no stat or parse happens; after it, a changed file is parsed again."""
    clock = Clock()
    path = write(tmp_path / "s.json", '{"A": "one"}')
    p = FileSecretProvider(path, timer=clock)
    assert await p.get("A") == "one"
    assert p.parses == 1
    write(path, '{"A": "two", "B": "x"}')
    clock.now += 0.5
    assert await p.get("A") == "one"  # still inside the second
    clock.now += 0.6
    assert await p.get("A") == "two"
    clock.now += 1.1
    assert await p.get("A") == "two"
    assert p.parses == 2  # unchanged file: stat only


async def test_peek_answers_only_while_the_document_is_current(tmp_path: Path) -> None:
    """peek gives the value within the second and NOT_CACHED outside it."""
    clock = Clock()
    p = FileSecretProvider(write(tmp_path / "s.json", '{"A": "v"}'), timer=clock)
    assert p.peek("A") is NOT_CACHED
    await p.get("A")
    assert p.peek("A") == "v"
    clock.now += 2
    assert p.peek("A") is NOT_CACHED


async def test_writes_are_0600_in_a_0700_directory_and_keep_yaml(tmp_path: Path) -> None:
    """set creates the directory 0700 and the file 0600; a YAML file stays YAML."""
    home = tmp_path
    write(home / ".simpletuner" / "secrets.yaml", "EXISTING: x\n")
    (home / ".simpletuner").chmod(0o700)
    p = FileSecretProvider(home=home)
    await p.set("new-key", "v")
    path = home / ".simpletuner" / "secrets.yaml"
    assert yaml.safe_load(path.read_text()) == {"EXISTING": "x", "NEW_KEY": "v"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fresh = tmp_path / "fresh"
    q = FileSecretProvider(home=fresh)
    await q.set("A", "1")
    assert stat.S_IMODE((fresh / ".simpletuner").stat().st_mode) == 0o700
    assert json.loads((fresh / ".simpletuner" / "secrets.json").read_text()) == {"A": "1"}


async def test_delete_and_empty_value(tmp_path: Path) -> None:
    """delete reports whether the key existed; an empty value is refused."""
    p = FileSecretProvider(tmp_path / "s.json")
    await p.set("A", "1")
    assert await p.delete("a") is True
    assert await p.delete("a") is False
    assert await p.get("A") is None
    with pytest.raises(ValueError, match="non-empty"):
        await p.set("A", "")


async def test_stale_temporary_is_removed_and_symlink_temp_not_followed(tmp_path: Path) -> None:
    """A crashed writer's temp file goes on the next write; writes never follow a symlink."""
    path = tmp_path / "s.json"
    p = FileSecretProvider(path)
    await p.set("A", "1")
    leftover = tmp_path / ".s.json.tmp-deadbeef"
    leftover.write_text("partial")
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (tmp_path / ".s.json.tmp-symlink").symlink_to(victim)
    await p.set("B", "2")
    assert not leftover.exists()
    assert victim.read_text() == "untouched"
    assert json.loads(path.read_text()) == {"A": "1", "B": "2"}


def test_four_processes_writing_lose_no_update(tmp_path: Path) -> None:
    """4 processes writing 25 keys each leave all 100 keys in the file."""
    path = tmp_path / "s.json"
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from simpletuner_secrets.providers.file import FileSecretProvider
        async def main(n):
            p = FileSecretProvider({str(path)!r})
            for i in range(25):
                await p.set(f"P{{n}}_K{{i}}", "v")
        asyncio.run(main(int(sys.argv[1])))
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(n)]) for n in range(4)]
    assert [proc.wait(60) for proc in procs] == [0, 0, 0, 0]
    data = json.loads(path.read_text())
    assert len(data) == 100
    assert not list(tmp_path.glob(".s.json.tmp-*"))


async def test_readable_by_others_warns_and_strict_refuses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A group-readable file is read with one warning, or refused under strict_permissions."""
    path = write(tmp_path / "s.json", json.dumps({"A": SECRET}), mode=0o640)
    with caplog.at_level(logging.WARNING, logger="simpletuner_secrets"):
        assert await FileSecretProvider(path).get("A") == SECRET
    assert "readable by others" in caplog.text and "0640" in caplog.text
    assert SECRET not in caplog.text
    with pytest.raises(SecretFileError, match="strict"):
        await FileSecretProvider(path, strict_permissions=True).get("A")


async def test_symlinked_file_warns_and_strict_refuses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A secrets file that is a symlink is read with a warning, refused when strict."""
    real = write(tmp_path / "real.json", '{"A": "v"}')
    link = tmp_path / "link.json"
    link.symlink_to(real)
    with caplog.at_level(logging.WARNING, logger="simpletuner_secrets"):
        assert await FileSecretProvider(link).get("A") == "v"
    assert "symlink" in caplog.text
    with pytest.raises(SecretFileError):
        await FileSecretProvider(link, strict_permissions=True).get("A")


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("s.json", '{\n  "A": "ok",\n  "HF_TOKEN": "' + SECRET + '",,\n}', 3),
        ("s.yaml", "A: ok\nHF_TOKEN: [" + SECRET + "\nB: c\n", None),
        ("s.yaml", "A: ok\n  HF_TOKEN: " + SECRET + "\n  :bad\n", 2),
    ],
)
async def test_malformed_file_names_path_and_line_never_the_value(
    tmp_path: Path, name: str, text: str, line: int | None
) -> None:
    """A parse error names the file and line and does not quote the secret."""
    path = write(tmp_path / name, text)
    with pytest.raises(SecretFileError) as info:
        await FileSecretProvider(path).get("A")
    message = str(info.value)
    assert str(path) in message
    assert SECRET not in message
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__
    if line is not None:
        assert info.value.line == line and f"line {line}" in message


@pytest.mark.parametrize(
    "text",
    [
        "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n",
        "a: !!python/object/apply:os.system ['true']\n",
        "a: !custom x\n",
        "- just\n- a list\n",
        "1: numeric key\n",
        "[" * 5000 + "]" * 5000,
    ],
)
async def test_hostile_yaml_is_refused(tmp_path: Path, text: str) -> None:
    """Aliases, tags, non-mappings, non-string keys and deep nesting raise SecretFileError."""
    path = write(tmp_path / "s.yaml", text)
    with pytest.raises(SecretFileError):
        await FileSecretProvider(path).get("A")


async def test_oversized_file_is_refused(tmp_path: Path) -> None:
    """A file over max_file_size is refused without being parsed."""
    path = write(tmp_path / "s.json", json.dumps({"A": "x" * 2000}))
    with pytest.raises(SecretFileError, match="larger than"):
        await FileSecretProvider(path, max_file_size=1000).get("A")


async def test_corruption_keeps_last_good_document_and_deletion_empties(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file corrupted after a good read serves the last good values, warning once."""
    clock = Clock()
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
    path.unlink()
    clock.now += 1.5
    assert await p.get("A") is None


async def test_concurrent_first_gets_make_one_read(tmp_path: Path) -> None:
    """200 concurrent first lookups of 20 keys parse the file once."""
    path = write(tmp_path / "s.json", json.dumps({f"K{i}": str(i) for i in range(20)}))
    p = FileSecretProvider(path)
    results = await asyncio.gather(*(p.get(f"K{i % 20}") for i in range(200)))
    assert results == [str(i % 20) for i in range(200)]
    assert p.parses == 1


async def test_large_read_never_blocks_the_loop(tmp_path: Path) -> None:
    """Reading a ~900 KiB file leaves the event loop free (no gap over 0.1 s)."""
    big = {f"KEY_{i}": "v" * 80 for i in range(10_000)}
    path = write(tmp_path / "s.json", json.dumps(big))
    p = FileSecretProvider(path)
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    stop = False

    async def heartbeat() -> None:
        last = loop.time()
        while not stop:
            await asyncio.sleep(0.01)
            now = loop.time()
            gaps.append(now - last)
            last = now

    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.02)
    for _ in range(3):
        p._checked_at = float("-inf")
        p._signature = None
        assert await p.get("KEY_9999") == "v" * 80
    stop = True
    await beat
    assert max(gaps) < 0.1


def test_repr_shows_only_the_path(tmp_path: Path) -> None:
    """repr names the file, never a value."""
    path = write(tmp_path / "s.json", json.dumps({"A": SECRET}))
    p = FileSecretProvider(path)
    assert SECRET not in repr(p) and str(path) in repr(p)


def test_file_mode_bits_after_write_survive_umask(tmp_path: Path) -> None:
    """Even with a permissive umask the written file is 0600."""
    old = os.umask(0)
    try:
        p = FileSecretProvider(tmp_path / "d" / "s.json")
        asyncio.run(p.set("A", "1"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "d" / "s.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700
