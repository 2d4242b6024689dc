"""Known secret keys, the rule that turns any spelling of a key into its lookup form, and the
grammar of the keys a write may create.

The grammar: a key is 1 to 1024 ASCII letters, digits, ``_``, ``-`` and ``.``, and starts with
a letter or ``_`` (``HF_TOKEN``, ``hf-token2``, ``db.password``). Its normalized form (upper
case, ``-`` and ``.`` as ``_``) is then a valid environment variable name, so a key written to
the secrets file can also be set in the environment. Writes refuse anything else
(`validate_key`); lookups accept any printable key (`normalize_key`), so that documents shared
with other tools can still be read.

`normalize_key` is on every lookup path, so it memoizes what it has already seen.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "CLOUD_WEBHOOK_SECRET",
    "HF_TOKEN",
    "KNOWN_KEYS",
    "MAX_KEY_LENGTH",
    "REPLICATE_API_TOKEN",
    "normalize_key",
    "validate_key",
]

REPLICATE_API_TOKEN: Final = "REPLICATE_API_TOKEN"
HF_TOKEN: Final = "HF_TOKEN"
CLOUD_WEBHOOK_SECRET: Final = "CLOUD_WEBHOOK_SECRET"
KNOWN_KEYS: Final = (REPLICATE_API_TOKEN, HF_TOKEN, CLOUD_WEBHOOK_SECRET)

#: Longest key accepted. Keys are names, not payloads; anything longer is a mistake or an attack.
MAX_KEY_LENGTH: Final = 1024

_MEMO_LIMIT = 4096
_memo: dict[str, str] = {}
_TRANSLATE = str.maketrans({"-": "_", ".": "_"})


def _normalize_slow(key: str) -> str:
    if not isinstance(key, str):
        raise TypeError(f"secret key must be a str, not {type(key).__name__}")
    if not key or key.isspace():
        raise ValueError("secret key must not be empty or whitespace")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"secret key is {len(key)} characters long; at most {MAX_KEY_LENGTH}")
    if not key.isprintable():
        raise ValueError("secret key contains a control or non-printable character")
    normalized = key.upper().translate(_TRANSLATE)
    if len(_memo) < _MEMO_LIMIT:
        _memo[key] = normalized
    return normalized


def normalize_key(key: str) -> str:
    """Return the lookup form of a secret key: upper-case, with ``-`` and ``.`` as ``_``.

    Args:
        key: Any spelling of a key, such as ``"replicate-api-token"``.

    Returns:
        The normalized key, such as ``"REPLICATE_API_TOKEN"``.

    Raises:
        ValueError: The key is empty, whitespace, longer than `MAX_KEY_LENGTH`, or holds a
            control character.
        TypeError: The key is not a string.
    """
    try:
        return _memo[key]
    except (KeyError, TypeError):
        pass
    # Outside the handler, so that an invalid key's error does not chain a KeyError that
    # repeats the (possibly huge) key in tracebacks.
    return _normalize_slow(key)


_GRAMMAR = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_ALLOWED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


def _describe(char: str) -> str:
    if char == " ":
        return "a space"
    if char.isascii() and char.isprintable():
        return repr(char)
    return f"U+{ord(char):04X}"


def validate_key(key: str) -> str:
    """Check ``key`` against the key grammar (module docstring) and return its normalized form.

    Writes use this: ``set_secret("hf-token2", ...)`` stores ``HF_TOKEN2``; ``"my key"`` and
    ``"../etc/x"`` are refused instead of being stored as ``MY KEY`` or ``__/ETC/X``.

    Args:
        key: The key as typed.

    Returns:
        The normalized key, the name the write stores.

    Raises:
        ValueError: The key is outside the grammar. The message names the first offending
            character and its position, never the whole key (a value pasted by mistake would
            otherwise be echoed).
        TypeError: The key is not a string.
    """
    nkey = normalize_key(key)
    if _GRAMMAR.fullmatch(key):
        return nkey
    if not _GRAMMAR.match(key[0]):
        problem = f"{_describe(key[0])} at position 1"
    else:
        position, char = next((i, c) for i, c in enumerate(key, 1) if c not in _ALLOWED)
        problem = f"{_describe(char)} at position {position}"
    raise ValueError(
        f"invalid secret key: {problem}; keys are ASCII letters, digits, _, - and ., "
        "starting with a letter or _"
    )
