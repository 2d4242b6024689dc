"""Load on the real chain: 1,000 tasks x 100 gets over 500 keys plus 8 sync-facade threads,
on environment + file + moto + OpenBao, with every back-end request counted."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import threading
import time
from pathlib import Path

import pytest

from simpletuner_secrets import SecretsManager
from tests.clock import BandMiddle
from tests.servers.bao import BaoServer
from tests.servers.moto import MotoServer

pytestmark = pytest.mark.integration

KEYS = [f"LOAD_KEY_{i}" for i in range(500)]


def expected_value(key: str) -> str:
    return f"{key.lower()}-value-7c1d"


async def test_a_thousand_tasks_and_eight_threads_on_the_real_chain(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    moto_env: MotoServer,
    moto_secret: str,
    bao: BaoServer,
    sent_targets: list[str],
) -> None:
    """No error, every answer right, one request per remote document per refresh window."""
    # Keys 0-99 in the environment, 100-199 in the file, 200-349 on AWS, 350-499 in Vault.
    for key in KEYS[:100]:
        monkeypatch.setenv(f"LOAD_{key}", expected_value(key))
    file_path = tmp_path / "secrets.json"
    file_path.write_text(json.dumps({k: expected_value(k) for k in KEYS[100:200]}))
    file_path.chmod(0o600)
    moto_env.create_secret(
        moto_secret, string=json.dumps({k: expected_value(k) for k in KEYS[200:350]})
    )
    path = f"load-{secrets.token_hex(4)}"
    bao.request("POST", f"secret/data/{path}", {"data": {k: expected_value(k) for k in KEYS[350:]}})
    config = {
        "env_prefix": "LOAD",
        "file_path": str(file_path),
        "aws_secret_name": moto_secret,
        "aws_endpoint_url": moto_env.endpoint_url,
        "aws_region": moto_env.region,
        "vault_url": bao.url,
        "vault_token": bao.token,
        "vault_path": path,
    }
    audit = bao.audit_mark()
    errors: list[BaseException] = []
    wrong: list[str] = []
    sync_gets = [0]
    stop = threading.Event()

    # Every draw at the middle of its band: the first refresh ahead 120 s in (a random one
    # may fall anywhere in the first 240 s, inside this run, and add a request).
    async with SecretsManager(
        config=config, environ={"HOME": str(tmp_path)}, rng=BandMiddle()
    ) as manager:
        assert [p.name for p in manager.providers] == ["env", "file", "aws", "vault"]

        def sync_reader(seed: int) -> None:
            rng = random.Random(seed)
            try:
                while not stop.is_set():
                    key = rng.choice(KEYS)
                    if manager.sync.get(key) != expected_value(key):
                        wrong.append(key)
                    sync_gets[0] += 1
            except BaseException as exc:  # recorded and asserted below
                errors.append(exc)

        async def task(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(100):
                key = rng.choice(KEYS)
                if await manager.get(key) != expected_value(key):
                    wrong.append(key)

        threads = [threading.Thread(target=sync_reader, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        started = time.perf_counter()
        try:
            outcomes = await asyncio.gather(*(task(i) for i in range(1000)), return_exceptions=True)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        elapsed = time.perf_counter() - started

        errors.extend(o for o in outcomes if isinstance(o, BaseException))
        assert not any(t.is_alive() for t in threads)
        assert errors == [] and wrong == []
        assert sync_gets[0] > 0
        # One document fetch per remote provider for the whole run (TTL 300 s).
        assert sent_targets.count("secretsmanager.GetSecretValue") == 1
        assert audit.responses(f"secret/data/{path}") == [f"secret/data/{path}"]
        stats = manager.stats()
        assert stats["providers"]["aws"]["errors"] == 0
        assert stats["providers"]["vault"]["errors"] == 0
    print(
        f"\n100,000 async gets + {sync_gets[0]:,} sync gets in {elapsed:.2f} s; "
        f"AWS requests {len(sent_targets)}, Vault requests 1, errors 0"
    )
