"""The secrets file's read path against aiofiles: why the file provider does not use it.

A re-read of a changed secrets file runs stat, open, read and parse in one worker-thread hop
(the library's `run_sync` with the provider's own limiter). aiofiles runs every file call
(open, read, close) as a hop of its own to the default executor. Both read and parse the same
1 KiB JSON file (aiofiles without the fstat, which it has no call for); the provider's full
re-read (`load_document` after `invalidate`, with its permission and size checks) is measured
beside them.

Run: `nox -s bench` or `python benchmarks/bench_file_io.py [--rounds N] [--quick] [--check]`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiofiles
from _harness import Target, finish, machine, on_loop, parse_args, print_table, round_robin

from simpletuner_secrets import FileSecretProvider
from simpletuner_secrets._threads import LoopLimiters, run_sync

OPS = 400


def main() -> int:
    args = parse_args(__doc__ or "")
    print(f"# bench_file_io ({machine()}, {args.rounds} rounds, medians)")
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o700)
        path = Path(tmp) / "secrets.json"
        path.write_text(json.dumps({f"KEY_{i}": "v" * 40 for i in range(20)}))
        os.chmod(path, 0o600)
        provider = FileSecretProvider(path)
        limiters = LoopLimiters(4)

        def read_and_parse() -> dict[str, str]:
            with open(path, encoding="utf-8") as f:
                os.fstat(f.fileno())
                return dict(json.loads(f.read()))

        async def one_hop(ops: int) -> None:
            for _ in range(ops):
                await run_sync(read_and_parse, limiter=limiters.current())

        async def with_aiofiles(ops: int) -> None:
            for _ in range(ops):
                async with aiofiles.open(path, encoding="utf-8") as f:
                    dict(json.loads(await f.read()))

        async def provider_reread(ops: int) -> None:
            for _ in range(ops):
                provider.invalidate()
                await provider.load_document()

        loop = asyncio.new_event_loop()
        contenders = {
            "one to_thread hop: open+fstat+read+parse": on_loop(loop, one_hop),
            "aiofiles: open, read, close (a hop each) + parse": on_loop(loop, with_aiofiles),
            "FileSecretProvider re-read (checks included)": on_loop(loop, provider_reread),
        }
        results = round_robin(contenders, args.rounds, OPS)
        loop.run_until_complete(provider.aclose())
        loop.close()
    anchor = "aiofiles: open, read, close (a hop each) + parse"
    results.unit = "ns/read"
    print_table("Reading the secrets file off the event loop", results, anchor)
    targets = [
        (
            Target("file provider re-read vs aiofiles open+read", 1.0),
            results.ratios("FileSecretProvider re-read (checks included)", anchor),
        ),
    ]
    return finish("bench_file_io", args, targets)


if __name__ == "__main__":
    sys.exit(main())
