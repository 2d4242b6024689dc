"""Helper process for the crash tests: writes keys one by one and acknowledges each on stdout.

Usage: python crash_writer.py PATH START COUNT [manager|provider|die-before-rename]

Prints ``ready`` once set up, then for each i in [START, START + COUNT) writes ``K{i}`` =
``value-{i}`` and prints ``K{i}`` (flushed) only after the write returned: a printed key is an
acknowledged write. ``manager`` writes through `SecretsManager.set_secret` with
``config={"file_path": PATH}``, ``provider`` through `FileSecretProvider.set`.
``die-before-rename`` makes one write with the provider and then SIGKILLs its own process at
the moment the temporary file is complete and fsynced but not yet renamed over the file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from simpletuner_secrets import SecretsManager
from simpletuner_secrets.providers.file import FileSecretProvider


def value_of(index: int) -> str:
    """The value the writer stores under ``K{index}``."""
    return f"value-{index}"


async def write_with_manager(path: str, start: int, count: int) -> None:
    async with SecretsManager(config={"file_path": path}) as manager:
        print("ready", flush=True)
        for i in range(start, start + count):
            await manager.set_secret(f"K{i}", value_of(i))
            print(f"K{i}", flush=True)


async def write_with_provider(path: str, start: int, count: int) -> None:
    provider = FileSecretProvider(path)
    print("ready", flush=True)
    for i in range(start, start + count):
        await provider.set(f"K{i}", value_of(i))
        print(f"K{i}", flush=True)


async def die_before_rename(path: str, start: int) -> None:
    provider = FileSecretProvider(path)
    await provider.set(f"K{start}", value_of(start))
    print(f"K{start}", flush=True)

    def crash(src: object, dst: object) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    os.replace = crash  # the next write dies between fsync and rename
    await provider.set(f"K{start + 1}", value_of(start + 1))
    print("survived", flush=True)  # never reached


def main(argv: list[str]) -> None:
    path, start, count = argv[1], int(argv[2]), int(argv[3])
    mode = argv[4] if len(argv) > 4 else "manager"
    if mode == "manager":
        asyncio.run(write_with_manager(path, start, count))
    elif mode == "provider":
        asyncio.run(write_with_provider(path, start, count))
    elif mode == "die-before-rename":
        asyncio.run(die_before_rename(path, start))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv)
