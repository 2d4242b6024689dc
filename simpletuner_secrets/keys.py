"""Known secret keys and the one rule that turns any spelling of a key into its lookup form.

`normalize_key` is on every lookup path, so it memoizes what it has already seen.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CLOUD_WEBHOOK_SECRET",
    "HF_TOKEN",
    "KNOWN_KEYS",
    "MAX_KEY_LENGTH",
    "REPLICATE_API_TOKEN",
    "normalize_key",
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
