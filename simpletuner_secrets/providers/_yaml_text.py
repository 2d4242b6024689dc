"""YAML for the secrets file: strict loaders (YAML 1.2 booleans, no aliases, anchors or tags),
and an edit of one top-level key made in the file's text, every other byte left as written.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import yaml

from ..keys import normalize_key
from ._number_text import NumberText

__all__ = [
    "Dumper",
    "EditRefused",
    "NumberText",
    "RefusedYAML",
    "RewriteLoader",
    "TextLoader",
    "edit_yaml",
    "value_styles",
]

_STR_TAG = "tag:yaml.org,2002:str"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
#: The line breaks of YAML 1.1 as PyYAML reads them (NEL, LS and PS included).
_BREAKS = "\r\n\x85\u2028\u2029"
_SPACE = " \t" + _BREAKS


class RefusedYAML(yaml.MarkedYAMLError):
    """A construct the strict loader refuses; its text is ours, never the document's."""


def _resolvers(*, timestamps: bool) -> dict[Any, list[tuple[str, re.Pattern[str]]]]:
    """SafeLoader's implicit resolvers with YAML 1.2 booleans: only true/false, any case.

    YAML 1.1 reads ``yes``, ``no``, ``on`` and ``off`` as booleans; for a secret (a country
    code ``NO``, a flag ``on``) the text written is the value meant.
    """
    table: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items():
        kept = [
            (tag, regexp)
            for tag, regexp in resolvers
            if tag != _BOOL_TAG and (timestamps or not tag.endswith(":timestamp"))
        ]
        if kept:
            table[first] = kept
    boolean = re.compile(r"^(?:[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$")
    for first in "tTfF":
        table.setdefault(first, []).insert(0, (_BOOL_TAG, boolean))
    return table


class StrictLoader(yaml.SafeLoader):
    """A safe loader that also refuses anchors, aliases and every explicit tag.

    ``safe_load`` follows aliases, and nested aliases explode when turned to text (billion
    laughs); a secrets file has no need for either, nor for tags.
    """

    yaml_implicit_resolvers = _resolvers(timestamps=True)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise RefusedYAML(
                problem="anchors and aliases are not allowed", problem_mark=event.start_mark
            )
        if getattr(event, "tag", None) is not None:
            raise RefusedYAML(
                problem="explicit tags are not allowed", problem_mark=event.start_mark
            )
        return super().compose_node(parent, index)


_NUMBER_TEXT_TAG = "tag:simpletuner-secrets,2026:number-text"
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


class TextLoader(StrictLoader):
    """The read loader: numbers keep the text they were written as; no dates.

    YAML 1.1 reads ``0123`` as 83, ``12:34`` as 754 and ``0x1F`` as 31; for a secret, the text
    written is the value meant. Top-level values that are numbers become that text; numbers
    inside objects and arrays keep their text in the JSON text of the value when it is a JSON
    number (``1.50``), and are converted otherwise (``0x1F`` is 31). Top-level keys must be
    plain strings.
    """

    yaml_implicit_resolvers = _resolvers(timestamps=False)

    def construct_document(self, node: Any) -> Any:
        if isinstance(node, yaml.MappingNode):
            nested: list[Any] = []
            for key_node, value_node in node.value:
                if key_node.tag != _STR_TAG:
                    raise RefusedYAML(
                        problem="keys must be strings", problem_mark=key_node.start_mark
                    )
                if isinstance(value_node, yaml.ScalarNode) and value_node.tag in _NUMBER_TAGS:
                    value_node.tag = _STR_TAG
                elif not isinstance(value_node, yaml.ScalarNode):
                    nested.append(value_node)
            while nested:  # iterative: the composer allows deeper nesting than recursion
                item = nested.pop()
                if isinstance(item, yaml.ScalarNode):
                    if item.tag in _NUMBER_TAGS and _JSON_NUMBER.fullmatch(item.value):
                        item.tag = _NUMBER_TEXT_TAG
                elif isinstance(item, yaml.MappingNode):
                    nested.extend(value for _, value in item.value)  # keys stay as they are
                else:
                    nested.extend(item.value)
        return super().construct_document(node)


def _construct_number_text(loader: Any, node: Any) -> NumberText:
    return NumberText(node.value)


TextLoader.add_constructor(_NUMBER_TEXT_TAG, _construct_number_text)


class _Verbatim(str):
    """A top-level number or timestamp of a file being rewritten, as the text it was written.

    A rewrite must change only the key written: PyYAML would turn ``0123`` into ``83``,
    ``1.50`` into ``1.5`` and reformat a timestamp, and reads answer the text written.
    """

    __slots__ = ("tag",)
    tag: str

    def __new__(cls, text: str, tag: str) -> _Verbatim:
        kept = super().__new__(cls, text)
        kept.tag = tag
        return kept


_VERBATIM_PREFIX = "tag:simpletuner-secrets,2026:verbatim:"
_VERBATIM_TAGS = (*_NUMBER_TAGS, "tag:yaml.org,2002:timestamp")


class RewriteLoader(StrictLoader):
    """The loader of a full rewrite (the fallback of `edit_yaml`): native values, but
    top-level numbers and timestamps verbatim."""

    def construct_document(self, node: Any) -> Any:
        if isinstance(node, yaml.MappingNode):
            for _, value_node in node.value:
                if isinstance(value_node, yaml.ScalarNode) and value_node.tag in _VERBATIM_TAGS:
                    value_node.tag = _VERBATIM_PREFIX + value_node.tag
        return super().construct_document(node)


def _construct_verbatim(loader: Any, tag: str, node: Any) -> _Verbatim:
    return _Verbatim(node.value, tag)


RewriteLoader.add_multi_constructor(_VERBATIM_PREFIX, _construct_verbatim)


class Dumper(yaml.SafeDumper):
    """The safe dumper, except that a string holding NEL (U+0085) is always double-quoted.

    With ``allow_unicode`` PyYAML writes NEL raw inside a single-quoted or plain scalar, where
    YAML reads it as a line break and folds it to a space: the value would change on disk.
    Double quotes escape it as ``\\N``.
    """

    def analyze_scalar(self, scalar: str) -> Any:
        analysis = super().analyze_scalar(scalar)
        if "\x85" in scalar:
            analysis.allow_flow_plain = analysis.allow_block_plain = False
            analysis.allow_single_quoted = analysis.allow_block = False
        return analysis


def _represent_verbatim(dumper: Any, data: _Verbatim) -> Any:
    return dumper.represent_scalar(data.tag, str(data))


Dumper.add_representer(_Verbatim, _represent_verbatim)


# -- the text edit -------------------------------------------------------------------------


class EditRefused(Exception):
    """The file's layout is one the text edit does not handle; rewrite it whole instead."""


class _Member(NamedTuple):
    key: Any  # yaml.ScalarNode
    value: Any  # yaml.Node


#: A plain scalar any YAML reader takes as the same string (checked against the resolvers too).
_PLAIN = re.compile(r"[A-Za-z0-9_/][A-Za-z0-9_./+=@~-]*")


class _Resolver12(yaml.resolver.Resolver):
    yaml_implicit_resolvers = StrictLoader.yaml_implicit_resolvers


#: YAML 1.1's resolver (what other tools read) and ours.
_PLAIN_RESOLVERS = (yaml.resolver.Resolver(), _Resolver12())
#: What PyYAML accepts unescaped in a double-quoted scalar on one line.
_DOUBLE_SAFE = re.compile(
    "[\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)
_ESCAPES = {
    "\0": "\\0",
    "\a": "\\a",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\v": "\\v",
    "\f": "\\f",
    "\r": "\\r",
    "\x1b": "\\e",
    '"': '\\"',
    "\\": "\\\\",
    "\x85": "\\N",
    "\u2028": "\\L",
    "\u2029": "\\P",
}


def _plain_ok(value: str) -> bool:
    if not _PLAIN.fullmatch(value):
        return False
    return all(
        resolver.resolve(yaml.ScalarNode, value, (True, False)) == _STR_TAG  # type: ignore[no-untyped-call]
        for resolver in _PLAIN_RESOLVERS
    )


def _double_quoted(value: str) -> str:
    out = ['"']
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif _DOUBLE_SAFE.match(char):
            out.append(char)
        elif char <= "\xff":
            out.append(f"\\x{ord(char):02x}")
        elif char <= "\uffff":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)


def _single_quoted(value: str) -> str | None:
    if not value or value != value.strip(" ") or any(not _DOUBLE_SAFE.match(c) for c in value):
        return None
    return "'" + value.replace("'", "''") + "'"


def _literal(value: str, indent: int, newline: str) -> str | None:
    """``value`` as a literal block scalar (``|``) whose lines are indented ``indent``, or None
    when it has no faithful one (no line break, or characters a block cannot hold)."""
    if "\n" not in value or any(c in value for c in "\r\x85\u2028\u2029\ufeff"):
        return None
    if any(not _DOUBLE_SAFE.match(c) and c not in "\t\n" for c in value):
        return None
    body = value.rstrip("\n")
    trailing = len(value) - len(body)
    if not body.strip():
        return None
    chomp = "-" if trailing == 0 else "" if trailing == 1 else "+"
    lines = body.split("\n")
    if any(line != line.rstrip(" \t") for line in lines):
        return None  # trailing blanks are invisible to whoever edits the file next
    header = "|" + ("2" if lines[0].startswith((" ", "\t")) else "") + chomp
    pad = " " * indent
    text = header + newline + newline.join(pad + line if line else "" for line in lines)
    return text + newline * max(trailing, 1)


def value_styles() -> tuple[str, ...]:
    """The styles `edit_yaml` tries in order: the one that suits the value, then double quotes."""
    return ("fitting", "double")


def _scalar(value: str, *, style: str, flow: bool, like: str | None, indent: int, nl: str) -> str:
    """The text of ``value`` as a scalar: plain when every reader takes it as the same string,
    a literal block for several lines, else quoted like its neighbour (``like``)."""
    if style == "double":
        return _double_quoted(value)
    if not flow:
        block = _literal(value, indent, nl)
        if block is not None:
            return block
    if like == "'":
        single = _single_quoted(value)
        if single is not None:
            return single
    if like != '"' and _plain_ok(value):
        return value
    return _double_quoted(value)


def _key_text(key: str, like: str | None) -> str:
    if like not in ('"', "'") and _plain_ok(key):
        return key
    if like == "'":
        single = _single_quoted(key)
        if single is not None:
            return single
    return _double_quoted(key)


def _compose(text: str) -> Any:
    loader = StrictLoader(text)
    try:
        return loader.get_single_node()
    except (yaml.YAMLError, RecursionError):
        pass  # not chained: a YAML error quotes the line it failed on (a secret, perhaps)
    finally:
        loader.dispose()
    raise EditRefused("the file does not compose")


def _content_end(text: str, node: Any) -> int:
    """Where ``node``'s own text ends: a block scalar's trailing blank lines and a block
    collection's trailing comments belong to what follows."""
    end = node.start_mark.index
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, yaml.ScalarNode):
            stop = item.end_mark.index
            if item.style in ("|", ">") and not _keeps_trailing_lines(text, item):
                last = stop
                while last > item.start_mark.index and text[last - 1] in _SPACE:
                    last -= 1
                brk = _next_break(text, last)
                stop = min(stop, brk if brk is not None else stop)
            end = max(end, stop)
        elif item.flow_style:
            end = max(end, item.end_mark.index)
        elif isinstance(item, yaml.MappingNode):
            for key, value in item.value:
                stack.extend((key, value))
        else:
            stack.extend(item.value)
    return int(end)


def _keeps_trailing_lines(text: str, node: Any) -> bool:
    """Whether a block scalar's header says ``+`` (keep): its trailing blank lines are its own."""
    start = node.start_mark.index
    header = text[start : _next_break(text, start) or len(text)]
    return "+" in header.split("#", 1)[0]


def _next_break(text: str, position: int) -> int | None:
    """The index just after the first line break at or after ``position``; None at the end."""
    for index in range(position, len(text)):
        char = text[index]
        if char in _BREAKS:
            if char == "\r" and text.startswith("\n", index + 1):
                return index + 2
            return index + 1
    return None


def _line_end(text: str, position: int) -> int:
    """The start of the line after the one ``position`` is on, checking that only space or a
    comment follows on that line (the end of the text if it has no next line); ``position``
    itself when it starts a line."""
    if position and text[position - 1] in _BREAKS:
        return position
    brk = _next_break(text, position)
    rest = text[position : brk if brk is not None else len(text)].strip(_SPACE)
    if rest and not rest.startswith("#"):
        raise EditRefused("something follows the value on its line")
    return brk if brk is not None else len(text)


def _member_end(text: str, member: _Member) -> int:
    """The start of the line after a block member: its value's lines, and the comment lines
    indented under its key that follow them (blank lines between them included)."""
    end = _line_end(text, _content_end(text, member.value))
    column = member.key.start_mark.column
    position = end
    while position < len(text):
        brk = _next_break(text, position)
        line = text[position : brk if brk is not None else len(text)]
        stripped = line.strip(_SPACE)
        position = brk if brk is not None else len(text)
        if stripped.startswith("#") and len(line) - len(line.lstrip(" ")) > column:
            end = position
        elif stripped:
            break
    return end


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _is_empty(root: Any) -> bool:
    """No document, or one with no content (``---`` alone): a null scalar without text."""
    return root is None or (
        isinstance(root, yaml.ScalarNode) and root.value == "" and root.style is None
    )


def _members(root: Any) -> list[_Member]:
    if _is_empty(root):
        return []
    if not isinstance(root, yaml.MappingNode):
        raise EditRefused("the document is not a mapping")
    members = []
    for key, value in root.value:
        if not isinstance(key, yaml.ScalarNode):
            raise EditRefused("a key is not a scalar")
        members.append(_Member(key, value))
    return members


def _hits(members: list[_Member], nkey: str) -> list[int]:
    return [i for i, member in enumerate(members) if normalize_key(member.key.value) == nkey]


def _line_start(text: str, node: Any) -> int:
    start: int = node.start_mark.index - node.start_mark.column
    if text[start : node.start_mark.index].strip(" ?"):
        raise EditRefused("the key does not start its line")
    return start


def _remove(text: str, root: Any, members: list[_Member], index: int) -> str:
    member = members[index]
    if not root.flow_style:
        start = _line_start(text, member.key)
        end = _member_end(text, member)
        previous = members[index - 1].value if index else None
        if (
            isinstance(previous, yaml.ScalarNode)
            and _keeps_trailing_lines(text, previous)
            and _content_end(text, previous) == start
        ):
            # Blank lines after this member would become the kept trailing lines of the
            # block before it: they go with this member.
            while end < len(text) and not text[end : _next_break(text, end) or len(text)].strip(
                _SPACE
            ):
                end = _next_break(text, end) or len(text)
        return text[:start] + text[end:]
    if len(members) == 1:
        opening, closing = root.start_mark.index, root.end_mark.index - 1
        if text[opening] != "{" or text[closing] != "}":
            raise EditRefused("a flow mapping without braces")
        return text[: opening + 1] + text[closing:]
    if index < len(members) - 1:  # from its key to the next key: its own leading space stays
        return text[: member.key.start_mark.index] + text[members[index + 1].key.start_mark.index :]
    # The last: from the end of the value before it (the comma with it) to its own end.
    previous = _content_end(text, members[index - 1].value)
    return text[:previous] + text[_content_end(text, member.value) :]


def _style(node: Any) -> str | None:
    return node.style if isinstance(node, yaml.ScalarNode) else None


def _replace(text: str, root: Any, member: _Member, nkey: str, value: str, style: str) -> str:
    flow = bool(root.flow_style)
    key, old = member.key, member.value
    indent = key.start_mark.column + 2
    nl = _newline(text)
    start, end = old.start_mark.index, _content_end(text, old)
    # A block scalar ends its line: not where a comment follows the old value.
    line_end = end if flow else _line_end(text, end)
    blocks = not flow and not text[end:line_end].strip(_SPACE)
    scalar = _scalar(value, style=style, flow=not blocks, like=_style(old), indent=indent, nl=nl)
    if scalar.endswith(nl):
        end = line_end
    elif _style(old) in ("|", ">") and text[end - 1 : end] in _BREAKS:
        scalar += nl  # the old block's line break stays a line break
    middle = text[key.end_mark.index : start]
    colon = middle.find(":")
    if not flow and colon >= 0 and not middle[:colon].strip(" \t") and "#" not in middle:
        # "KEY:" then the value on the lines below (a sequence PyYAML writes unindented, say):
        # the new value goes on the key's line.
        middle, space = middle[: colon + 1], " "
    else:
        space = "" if text[start - 1 : start] in (" ", "\t", "\n", "\r") else " "
    return (
        text[: key.start_mark.index]
        + _key_text(nkey, _style(key))
        + middle
        + space
        + scalar
        + text[end:]
    )


def _add(text: str, root: Any, members: list[_Member], nkey: str, value: str, style: str) -> str:
    nl = _newline(text)
    if not _is_empty(root) and root.flow_style:
        like_key = _style(members[-1].key) if members else None
        like_value = _style(members[-1].value) if members else None
        scalar = _scalar(value, style=style, flow=True, like=like_value, indent=0, nl=nl)
        new = _key_text(nkey, like_key) + ": " + scalar
        if not members:
            opening = root.start_mark.index
            return text[: opening + 1] + new + text[opening + 1 :]
        end = _content_end(text, members[-1].value)
        separator = ", "
        if len(members) > 1:
            between = text[_content_end(text, members[-2].value) : members[-1].key.start_mark.index]
            if between.strip(_SPACE) == ",":
                separator = between
        return text[:end] + separator + new + text[end:]
    column = members[-1].key.start_mark.column if members else 0
    like_key = _style(members[-1].key) if members else None
    like_value = _style(members[-1].value) if members else None
    scalar = _scalar(value, style=style, flow=False, like=like_value, indent=column + 2, nl=nl)
    line = " " * column + _key_text(nkey, like_key) + ": " + scalar
    if not line.endswith(nl):
        line += nl
    if members:
        position = _member_end(text, members[-1])
        if position == len(text) and text[-1:] not in _BREAKS and _style(members[-1].value):
            # A line break after the last value would become part of it (a block scalar's
            # last line, a quoted scalar cut at the end): the new key goes before it instead.
            position = _line_start(text, members[-1].key)
    elif root is not None:  # where the empty document's content would be
        position = _line_end(text, root.start_mark.index)
    else:
        position = len(text)
    head = text[:position]
    if head and head[-1] not in _BREAKS:
        head += nl
    return head + line + text[position:]


def edit_yaml(text: str, nkey: str, value: str | None, style: str) -> str | None:
    """``text`` with only the top-level key ``nkey`` set to ``value`` (None: removed).

    Every spelling of the key but the first is removed; the first keeps its place and its
    quoting where the value allows. A new key goes after the last one, indented and quoted
    like it. Comments, order, quoting and the other values' text stay byte for byte.

    Args:
        text: The file's text (already read successfully, without its BOM).
        nkey: The normalized key.
        value: The new value, or None to remove the key.
        style: One of `value_styles`.

    Returns:
        The new text, or None when there is nothing to remove.

    Raises:
        EditRefused: A layout this edit does not handle; the caller rewrites the file whole.
        ValueError: A key of the file does not normalize.
    """
    keep = 0 if value is None else 1  # the spelling replaced in place
    changed = False
    while True:
        root = _compose(text)
        members = _members(root)
        hits = _hits(members, nkey)
        if len(hits) <= keep:
            break
        text = _remove(text, root, members, hits[-1])
        changed = True
    if value is None:
        return text if changed else None
    if hits:
        return _replace(text, root, members[hits[0]], nkey, value, style)
    return _add(text, root, members, nkey, value, style)
