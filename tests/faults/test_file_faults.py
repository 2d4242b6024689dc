"""Secrets-file faults while a manager runs: corruption keeps the last good document, deletion
empties it, and a repaired or restored file is seen within the one-second re-check.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from simpletuner_secrets import FileSecretProvider, ProviderError, SecretsManager
from simpletuner_secrets.testing import InMemorySecretProvider
from tests.faults import Stopwatch, library_warnings, record

KEY = "FAULT_KEY"
VALUE = "file-fault-value-6e7f8a9b0c"
REPAIRED = "file-fault-repaired-1d2e3f4a"
FALLBACK = "memory-fallback-value-3c4d"
#: A hang guard for "a change is seen": the provider re-checks the file once a second (pinned on
#: a fake clock in tests/unit/test_file_provider.py), so a change shows after about 1 s here; a
#: library that only re-read the file when the cache's entry expired (300 s) fails it. The 4 s
#: beyond the re-check leave room for a busy machine.
SEEN_WITHIN = 1.0 + 4.0
CORRUPT_WARNING = "serving the last good document"


def write(path: Path, body: str | bytes) -> None:
    """Write in place (same inode), as an editor saving over the file would."""
    data = body.encode() if isinstance(body, str) else body
    with open(path, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)


def replace(path: Path, body: str) -> None:
    """Write a new file and rename it over the old one (a new inode), as deploy tools do."""
    temp = path.with_name(path.name + ".new")
    temp.write_text(body)
    temp.chmod(0o600)
    os.replace(temp, path)


def good(path: Path, value: str) -> str:
    if path.suffix == ".json":
        return json.dumps({KEY: value, "OTHER": "x" * 12})
    # Quoted, so that a half-written copy is malformed: a YAML file cut after a plain scalar
    # still parses, with a shortened value (one reason the library only writes atomically).
    return f'{KEY}: "{value}"\nOTHER: "xxxxxxxxxxxx"\n'


CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "truncated": lambda p: write(p, good(p, VALUE)[: len(good(p, VALUE)) // 2]),
    "garbage bytes": lambda p: write(p, b"\xff\xfe\x00\x81garbage" * 7),
    "not a mapping": lambda p: write(p, '["a", "list"]' if p.suffix == ".json" else "- a\n- b\n"),
    "too large": lambda p: write(p, " " * 5000 + good(p, VALUE)),
    "bad syntax, renamed in": lambda p: replace(
        p, '{"FAULT_KEY": ' if p.suffix == ".json" else "FAULT_KEY: [unclosed\n"
    ),
}


async def wait_for(manager: SecretsManager, wanted: str | None, limit: float) -> float:
    """Poll every 20 ms until ``KEY`` reads ``wanted``; return the seconds it took."""
    watch = Stopwatch()
    while await manager.get(KEY) != wanted:
        assert watch.elapsed < limit, f"{wanted!r} not seen within {limit} s"
        await asyncio.sleep(0.02)
    return watch.elapsed


@pytest.mark.parametrize(
    ("suffix", "on_error", "corruptions"),
    [
        (".json", "raise", list(CORRUPTIONS)),
        (".yaml", "skip", ["truncated", "not a mapping", "bad syntax, renamed in"]),
    ],
)
async def test_corrupted_file_keeps_the_last_good_document_until_repaired(
    suffix: str,
    on_error: str,
    corruptions: list[str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Corrupted mid-run, several ways in a row: the last good value throughout, one WARNING
    per corrupted state naming the path, never an error; repaired: the new value once the
    file is re-checked."""
    path = tmp_path / f"secrets{suffix}"
    write(path, good(path, VALUE))
    caplog.set_level(logging.WARNING)
    provider = FileSecretProvider(path, max_file_size=4096)
    async with SecretsManager(
        [provider, InMemorySecretProvider({KEY: FALLBACK})],
        on_provider_error=on_error,  # type: ignore[arg-type]
    ) as manager:
        assert await manager.get(KEY) == VALUE
        for number, corruption in enumerate(corruptions, start=1):
            CORRUPTIONS[corruption](path)
            watch = Stopwatch()
            # Every lookup through the corruption still answers the last good value.
            while len(library_warnings(caplog, CORRUPT_WARNING)) < number:
                assert await manager.get(KEY) == VALUE
                assert watch.elapsed < SEEN_WITHIN, f"{corruption}: not noticed in time"
                await asyncio.sleep(0.02)
            detect = watch.elapsed
            for _ in range(5):
                assert await manager.get(KEY) == VALUE
            record(f"file {corruption} ({suffix})", detect_s=detect)
        await asyncio.sleep(1.1)  # another re-check of the same corrupted state: no new warning
        assert await manager.get(KEY) == VALUE
        # Valid again: the new value is seen within the re-check.
        write(path, good(path, REPAIRED))
        repaired = await wait_for(manager, REPAIRED, SEEN_WITHIN)
    warnings = library_warnings(caplog)
    assert len(warnings) == len(corruptions), warnings
    assert all(str(path) in warning for warning in warnings)
    assert VALUE not in caplog.text and REPAIRED not in caplog.text
    record(f"file repaired ({suffix})", recover_s=repaired)


async def test_deleted_file_is_an_empty_document_and_a_restored_one_is_seen(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Deleted mid-run: keys absent (the next provider answers), no warning; restored: seen."""
    path = tmp_path / "secrets.json"
    write(path, good(path, VALUE))
    caplog.set_level(logging.WARNING)
    async with SecretsManager(
        [FileSecretProvider(path), InMemorySecretProvider({KEY: FALLBACK})],
        on_provider_error="raise",
    ) as manager:
        assert await manager.get(KEY) == VALUE
        path.unlink()
        gone = await wait_for(manager, FALLBACK, SEEN_WITHIN)
        assert await manager.get("OTHER") is None
        write(path, good(path, REPAIRED))
        back = await wait_for(manager, REPAIRED, SEEN_WITHIN)
    assert library_warnings(caplog) == []
    record("file deleted", detect_s=gone, recover_s=back)


async def test_deleted_then_corrupted_file_has_no_last_good_document(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Deleted, then recreated corrupt: the empty document is not a last good one, so the
    file fails: skipped with one WARNING, or `ProviderError` under ``raise``."""
    path = tmp_path / "secrets.json"
    write(path, good(path, VALUE))
    caplog.set_level(logging.WARNING)
    lower = InMemorySecretProvider({KEY: FALLBACK})
    async with (
        SecretsManager([FileSecretProvider(path), lower]) as skipping,
        SecretsManager([FileSecretProvider(path), lower], on_provider_error="raise") as raising,
    ):
        assert await skipping.get(KEY) == VALUE
        assert await raising.get(KEY) == VALUE
        path.unlink()
        await wait_for(skipping, FALLBACK, SEEN_WITHIN)
        await wait_for(raising, FALLBACK, SEEN_WITHIN)
        write(path, '{"FAULT_KEY": ')
        watch = Stopwatch()
        while not library_warnings(caplog, "failed and is skipped"):
            assert await skipping.get(KEY) == FALLBACK
            assert watch.elapsed < SEEN_WITHIN, "the corrupt file was not noticed in time"
            await asyncio.sleep(0.02)
        assert len(library_warnings(caplog)) == 1
        watch = Stopwatch()
        with pytest.raises(ProviderError) as info:
            while watch.elapsed < SEEN_WITHIN:
                await raising.get(KEY)
                await asyncio.sleep(0.02)
        assert str(path) in str(info.value) and "line 1" in str(info.value)
    assert VALUE not in caplog.text


async def test_file_never_valid_fails_at_once_under_raise(tmp_path: Path) -> None:
    """A file corrupt from the start has no last good document: `ProviderError` at once."""
    path = tmp_path / "secrets.yaml"
    write(path, "FAULT_KEY: [unclosed\n")
    async with SecretsManager(
        [FileSecretProvider(path), InMemorySecretProvider({KEY: FALLBACK})],
        on_provider_error="raise",
    ) as manager:
        watch = Stopwatch()
        with pytest.raises(ProviderError):
            await manager.get(KEY)
        # Milliseconds of parsing; waiting for the 5 s provider timeout or a retry would not pass.
        assert watch.elapsed < 2.5
