"""No third-party warning escapes when the AWS and Vault SDKs are imported in worker threads
at the same time (urllib3's SOCKS ``DependencyWarning`` through a ``catch_warnings`` race)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Forces the losing interleaving instead of waiting for it (about one run in ten by chance).
# PySocks is hidden, as on a machine without it. The AWS thread stops inside botocore's
# `warnings.catch_warnings()` block until the Vault thread's `import requests` has installed
# its "ignore DependencyWarning" filter; the Vault thread then waits until botocore has left
# the block (restoring the filter list it saved, without that filter) before requests imports
# urllib3.contrib.socks, which warns. With SDK imports serialized, the Vault thread cannot
# import while the AWS thread is in the block: the AWS thread's wait times out, then each
# import runs whole.
RACE = textwrap.dedent(
    """
    import importlib.abc, sys, threading, warnings

    sys.modules["socks"] = None  # PySocks not installed

    from simpletuner_secrets.providers import _vault_http, aws

    in_block = threading.Event()
    filter_set = threading.Event()
    block_left = threading.Event()
    seen = []

    class Window(warnings.catch_warnings):
        def __enter__(self):
            entered = super().__enter__()
            if threading.current_thread().name == "aws" and not in_block.is_set():
                seen.append("aws in catch_warnings")
                in_block.set()
                filter_set.wait(3)
            return entered

        def __exit__(self, *exc_info):
            super().__exit__(*exc_info)
            if threading.current_thread().name == "aws":
                block_left.set()

    warnings.catch_warnings = Window

    class Interleave(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "requests.packages" and threading.current_thread().name == "vault":
                seen.append("requests filter set")
                filter_set.set()
                block_left.wait(3)
            return None

    sys.meta_path.insert(0, Interleave())

    def import_aws():
        aws.AWSSecretsManagerProvider("app", "us-east-1", environ={}).OPENER()

    def import_vault():
        in_block.wait(3)
        _vault_http.import_hvac()
        _vault_http.session_type()

    threads = [threading.Thread(target=import_aws, name="aws"),
               threading.Thread(target=import_vault, name="vault")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    print("steps:", ", ".join(seen))
    """
)


@pytest.mark.parametrize(
    "opener",
    ["_open_session", "_open_blocking_client"],
    ids=["aiobotocore session", "first load's botocore client"],
)
def test_concurrent_sdk_imports_let_no_dependency_warning_reach_stderr(opener: str) -> None:
    """AWS and Vault SDKs imported at once in two threads (the AWS side by the async
    client's session, or by a first load's botocore client): nothing on stderr."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", RACE.replace("OPENER", opener)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    # Both sides reached their step: the race was really set up.
    assert "aws in catch_warnings" in proc.stdout, proc.stdout
    assert "requests filter set" in proc.stdout, proc.stdout
    assert proc.stderr == "", proc.stderr
