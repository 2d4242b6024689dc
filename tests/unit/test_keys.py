"""normalize_key: the lookup form of a key, and clear errors for invalid ones."""

from __future__ import annotations

import pytest

from simpletuner_secrets import normalize_key
from simpletuner_secrets.keys import MAX_KEY_LENGTH


def test_spellings_share_one_form() -> None:
    """Upper case; '-' and '.' become '_'."""
    assert normalize_key("replicate-api-token") == "REPLICATE_API_TOKEN"
    assert normalize_key("hf.token") == normalize_key("HF_TOKEN") == "HF_TOKEN"


@pytest.mark.parametrize("bad", ["", "  ", "\t", "a\nb", "x" * (MAX_KEY_LENGTH + 1)])
def test_invalid_keys_are_value_errors(bad: str) -> None:
    """Empty, whitespace, control characters and over-long keys raise ValueError."""
    with pytest.raises(ValueError):
        normalize_key(bad)


def test_invalid_key_error_chains_nothing() -> None:
    """The ValueError of an invalid key carries no chained KeyError repeating the key."""
    with pytest.raises(ValueError) as info:
        normalize_key("x" * 100_000)
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert "xxxx" not in str(info.value)


def test_non_string_key_is_a_type_error() -> None:
    """A key that is not a str is a TypeError naming its type."""
    with pytest.raises(TypeError, match="int"):
        normalize_key(5)  # type: ignore[arg-type]
