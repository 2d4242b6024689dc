"""Run by test_aws_loops.py in a subprocess: one AWS provider used from many event loops.

``manual N``: N loops made with ``new_event_loop``, closed by hand (no task cancelled).
``run N``: N ``asyncio.run`` calls. Prints one JSON line: RSS growth, open descriptors, open
clients, and how often botocore parsed the Secrets Manager service model.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys

from botocore import loaders

from simpletuner_secrets.providers.aws import AWSSecretsManagerProvider

parsed: list[str] = []  # the Secrets Manager model files botocore parsed, one entry a parse
original = loaders.JSONFileLoader.load_file


def counting(self: object, file_path: str, *args: object, **kwargs: object) -> object:
    if "secretsmanager" in str(file_path):
        parsed.append(str(file_path))
    return original(self, file_path, *args, **kwargs)  # type: ignore[arg-type]


loaders.JSONFileLoader.load_file = counting  # type: ignore[assignment,method-assign]


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    mode, count = sys.argv[1], int(sys.argv[2])
    provider = AWSSecretsManagerProvider(os.environ["SIMPLETUNER_AWS_SECRET_NAME"])
    assert asyncio.run(provider.load_document())["K"] == "v"  # warm: imports, first model
    gc.collect()
    start_rss, start_fds = rss_mib(), len(os.listdir("/proc/self/fd"))
    for _ in range(count):
        if mode == "manual":
            loop = asyncio.new_event_loop()
            assert loop.run_until_complete(provider.load_document())["K"] == "v"
            loop.close()
        else:
            assert asyncio.run(provider.load_document())["K"] == "v"
    open_clients = provider.open_clients
    asyncio.run(provider.aclose())  # releases the last hand-closed loop's client too
    gc.collect()
    print(
        json.dumps(
            {
                "rss_growth_mib": rss_mib() - start_rss,
                "fd_growth": len(os.listdir("/proc/self/fd")) - start_fds,
                "open_clients": open_clients,
                "model_files": len(set(parsed)),
                "model_parses": len(parsed),
            }
        )
    )


if __name__ == "__main__":
    main()
