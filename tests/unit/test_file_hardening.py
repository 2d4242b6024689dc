"""FileSecretProvider hardening (issue 12, "Files"): directory modes under any umask, checks on
the opened file, cancelled writes, full disks, JSON number texts and minimal JSON edits, and
frame locals free of document text.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simpletuner_secrets import normalize_key
from simpletuner_secrets.errors import SecretFileError
from simpletuner_secrets.providers import file as file_module
from simpletuner_secrets.providers.file import FileSecretProvider

ROOT = Path(__file__).resolve().parents[2]
SECRET = "hf_hardening_do_not_leak_0427"
NEW_SECRET = "hf_hardening_new_value_do_not_leak_0815"
EVIL = "evil_swapped_in_value_0913"
FOREIGN_UID = 65534


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports this worktree's package."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def chown_to_another_user(path: Path) -> None:
    """Give ``path`` to uid 65534: only root can; the suite runs as root here."""
    if os.getuid() != 0:
        pytest.skip("giving a file to another user (chown to uid 65534) needs root")
    os.chown(path, FOREIGN_UID, FOREIGN_UID)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name)


# -- 1. directories a write creates ------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277, 0o777])
def test_every_directory_a_write_creates_is_0700_whatever_the_umask(
    tmp_path: Path, umask: int
) -> None:
    """Parents created on the way are 0700 too, not 0777 & ~umask; the file is 0600."""
    target = tmp_path / "a" / "b" / "c" / "s.json"
    proc = run_python(
        """
        import asyncio, os, sys
        from simpletuner_secrets.providers.file import FileSecretProvider
        os.umask(int(sys.argv[2], 8))
        asyncio.run(FileSecretProvider(sys.argv[1]).set("A", "1"))
        """,
        str(target),
        f"{umask:o}",
    )
    assert proc.returncode == 0, proc.stderr
    modes = {
        str(d.relative_to(tmp_path)): f"{stat.S_IMODE(d.stat().st_mode):04o}"
        for d in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c")
    }
    assert modes == {"a": "0700", "a/b": "0700", "a/b/c": "0700"}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(tmp_path.stat().st_mode) != 0o000  # an existing parent is untouched


def test_existing_parents_keep_their_mode(tmp_path: Path) -> None:
    """Only directories the write creates are made 0700; existing ones are left alone."""
    existing = tmp_path / "shared"
    existing.mkdir()
    existing.chmod(0o755)
    asyncio.run(FileSecretProvider(existing / "new" / "s.json").set("A", "1"))
    assert stat.S_IMODE(existing.stat().st_mode) == 0o755
    assert stat.S_IMODE((existing / "new").stat().st_mode) == 0o700


# -- 2. strict_permissions checks the opened file ----------------------------------------


@pytest.fixture
def swap_at_open(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path, Path], list[int]]:
    """Arrange for ``evil`` to be renamed over ``path`` just before the provider opens it."""

    def arrange(path: Path, evil: Path) -> list[int]:
        real_open = os.open
        swaps: list[int] = []

        def open_and_swap(file: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            is_target = os.path.basename(os.fspath(file)) == path.name
            if is_target and not flags & (os.O_WRONLY | os.O_RDWR) and not swaps:
                os.rename(evil, path)
                swaps.append(1)
            return real_open(file, flags, *args, **kwargs)

        monkeypatch.setattr(file_module.os, "open", open_and_swap)
        return swaps

    return arrange


@pytest.mark.parametrize("kind", ["readable-by-others", "owned-by-another-user"])
async def test_strict_checks_the_file_it_opened_not_only_the_path(
    tmp_path: Path, swap_at_open: Callable[[Path, Path], list[int]], kind: str
) -> None:
    """A file renamed over the checked path between the check and the open is refused."""
    path = write(tmp_path / "s.json", json.dumps({"A": SECRET}))
    evil = write(tmp_path / "evil.json", json.dumps({"A": EVIL}))
    if kind == "readable-by-others":
        evil.chmod(0o644)
        expected = "readable by others"
    else:
        chown_to_another_user(evil)
        expected = "owned by another user"
    provider = FileSecretProvider(path, strict_permissions=True)
    swaps = swap_at_open(path, evil)
    with pytest.raises(SecretFileError, match=expected) as info:
        value = await provider.get("A")
        pytest.fail(f"the swapped-in file was read: {value!r}")
    assert swaps == [1]
    assert EVIL not in str(info.value) and SECRET not in str(info.value)


async def test_lenient_warns_about_the_file_it_opened(
    tmp_path: Path,
    swap_at_open: Callable[[Path, Path], list[int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without strict_permissions the swapped-in file is read, but the warning is about it."""
    path = write(tmp_path / "s.json", json.dumps({"A": SECRET}))
    evil = write(tmp_path / "evil.json", json.dumps({"A": EVIL}), mode=0o644)
    provider = FileSecretProvider(path)
    swap_at_open(path, evil)
    with caplog.at_level(logging.WARNING, logger="simpletuner_secrets"):
        assert await provider.get("A") == EVIL
    assert "readable by others (mode 0644)" in caplog.text
    assert EVIL not in caplog.text


@pytest.fixture
def foreign_directory(tmp_path: Path) -> Path:
    """A directory of uid 65534 holding a 0600 secrets file of our own."""
    directory = tmp_path / "theirs"
    write(directory / "s.json", json.dumps({"A": SECRET}))
    directory.chmod(0o755)
    chown_to_another_user(directory)
    return directory


@pytest.mark.parametrize("through_symlink", [True, False])
async def test_strict_refuses_a_directory_of_another_user(
    tmp_path: Path, foreign_directory: Path, through_symlink: bool
) -> None:
    """A secrets directory owned by another user (or a symlink to one) is refused when strict,
    for reads and for writes, and nothing is created in it."""
    directory = foreign_directory
    if through_symlink:
        directory = tmp_path / "mine"
        directory.symlink_to(foreign_directory, target_is_directory=True)
    provider = FileSecretProvider(directory / "s.json", strict_permissions=True)
    with pytest.raises(SecretFileError, match=r"directory .* owned by another user") as info:
        await provider.get("A")
    assert SECRET not in str(info.value)
    before = sorted(os.listdir(foreign_directory))
    with pytest.raises(SecretFileError, match="owned by another user"):
        await provider.set("B", "x")
    assert sorted(os.listdir(foreign_directory)) == before
    assert await FileSecretProvider(directory / "s.json").get("A") == SECRET  # lenient reads


async def test_strict_refuses_a_directory_others_can_write(tmp_path: Path) -> None:
    """A world-writable (not sticky) directory lets anyone swap the file: refused when strict."""
    directory = tmp_path / "open"
    write(directory / "s.json", json.dumps({"A": SECRET}))
    directory.chmod(0o777)
    with pytest.raises(SecretFileError, match="writable by others"):
        await FileSecretProvider(directory / "s.json", strict_permissions=True).get("A")
    directory.chmod(0o1777)  # sticky, like /tmp: others cannot replace our file
    strict = FileSecretProvider(directory / "s.json", strict_permissions=True)
    assert await strict.get("A") == SECRET


async def test_strict_still_reads_a_safe_file(tmp_path: Path) -> None:
    """The new checks refuse nothing that is safe: our 0600 file in our 0700 directory."""
    path = write(tmp_path / "d" / "s.json", json.dumps({"A": SECRET}))
    path.parent.chmod(0o700)
    provider = FileSecretProvider(path, strict_permissions=True)
    assert await provider.get("A") == SECRET
    await provider.set("B", "b")
    assert await FileSecretProvider(path, strict_permissions=True).get("B") == "b"


# -- 3. a write cut by a timeout ----------------------------------------------------------

# Holds the lock until told to let go on stdin, and for 20 s at most: nothing can hang.
LOCK_HOLDER = """
import fcntl, os, select, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
select.select([sys.stdin], [], [], 20)
"""


@pytest.fixture
def lock_held_elsewhere(tmp_path: Path) -> Iterator[Callable[[], None]]:
    """Another process holds the inter-process lock of ``tmp_path/s.json``; call to release."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(tmp_path / ".s.json.lock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == "locked"

    def release() -> None:
        if proc.poll() is None:
            assert proc.stdin is not None
            proc.stdin.write("\n")
            proc.stdin.flush()
            proc.wait(10)

    try:
        yield release
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        proc.stdout.close()


async def test_a_write_cancelled_while_waiting_for_the_lock_never_lands(
    tmp_path: Path, lock_held_elsewhere: Callable[[], None]
) -> None:
    """set() cut by wait_for while another process holds the lock does not write later."""
    path = write(tmp_path / "s.json", json.dumps({"A": "old"}))
    provider = FileSecretProvider(path)
    for key in ("A", "B"):  # two timed-out writes: neither may land
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(provider.set(key, NEW_SECRET), 0.2)
    lock_held_elsewhere()
    # A write after the release queues behind the cancelled ones (one lock, taken in turn),
    # and by the time it is in the file they have had every chance to land.
    await asyncio.wait_for(provider.set("C", "c"), 10)
    await asyncio.sleep(0.3)
    text = path.read_text()
    assert NEW_SECRET not in text
    assert json.loads(text) == {"A": "old", "C": "c"}
    assert await FileSecretProvider(path).get("A") == "old"
    assert await provider.get("A") == "old"
    assert leftovers(tmp_path) == []


async def test_a_write_not_cancelled_waits_for_the_lock_and_lands(
    tmp_path: Path, lock_held_elsewhere: Callable[[], None]
) -> None:
    """The cancellation check does not drop writes whose caller is still waiting."""
    path = write(tmp_path / "s.json", json.dumps({"A": "old"}))
    provider = FileSecretProvider(path)
    task = asyncio.ensure_future(provider.set("A", "new"))
    await asyncio.sleep(0.3)
    assert not task.done()
    lock_held_elsewhere()
    await asyncio.wait_for(task, 10)
    assert json.loads(path.read_text()) == {"A": "new"}


async def test_a_delete_cancelled_while_waiting_for_the_lock_never_lands(
    tmp_path: Path, lock_held_elsewhere: Callable[[], None]
) -> None:
    """delete() follows the same rule as set()."""
    path = write(tmp_path / "s.json", json.dumps({"A": "old"}))
    provider = FileSecretProvider(path)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(provider.delete("A"), 0.2)
    lock_held_elsewhere()
    await asyncio.wait_for(provider.set("C", "c"), 10)
    await asyncio.sleep(0.3)
    assert json.loads(path.read_text()) == {"A": "old", "C": "c"}


# -- 4. a full disk ----------------------------------------------------------------------


@pytest.mark.parametrize("failing", ["fsync", "write"])
async def test_a_full_disk_names_the_reason_and_leaves_the_file_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """ENOSPC while writing: the error says "No space left on device"; nothing changes."""
    path = write(tmp_path / "s.json", json.dumps({"A": SECRET}))
    before = path.read_bytes()
    provider = FileSecretProvider(path)

    def full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(file_module.os, failing, full)
    with pytest.raises(SecretFileError, match="No space left on device") as info:
        await provider.set("B", NEW_SECRET)
    monkeypatch.undo()
    assert str(path) in str(info.value)
    assert SECRET not in str(info.value) and NEW_SECRET not in str(info.value)
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []
    assert await FileSecretProvider(path).get("B") is None


# -- 5. JSON numbers and minimal edits ---------------------------------------------------

NUMBERS = """{
    "PRICE": 1.50,
    "E": 1e2,
    "HUGE": 1e400,
    "TINY": -0.0e-400,
    "INT": 0,
    "BIG": 123456789012345678901234567890,
    "NEST": {"x": 1.50, "l": [1e2, 1E+2, -1]}
}
"""


async def test_json_numbers_read_back_as_written(tmp_path: Path) -> None:
    """1.50 stays 1.50, 1e2 stays 1e2, 1e400 is not Infinity, nested numbers too."""
    provider = FileSecretProvider(write(tmp_path / "s.json", NUMBERS))
    document = await provider.document()
    assert dict(document) == {
        "PRICE": "1.50",
        "E": "1e2",
        "HUGE": "1e400",
        "TINY": "-0.0e-400",
        "INT": "0",
        "BIG": "123456789012345678901234567890",
        "NEST": '{"x":1.50,"l":[1e2,1E+2,-1]}',
    }
    assert all(type(v) is str for v in document.values())


def strict_json(text: str) -> Any:
    """Parse like jq, Go and Node: NaN and Infinity are errors."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


async def test_json_write_keeps_other_keys_text_order_and_indentation(tmp_path: Path) -> None:
    """A write changes only its key: 1e400 is not turned into Infinity, nor 1.50 into 1.5."""
    path = write(tmp_path / "s.json", NUMBERS)
    provider = FileSecretProvider(path)
    await provider.set("PRICE", "2")
    assert path.read_text() == NUMBERS.replace('"PRICE": 1.50', '"PRICE": "2"')
    await provider.set("NEW", "n")
    expected = NUMBERS.replace('"PRICE": 1.50', '"PRICE": "2"').replace(
        "-1]}\n}", '-1]},\n    "NEW": "n"\n}'
    )
    assert path.read_text() == expected
    strict_json(path.read_text())
    assert await FileSecretProvider(path).get("HUGE") == "1e400"
    assert await FileSecretProvider(path).get("E") == "1e2"
    assert await provider.delete("HUGE") is True
    assert path.read_text() == expected.replace('    "HUGE": 1e400,\n', "")
    assert await provider.delete("NEW") is True
    assert await provider.delete("PRICE") is True
    assert path.read_text() == NUMBERS.replace('    "PRICE": 1.50,\n', "").replace(
        '    "HUGE": 1e400,\n', ""
    )


@pytest.mark.parametrize(
    ("before", "key", "value", "after"),
    [
        ('{"A": "1", "B": 2.50}', "C", "3", '{"A": "1", "B": 2.50, "C": "3"}'),
        ('{"A":"1","B":2.50}', "C", "3", '{"A":"1","B":2.50,"C":"3"}'),
        ('{"A": "1"}\n', "C", "3", '{"A": "1", "C": "3"}\n'),
        (
            '{\n\t"B": 1e2,\n\t"A": "1"\n}\n',
            "C",
            "3",
            '{\n\t"B": 1e2,\n\t"A": "1",\n\t"C": "3"\n}\n',
        ),
        ('{\r\n  "A": "1"\r\n}\r\n', "C", "3", '{\r\n  "A": "1",\r\n  "C": "3"\r\n}\r\n'),
        ('{\n  "B": 1,\n  "A": "1"\n}', "A", "2", '{\n  "B": 1,\n  "A": "2"\n}'),
        (
            '{"hf-token": "a", "X": 1e2, "hf.token": "b"}',
            "HF_TOKEN",
            "c",
            '{"HF_TOKEN": "c", "X": 1e2}',
        ),
        ('{"A": "1", "A": "2"}', "A", "3", '{"A": "3"}'),
        ("{}", "A", "1", '{\n  "A": "1"\n}'),
        ("{ \n }\n", "A", "1", '{\n  "A": "1"\n}\n'),
        ("", "A", "1", '{\n  "A": "1"\n}\n'),
        ('{"A": "1", "B": "2"}', "A", None, '{"B": "2"}'),
        ('{"A": "1", "B": "2"}', "B", None, '{"A": "1"}'),
        ('{\n  "A": "1"\n}\n', "A", None, "{}\n"),
        ('{"A": "caf\\u00e9", "B": [1.0]}', "C", "é", '{"A": "caf\\u00e9", "B": [1.0], "C": "é"}'),
    ],
)
async def test_json_edit_changes_only_its_key(
    tmp_path: Path, before: str, key: str, value: str | None, after: str
) -> None:
    """Separators, indentation (spaces, tabs, CRLF), escapes and number texts stay as written."""
    path = tmp_path / "s.json"
    path.write_bytes(before.encode())
    path.chmod(0o600)
    provider = FileSecretProvider(path)
    if value is None:
        assert await provider.delete(key) is True
    else:
        await provider.set(key, value)
    assert path.read_bytes().decode() == after
    strict_json(after)
    if value is not None:
        assert await FileSecretProvider(path).get(key) == value


async def test_json_write_keeps_a_byte_order_mark(tmp_path: Path) -> None:
    """A file that starts with a BOM keeps it; only the key written changes."""
    path = tmp_path / "s.json"
    path.write_bytes(b'\xef\xbb\xbf{"A": 1.50}\n')
    path.chmod(0o600)
    await FileSecretProvider(path).set("B", "b")
    assert path.read_bytes() == b'\xef\xbb\xbf{"A": 1.50, "B": "b"}\n'


async def test_json_file_holding_nan_or_infinity_is_not_rewritten(tmp_path: Path) -> None:
    """NaN/Infinity literals read as written, but a write refuses to keep them in the file."""
    path = write(tmp_path / "s.json", '{"A": NaN, "B": [Infinity], "S": "' + SECRET + '"}')
    before = path.read_bytes()
    provider = FileSecretProvider(path)
    assert await provider.get("A") == "NaN"
    assert await provider.get("B") == "[Infinity]"
    with pytest.raises(SecretFileError, match="NaN or Infinity") as info:
        await provider.set("C", "c")
    assert SECRET not in str(info.value)
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("key", "value", "after"),
    [("A", "1", '{"A": "1", "S": "x"}'), ("A", None, '{"S": "x"}'), ("S", "y", None)],
)
async def test_json_key_holding_nan_can_be_replaced_or_deleted(
    tmp_path: Path, key: str, value: str | None, after: str | None
) -> None:
    """Only what stays in the file counts: replacing or deleting the NaN key is a fix."""
    path = write(tmp_path / "s.json", '{"A": NaN, "S": "x"}')
    provider = FileSecretProvider(path)
    if after is None:
        with pytest.raises(SecretFileError, match="NaN or Infinity at line 1"):
            await provider.set(key, "y")
        assert path.read_text() == '{"A": NaN, "S": "x"}'
        return
    if value is None:
        assert await provider.delete(key) is True
    else:
        await provider.set(key, value)
    assert path.read_text() == after
    strict_json(after)


async def test_json_value_written_is_json_text(tmp_path: Path) -> None:
    """Values with quotes, backslashes, control and line-separator characters round-trip."""
    path = write(tmp_path / "s.json", '{\n  "A": 1.50\n}\n')
    value = 'q"b\\s\n\t\x00\u2028\u2029é🔑'
    await FileSecretProvider(path).set("V", value)
    assert strict_json(path.read_text())["V"] == value
    assert await FileSecretProvider(path).get("V") == value
    assert await FileSecretProvider(path).get("A") == "1.50"


@pytest.mark.parametrize(
    ("name", "text"), [("s.yaml", '"": x\nA: y\n'), ("s.json", '{"": "x", "A": "y"}')]
)
async def test_a_file_with_an_invalid_key_is_not_rewritten(
    tmp_path: Path, name: str, text: str
) -> None:
    """A key that does not normalize (empty) refuses the write with SecretFileError, not a
    bare ValueError, and the file is left as it was."""
    path = write(tmp_path / name, text)
    with pytest.raises(SecretFileError, match="invalid key"):
        await FileSecretProvider(path).set("B", "1")
    assert path.read_text() == text


# -- 6. frame locals ---------------------------------------------------------------------

MALFORMED: list[tuple[str, str, str | bytes]] = [
    ("bad-json-after-a-secret", "s.json", '{\n  "A": "' + SECRET + '",\n  "B": oops\n}\n'),
    ("json-not-an-object", "s.json", '["' + SECRET + '"]'),
    ("json-invalid-key", "s.json", '{"A": "' + SECRET + '", "": "x"}'),
    ("bad-yaml", "s.yaml", "A: " + SECRET + "\nB: [unclosed\n"),
    ("yaml-with-a-tag", "s.yaml", "A: " + SECRET + "\nB: !vault " + SECRET + "\n"),
    ("yaml-alias", "s.yaml", "A: &a " + SECRET + "\nB: *a\n"),
    ("yaml-huge-int", "s.yaml", "A: " + SECRET + "\nB: [0x" + "F" * 4000 + "]\n"),
    ("not-utf8", "s.json", b'{"A": "' + SECRET.encode() + b'\xff"}'),
]


def make_malformed(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    path.chmod(0o600)
    return path


def formatted_with_locals(exc: BaseException) -> str:
    return "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())


@pytest.mark.parametrize(("name", "content"), [pytest.param(n, c, id=i) for i, n, c in MALFORMED])
async def test_frame_locals_of_a_malformed_file_error_hold_no_secret(
    tmp_path: Path, name: str, content: str | bytes
) -> None:
    """capture_locals (Sentry, --showlocals) of the error shows no document text, on read,
    on a repeated read, on write and on delete."""
    path = make_malformed(tmp_path, name, content)
    del content
    provider = FileSecretProvider(path)
    for attempt in ("get", "get-again", "set", "delete"):
        try:
            if attempt == "set":
                await provider.set("C", NEW_SECRET)
            elif attempt == "delete":
                await provider.delete("A")
            else:
                await provider.get("A")
        except SecretFileError as exc:
            shown = formatted_with_locals(exc)
        else:
            pytest.fail(f"{attempt} of {name} did not raise")
        assert str(path) in shown, attempt
        assert SECRET not in shown, (attempt, shown)
        assert NEW_SECRET not in shown, (attempt, shown)
        del shown


async def test_frame_locals_of_an_oversized_file_error_hold_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that grew past max_file_size between the stat and the read leaves no text."""
    path = write(tmp_path / "s.json", json.dumps({"A": SECRET}))
    provider = FileSecretProvider(path, max_file_size=len(path.read_bytes()))
    real_stat = os.lstat

    def grown_after_stat(p: Any, *args: Any, **kwargs: Any) -> Any:
        result = real_stat(p, *args, **kwargs)
        if os.fspath(p) == str(path):
            with open(path, "a") as handle:
                handle.write(" " * 10)
        return result

    monkeypatch.setattr(file_module.os, "lstat", grown_after_stat)
    with pytest.raises(SecretFileError, match="larger than") as info:
        await provider.get("A")
    monkeypatch.undo()
    assert SECRET not in formatted_with_locals(info.value)


async def test_frame_locals_of_a_full_disk_error_hold_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write error of a full disk carries neither the file's secrets nor the new value."""
    path = write(tmp_path / "s.json", json.dumps({"A": SECRET}))

    def full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    provider = FileSecretProvider(path)
    await provider.get("A")
    monkeypatch.setattr(file_module.os, "fsync", full)
    with pytest.raises(SecretFileError) as info:
        await provider.set("B", NEW_SECRET)
    monkeypatch.undo()
    shown = formatted_with_locals(info.value)
    assert SECRET not in shown and NEW_SECRET not in shown


@pytest.mark.parametrize("name", ["s.yaml", "s.json"])
async def test_frame_locals_of_an_edit_too_large_to_write_hold_no_secret(
    tmp_path: Path, name: str
) -> None:
    """A write whose edited file would pass max_file_size is refused naming the path; the
    frames of the edit (they held the file's text and the new value) are not in the error."""
    text = f"A: {SECRET}  # a comment\n" if name == "s.yaml" else json.dumps({"A": SECRET})
    path = write(tmp_path / name, text)
    before = path.stat().st_size
    del text  # this frame is on the traceback too
    provider = FileSecretProvider(path, max_file_size=before + 20)
    assert await provider.get("A") == SECRET
    with pytest.raises(SecretFileError, match="would be larger") as info:
        await provider.set("B", NEW_SECRET)
    shown = formatted_with_locals(info.value)
    assert str(path) in shown
    assert SECRET not in shown and NEW_SECRET not in shown
    assert path.stat().st_size == before


async def test_frame_locals_of_a_refusal_after_a_good_read_hold_no_secret(tmp_path: Path) -> None:
    """A file that turns unsafe after a good read is refused when strict: the last good
    document it held is in no frame of the error."""
    now = [0.0]
    path = write(tmp_path / "s.json", json.dumps({"A": SECRET}))
    provider = FileSecretProvider(path, strict_permissions=True, timer=lambda: now[0])
    assert await provider.get("A") == SECRET
    path.chmod(0o644)
    now[0] += 2
    with pytest.raises(SecretFileError, match="readable by others") as info:
        await provider.get("A")
    assert SECRET not in formatted_with_locals(info.value)
    with pytest.raises(SecretFileError, match="readable by others") as info:
        await provider.set("B", NEW_SECRET)
    shown = formatted_with_locals(info.value)
    assert SECRET not in shown and NEW_SECRET not in shown


json_values = st.one_of(
    st.text(max_size=8),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(
        st.text(max_size=3), st.floats(allow_nan=False, allow_infinity=False), max_size=2
    ),
)
SPELLINGS = ["A", "a", "B_C", "b-c", "b.c", "D"]


@settings(max_examples=300, deadline=None)
@given(
    members=st.dictionaries(st.sampled_from(SPELLINGS), json_values, max_size=6),
    layout=st.sampled_from(
        [(None, (", ", ": ")), (None, (",", ":")), (2, None), (4, None), ("\t", None), (0, None)]
    ),
    key=st.sampled_from(["A", "B_C", "D", "E"]),
    value=st.one_of(st.none(), st.text(min_size=1, max_size=8)),
)
def test_json_edit_matches_a_dict_edit(
    members: dict[str, Any], layout: tuple[Any, Any], key: str, value: str | None
) -> None:
    """Any layout, any spellings: the edited text parses to the edited member list, in order,
    with every other member's text left as it was."""
    indent, separators = layout
    text = json.dumps(members, indent=indent, separators=separators, ensure_ascii=False)
    spellings = [k for k in members if normalize_key(k) == key]
    expected: list[tuple[str, Any]] = []
    for name, member in members.items():
        if name not in spellings:
            expected.append((name, member))
        elif value is not None and name == spellings[0]:
            expected.append((key, value))
    if value is not None and not spellings:
        expected.append((key, value))
    body = file_module._rewrite_json(Path("s.json"), text.encode(), key, value)
    if value is None and not spellings:
        assert body is None
        return
    assert body is not None
    edited = body.decode()
    assert list(strict_json(edited).items()) == expected
    for name, member in members.items():
        if name not in spellings:  # the other members' text is still in the file as it was
            alone = json.dumps(
                {name: member}, indent=indent, separators=separators, ensure_ascii=False
            )
            assert alone[1:-1].strip() in edited
