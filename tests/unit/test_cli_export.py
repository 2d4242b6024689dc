"""`export`'s formats, property-tested: any value reads back exactly (sh through a real bash)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simpletuner_secrets._cli_formats import ExportFormat, is_variable_name, render

BASH = shutil.which("bash")

#: Any text an environment variable can hold: no NUL, no lone surrogate (not UTF-8).
values = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
#: Shell names; the T_ prefix keeps clear of bash's own variables (RANDOM, IFS, PATH...).
names = st.from_regex(r"T_[A-Za-z0-9_]{0,8}", fullmatch=True)
documents = st.dictionaries(names, values, min_size=1, max_size=6)

#: Reads the rendered script on stdin, evals it, prints each named variable NUL-terminated.
READ_BACK = (
    'script=$(cat) && eval "$script" || exit 9\nfor n in "$@"; do printf "%s\\0" "${!n}"; done'
)


@pytest.mark.skipif(BASH is None, reason="needs bash")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_sh_output_round_trips_through_eval_in_bash(document: dict[str, str]) -> None:
    """Every value, spaces, quotes, $(...), backquotes and newlines included, comes back
    exactly from `eval` of the sh output in bash, and nothing in it runs."""
    assert BASH is not None
    script = render(document, ExportFormat.SH)
    proc = subprocess.run(
        [BASH, "-c", READ_BACK, "bash", *document],
        input=script.encode(),
        capture_output=True,
        timeout=30,
        env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    assert proc.stdout.decode().split("\0")[:-1] == list(document.values())


@settings(max_examples=300, deadline=None)
@given(documents)
def test_dotenv_output_reads_back_with_python_dotenv(document: dict[str, str]) -> None:
    """python-dotenv (interpolate=False) reads every value of the dotenv output exactly."""
    from dotenv import dotenv_values

    text = render(document, ExportFormat.DOTENV)
    assert dotenv_values(stream=io.StringIO(text), interpolate=False) == document


@given(st.dictionaries(values, values, max_size=6))
def test_json_output_is_the_mapping(document: dict[str, str]) -> None:
    """The json output parses back to the same mapping, any key included."""
    assert json.loads(render(document, ExportFormat.JSON)) == document


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("HF_TOKEN", True),
        ("_x1", True),
        ("1ABC", False),
        ("A B", False),
        ("A-B", False),
        ("", False),
        ("A=B", False),
        ("Ä", False),
    ],
)
def test_variable_names(name: str, valid: bool) -> None:
    """Only POSIX shell names ([A-Za-z_][A-Za-z0-9_]*) can be exported or passed to `run`."""
    assert is_variable_name(name) is valid
