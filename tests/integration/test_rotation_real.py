"""SPEC 10 against the real back-ends: a rotation made with the bao CLI (and in moto), seen by
one coalesced, rate-limited `refresh()`, announced once to `on_change`."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import pytest

from simpletuner_secrets import SecretsEvent, SecretsManager
from tests.servers.bao import BaoServer
from tests.servers.moto import MotoServer

pytestmark = pytest.mark.integration

OLD = "db-password-before-rotation"
NEW = "db-password-after-rotation"


async def test_a_vault_rotation_is_seen_by_one_refresh_and_told_once(
    bao: BaoServer, tmp_path: Path
) -> None:
    """bao kv put rotates; 20 refresh() at once send one read; on_change hears it once."""
    path = f"rotation-{secrets.token_hex(4)}"
    bao.cli("kv", "put", f"secret/{path}", f"DB_PASSWORD={OLD}")
    config = {"vault_url": bao.url, "vault_token": bao.token, "vault_path": path}
    seen: list[str | None] = []
    events: list[SecretsEvent] = []
    async with SecretsManager(
        config=config,
        environ={"HOME": str(tmp_path)},
        min_refresh_interval=30,
        on_event=events.append,
    ) as m:
        m.changes.poll_s = 3600  # only the refresh tells here
        m.on_change("db-password", lambda _k, v: seen.append(v))
        assert await m.require("DB_PASSWORD") == OLD
        await m.changes.check()
        bao.cli("kv", "put", f"secret/{path}", f"DB_PASSWORD={NEW}")
        audit = bao.audit_mark()
        await asyncio.gather(*(m.refresh("DB_PASSWORD") for _ in range(20)))
        assert await m.get("DB_PASSWORD") == NEW
        assert seen == [NEW]
        await m.refresh()  # within min_refresh_interval: nothing is sent
        reads = audit.responses(f"secret/data/{path}")
        assert reads == [f"secret/data/{path}"]
    assert SecretsEvent("changed", "vault", "DB_PASSWORD") in events
    assert all(OLD not in repr(e) and NEW not in repr(e) for e in events)


async def test_an_aws_rotation_is_seen_by_refresh_through_get_many(
    moto_env: MotoServer, moto_secret: str, tmp_path: Path
) -> None:
    """put-secret-value in moto; refresh() then get_many returns the new version's values."""
    moto_env.create_secret(moto_secret, string=json.dumps({"DB_PASSWORD": OLD, "USER": "app"}))
    config = {"aws_secret_name": moto_secret, "aws_region": moto_env.region}
    async with SecretsManager(config=config, environ={"HOME": str(tmp_path)}) as m:
        assert await m.get_many(["db-password", "user"]) == {"db-password": OLD, "user": "app"}
        moto_env.put_secret_value(moto_secret, string=json.dumps({"DB_PASSWORD": NEW}))
        await m.refresh()
        assert await m.get_many(["db-password", "user"]) == {"db-password": NEW, "user": None}
        assert m.stats()["providers"]["aws"]["calls"] == 2
