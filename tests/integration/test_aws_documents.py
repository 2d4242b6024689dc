"""Several AWS secrets in one provider (SPEC 9), against moto driven by the real `aws` CLI:
earlier secrets win, each is one document, fetched concurrently, one request per document
per refresh however many lookups run at once."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.endpoint import AioEndpoint
from botocore.config import Config
from botocore.endpoint import Endpoint

from simpletuner_secrets import ProviderError, SecretsManager
from simpletuner_secrets.providers.aws import AWSSecretsManagerProvider
from tests.clock import FakeClock
from tests.integration.aws_cli import AwsCli
from tests.servers.moto import MotoServer

#: A wide wall-clock guard against a hang only (the machine is shared and busy).
HANG_GUARD = 60.0

pytestmark = pytest.mark.integration

FAST_FAIL = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=1)


@pytest.fixture
def cli(moto_env: MotoServer, tmp_path: Path) -> AwsCli:
    """The `aws` CLI pointed at the session's moto server."""
    return AwsCli(moto_env, tmp_path)


@pytest.fixture
def names(cli: AwsCli) -> Iterator[list[str]]:
    """Three secret names unique to the test, force-deleted afterwards if created."""
    made = [f"simpletuner-docs/{uuid.uuid4().hex}" for _ in range(3)]
    yield made
    for name in made:
        cli.server.delete_secret(name)


@pytest.fixture
async def managers() -> AsyncIterator[list[SecretsManager]]:
    """Managers a test makes, closed on its loop."""
    made: list[SecretsManager] = []
    yield made
    for manager in made:
        await manager.aclose()


def provider(server: MotoServer, names: list[str], **kwargs: Any) -> AWSSecretsManagerProvider:
    return AWSSecretsManagerProvider(
        ",".join(names), server.region, endpoint_url=server.endpoint_url, **kwargs
    )


def get_targets(sent_targets: list[str]) -> int:
    return sum(target.endswith("GetSecretValue") for target in sent_targets)


async def test_earlier_secret_wins_and_each_answers_its_own_keys(
    cli: AwsCli, names: list[str], managers: list[SecretsManager]
) -> None:
    """With "a,b", a key both hold comes from a; keys only b holds come from b."""
    a, b, _ = names
    cli.create(a, json.dumps({"SHARED": "from-a", "ONLY_A": "1"}))
    cli.create(b, json.dumps({"shared": "from-b", "only-b": "2"}))
    m = SecretsManager([provider(cli.server, [a, b])])
    managers.append(m)
    assert await m.get("shared") == "from-a"
    assert await m.get("ONLY_A") == "1"
    assert await m.get("only_b") == "2"
    assert (await m.explain("ONLY_B"))["provider"] == "aws"
    counters = m.stats()["providers"]["aws"]
    assert (counters["requests"], counters["documents"], counters["calls"]) == (2, 2, 1)


async def test_the_documents_are_fetched_concurrently(
    cli: AwsCli, names: list[str], managers: list[SecretsManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every request of one load is in flight at once: each waits until all three are sent,
    in the first load (a botocore client in a thread) and in the next (the async client)."""
    for i, name in enumerate(names):
        cli.create(name, json.dumps({f"K{i}": str(i)}))
    original_blocking = Endpoint._send
    meeting = threading.Barrier(3, timeout=HANG_GUARD)

    def meeting_blocking_send(self: Any, request: Any) -> Any:
        if b"simpletuner-secrets" in request.headers.get("User-Agent", b""):  # not moto's setup
            meeting.wait()  # a serial load breaks the barrier: BrokenBarrierError, a failed load
        return original_blocking(self, request)

    monkeypatch.setattr(Endpoint, "_send", meeting_blocking_send)
    threaded = provider(cli.server, names)
    try:
        assert (await threaded.load_document())["K2"] == "2"
        assert threaded.clients_opened == 1 and threaded.open_clients == 0
    finally:
        await threaded.aclose()
    monkeypatch.setattr(Endpoint, "_send", original_blocking)

    original = AioEndpoint._send
    in_flight = 0
    most = 0
    all_sent = asyncio.Event()

    async def meeting_send(self: Any, request: Any) -> Any:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        if in_flight == 3:
            all_sent.set()
        await all_sent.wait()  # a serial load never gets past the first
        try:
            return await original(self, request)
        finally:
            in_flight -= 1

    monkeypatch.setattr(AioEndpoint, "_send", meeting_send)
    later = provider(cli.server, names)
    later._first_load_threaded = False  # as after a first load
    m = SecretsManager([later], provider_timeout=60)
    managers.append(m)
    try:
        assert await asyncio.wait_for(m.get("K2"), HANG_GUARD) == "2"
    except asyncio.TimeoutError:  # not the builtin TimeoutError on 3.10
        pytest.fail(f"at most {most} of 3 GetSecretValue requests were in flight at once")
    assert most == 3


async def test_one_request_per_document_per_refresh_window(
    cli: AwsCli, names: list[str], managers: list[SecretsManager], sent_targets: list[str]
) -> None:
    """N documents, N requests per refresh window, however many concurrent lookups: the
    manager's stats agree with the requests botocore actually sent_targets."""
    for i, name in enumerate(names):
        cli.create(name, json.dumps({f"K{i}": f"v{i}", "SHARED": name}))
    clock = FakeClock()
    m = SecretsManager([provider(cli.server, names)], cache_ttl=60, timer=clock)
    managers.append(m)
    keys = [f"K{i % 4}" for i in range(300)]  # K3 is held by none of them

    answers = await asyncio.gather(*(m.get(k) for k in keys))
    assert answers[:4] == ["v0", "v1", "v2", None]
    assert m.stats()["providers"]["aws"]["requests"] == 3 == get_targets(sent_targets)

    answers = await asyncio.gather(*(m.get(k) for k in keys))  # a warm window: no request
    assert m.stats()["providers"]["aws"]["requests"] == 3 == get_targets(sent_targets)

    clock.tick(53)  # past refresh-ahead (80% of 54-66 s), before expiry: one background refresh
    answers = await asyncio.gather(*(m.get(k) for k in keys))
    assert answers[:4] == ["v0", "v1", "v2", None]  # answered at once from the current copy

    async def background_refresh_done() -> None:
        # The refresh runs in the manager's own background task: polled through stats.
        while m.stats()["providers"]["aws"]["calls"] < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    await asyncio.wait_for(background_refresh_done(), HANG_GUARD)  # 3.10 has no asyncio.timeout
    assert m.stats()["providers"]["aws"]["requests"] == 6 == get_targets(sent_targets)

    clock.tick(600)  # well past every jittered freshness: the next lookups revalidate
    answers = await asyncio.gather(*(m.get(k) for k in keys))
    assert answers[:4] == ["v0", "v1", "v2", None]
    assert await m.get("shared") == names[0]
    counters = m.stats()["providers"]["aws"]
    assert counters["requests"] == 9 == get_targets(sent_targets)
    assert counters["calls"] == 3


async def test_a_rotation_by_the_cli_is_seen_after_the_refresh(
    cli: AwsCli, names: list[str], managers: list[SecretsManager]
) -> None:
    """`aws secretsmanager put-secret-value` on the lower secret: its new value is read at
    the next refresh, while the higher secret still wins the shared key."""
    a, b, _ = names
    cli.create(a, json.dumps({"SHARED": "a1"}))
    cli.create(b, json.dumps({"SHARED": "b1", "DB_PASSWORD": "old-password"}))
    clock = FakeClock()
    m = SecretsManager([provider(cli.server, [a, b])], cache_ttl=60, timer=clock)
    managers.append(m)
    assert await m.get("DB_PASSWORD") == "old-password"
    cli.rotate(b, json.dumps({"SHARED": "b2", "DB_PASSWORD": "new-password"}))
    assert await m.get("DB_PASSWORD") == "old-password"  # cached until the refresh
    clock.tick(600)
    assert await m.get("DB_PASSWORD") == "new-password"
    assert await m.get("SHARED") == "a1"


async def test_every_document_is_read_at_the_version_stage(
    cli: AwsCli, names: list[str], managers: list[SecretsManager]
) -> None:
    """version_stage applies to each secret: AWSPREVIOUS after a rotation, and a custom label
    set with `put-secret-value --version-stages`."""
    a, b, _ = names
    cli.create(a, json.dumps({"A": "a-old"}))
    cli.create(b, json.dumps({"B": "b-old"}))
    cli.rotate(a, json.dumps({"A": "a-new"}))
    cli.rotate(b, json.dumps({"B": "b-new"}))
    cli.stage(a, json.dumps({"A": "a-next"}), "NEXT")
    cli.stage(b, json.dumps({"B": "b-next"}), "NEXT")
    current = SecretsManager([provider(cli.server, [a, b])])
    previous = SecretsManager([provider(cli.server, [a, b], version_stage="AWSPREVIOUS")])
    staged = SecretsManager([provider(cli.server, [a, b], version_stage="NEXT")])
    managers.extend([current, previous, staged])
    assert [await current.get("A"), await current.get("B")] == ["a-new", "b-new"]
    assert [await previous.get("A"), await previous.get("B")] == ["a-old", "b-old"]
    assert [await staged.get("A"), await staged.get("B")] == ["a-next", "b-next"]


async def test_a_missing_secret_among_several_is_an_empty_document(
    cli: AwsCli, names: list[str], managers: list[SecretsManager], caplog: pytest.LogCaptureFixture
) -> None:
    """A listed secret that does not exist adds nothing (one WARNING naming it); the others
    still answer."""
    a, missing, c = names
    cli.create(a, json.dumps({"A": "1"}))
    cli.create(c, json.dumps({"C": "3"}))
    m = SecretsManager([provider(cli.server, [a, missing, c])])
    managers.append(m)
    with caplog.at_level(logging.WARNING):
        assert await m.get("A") == "1"
        assert await m.get("C") == "3"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w for w in warnings if missing in w and "not found" in w] == [warnings[0]]
    assert len(warnings) == 1


async def test_a_failing_secret_fails_the_load_naming_it_and_stale_is_served(
    cli: AwsCli, names: list[str], managers: list[SecretsManager]
) -> None:
    """A secret marked for deletion (`delete-secret` with a recovery window) makes its
    requests fail: the load fails naming that secret, and the last good document of all
    secrets is served meanwhile."""
    a, b, _ = names
    cli.create(a, json.dumps({"A": "a"}))
    cli.create(b, json.dumps({"B": "b"}))
    clock = FakeClock()
    chain = [provider(cli.server, [a, b], client_config=FAST_FAIL)]
    m = SecretsManager(chain, cache_ttl=60, timer=clock)
    managers.append(m)
    assert await m.get("B") == "b"
    cli.run("delete-secret", "--secret-id", b, "--recovery-window-in-days", "7")
    clock.tick(600)
    assert await m.get("A") == "a"  # stale-if-error: the whole last good document
    assert await m.get("B") == "b"
    loud = SecretsManager(
        [provider(cli.server, [a, b], client_config=FAST_FAIL)], on_provider_error="raise"
    )
    managers.append(loud)
    with pytest.raises(ProviderError) as caught:
        await loud.get("A")
    assert repr(b) in str(caught.value)
    assert repr(a) not in str(caught.value)


async def test_the_default_chain_reads_the_comma_separated_environment_variable(
    cli: AwsCli,
    names: list[str],
    managers: list[SecretsManager],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """SIMPLETUNER_AWS_SECRET_NAME="a, b" builds one aws provider reading both, a first."""
    a, b, _ = names
    cli.create(a, json.dumps({"K": "a"}))
    cli.create(b, json.dumps({"K": "b", "ONLY_B": "yes"}))
    monkeypatch.setenv("SIMPLETUNER_AWS_SECRET_NAME", f"{a}, {b}")
    m = SecretsManager(config={"file_path": str(tmp_path / "none.json")})
    managers.append(m)
    aws = [p for p in m.providers if p.name == "aws"]
    assert len(aws) == 1 and isinstance(aws[0], AWSSecretsManagerProvider)
    assert aws[0].secret_names == (a, b)
    assert await m.get("K") == "a"
    assert await m.get("ONLY_B") == "yes"
