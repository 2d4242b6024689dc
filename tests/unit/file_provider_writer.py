"""Helper process for the multi-process write test: one writer of many keys to one file.

Usage: python file_provider_writer.py PATH WRITER_NUMBER KEY_COUNT
"""

from __future__ import annotations

import asyncio
import sys

from simpletuner_secrets.providers.file import FileSecretProvider


async def main(path: str, writer: int, count: int) -> None:
    provider = FileSecretProvider(path)
    for i in range(count):
        await provider.set(f"P{writer}_K{i}", f"v{writer}-{i}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
