"""AWS Secrets Manager faults: moto behind the fault proxy, and a fake endpoint answering errors.

Blackholed, stalled and reset connections come from the proxy in front of a real moto_server;
HTTP 500 and throttling come from a loopback endpoint the proxy is switched to, then back.
Each case: stale with one WARNING, skip to the next provider, or `ProviderError` under
``raise``, within ``provider_timeout``; then recovery once moto answers again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiobotocore.session  # noqa: F401  (see below)
import pytest
from botocore.config import Config

from simpletuner_secrets import SecretsManager
from simpletuner_secrets.providers.aws import AWSSecretsManagerProvider
from tests.faults import (
    KEY,
    MARGIN,
    PAST_TTL,
    STALE_WARNING,
    TIMEOUT,
    TTL,
    Fault,
    Stopwatch,
    check_all_outcomes,
    library_warnings,
    record,
)
from tests.faults.proxy import FaultProxy, Mode
from tests.servers.moto import MotoServer

pytestmark = pytest.mark.integration
# aiobotocore (with aiohttp) is imported here, not by the first timed refresh: a provider's
# first load reads through botocore, and its next opens the per-loop aiobotocore client, whose
# import (about 0.3 s of CPU) can outlast the 1 s provider_timeout on a busy shared machine.

VALUE = "aws-fault-value-3c4d5e6f7a"
ROTATED = "aws-fault-rotated-8b9c0d1e"
RECOVERY_LIMIT = 3.0
#: Short SDK timeouts and no retry: botocore itself gives up in half a second.
QUICK = Config(
    connect_timeout=0.5, read_timeout=0.5, retries={"total_max_attempts": 1, "mode": "standard"}
)


@dataclass
class FakeAWS:
    """A loopback endpoint answering every request with one AWS JSON error (or a secret)."""

    status: int = 500
    error_type: str = "InternalServiceError"
    requests: int = 0
    server: asyncio.AbstractServer | None = None
    port: int = 0
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> FakeAWS:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE)
                await reader.readexactly(int(length.group(1)) if length else 0)
                self.requests += 1
                body = json.dumps(
                    {"__type": self.error_type, "message": f"{self.error_type} (fake)"}
                ).encode()
                writer.write(
                    b"HTTP/1.1 %d Error\r\nContent-Type: application/x-amz-json-1.1\r\n"
                    b"x-amzn-ErrorType: %s\r\nx-amzn-RequestId: fake\r\nContent-Length: %d\r\n\r\n%s"
                    % (self.status, self.error_type.encode(), len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()


@pytest.fixture
def proxy(moto_env: MotoServer) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session's moto_server."""
    with FaultProxy("127.0.0.1", moto_env.port) as running:
        yield running


@pytest.fixture
async def fake() -> AsyncIterator[FakeAWS]:
    """A fake AWS endpoint on the test's loop, answering HTTP 500 until told otherwise."""
    server = await FakeAWS().start()
    yield server
    await server.close()


@pytest.fixture
def secret(moto_env: MotoServer, moto_secret: str) -> str:
    """A secret on moto holding ``{KEY: VALUE}``."""
    moto_env.create_secret(moto_secret, string=json.dumps({KEY: VALUE}))
    return moto_secret


def aws(proxy: FaultProxy, name: str, client_config: Any = QUICK) -> AWSSecretsManagerProvider:
    return AWSSecretsManagerProvider(
        name, "us-east-1", endpoint_url=proxy.url, environ={}, client_config=client_config
    )


def providers_on(
    proxy: FaultProxy, name: str, client_config: Any = QUICK
) -> Callable[[], AWSSecretsManagerProvider]:
    return lambda: aws(proxy, name, client_config)


# -- network faults (moto behind the proxy) ----------------------------------------------

NETWORK_FAULTS: dict[Mode, tuple[tuple[str, ...], float, bool]] = {
    # mode: (failure text, least time a warm lookup takes, must be immediate)
    "blackhole": (("read timeout", "no answer within"), 0.45, False),
    "stall": (("read timeout", "no answer within"), 0.45, False),
    "reset": (("connection reset", "connection failed", "ConnectionClosedError"), 0, True),
}


@pytest.mark.parametrize("mode", list(NETWORK_FAULTS))
async def test_network_fault(
    mode: Mode, proxy: FaultProxy, secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Blackholed, stalled or reset: botocore's short timeouts or the RST decide, in time."""
    messages, min_s, fast = NETWORK_FAULTS[mode]
    fault = Fault(mode, lambda: proxy.set_mode(mode), messages, min_s=min_s, fast=fast)
    await check_all_outcomes("aws", fault, providers_on(proxy, secret), VALUE, caplog, (VALUE,))


async def test_blackhole_with_default_sdk_timeouts_is_bounded_by_provider_timeout(
    proxy: FaultProxy, secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Settings from config (botocore's 10 s read timeout): provider_timeout decides."""

    def make() -> AWSSecretsManagerProvider:
        config = {"aws_secret_name": secret, "aws_endpoint_url": proxy.url}
        return AWSSecretsManagerProvider(config={**config, "aws_region": "us-east-1"}, environ={})

    fault = Fault(
        "blackhole (default SDK timeouts)",
        proxy.blackhole,
        ("no answer within 1 s",),
        min_s=TIMEOUT * 0.9,
    )
    await check_all_outcomes("aws", fault, make, VALUE, caplog, (VALUE,))


# -- error answers (the proxy switched to a fake endpoint) -------------------------------


@pytest.mark.parametrize(
    ("status", "error_type", "client_config", "messages", "fast"),
    [
        (500, "InternalServiceError", QUICK, ("InternalServiceError, HTTP 500",), True),
        # The provider's default retries (standard mode, 3 attempts, jittered backoff) may
        # outlast provider_timeout: the timeout usually decides, the SDK's last error sometimes.
        (400, "ThrottlingException", None, ("no answer within 1 s", "ThrottlingException"), False),
    ],
    ids=["http500", "throttled"],
)
async def test_error_answers(
    status: int,
    error_type: str,
    client_config: Any,
    messages: tuple[str, ...],
    fast: bool,
    proxy: FaultProxy,
    fake: FakeAWS,
    secret: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """HTTP 500 and throttling: stale with one warning, skip, or raise, within the timeout."""
    fake.status, fake.error_type = status, error_type
    fault = Fault(
        error_type, lambda: proxy.set_upstream("127.0.0.1", fake.port), messages, fast=fast
    )
    await check_all_outcomes(
        "aws", fault, providers_on(proxy, secret, client_config), VALUE, caplog, (VALUE,)
    )
    assert fake.requests >= 3  # each of the three managers asked the fake endpoint


# -- recovery ----------------------------------------------------------------------------


async def wait_for_value(manager: SecretsManager, limit: float) -> float:
    watch = Stopwatch()
    while (got := await manager.get(KEY)) != ROTATED:
        assert got == VALUE
        assert watch.elapsed < limit, f"the rotated value not seen within {limit} s"
        await asyncio.sleep(0.02)
    return watch.elapsed


@pytest.mark.parametrize("fault", ["blackhole", "stall", "reset", "http500", "throttled"])
async def test_recovers_when_moto_answers_again(
    fault: str,
    proxy: FaultProxy,
    fake: FakeAWS,
    moto_env: MotoServer,
    secret: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Fault on: stale; fault off (proxy back to pass, or back to moto): a new value is seen."""
    if fault == "throttled":
        fake.status, fake.error_type = 400, "ThrottlingException"
    caplog.set_level(logging.WARNING)
    async with SecretsManager(
        [aws(proxy, secret)], cache_ttl=TTL, provider_timeout=TIMEOUT
    ) as manager:
        assert await manager.get(KEY) == VALUE
        if fault in ("http500", "throttled"):
            proxy.set_upstream("127.0.0.1", fake.port)
        else:
            proxy.set_mode(fault)  # type: ignore[arg-type]
        await asyncio.sleep(PAST_TTL)
        watch = Stopwatch()
        assert await manager.get(KEY) == VALUE
        detect = watch.elapsed
        assert detect < TIMEOUT + MARGIN
        await asyncio.to_thread(
            moto_env.put_secret_value, secret, string=json.dumps({KEY: ROTATED})
        )
        if fault in ("http500", "throttled"):
            proxy.set_upstream("127.0.0.1", moto_env.port)
        else:
            proxy.passthrough()
        recover = await wait_for_value(manager, RECOVERY_LIMIT)
    assert len(library_warnings(caplog, STALE_WARNING)) == 1
    assert library_warnings(caplog) == library_warnings(caplog, STALE_WARNING)
    record(f"aws {fault} recovery", detect_s=detect, recover_s=recover)
