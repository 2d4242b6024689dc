"""SecretsDirectoryProvider (SPEC 9): Docker secrets and Kubernetes secret volumes, one file
per key, the kubelet's atomic swap seen within a second and never half-read."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path

import pytest

from simpletuner_secrets import SecretFileError, SecretsManager
from simpletuner_secrets.providers import directory
from simpletuner_secrets.providers.directory import SecretsDirectoryProvider
from tests.clock import FakeClock
from tests.unit.kubelet import KubeletVolume

#: A wide wall-clock guard against a hang only (the machine is shared and busy).
HANG_GUARD = 60.0
SECRET = "dir-secret-value-do-not-print"


def write(path: Path, text: str, mode: int = 0o600) -> None:
    path.write_text(text)
    os.chmod(path, mode)


def docker_dir(tmp_path: Path) -> Path:
    root = tmp_path / "run-secrets"
    root.mkdir(mode=0o700)
    return root


async def test_docker_layout_one_file_per_key(tmp_path: Path) -> None:
    """File names (normalized) are keys; one trailing newline is stripped; hidden entries,
    subdirectories and empty files are not keys."""
    root = docker_dir(tmp_path)
    write(root / "db-password", "pw\n")
    write(root / "two_newlines", "x\n\n")
    write(root / "api.key", SECRET)
    write(root / "empty", "")
    write(root / ".hidden", "no")
    (root / "nested").mkdir()
    write(root / "nested" / "INNER", "no")
    provider = SecretsDirectoryProvider(root)
    assert await provider.get("DB_PASSWORD") == "pw"
    assert await provider.get("two-newlines") == "x\n"
    assert await provider.get("API_KEY") == SECRET
    assert await provider.get("empty") is None
    assert await provider.get("hidden") is None
    assert await provider.get("INNER") is None
    assert sorted(await provider.document()) == ["API_KEY", "DB_PASSWORD", "TWO_NEWLINES"]
    assert SECRET not in repr(provider)


async def test_a_missing_directory_is_an_empty_document(tmp_path: Path) -> None:
    """An explicit directory that does not exist answers nothing, without an error."""
    provider = SecretsDirectoryProvider(tmp_path / "absent")
    assert await provider.get("ANY") is None


async def test_kubelet_layout_reads_the_current_version(tmp_path: Path) -> None:
    """In a kubelet volume the ..data version's files answer; ..data itself is no key."""
    volume = KubeletVolume(tmp_path / "vol")
    volume.write({"username": "admin", "password": SECRET})
    provider = SecretsDirectoryProvider(volume.root)
    assert await provider.get("USERNAME") == "admin"
    assert await provider.get("password") == SECRET
    assert await provider.get("DATA") is None
    assert sorted(await provider.document()) == ["PASSWORD", "USERNAME"]


async def test_the_atomic_swap_is_seen_within_one_second(tmp_path: Path) -> None:
    """After a kubelet update, the old version answers until the second's re-check, the new
    one right after it (keys added and removed included), with no restart."""
    clock = FakeClock()
    volume = KubeletVolume(tmp_path / "vol")
    volume.write({"token": "v1", "old-key": "gone-soon"})
    provider = SecretsDirectoryProvider(volume.root, timer=clock)
    m = SecretsManager([provider], timer=clock)
    assert await m.get("TOKEN") == "v1"
    volume.write({"token": "v2", "new-key": "here"})
    clock.tick(0.5)
    assert await m.get("TOKEN") == "v1"  # within the second: no system call at all
    clock.tick(0.5)
    assert await m.get("TOKEN") == "v2"
    assert await m.get("NEW_KEY") == "here"
    assert await m.get("OLD_KEY") is None
    await m.aclose()


async def test_an_unchanged_kubelet_version_is_not_read_again(tmp_path: Path) -> None:
    """The re-check of an unchanged volume reads ..data's target only, not every file."""
    clock = FakeClock()
    volume = KubeletVolume(tmp_path / "vol")
    volume.write({"token": "v1"})
    provider = SecretsDirectoryProvider(volume.root, timer=clock)
    for _ in range(3):
        assert await provider.get("TOKEN") == "v1"
        clock.tick(1.5)
    assert provider.reads == 1
    volume.write({"token": "v2"})
    assert await provider.get("TOKEN") == "v2"
    assert provider.reads == 2


async def test_lookups_during_kubelet_swaps_never_see_none_or_a_mix(tmp_path: Path) -> None:
    """While a thread swaps the volume as the kubelet does (new version, ..data renamed,
    links fixed, old version removed), a manager serving lookups never answers None, and the
    keys read in one re-check window always come from one version."""
    clock = FakeClock()
    volume = KubeletVolume(tmp_path / "vol")
    keys = [f"key{i:02d}" for i in range(30)]  # a longer read and removal: more overlap
    volume.write(dict.fromkeys(keys, "0"))
    provider = SecretsDirectoryProvider(volume.root, timer=clock)
    # provider_timeout: a read in a worker thread stalled on a busy machine must not turn into
    # a skipped provider (None) in a test of what one read sees.
    m = SecretsManager([provider], timer=clock, provider_timeout=HANG_GUARD)
    stop = threading.Event()
    swapper_failed: list[BaseException] = []

    def swapper() -> None:
        version = 0
        try:
            while not stop.is_set():
                version += 1
                volume.write(dict.fromkeys(keys, str(version)))
                # A pause between swaps, as the kubelet's are minutes apart: swapping flat out
                # in this process, the thread held the GIL through the reader's every attempt
                # on a busy machine, and five reads in a row straddled a swap ("changed under
                # every read", the first lookup None). Reads still overlap swaps.
                stop.wait(0.002)
        except BaseException as exc:  # reported by the loop below, not lost with the thread
            swapper_failed.append(exc)

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    seen: set[str] = set()
    try:

        async def lookups_across_swaps() -> None:
            while len(seen) < 10 or volume.swaps < 30:
                assert not swapper_failed, f"the swapping thread failed: {swapper_failed[0]!r}"
                clock.tick(1.0)  # every iteration re-checks the volume
                values = [await m.get(k) for k in keys]
                where = f"after {volume.swaps} swaps, {len(seen)} versions seen; {m.stats()}"
                assert None not in values, (values, where)
                assert len(set(values)) == 1, (values, where)
                seen.add(values[0] or "")
                await asyncio.sleep(0.001)  # let the swapper thread have the GIL too

        try:
            await asyncio.wait_for(lookups_across_swaps(), HANG_GUARD)  # 3.10: no asyncio.timeout
        except asyncio.TimeoutError:
            pytest.fail(
                f"hang guard: {volume.swaps} swaps, {len(seen)} versions seen, "
                f"{provider.reads} reads; {m.stats()}"
            )
    finally:
        stop.set()
        thread.join(HANG_GUARD)
        await m.aclose()
    assert len(seen) >= 10, f"only {len(seen)} versions seen over {volume.swaps} swaps"


async def test_a_version_removed_while_it_is_listed_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kubelet's race, made exact: the swap lands and the old version's files are
    removed just as the provider lists them. The read notices that ..data moved and reads the
    new version instead of answering from an emptied directory."""
    volume = KubeletVolume(tmp_path / "vol")
    volume.write({"token": "old"})
    old = volume.current()
    original = os.scandir
    raced = False

    def racing_scandir(path: os.PathLike[str] | str) -> object:
        nonlocal raced
        if Path(path) == old and not raced:
            raced = True
            volume.write({"token": "new"}, remove_old=False)  # ..data now names the new one
            for leftover in old.iterdir():  # the kubelet removing the old version
                leftover.unlink()
        return original(path)

    monkeypatch.setattr(directory.os, "scandir", racing_scandir)
    provider = SecretsDirectoryProvider(volume.root)
    assert await provider.get("TOKEN") == "new"
    assert raced


async def test_permission_warnings_and_strict_refusal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 0644 file (the kubelet's default mode) is read with one warning naming it; with
    strict_permissions it is refused, naming the file and never the value."""
    volume = KubeletVolume(tmp_path / "vol", mode=0o644)
    volume.write({"token": SECRET})
    with caplog.at_level(logging.WARNING, logger="simpletuner_secrets"):
        relaxed = SecretsDirectoryProvider(volume.root)
        assert await relaxed.get("TOKEN") == SECRET
        relaxed.invalidate()
        assert await relaxed.get("TOKEN") == SECRET
    warnings = [r.getMessage() for r in caplog.records if "readable by others" in r.getMessage()]
    assert len(warnings) == 1 and "token" in warnings[0]
    strict = SecretsDirectoryProvider(volume.root, strict_permissions=True)
    with pytest.raises(SecretFileError) as caught:
        await strict.get("TOKEN")
    assert "strict_permissions" in str(caught.value) and "token" in str(caught.value)
    assert caught.value.provider == "dir"
    assert SECRET not in str(caught.value) and SECRET not in caplog.text


async def test_size_limit_and_non_regular_files_are_refused(tmp_path: Path) -> None:
    """A file over max_file_size, or a FIFO (never opened blocking), is a SecretFileError
    naming it."""
    root = docker_dir(tmp_path)
    write(root / "big", "x" * 2000)
    with pytest.raises(SecretFileError, match="big is larger than 1000 bytes"):
        await SecretsDirectoryProvider(root, max_file_size=1000).get("BIG")
    os.unlink(root / "big")
    os.mkfifo(root / "pipe", 0o600)
    with pytest.raises(SecretFileError, match="pipe is not a regular file"):
        await asyncio.wait_for(SecretsDirectoryProvider(root).get("PIPE"), HANG_GUARD)


async def test_a_broken_update_keeps_the_last_good_document(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file that turns unreadable after a good read: the last good document is served,
    with one warning."""
    clock = FakeClock()
    root = docker_dir(tmp_path)
    write(root / "token", SECRET)
    provider = SecretsDirectoryProvider(root, max_file_size=100, timer=clock)
    assert await provider.get("TOKEN") == SECRET
    write(root / "token", "y" * 500)
    with caplog.at_level(logging.WARNING, logger="simpletuner_secrets"):
        for _ in range(3):
            clock.tick(1.5)
            assert await provider.get("TOKEN") == SECRET
    stale = [r for r in caplog.records if "last good document" in r.getMessage()]
    assert len(stale) == 1
    assert SECRET not in caplog.text


def test_default_chain_places_the_directory_right_after_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIMPLETUNER_SECRETS_DIR (or /run/secrets when it exists) puts `dir` second; without
    either it is left out."""
    config = {"file_path": str(tmp_path / "none.json")}
    monkeypatch.setattr(directory, "DEFAULT_DIR", str(tmp_path / "no-run-secrets"))
    names = [p.name for p in SecretsManager(config=config, environ={}).providers]
    assert "dir" not in names
    chosen = SecretsManager(config=config, environ={"SIMPLETUNER_SECRETS_DIR": str(tmp_path)})
    assert [p.name for p in chosen.providers][:3] == ["env", "dir", "file"]
    assert chosen.providers[1].path == tmp_path  # type: ignore[attr-defined]
    run_secrets = docker_dir(tmp_path)
    monkeypatch.setattr(directory, "DEFAULT_DIR", str(run_secrets))
    found = SecretsManager(config=config, environ={})
    assert [p.name for p in found.providers][:3] == ["env", "dir", "file"]
    assert found.providers[1].path == run_secrets  # type: ignore[attr-defined]
    by_config = SecretsManager(config={**config, "secrets_dir": str(tmp_path)}, environ={})
    assert by_config.providers[1].path == tmp_path  # type: ignore[attr-defined]


async def test_the_environment_still_wins_over_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An environment variable of the same key beats the directory; the directory beats the
    secrets file."""
    root = docker_dir(tmp_path)
    write(root / "HF_TOKEN", "from-dir")
    write(root / "REPLICATE_API_TOKEN", "from-dir")
    secrets_file = tmp_path / "s.json"
    write(secrets_file, '{"REPLICATE_API_TOKEN": "from-file", "OTHER": "file"}')
    monkeypatch.setenv("HF_TOKEN", "from-env")
    monkeypatch.setenv("SIMPLETUNER_SECRETS_DIR", str(root))
    async with SecretsManager(config={"file_path": str(secrets_file)}) as m:
        assert await m.get("HF_TOKEN") == "from-env"
        assert await m.get("REPLICATE_API_TOKEN") == "from-dir"
        assert (await m.explain("REPLICATE_API_TOKEN"))["provider"] == "dir"
        assert await m.get("OTHER") == "file"
