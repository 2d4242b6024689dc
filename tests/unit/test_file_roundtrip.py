"""Writes to a secrets file change only their key: every other byte of a YAML file (comments,
order, quoting, block scalars, ``yes``/``on`` texts) and every other member of a JSON file stay
as written, checked on generated documents through the real provider."""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from simpletuner_secrets import normalize_key
from simpletuner_secrets.providers.file import FileSecretProvider

SECRET = "hf_roundtrip_do_not_leak_5521"
SPELLINGS = ["A", "a", "B_C", "b-c", "b.c", "D", "on", "YES"]
KEYS = ["A", "B_C", "D", "ON", "YES", "NEW_KEY"]


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(0o600)
    return path


def run(path: Path, key: str, value: str | None) -> bool | None:
    """Set (value) or delete (None) ``key`` in ``path`` through a fresh provider."""

    async def main() -> bool | None:
        provider = FileSecretProvider(path)
        if value is None:
            return await provider.delete(key)
        await provider.set(key, value)
        return None

    return asyncio.run(main())


class Rewrites(logging.Handler):
    """Counts the warnings that a file was written again whole instead of edited in place."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "written again whole" in record.getMessage()


def run_counting_rewrites(path: Path, key: str, value: str | None) -> int:
    """`run`, returning how many whole rewrites it logged (0: the file was edited in place)."""
    handler = Rewrites()
    logger = logging.getLogger("simpletuner_secrets")
    logger.addHandler(handler)
    try:
        run(path, key, value)
    finally:
        logger.removeHandler(handler)
    return handler.count


def read(path: Path) -> dict[str, str]:
    """The whole document as a fresh provider reads it."""

    async def main() -> dict[str, str]:
        return dict(await FileSecretProvider(path).document())

    return asyncio.run(main())


# -- YAML documents as chunks of lines ----------------------------------------------------

#: Value texts after "KEY:" (each a complete member once the key is put before it).
VALUE_TEXTS = [
    " plain",
    " yes",
    " no",
    " on",
    " OFF",
    " true",
    " 0123",
    " 1.50",
    " 12:34",
    " 0x1F",
    " 2024-01-31",
    " ~",
    "",
    " 'single ''quoted'''",
    ' "double \\t \\u00e9 \\" quoted"',
    " plain  # a comment after the value",
    " 'x'   # note",
    " |\n  line one\n  line two\n",
    " |-\n  keep: this\n    indented\n",
    " |+\n  kept\n",
    " |+\n  kept with its blank line\n\n",
    " >\n  folded\n  text\n",
    " {x: 1, y: [a, b]}",
    " [1, 2, yes]",
    "\n  x: 1\n  y: yes\n",
    "\n  - a\n  - b\n",
    '\n  "on the next line"',
    " plain\n  continued\n",
]
FILLERS = ["# a comment\n", "\n", "  # an indented comment\n", "#KEY: commented out\n"]


@dataclass
class YamlDoc:
    chunks: list[tuple[str | None, str]]  # (key spelling, or None for a filler; its lines)
    newline: str
    final_newline: bool

    def segments(self) -> list[str]:
        """Each chunk's text in the file: its line breaks, the last one maybe without."""
        parts = [part.replace("\n", self.newline) for _, part in self.chunks]
        if parts and not self.final_newline:
            parts[-1] = parts[-1][: -len(self.newline)]
        return parts

    def render(self) -> str:
        return "".join(self.segments())


def member(spelling: str, value_text: str) -> str:
    text = spelling + ":" + value_text
    return text if text.endswith("\n") else text + "\n"


@st.composite
def yaml_docs(draw: st.DrawFn) -> YamlDoc:
    spellings = draw(st.lists(st.sampled_from(SPELLINGS), unique=True, max_size=6))
    chunks: list[tuple[str | None, str]] = []
    if draw(st.booleans()):
        chunks.append((None, draw(st.sampled_from(["---\n", "%YAML 1.1\n---\n", "# top\n"]))))
    fillers = FILLERS
    for spelling in [*spellings, None]:
        for filler in draw(st.lists(st.sampled_from(fillers), max_size=2)):
            chunks.append((None, filler))
        if spelling is None:
            break
        value_text = draw(st.sampled_from(VALUE_TEXTS))
        chunks.append((spelling, member(spelling, value_text)))
        # An indented comment line right after a block scalar is a line of that scalar, and
        # so is a blank line after a block that keeps its trailing lines (|+).
        fillers = FILLERS
        if value_text.startswith((" |", " >")):
            fillers = [f for f in FILLERS if not f.startswith(" ")]
        if value_text.startswith(" |+"):
            fillers = [f for f in fillers if f.strip()]
    return YamlDoc(chunks, draw(st.sampled_from(["\n", "\r\n"])), draw(st.booleans()))


VALUES = st.one_of(
    st.sampled_from(
        [
            SECRET,
            "yes",
            "on",
            "0123",
            "1.50",
            "null",
            "a: b # c",
            "  padded  ",
            "line one\nline two\n",
            "no newline\nat the end",
            "trailing\n\n\n",
            "  indented first\nsecond\n",
            'it\'s "quoted"',
            "tab\tand\x85nel\u2028ls",
            "- dash",
            "{not: flow}",
            "é ü 🔑",
            "\ufeffbom",
            "#hash",
        ]
    ),
    st.text(min_size=1, max_size=12),
)


def attached(doc: YamlDoc, index: int, present: list[int] | None = None) -> list[int]:
    """The filler chunks that go with member ``index``: the comment lines indented under it
    (and blank lines between them) that follow it, among the ``present`` chunks."""
    order = list(range(len(doc.chunks))) if present is None else present
    taken: list[int] = []
    run: list[int] = []
    for i in order[order.index(index) + 1 :]:
        name, text = doc.chunks[i]
        if name is not None:
            break
        if not text.strip():
            run.append(i)
        elif text.startswith(" ") and text.lstrip().startswith("#"):
            taken += [*run, i]
            run = []
        else:
            break
    return taken


def keeps_lines(doc: YamlDoc, index: int) -> bool:
    name, text = doc.chunks[index]
    return name is not None and ": |+" in text.split("\n", 1)[0]


def after_deleting(doc: YamlDoc, doomed: list[int]) -> list[int]:
    """The chunks left once members ``doomed`` are deleted, last first, as the edit does: each
    with the comments indented under it, and with the blank lines after it when the member
    before it is a block that keeps its trailing lines (they would join that block)."""
    present = list(range(len(doc.chunks)))
    for index in reversed(doomed):
        gone = [index, *attached(doc, index, present)]
        position = present.index(index)
        if position and keeps_lines(doc, present[position - 1]):
            rest = present[present.index(gone[-1]) + 1 :]
            for i in rest:
                if doc.chunks[i][0] is not None or doc.chunks[i][1].strip():
                    break
                gone.append(i)
        present = [i for i in present if i not in gone]
    return present


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=yaml_docs(), key=st.sampled_from(KEYS), value=st.one_of(st.none(), VALUES))
@example(doc=YamlDoc([(None, "# only a comment\n")], "\n", True), key="A", value=SECRET)
@example(doc=YamlDoc([], "\n", True), key="A", value="multi\nline\n")
def test_yaml_write_changes_only_its_key(doc: YamlDoc, key: str, value: str | None) -> None:
    """Any document, any key set or deleted: every chunk of lines that is not that key's is
    byte-identical and in place; the key's new text alone reads as the value; the file reads
    back as the old document with just that key changed."""
    text = doc.render()
    with tempfile.TemporaryDirectory() as directory:
        path = write(Path(directory) / "s.yaml", text)
        before = read(path)
        result = run(path, key, value)
        after_text = path.read_bytes().decode()
        after = read(path)
    hits = [i for i, (name, _) in enumerate(doc.chunks) if name and normalize_key(name) == key]
    expected = dict(before)
    expected.pop(key, None)
    if value is not None:
        expected[key] = value
    assert after == expected
    segments = doc.segments()
    if value is None:
        assert result is bool(hits)
        left = after_deleting(doc, hits)
        assert after_text == "".join(segments[i] for i in left)
        return
    # Other spellings go, with the comments indented under them.
    left = after_deleting(doc, hits[1:])
    gone = set(range(len(segments))) - set(left)
    if hits:
        places = [hits[0]]
    else:  # a new key goes after the last member, or before it if it ends the file
        members = [i for i, (name, _) in enumerate(doc.chunks) if name]
        places = [members[-1] + 1 + len(attached(doc, members[-1])) if members else len(segments)]
        if members and places[0] == len(segments) and not doc.final_newline:
            places.append(members[-1])
    for at in places:
        prefix = "".join(s for i, s in enumerate(segments[:at]) if i not in gone)
        suffix = "".join(s for i, s in enumerate(segments) if i > at - (not hits) and i not in gone)
        if after_text.startswith(prefix) and after_text.endswith(suffix):
            break
    else:
        raise AssertionError(f"other lines changed: {after_text!r}")
    own = after_text[len(prefix) : len(after_text) - len(suffix)]
    assert len(prefix) + len(own) + len(suffix) == len(after_text)
    assert yaml.safe_load(own) == {key: value}, own


def test_yaml_write_keeps_comments_order_quoting_blocks_and_texts(tmp_path: Path) -> None:
    """The example of the issue: comments, key order, quoting, a | block and yes/on texts
    survive a set and a delete of other keys, byte for byte."""
    original = (
        "# Secrets for the trainer\n"
        "ZETA: 'single'  # quoted on purpose\n"
        "CERT: |\n"
        "  -----BEGIN-----\n"
        "  abc\n"
        "  -----END-----\n"
        "\n"
        "FLAG: yes\n"
        "MODE: on\n"
        "PRICE: 1.50\n"
        'alpha: "double"\n'
    )
    path = write(tmp_path / "s.yaml", original)
    run(path, "HF_TOKEN", SECRET)
    # A new key goes last, quoted like the last value.
    assert path.read_text() == original + f'HF_TOKEN: "{SECRET}"\n'
    run(path, "FLAG", "no")
    assert path.read_text() == original.replace("FLAG: yes", 'FLAG: "no"') + (
        f'HF_TOKEN: "{SECRET}"\n'
    )
    run(path, "CERT", "-----BEGIN-----\nxyz\n-----END-----\n")
    run(path, "HF_TOKEN", None)
    assert path.read_text() == original.replace("FLAG: yes", 'FLAG: "no"').replace(
        "  abc\n", "  xyz\n"
    )
    assert read(path)["MODE"] == "on" and read(path)["PRICE"] == "1.50"


def test_yaml_written_values_read_back_exactly(tmp_path: Path) -> None:
    """Values that YAML would bend (yes, 0123, padded, NEL, multi-line) read back exactly,
    and values that need no quotes are written plain."""
    path = write(tmp_path / "s.yaml", "A: 1\n")
    for value in ["yes", "0123", "  padded ", "a\x85b", "x\n\n", "- x", "é 🔑", "null"]:
        run(path, "B", value)
        assert read(path)["B"] == value
    fresh = write(tmp_path / "fresh.yaml", "A: 1\n")
    run(fresh, "B", SECRET)
    assert fresh.read_text() == f"A: 1\nB: {SECRET}\n"


def test_yaml_spelling_and_quoting_of_a_replaced_key(tmp_path: Path) -> None:
    """A key written in another spelling is replaced in place under its normalized name, other
    spellings removed; a single-quoted value stays single-quoted."""
    path = write(tmp_path / "s.yaml", "hf-token: 'old'  # c\nX: 1\nhf.token: other\n")
    run(path, "HF_TOKEN", "new")
    assert path.read_text() == "HF_TOKEN: 'new'  # c\nX: 1\n"


def test_yaml_flow_mapping_file_is_edited_in_its_text(tmp_path: Path) -> None:
    """A .yaml file holding a JSON object (as older tools wrote them) is edited in place,
    its members kept in order and quoted like their neighbours."""
    path = write(tmp_path / "s.yaml", '{"B": "2", "A": "1"}\n')
    run(path, "C", "3")
    assert path.read_text() == '{"B": "2", "A": "1", "C": "3"}\n'
    run(path, "B", None)
    assert path.read_text() == '{"A": "1", "C": "3"}\n'
    run(path, "A", "on")
    assert path.read_text() == '{"A": "on", "C": "3"}\n'
    assert read(path) == {"A": "on", "C": "3"}


def test_yaml_edit_that_would_not_read_back_is_never_written(tmp_path: Path) -> None:
    """A key whose quoted text passes YAML's 1024-character limit for a plain key line: the
    edit does not read back, so the file is written whole (an explicit ``?`` key) instead,
    and every value reads back."""
    path = write(tmp_path / "s.yaml", "# kept only if the edit reads back\nA: yes\n")
    key = '"' * 1000
    run(path, key, SECRET)
    assert read(path) == {"A": "yes", key: SECRET}
    assert "? " in path.read_text()


def test_yaml_layout_beyond_the_edit_is_rewritten_whole_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A layout the text edit refuses (a document that is a lone null) is written again
    whole, with one warning naming the path and no value."""
    path = write(tmp_path / "s.yaml", "~\n")
    with caplog.at_level(logging.WARNING, logger="simpletuner_secrets"):
        run(path, "B", SECRET)
    assert read(path) == {"B": SECRET}
    assert any(
        "written again whole" in r.getMessage() and str(path) in r.getMessage()
        for r in caplog.records
    )
    assert SECRET not in caplog.text


# -- JSON --------------------------------------------------------------------------------

json_values = st.one_of(
    st.text(max_size=6),
    st.integers(-(10**20), 10**20),
    st.sampled_from([1.5, -0.0, 1e300]),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


def member_texts(members: dict[str, Any], indent: Any, separators: Any) -> list[str]:
    return [
        json.dumps({k: v}, indent=indent, separators=separators, ensure_ascii=False)[1:-1].strip()
        for k, v in members.items()
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    members=st.dictionaries(st.sampled_from(SPELLINGS), json_values, max_size=5),
    layout=st.sampled_from([(None, (", ", ": ")), (None, (",", ":")), (2, None), (4, None)]),
    key=st.sampled_from(KEYS),
    value=st.one_of(st.none(), VALUES),
)
def test_json_write_changes_only_its_key(
    members: dict[str, Any], layout: tuple[Any, Any], key: str, value: str | None
) -> None:
    """Any JSON object and layout, any key set or deleted: the other members keep their text
    and order, the space between them is kept, and the file reads back with only that key
    changed."""
    indent, separators = layout
    text = json.dumps(members, indent=indent, separators=separators, ensure_ascii=False)
    with tempfile.TemporaryDirectory() as directory:
        path = write(Path(directory) / "s.json", text)
        before = read(path)
        run(path, key, value)
        after_text = path.read_text()
        after = read(path)
    expected = dict(before)
    expected.pop(key, None)
    if value is not None:
        expected[key] = value
    assert after == expected
    others = {k: v for k, v in members.items() if normalize_key(k) != key}
    position = 0
    for piece in member_texts(others, indent, separators):
        found = after_text.find(piece, position)
        assert found != -1, (piece, after_text)  # str.find: -1 when the text is gone
        position = found + len(piece)
    if indent is not None and others:
        # One member a line: every other member's line is there, in order, but for the
        # comma a new or removed last member moves.
        lines = [line.rstrip(",") for line in after_text.split("\n")]
        for piece in member_texts(others, indent, separators):
            if "\n" not in piece:
                assert " " * indent + piece in lines


def member_spans(text: str) -> dict[str, str]:
    """Each top-level member's own text (from its key to its value's end), by key."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None or not isinstance(root, yaml.MappingNode):
        return {}
    spans = {}
    for key, value in root.value:
        end = value.end_mark.index
        if isinstance(value, yaml.ScalarNode) and value.style in ("|", ">"):
            end = len(text[:end].rstrip())
        spans[key.value] = text[key.start_mark.index : end]
    return spans


pyyaml_values = st.one_of(
    st.text(max_size=30),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    members=st.dictionaries(st.sampled_from(SPELLINGS), pyyaml_values, max_size=5),
    style=st.sampled_from([None, "'", '"', "|"]),
    flow=st.sampled_from([False, True, None]),
    width=st.sampled_from([20, 80]),
    start=st.booleans(),
    key=st.sampled_from(KEYS),
    value=st.one_of(st.none(), VALUES),
)
def test_yaml_files_written_by_pyyaml_are_edited_in_place(
    members: dict[str, Any],
    style: str | None,
    flow: bool | None,
    width: int,
    start: bool,
    key: str,
    value: str | None,
) -> None:
    """Files PyYAML writes in any of its styles (quoted, literal, flow, folded long lines,
    explicit start): an edit reads back right, and every other member's text is unchanged."""
    if style is not None:  # a forced style tags every other type (!!int "1"): texts only
        members = {k: v if isinstance(v, str) else json.dumps(v) for k, v in members.items()}
    text = yaml.safe_dump(
        members,
        default_style=style,
        default_flow_style=flow,
        width=width,
        explicit_start=start,
        allow_unicode=True,
        sort_keys=False,
    )
    with tempfile.TemporaryDirectory() as directory:
        path = write(Path(directory) / "s.yaml", text)
        before = read(path)
        rewrites = run_counting_rewrites(path, key, value)
        after_text = path.read_text()
        after = read(path)
    expected = dict(before)
    expected.pop(key, None)
    if value is not None:
        expected[key] = value
    assert after == expected
    assert rewrites == 0, "written again whole instead of edited in place"
    old_spans, new_spans = member_spans(text), member_spans(after_text)
    for name, span in old_spans.items():
        if normalize_key(str(name)) != key:
            assert new_spans.get(name) == span, (name, text, after_text)
