"""References (SPEC 9) against the real servers: aws:// on moto (secrets made, rotated and
staged with the `aws` CLI) and vault:// on OpenBao (written with the `bao` CLI)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from simpletuner_secrets import EnvironmentSecretProvider, ProviderError, SecretsManager
from simpletuner_secrets.providers.aws import AWSSecretsManagerProvider
from tests.clock import FakeClock
from tests.integration.aws_cli import AwsCli
from tests.servers.bao import BaoServer
from tests.servers.moto import MotoServer

pytestmark = pytest.mark.integration

SECRET_PASSWORD = "ref-password-do-not-print"


@pytest.fixture
def cli(moto_env: MotoServer, tmp_path: Path) -> AwsCli:
    """The `aws` CLI pointed at the session's moto server."""
    return AwsCli(moto_env, tmp_path)


@pytest.fixture
def secret_id(cli: AwsCli) -> Iterator[str]:
    """A secret name unique to the test, force-deleted afterwards."""
    name = f"simpletuner-refs/{uuid.uuid4().hex}"
    yield name
    cli.server.delete_secret(name)


async def settled(m: SecretsManager) -> None:
    """Wait for the loads still running: the lookups were answered by the env provider's
    reference, while the fan-out's read of the aws provider's own document may still be
    on its way (it is counted when sent)."""
    await asyncio.wait_for(asyncio.gather(*m.resolver.cache.load_tasks()), 60)


def env_chain(**variables: str) -> list[EnvironmentSecretProvider]:
    return [EnvironmentSecretProvider(environ=variables)]


async def test_aws_references_by_key_by_stage_and_whole(cli: AwsCli, secret_id: str) -> None:
    """aws://id#KEY reads a key of the JSON secret, ?stage=AWSPREVIOUS the replaced version,
    and aws://id with no key the whole secret string, JSON or not."""
    cli.create(secret_id, json.dumps({"password": "old-" + SECRET_PASSWORD}))
    cli.rotate(secret_id, json.dumps({"password": SECRET_PASSWORD}))
    plain_id = secret_id + "-plain"
    cli.create(plain_id, "-----BEGIN KEY-----\nnot json\n-----END KEY-----")
    try:
        chain = env_chain(
            DB_PASSWORD=f"aws://{secret_id}#PASSWORD",
            OLD_PASSWORD=f"aws://{secret_id}?stage=AWSPREVIOUS#password",
            WHOLE=f"aws://{secret_id}",
            PEM=f"aws://{plain_id}",
        )
        async with SecretsManager(chain, resolve_references=True) as m:
            assert await m.get("DB_PASSWORD") == SECRET_PASSWORD
            assert await m.get("OLD_PASSWORD") == "old-" + SECRET_PASSWORD
            assert json.loads(await m.get("WHOLE", "")) == {"password": SECRET_PASSWORD}
            assert await m.get("PEM") == "-----BEGIN KEY-----\nnot json\n-----END KEY-----"
    finally:
        cli.server.delete_secret(plain_id)


async def test_an_aws_reference_uses_the_chains_aws_client_and_coalesces(
    cli: AwsCli, secret_id: str, sent_targets: list[str]
) -> None:
    """With an AWS provider in the chain, references go through its client (counted in its
    requests); concurrent lookups of keys referring to one secret make one request, cached
    until the refresh, which sees a rotation made with the CLI."""
    cli.create(secret_id, json.dumps({"USER": "app", "PASSWORD": "p1"}))
    main_id = secret_id + "-main"
    cli.create(main_id, json.dumps({"OTHER": "x"}))
    clock = FakeClock()
    aws = AWSSecretsManagerProvider(
        main_id, cli.server.region, endpoint_url=cli.server.endpoint_url
    )
    chain = [
        *env_chain(DB_USER=f"aws://{secret_id}#USER", DB_PASSWORD=f"aws://{secret_id}#PASSWORD"),
        aws,
    ]
    try:
        async with SecretsManager(chain, resolve_references=True, cache_ttl=60, timer=clock) as m:
            keys = ["DB_USER", "DB_PASSWORD"] * 100
            answers = await asyncio.gather(*(m.get(k) for k in keys))
            assert answers[:2] == ["app", "p1"]
            await settled(m)
            # One request for the aws provider's own document (the fan-out asks it too), one
            # for the referenced secret, however many lookups.
            assert aws.requests == 2 == sum(t.endswith("GetSecretValue") for t in sent_targets)
            assert m.resolver.peek("DB_PASSWORD") == "p1"  # the fast path, no I/O
            cli.rotate(secret_id, json.dumps({"USER": "app", "PASSWORD": "p2"}))
            clock.tick(600)
            answers = await asyncio.gather(*(m.get(k) for k in keys))
            assert answers[:2] == ["app", "p2"]
            await settled(m)
            assert aws.requests == 4 == sum(t.endswith("GetSecretValue") for t in sent_targets)
            (name,) = m.stats()["references"]
            assert secret_id in name
    finally:
        cli.server.delete_secret(main_id)


async def test_aws_reference_failures_name_the_reference(cli: AwsCli, secret_id: str) -> None:
    """A missing secret, a key the secret lacks, and a key in a non-JSON secret: each a
    ProviderError naming the reference, never the secret's content."""
    cli.create(secret_id, "plain text " + SECRET_PASSWORD)
    cases = {
        f"aws://{secret_id}-absent#K": "does not exist",
        f"aws://{secret_id}#K": "not a JSON object",
    }
    for reference, reason in cases.items():
        async with SecretsManager(
            env_chain(K=reference), resolve_references=True, on_provider_error="raise"
        ) as m:
            with pytest.raises(ProviderError, match=reason) as caught:
                await m.get("K")
        assert repr(reference) in str(caught.value)
        assert SECRET_PASSWORD not in str(caught.value)


async def test_vault_reference_reads_with_the_managers_vault_settings(
    bao: BaoServer, tmp_path: Path
) -> None:
    """vault://secret/<path>#KEY is read from OpenBao (written with `bao kv put`) with the
    manager's vault_url / vault_token; a key the path lacks is named in the error."""
    path = f"refs/{uuid.uuid4().hex}"
    bao.cli("kv", "put", f"secret/{path}", f"password={SECRET_PASSWORD}", "user=svc")
    config = {
        "vault_url": bao.url,
        "vault_token": bao.token,
        "file_path": str(tmp_path / "none.json"),
    }
    chain = env_chain(
        DB_PASSWORD=f"vault://secret/{path}#PASSWORD",
        DB_USER=f"vault://secret/{path}#user",
        MISSING=f"vault://secret/{path}#NOPE",
    )
    async with SecretsManager(
        chain, config=config, resolve_references=True, environ={"HOME": str(tmp_path)}
    ) as m:
        assert await m.get("DB_PASSWORD") == SECRET_PASSWORD
        assert await m.get("DB_USER") == "svc"
        assert m.stats()["references"][f"vault:secret/{path}"]["calls"] == 1
    async with SecretsManager(
        chain,
        config=config,
        resolve_references=True,
        on_provider_error="raise",
        environ={"HOME": str(tmp_path)},
    ) as loud:
        with pytest.raises(ProviderError, match="NOPE, which is absent") as caught:
            await loud.get("MISSING")
    assert f"vault://secret/{path}#NOPE" in str(caught.value)
    assert SECRET_PASSWORD not in str(caught.value)
