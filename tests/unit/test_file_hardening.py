"""FileSecretProvider hardening (issue 12, "Files"): directory modes under any umask, checks on
the opened file, cancelled writes, full disks, JSON number texts and minimal JSON edits, and
frame locals free of document text.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

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
