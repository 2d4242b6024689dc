"""Hostile keys, values and files: a correct answer or a clear error, in bounded time and memory.

Keys and values come from Hypothesis and from a list of known-nasty ones; files are random
bytes, fuzzed YAML, absurd nesting, alias bombs, tags, oversize, symlinks to devices and files
of another user. Whatever comes in, the answer is right or the error is a `ValueError` /
`TypeError` / `SecretsError` that quotes no value. Each hostile file is read in a fresh
subprocess so that its time and peak memory are its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from simpletuner_secrets import SecretsManager, normalize_key
from simpletuner_secrets.errors import SecretFileError, SecretsError
from simpletuner_secrets.providers.env import EnvironmentSecretProvider
from simpletuner_secrets.providers.file import FileSecretProvider
from simpletuner_secrets.testing import InMemorySecretProvider

SECRET = "S3cr3t-hostile-input-value-0427"
MARK = "S3cr3t"  # every generated value starts with it, so an echo is recognisable
# Bounds for one hostile file read in its own process (files are at most 1 MiB).
MAX_SECONDS = 10.0
MAX_GROWTH_MB = 64

NASTY_KEYS = [
    "",
    " ",
    "\t\n",
    "\u00a0",
    "\u3000",
    "../",
    "../../etc/passwd",
    "/",
    "/etc/shadow",
    "\\..\\",
    "a\x00b",
    "\x1b[31m",
    "a\nb",
    "\u202eevil",
    "a\u200bb",
    "\ufeffKEY",
    "\ud800",
    "ß",
    "ﬃ",
    "İ",
    "٣",
    "🔑",
    "k" * 1024,
    "k" * 1025,
    "k" * 100_000,
    "hf-token",
    "HF.TOKEN",
    "Hf_ToKeN",
    "=",
    "~",
    "null",
    "1",
    "0x1F",
    "<<",
    "- a",
    "a: b",
    "&a",
    "*a",
    "!tag",
    "%",
    "{}",
    "'",
    '"',
]

keys = st.one_of(
    st.sampled_from(NASTY_KEYS),
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.sampled_from(["hf-token", "db.password", "api_key", "MISSING"]).map(str.lower),
)


# -- key handling --------------------------------------------------------------------------


def assert_value_free(exc: BaseException, value: str) -> None:
    """Neither the exception nor anything chained to it carries ``value``."""
    seen: BaseException | None = exc
    while seen is not None:
        assert value not in str(seen), type(seen)
        carried = getattr(seen, "object", "")  # UnicodeError keeps the whole text it failed on
        assert not isinstance(carried, str) or value not in carried, type(seen)
        seen = seen.__cause__ or seen.__context__


def key_is_valid(key: str) -> bool:
    return bool(key) and not key.isspace() and len(key) <= 1024 and key.isprintable()


@given(keys)
@example("k" * 100_000)
def test_normalize_key_answers_or_raises_a_short_value_error(key: str) -> None:
    """Any string key normalizes (upper case, no - or .) or raises a short ValueError."""
    try:
        normalized = normalize_key(key)
    except ValueError as exc:
        assert not key_is_valid(key)
        assert len(str(exc)) < 120
        assert key not in str(exc) or len(key) < 2
        return
    assert key_is_valid(key)
    assert normalized == key.upper().replace("-", "_").replace(".", "_")
    assert normalize_key(normalized) == normalized


@pytest.mark.parametrize("key", [None, 1, b"HF_TOKEN", ["HF_TOKEN"], object()])
def test_normalize_key_refuses_non_strings_with_type_error(key: Any) -> None:
    """A key that is not a str raises TypeError, even an unhashable one."""
    with pytest.raises(TypeError, match="must be a str"):
        normalize_key(key)


def test_manager_get_with_hostile_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """manager.get and manager.sync.get: the chain's answer for any key, or a ValueError."""
    monkeypatch.setenv("HF_TOKEN", "env-hf")
    file_doc = {"DB_PASSWORD": "file-db", "__/": "file-dotdot", "🔑": "file-key"}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(file_doc))
    path.chmod(0o600)
    memory_doc = {"API_KEY": "mem-api", "HF_TOKEN": "mem-hf", "ß": "mem-sharp-s"}
    loop = asyncio.new_event_loop()
    manager = SecretsManager(
        [
            EnvironmentSecretProvider(),
            FileSecretProvider(path),
            InMemorySecretProvider(memory_doc, latency=0.001),
        ]
    )

    def expected(key: str) -> str | None:
        nkey = normalize_key(key)
        for source in (os.environ, file_doc, {normalize_key(k): v for k, v in memory_doc.items()}):
            if source.get(nkey):
                return source[nkey]
        return None

    @settings(max_examples=300, deadline=None)
    @given(keys)
    @example("../")
    @example("ß")
    def check(key: str) -> None:
        if not key_is_valid(key):
            with pytest.raises(ValueError):
                loop.run_until_complete(asyncio.wait_for(manager.get(key), 5))
            with pytest.raises(ValueError):
                manager.sync.get(key)
            return
        want = expected(key)
        assert loop.run_until_complete(asyncio.wait_for(manager.get(key), 5)) == want
        assert manager.sync.get(key) == want

    try:
        check()
        stats = manager.stats()
        assert all(p["errors"] == 0 for p in stats["providers"].values()), stats
    finally:
        loop.run_until_complete(manager.aclose())
        loop.close()


values = st.one_of(
    st.text(max_size=60).map(lambda t: MARK + t),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=60).map(lambda t: MARK + t),
    st.sampled_from(
        [
            MARK + "\x00\x01\x7f",
            MARK + "\r\n\t ",
            MARK + "\u2028\u2029\x85",
            MARK + "'\"\\",
            MARK + ": - [ ] { } & * ! | > % @ `",
            MARK + "\ud800",
            MARK + "\udcff tail",
            MARK + "🔑" * 10,
            "0123",
            "0x1F",
            "true",
            "~",
            "null",
            "1e400",
            "12:34:56",
            "2001-12-14",
        ]
    ),
)


@pytest.mark.parametrize("name", ["s.json", "s.yaml"])
def test_file_set_get_delete_round_trip_or_clear_error(tmp_path: Path, name: str) -> None:
    """set(key, value) then get returns exactly the value, or raises a clear, value-free error."""
    directory = tmp_path / "d"
    path = directory / name
    loop = asyncio.new_event_loop()
    provider = FileSecretProvider(path)
    loop.run_until_complete(provider.set("KEEP", SECRET))

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(keys, values)
    @example("../", MARK + "dots")
    @example("/", MARK + "slash")
    @example("k" * 100_000, MARK + "long-key")
    @example("A", MARK + "\ud800")
    @example("A", "")
    def check(key: str, value: str) -> None:
        bad_value = any(0xD800 <= ord(c) <= 0xDFFF for c in value) or not value
        try:
            loop.run_until_complete(asyncio.wait_for(provider.set(key, value), 10))
        except (ValueError, TypeError, SecretsError) as exc:
            assert not key_is_valid(key) or bad_value, type(exc)
            if value:
                assert_value_free(exc, value)
            return
        assert key_is_valid(key) and not bad_value
        assert loop.run_until_complete(provider.get(key)) == value
        fresh = FileSecretProvider(path)
        assert loop.run_until_complete(fresh.get(key)) == value
        assert loop.run_until_complete(provider.delete(key)) is True
        assert loop.run_until_complete(FileSecretProvider(path).get(key)) is None

    try:
        check()
        # Keys are never paths: nothing was created outside the file and its lock.
        assert sorted(os.listdir(directory)) == sorted([name, f".{name}.lock"])
        assert [p.name for p in tmp_path.iterdir()] == ["d"]
        assert loop.run_until_complete(FileSecretProvider(path).get("KEEP")) == SECRET
    finally:
        loop.close()


async def test_value_with_a_lone_surrogate_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    """A value that is not encodable text raises ValueError naming the key, not the value."""
    path = tmp_path / "s.json"
    provider = FileSecretProvider(path)
    await provider.set("OTHER", SECRET)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="API_KEY") as info:
        await provider.set("api-key", MARK + "\ud800" + MARK)
    assert_value_free(info.value, MARK)  # nothing holding the file's body rides along
    assert path.read_bytes() == before


async def test_existing_value_that_cannot_be_encoded_is_kept_as_written(tmp_path: Path) -> None:
    """A file with a lone-surrogate escape reads; a rewrite edits only its own key, so the
    escape stays the text it was (JSON writes are edits of the text, not re-encodings)."""
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"ODD": "x\ud800y", "OTHER": SECRET}))
    path.chmod(0o600)
    provider = FileSecretProvider(path)
    assert await provider.get("ODD") == "x\ud800y"
    await provider.set("NEW", "value")
    assert path.read_text() == json.dumps({"ODD": "x\ud800y", "OTHER": SECRET, "NEW": "value"})
    fresh = FileSecretProvider(path)
    assert await fresh.get("ODD") == "x\ud800y" and await fresh.get("OTHER") == SECRET


# -- hostile files, each read in its own process --------------------------------------------

RUNNER = r"""
import asyncio, json, sys, time
from simpletuner_secrets.errors import SecretsError
from simpletuner_secrets.providers.file import FileSecretProvider


def status_kb(field):
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


path, options = sys.argv[1], json.loads(sys.argv[2])
provider = FileSecretProvider(path, **options)
before = status_kb("VmRSS")
start = time.perf_counter()
try:
    value = asyncio.run(provider.get("A"))
    outcome = {"ok": True, "value": value}
except SecretsError as exc:
    outcome = {"ok": False, "type": type(exc).__name__, "message": str(exc)}
outcome["seconds"] = time.perf_counter() - start
outcome["growth_kb"] = status_kb("VmHWM") - before
print(json.dumps(outcome))
"""


def read_in_subprocess(path: Path, **options: Any) -> dict[str, Any]:
    """Read ``path`` with a fresh provider in a fresh process; outcome, seconds, growth."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", RUNNER, str(path), json.dumps(options)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading {path.name} hung for 60 s")
    assert proc.returncode == 0, f"the read crashed instead of raising SecretsError:\n{proc.stderr}"
    outcome: dict[str, Any] = json.loads(proc.stdout)
    assert outcome["seconds"] < MAX_SECONDS, outcome
    assert outcome["growth_kb"] < MAX_GROWTH_MB * 1024, outcome
    return outcome


def laughs(levels: int, *, merge: bool = False) -> str:
    lines = [f'l0: &l0 ["{SECRET}", "{SECRET}", "{SECRET}"]']
    for n in range(1, levels):
        refs = ", ".join([f"*l{n - 1}"] * 9)
        lines.append(f"l{n}: &l{n} [{refs}]")
    if merge:
        lines.append("m0: &m0 {a: 1}")
        lines.extend(f"m{n}: &m{n} {{<<: *m{n - 1}, k{n}: 1}}" for n in range(1, levels))
    lines.append(f"A: *l{levels - 1}")
    return "\n".join(lines) + "\n"


HOSTILE: list[tuple[str, str, bytes | str, str]] = [
    # (id, file name, content, expected: a regex for the SecretFileError, or "ok:<value>")
    ("json-100k-nested-lists", "s.json", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (
        "json-400k-nested-in-a-value",
        "s.json",
        '{"A": ' + "[" * 400_000 + "]" * 400_000 + "}",
        "nested too deeply",
    ),
    (
        "json-nested-objects",
        "s.json",
        '{"A": ' + '{"k": ' * 100_000 + "1" + "}" * 100_000 + "}",
        "nested too deeply",
    ),
    ("yaml-100k-nested-flow-lists", "s.yaml", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (
        "yaml-100k-nested-flow-maps",
        "s.yaml",
        "A: " + "{a: " * 100_000 + "1" + "}" * 100_000,
        "nested too deeply",
    ),
    (
        "yaml-1000-nested-blocks",
        "s.yaml",
        "".join(" " * i + f"k{i}:\n" for i in range(1000)) + " " * 1000 + "x\n",
        "nested too deeply|not valid YAML",
    ),
    ("yaml-billion-laughs", "s.yaml", laughs(9), "anchors and aliases"),
    ("yaml-billion-laughs-merge-keys", "s.yaml", laughs(9, merge=True), "anchors and aliases"),
    (
        "yaml-one-anchor-many-aliases",
        "s.yaml",
        f"a: &a '{SECRET * 1000}'\nA: [" + ", ".join(["*a"] * 20_000) + "]\n",
        "anchors and aliases",
    ),
    ("yaml-python-apply", "s.yaml", "A: !!python/object/apply:os.system ['touch pwned']\n", "tags"),
    ("yaml-python-new", "s.yaml", "A: !!python/object/new:os.system [x]\n", "tags"),
    ("yaml-python-name", "s.yaml", "A: !!python/name:os.system\n", "tags"),
    ("yaml-python-module", "s.yaml", "A: !!python/module:os\n", "tags"),
    ("yaml-binary", "s.yaml", f"A: !!binary {SECRET}\n", "tags"),
    ("yaml-set", "s.yaml", "A: !!set {a, b}\n", "tags"),
    ("yaml-omap", "s.yaml", "A: !!omap [a: 1]\n", "tags"),
    ("yaml-custom-tag", "s.yaml", f"A: !vault {SECRET}\n", "tags"),
    ("yaml-verbatim-tag", "s.yaml", f"A: !<tag:yaml.org,2002:str> {SECRET}\n", "tags"),
    (
        "yaml-tag-directive",
        "s.yaml",
        f"%TAG !e! tag:example.com,2000:\n---\nA: !e!x {SECRET}\n",
        "tags",
    ),
    ("yaml-two-documents", "s.yaml", f"A: {SECRET}\n---\nB: x\n", "not valid YAML at line 2"),
    ("yaml-complex-key", "s.yaml", f"? [{SECRET}]\n: b\n", "keys must be strings"),
    (
        "yaml-unhashable-nested-key",
        "s.yaml",
        f"A: {{? {{x: {SECRET}}} : b}}\n",
        "not valid YAML",
    ),
    ("yaml-huge-hex-int", "s.yaml", "A: [0x" + "F" * 4000 + "]\n", "cannot be read as text"),
    (
        "yaml-huge-binary-int",
        "s.yaml",
        "A: {n: 0b" + "1" * 16_000 + "}\n",
        "cannot be read as text",
    ),
    # Numbers that are JSON numbers are kept as the text written, in YAML as in JSON, so no
    # 4300-digit conversion limit applies.
    (
        "yaml-huge-decimal-int",
        "s.yaml",
        "A: [1" + "0" * 5000 + "]\n",
        "ok:[1" + "0" * 5000 + "]",
    ),
    ("json-huge-int", "s.json", '{"A": [1' + "0" * 5000 + "]}", "ok:[1" + "0" * 5000 + "]"),
    (
        "yaml-top-level-huge-hex-is-text",
        "s.yaml",
        "A: 0x" + "F" * 4000 + "\n",
        "ok:0x" + "F" * 4000,
    ),
    (
        "json-nan-literals",
        "s.json",
        '{"A": [NaN, Infinity, -Infinity]}',
        "ok:[NaN,Infinity,-Infinity]",
    ),
    ("utf16-json", "s.json", json.dumps({"A": SECRET}).encode("utf-16"), "not UTF-8"),
    ("invalid-utf8", "s.json", b'{"A": "\xff\xfe' + SECRET.encode() + b'"}', "not UTF-8"),
    ("nul-bytes-json", "s.json", b'{"A": "x"}\x00\x00', "not valid JSON at line 1"),
    ("nul-bytes-yaml", "s.yaml", b"A: x\x00y\n", "not valid YAML"),
    ("control-chars-yaml", "s.yaml", f"A: {SECRET}\x07\x1b\n", "not valid YAML"),
    (
        "json-max-size-many-small-lists",
        "s.json",
        '{"A": [' + "[]," * 349_000 + "[]]}",
        "ok:",
    ),
    ("random-bytes-1mib-minus-1", "s.json", os.urandom(1_048_575), "not UTF-8|not valid JSON"),
]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [pytest.param(n, c, e, id=i) for i, n, c, e in HOSTILE],
)
def test_hostile_file_gives_a_clear_error_in_bounded_time_and_memory(
    tmp_path: Path, name: str, content: bytes | str, expected: str
) -> None:
    """Each hostile file is answered or refused with SecretFileError, fast and small."""
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    path.chmod(0o600)
    assert path.stat().st_size <= 1_048_576  # within max_file_size: the parser must cope
    outcome = read_in_subprocess(path)
    if expected.startswith("ok:"):
        assert outcome["ok"], outcome
        assert outcome["value"].startswith(expected[3:]) or outcome["value"] == expected[3:]
        return
    assert not outcome["ok"], outcome
    assert outcome["type"] == "SecretFileError", outcome
    assert str(path) in outcome["message"]
    assert SECRET not in outcome["message"] and SECRET[:10] not in outcome["message"]
    assert re.search(expected, outcome["message"]), outcome["message"]


async def test_huge_int_after_a_good_read_keeps_the_last_good_document(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A YAML edit with an unconvertible number is corruption: the last good document stays."""
    now = [0.0]
    path = tmp_path / "s.yaml"
    path.write_text(f"A: {SECRET}\n")
    path.chmod(0o600)
    provider = FileSecretProvider(path, timer=lambda: now[0])
    assert await provider.get("A") == SECRET
    path.write_text(f"A: {SECRET}\nB: [0x" + "F" * 4000 + "]\n")
    now[0] += 2
    with caplog.at_level(logging.WARNING, logger="simpletuner_secrets"):
        assert await provider.get("A") == SECRET
    assert "serving the last good document" in caplog.text
    assert SECRET not in caplog.text
    with pytest.raises(SecretFileError, match="cannot be"):
        await provider.set("C", "x")


@pytest.mark.parametrize("depth", range(960, 1001, 4))
async def test_json_nesting_near_the_recursion_limit(tmp_path: Path, depth: int) -> None:
    """Around the interpreter's recursion limit, a nested value is text or a SecretFileError."""
    path = tmp_path / "s.json"
    path.write_text('{"A": ' + "[" * depth + "]" * depth + "}")
    path.chmod(0o600)
    try:
        value = await FileSecretProvider(path).get("A")
    except SecretFileError as exc:
        assert "nested too deeply" in str(exc)
    else:
        assert value == "[" * depth + "]" * depth


def test_sparse_10_gib_file_is_refused_before_reading(tmp_path: Path) -> None:
    """A 10 GiB (sparse) file is refused by its size, without reading it."""
    path = tmp_path / "s.json"
    with path.open("wb") as handle:
        handle.truncate(10 * 1024**3)
    path.chmod(0o600)
    outcome = read_in_subprocess(path)
    assert outcome["type"] == "SecretFileError"
    assert "larger than 1048576 bytes" in outcome["message"]
    assert outcome["seconds"] < 1.0
    assert outcome["growth_kb"] < 8 * 1024


def test_one_byte_over_max_file_size_is_refused(tmp_path: Path) -> None:
    """max_file_size is exact: at the limit the file is read, one byte over it is refused."""
    path = tmp_path / "s.json"
    body = json.dumps({"A": "x" * 990})
    path.write_text(body)
    path.chmod(0o600)
    size = len(body)
    assert read_in_subprocess(path, max_file_size=size)["value"] == "x" * 990
    outcome = read_in_subprocess(path, max_file_size=size - 1)
    assert outcome["type"] == "SecretFileError" and "larger than" in outcome["message"]


# -- fuzzed file contents, in process ---------------------------------------------------------


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def read_once(loop: asyncio.AbstractEventLoop, path: Path) -> str | None:
    try:
        return loop.run_until_complete(asyncio.wait_for(FileSecretProvider(path).get("A"), 10))
    except SecretFileError as exc:
        assert str(path) in str(exc)
        assert len(str(exc)) < 300 + len(str(path))
        return None


@pytest.mark.parametrize("name", ["s.json", "s.yaml"])
def test_random_bytes_never_crash_the_reader(
    tmp_path: Path, scratch: asyncio.AbstractEventLoop, name: str
) -> None:
    """Random bytes are read as a document or refused with SecretFileError, nothing else."""
    path = tmp_path / name

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=2048))
    @example(b"\xef\xbb\xbf")
    @example(b"\xef\xbb\xbf{}")
    @example(b"\x00")
    def check(raw: bytes) -> None:
        path.write_bytes(raw)
        path.chmod(0o600)
        read_once(scratch, path)

    check()


YAML_ALPHABET = "[]{}:,-?&*!|>'\"%@`#\n \t\\aAzZ019.~=<+_\x85\u2028\ufeff"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=YAML_ALPHABET, max_size=200))
def test_fuzzed_yaml_syntax_never_crashes_the_reader(tmp_path_factory: Any, text: str) -> None:
    """YAML-syntax soup is read as a document or refused with SecretFileError, nothing else."""
    path = tmp_path_factory.mktemp("fuzz") / "s.yaml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    try:
        value = asyncio.run(asyncio.wait_for(FileSecretProvider(path).get("A"), 10))
    except SecretFileError:
        return
    assert value is None or isinstance(value, str)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_any_json_object_reads_as_text_values(tmp_path_factory: Any, doc: dict[str, Any]) -> None:
    """Any JSON object: every valid key reads back as its text, or the file is refused."""
    path = tmp_path_factory.mktemp("json") / "s.json"
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    provider = FileSecretProvider(path)
    try:
        document = asyncio.run(provider.document())
    except SecretFileError as exc:
        assert "invalid key" in str(exc) or "keys" in str(exc)
        assert any(not key_is_valid(k) for k in doc)
        return
    for value in document.values():
        assert isinstance(value, str) and value


# -- symlinks and ownership ----------------------------------------------------------------


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_symlink_to_a_device_is_refused_without_reading(tmp_path: Path, device: str) -> None:
    """A secrets file that links to a device is refused, not read (no hang, no memory)."""
    if not os.path.exists(device):
        pytest.fail(f"{device} is missing on this machine")
    link = tmp_path / "s.json"
    link.symlink_to(device)
    outcome = read_in_subprocess(link)
    assert outcome["type"] == "SecretFileError"
    assert "not a regular file" in outcome["message"]


def test_symlink_loop_and_directory_are_refused(tmp_path: Path) -> None:
    """A symlink loop and a directory in the file's place raise SecretFileError."""
    loop_link = tmp_path / "loop.json"
    loop_link.symlink_to(loop_link)
    assert "cannot be inspected" in read_in_subprocess(loop_link)["message"]
    directory = tmp_path / "dir.json"
    directory.mkdir()
    assert "not a regular file" in read_in_subprocess(directory)["message"]


async def test_dangling_symlink_reads_empty_and_a_write_goes_through_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A link to a missing file is an empty document; a write creates the target, warned."""
    target = tmp_path / "real" / "s.json"
    link = tmp_path / "s.json"
    link.symlink_to(target)
    provider = FileSecretProvider(link)
    assert await provider.get("A") is None
    with caplog.at_level(logging.WARNING, logger="simpletuner_secrets"):
        await provider.set("A", SECRET)
    assert "is a symlink; writing to" in caplog.text
    assert SECRET not in caplog.text
    assert link.is_symlink()
    assert json.loads(target.read_text()) == {"A": SECRET}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@pytest.fixture
def foreign_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A secrets file owned by uid 65534: chowned when running as root, else faked."""
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"A": SECRET}))
    path.chmod(0o600)
    if os.getuid() == 0:
        os.chown(path, 65534, 65534)
    else:
        real_uid = os.getuid()
        monkeypatch.setattr(os, "getuid", lambda: real_uid + 1)
    return path


async def test_file_of_another_user_is_read_with_one_warning(
    foreign_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another user's file (uid 65534) is read, with one warning naming the uid, no value."""
    now = [0.0]
    provider = FileSecretProvider(foreign_file, timer=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="simpletuner_secrets"):
        for _ in range(3):
            assert await provider.get("A") == SECRET
            now[0] += 2
    warnings = [r for r in caplog.records if "owned by another user" in r.getMessage()]
    assert len(warnings) == 1
    assert f"uid {os.stat(foreign_file).st_uid}" in warnings[0].getMessage()
    assert SECRET not in caplog.text


async def test_file_of_another_user_is_refused_when_strict(foreign_file: Path) -> None:
    """strict_permissions=True refuses another user's file for reads and for writes."""
    provider = FileSecretProvider(foreign_file, strict_permissions=True)
    with pytest.raises(SecretFileError, match="owned by another user") as info:
        await provider.get("A")
    assert SECRET not in str(info.value)
    before = os.stat(foreign_file)
    with pytest.raises(SecretFileError, match="owned by another user"):
        await provider.set("B", "x")
    after = os.stat(foreign_file)
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_size,
    )


async def test_manager_skips_a_refused_file_and_says_why(foreign_file: Path) -> None:
    """Through the manager, a refused file is a failing provider: skipped, or raised."""
    memory = InMemorySecretProvider({"A": "from-memory"})
    strict = FileSecretProvider(foreign_file, strict_permissions=True)
    async with SecretsManager([strict, memory]) as manager:
        assert await manager.get("A") == "from-memory"
    strict = FileSecretProvider(foreign_file, strict_permissions=True)
    async with SecretsManager([strict, memory], on_provider_error="raise") as manager:
        with pytest.raises(SecretFileError, match="owned by another user"):
            await manager.get("A")


@pytest.mark.parametrize("value", [MARK + "\x85", "\x85", "a\x85b\x85", MARK + "\u2028\x85\u2029"])
async def test_yaml_value_with_nel_round_trips(tmp_path: Path, value: str) -> None:
    """A value holding NEL (U+0085) is written double-quoted and reads back unchanged."""
    path = tmp_path / "s.yaml"
    await FileSecretProvider(path).set("A", value)
    assert await FileSecretProvider(path).get("A") == value


# -- the leak audit itself (tests/leak_audit.py) ---------------------------------------------


def test_leak_audit_finds_and_masks_a_secret() -> None:
    """find_leaks names the place and shows the secret masked; clean texts give nothing."""
    from tests.leak_audit import find_leaks

    leaks = find_leaks(
        [("a log record", f"token={SECRET}"), ("a repr", "Provider(name='x')")], {SECRET}
    )
    assert leaks == [f"S3... ({len(SECRET)} characters) in a log record"]
    assert find_leaks([("a log record", "nothing")], {SECRET}) == []


def test_leak_audit_reads_module_constants_but_not_key_names() -> None:
    """SECRET-named str constants count; key names, short strings and lower case do not."""
    import types

    from tests.leak_audit import module_secrets

    module = types.ModuleType("fake_tests")
    module.SECRET = "value-one-123"  # type: ignore[attr-defined]
    module.WEBHOOK_SECRET_VALUE = "value-two-456"  # type: ignore[attr-defined]
    module.CLOUD_WEBHOOK_SECRET = "CLOUD_WEBHOOK_SECRET"  # type: ignore[attr-defined]
    module.SHORT_SECRET = "abc"  # type: ignore[attr-defined]
    module.secret = "lower-case-789"  # type: ignore[attr-defined]
    module.SECRET_COUNT = 12345678  # type: ignore[attr-defined]
    assert module_secrets(module) == {"value-one-123", "value-two-456"}


LEAKY_TESTS = """
import logging
import warnings

import pytest

from simpletuner_secrets.errors import ProviderError, SecretsError
from simpletuner_secrets.providers.base import SecretProvider
from simpletuner_secrets.testing import InMemorySecretProvider
from tests.leak_audit import register_secret

SECRET = "hf_audit_canary_0123456789"
KEPT = []


class Chatty(SecretProvider):
    name = "chatty"

    def __init__(self, token):
        self.token = token

    async def get(self, key):
        return None

    def __repr__(self):
        return f"Chatty(token={self.token!r})"


def test_clean():
    logging.getLogger("simpletuner_secrets").warning("nothing to see, key HF_TOKEN")


def test_library_debug_line():
    logging.getLogger("simpletuner_secrets.manager").debug("value=%s", SECRET)


def test_registered_value_in_another_logger():
    value = "tok_registered_987654"
    register_secret(value)
    logging.getLogger("app").error("got %s", value)


def test_traceback_in_a_log_record():
    try:
        raise RuntimeError(SECRET)
    except RuntimeError:
        logging.getLogger("app").exception("failed")


def test_error_caught_by_raises():
    with pytest.raises(ProviderError):
        raise ProviderError("backend said " + SECRET, provider="x")


@pytest.mark.filterwarnings("default")
def test_warning():
    warnings.warn("careful: " + SECRET, UserWarning)


def test_repr_of_a_provider_kept_alive():
    KEPT.append(Chatty(SECRET))


def test_value_of_an_in_memory_provider():
    InMemorySecretProvider({"A": "memory_value_abcdef"})
    logging.getLogger("app").warning("memory_value_abcdef")


def test_botocore_debug_is_not_ours():
    logging.getLogger("botocore.endpoint").warning("body %s", SECRET)


@pytest.mark.leaks_allowed
def test_on_purpose():
    logging.getLogger("app").warning("%s", SECRET)


def test_zz_frame_locals_of_a_raised_error():
    import importlib.util
    import pathlib

    import tests.leak_audit as audit

    library = pathlib.Path(__file__).with_name("leaky_library.py")
    library.write_text(
        "from simpletuner_secrets.errors import SecretsError\\n"
        "def parse(text):\\n"
        "    raise SecretsError('the document is malformed')\\n"
    )
    audit.PACKAGE_DIRS.append(str(library))  # its frames count as the library's
    spec = importlib.util.spec_from_file_location("leaky_library", library)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SecretsError):
        module.parse("prefix " + SECRET)
"""

LEAKY_EXPECTED = {
    "test_library_debug_line": "a DEBUG log record of 'simpletuner_secrets.manager'",
    "test_registered_value_in_another_logger": "a ERROR log record of 'app'",
    "test_traceback_in_a_log_record": "a ERROR log record of 'app'",
    "test_error_caught_by_raises": "the message of a SecretsError",
    "test_warning": "a warning",
    "test_repr_of_a_provider_kept_alive": "the repr of a Chatty",
    "test_value_of_an_in_memory_provider": "a WARNING log record of 'app'",
    "test_zz_frame_locals_of_a_raised_error": "a local of parse",
}


def test_leak_audit_fails_leaky_tests_in_a_real_pytest_run(tmp_path: Path) -> None:
    """A pytest run with the plugin: each leak errors its test at teardown, masked; clean,
    third-party and marked tests pass."""
    root = Path(__file__).resolve().parents[2]
    test_file = tmp_path / "test_leaky.py"
    test_file.write_text(LEAKY_TESTS)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.leak_audit",
            "--rootdir",
            str(root),
            "-c",
            str(root / "pyproject.toml"),
            "--show-capture=no",
            "-rA",
            str(test_file),
        ],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
    )
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    for name, where in LEAKY_EXPECTED.items():
        assert re.search(rf"^ERROR \S*::{name} - Failed: leak audit", out, re.MULTILINE), name
        assert where in out, where
    for name in ("test_clean", "test_botocore_debug_is_not_ours", "test_on_purpose"):
        assert re.search(rf"^PASSED \S*::{name}$", out, re.MULTILINE), name
        assert not re.search(rf"^ERROR \S*::{name} ", out, re.MULTILINE), name
    assert f"11 passed, 1 warning, {len(LEAKY_EXPECTED)} errors" in out, out
    # The audit masks what it found: the canary shows only in the warnings summary, which
    # is pytest's own report of the (leaky) warning.
    assert "hf... (26 characters)" in out
    summary_start = out.index("warnings summary")
    assert "hf_audit_canary_0123456789" not in out[:summary_start]
    assert "hf_audit_canary_0123456789" not in out[out.index("PASSES") :]
