"""AWSSecretsManagerProvider against a real moto_server: reads, errors, clients, event loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import re
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config

import simpletuner_secrets
from simpletuner_secrets import ProviderError, SecretsManager
from simpletuner_secrets.providers.aws import AWSSecretsManagerProvider
from tests.fresh_process import run_json_script
from tests.heartbeat import HANG_GUARD_S
from tests.servers.moto import MotoServer, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SECRET_VALUE = "sv-3c1f9a7e-do-not-print"
FAST_FAIL = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=1)


def provider_for(server: MotoServer, name: str, **kwargs: Any) -> AWSSecretsManagerProvider:
    return AWSSecretsManagerProvider(
        name, server.region, endpoint_url=server.endpoint_url, **kwargs
    )


@pytest.fixture
async def closing() -> AsyncIterator[
    Callable[[AWSSecretsManagerProvider], AWSSecretsManagerProvider]
]:
    """Close every provider a test registers, on the test's loop."""
    opened: list[AWSSecretsManagerProvider] = []

    def register(provider: AWSSecretsManagerProvider) -> AWSSecretsManagerProvider:
        opened.append(provider)
        return provider

    yield register
    for provider in opened:
        await provider.aclose()


# -- reads -----------------------------------------------------------------------------


async def test_secret_string_object_is_read_with_normalized_keys_and_json_text(
    moto_env: MotoServer, moto_secret: str, closing: Any
) -> None:
    """A SecretString JSON object answers by normalized key; numbers, booleans, objects as JSON."""
    moto_env.create_secret(
        moto_secret,
        string=json.dumps(
            {
                "hf-token": SECRET_VALUE,
                "db.port": 5432,
                "ratio": 0.5,
                "debug": True,
                "nested": {"a": [1, 2]},
                "empty": "",
                "nothing": None,
            }
        ),
    )
    provider = closing(provider_for(moto_env, moto_secret))
    assert await provider.get("HF_TOKEN") == SECRET_VALUE
    assert await provider.get("hf.token") == SECRET_VALUE
    assert await provider.get("DB_PORT") == "5432"
    assert await provider.get("ratio") == "0.5"
    assert await provider.get("debug") == "true"
    assert await provider.get("nested") == '{"a":[1,2]}'
    assert await provider.get("empty") is None
    assert await provider.get("nothing") is None
    assert await provider.get("absent") is None


async def test_secret_binary_utf8_json_is_read(
    moto_env: MotoServer, moto_secret: str, closing: Any
) -> None:
    """A SecretBinary holding UTF-8 JSON is read like a SecretString."""
    moto_env.create_secret(moto_secret, binary=json.dumps({"key": "välue-ü"}).encode("utf-8"))
    provider = closing(provider_for(moto_env, moto_secret))
    assert await provider.get("KEY") == "välue-ü"


async def test_version_stage_reads_previous_after_put(
    moto_env: MotoServer, moto_secret: str, closing: Any
) -> None:
    """version_stage=AWSPREVIOUS reads the value that put_secret_value replaced."""
    moto_env.create_secret(moto_secret, string='{"token": "old"}')
    moto_env.put_secret_value(moto_secret, string='{"token": "new"}')
    current = closing(provider_for(moto_env, moto_secret))
    previous = closing(provider_for(moto_env, moto_secret, version_stage="AWSPREVIOUS"))
    assert await current.get("token") == "new"
    assert await previous.get("token") == "old"


async def test_settings_come_from_the_environment(
    moto_env: MotoServer, moto_secret: str, monkeypatch: pytest.MonkeyPatch, closing: Any
) -> None:
    """With no arguments, name, region and endpoint come from the environment variables."""
    moto_env.create_secret(moto_secret, string='{"k": "v"}')
    monkeypatch.setenv("SIMPLETUNER_AWS_SECRET_NAME", moto_secret)
    provider = closing(AWSSecretsManagerProvider())
    assert provider.secret_name == moto_secret
    assert provider.region_name == moto_env.region
    assert provider.endpoint_url == moto_env.endpoint_url
    assert provider.is_available() and provider.missing_settings() == []
    assert await provider.get("k") == "v"


async def test_manager_builds_the_provider_from_config(
    moto_env: MotoServer, moto_secret: str, tmp_path: Path
) -> None:
    """SecretsManager(config=...) puts the AWS provider in the chain and answers from it."""
    moto_env.create_secret(moto_secret, string=json.dumps({"aws-only-key": SECRET_VALUE}))
    config = {
        "aws_secret_name": moto_secret,
        "aws_region": moto_env.region,
        "aws_endpoint_url": moto_env.endpoint_url,
        "file_path": str(tmp_path / "secrets.json"),
    }
    async with SecretsManager(config=config, environ={}) as manager:
        assert "aws" in [p.name for p in manager.providers]
        assert await manager.get("AWS_ONLY_KEY") == SECRET_VALUE


def test_lazy_top_level_export() -> None:
    """simpletuner_secrets.AWSSecretsManagerProvider is the provider class."""
    assert simpletuner_secrets.AWSSecretsManagerProvider is AWSSecretsManagerProvider


# -- missing and failing ----------------------------------------------------------------


async def test_missing_secret_is_empty_with_one_warning(
    moto_env: MotoServer, moto_secret: str, caplog: pytest.LogCaptureFixture, closing: Any
) -> None:
    """A missing secret reads as absent keys, logged once at WARNING however often it is read."""
    provider = closing(provider_for(moto_env, moto_secret))
    with caplog.at_level(logging.DEBUG, logger="simpletuner_secrets"):
        assert await provider.get("anything") is None
        for _ in range(3):
            assert await provider.load_document() == {}
        await asyncio.gather(*(provider.load_document() for _ in range(5)))
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert moto_secret in warnings[0].getMessage()
    assert "not found" in warnings[0].getMessage()


async def test_missing_version_stage_is_empty(
    moto_env: MotoServer, moto_secret: str, closing: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A stage label the secret does not carry reads as an empty document."""
    moto_env.create_secret(moto_secret, string='{"k": "v"}')
    provider = closing(provider_for(moto_env, moto_secret, version_stage="NO_SUCH_STAGE"))
    with caplog.at_level(logging.WARNING, logger="simpletuner_secrets"):
        assert await provider.load_document() == {}
    assert len(caplog.records) == 1


@pytest.mark.parametrize(
    ("string", "binary", "expected"),
    [
        (f"token={SECRET_VALUE}", None, "not valid JSON"),
        (json.dumps([SECRET_VALUE, "x"]), None, "holds a list"),
        (json.dumps(SECRET_VALUE), None, "holds a str"),
        (None, b"\xff\xfe" + SECRET_VALUE.encode(), "not UTF-8"),
        (None, b'{"k": "' + SECRET_VALUE.encode() + b'\xff"}', "not UTF-8"),
    ],
    ids=["not-json", "json-array", "json-string", "binary-bom", "binary-mid"],
)
async def test_malformed_secret_raises_without_the_value(
    moto_env: MotoServer,
    moto_secret: str,
    closing: Any,
    string: str | None,
    binary: bytes | None,
    expected: str,
) -> None:
    """Not JSON, not an object, or binary not UTF-8: ProviderError naming the secret, not the value."""
    moto_env.create_secret(moto_secret, string=string, binary=binary)
    provider = closing(provider_for(moto_env, moto_secret))
    with pytest.raises(ProviderError) as info:
        await provider.get("k")
    message = str(info.value)
    assert info.value.provider == "aws"
    assert expected in message and moto_secret in message
    assert SECRET_VALUE not in message and SECRET_VALUE not in repr(info.value)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


async def test_unreachable_endpoint_raises_provider_error(
    closing: Any, moto_env: MotoServer
) -> None:
    """A closed loopback port: ProviderError naming the secret and the refused connection."""
    provider = closing(
        AWSSecretsManagerProvider(
            "some/secret",
            "us-east-1",
            endpoint_url=f"http://127.0.0.1:{free_port()}",
            client_config=FAST_FAIL,
        )
    )
    started = time.perf_counter()
    with pytest.raises(ProviderError) as info:
        await provider.get("k")
    assert time.perf_counter() - started < 5
    message = str(info.value)
    assert "'some/secret'" in message and "connection refused at http://127.0.0.1:" in message


async def _fake_aws(
    status: int,
    error_type: str,
    counter: list[int],
    connected: list[int] | None = None,
    closed: asyncio.Event | None = None,
) -> tuple[asyncio.AbstractServer, str]:
    """A loopback HTTP server answering every request with one AWS JSON error; ``connected``
    counts the client connections still open, ``closed`` is set whenever none is."""
    body = json.dumps({"__type": error_type, "message": f"{error_type} for this caller"}).encode()
    connected = [0] if connected is None else connected

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected[0] += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                match = re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE)
                await reader.readexactly(int(match.group(1)) if match else 0)
                counter[0] += 1
                writer.write(
                    b"HTTP/1.1 %d Error\r\nContent-Type: application/x-amz-json-1.1\r\n"
                    b"x-amzn-ErrorType: %s\r\nContent-Length: %d\r\n\r\n%s"
                    % (status, error_type.encode(), len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            connected[0] -= 1
            if closed is not None and not connected[0]:
                closed.set()
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("status", "error_type", "attempts"),
    [(400, "AccessDeniedException", 1), (400, "ThrottlingException", 2)],
)
async def test_denied_and_throttled_raise_after_botocore_retries(
    moto_env: MotoServer, status: int, error_type: str, attempts: int
) -> None:
    """Errors from a fake AWS endpoint: denied at once, throttling after botocore's retries;
    the provider's connections are closed by `aclose` while the caller still holds the error."""
    counter, connected, closed = [0], [0], asyncio.Event()
    server, url = await _fake_aws(status, error_type, counter, connected, closed)
    provider = AWSSecretsManagerProvider(
        "team/app",
        "us-east-1",
        endpoint_url=url,
        client_config=Config(retries={"total_max_attempts": 2, "mode": "standard"}),
    )
    try:
        with pytest.raises(ProviderError) as info:
            await provider.load_document()
    finally:
        await provider.aclose()
        server.close()
        # The error's traceback once held the first load's HTTP response and its socket
        # (Python 3.12's wait_closed then waited for ever); 10 s is a hang guard, not a
        # timing check: the socket closes within milliseconds.
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            await asyncio.wait_for(closed.wait(), 10)
        assert connected[0] == 0, "a connection stayed open while the error was held"
        await asyncio.wait_for(server.wait_closed(), 30)
    message = str(info.value)
    assert error_type in message and "'team/app'" in message and "HTTP 400" in message
    assert counter[0] == attempts


# -- clients and event loops ----------------------------------------------------------


async def test_one_client_reused_across_calls(
    moto_env: MotoServer, moto_secret: str, sent_targets: list[str], closing: Any
) -> None:
    """The first read's one-shot client is closed after it; the many uncached reads after it
    use one async client; aclose closes it, twice is fine, reads reopen."""
    moto_env.create_secret(moto_secret, string='{"k": "v"}')
    provider = closing(provider_for(moto_env, moto_secret))
    assert (await provider.load_document())["K"] == "v"
    assert provider.clients_opened == 1 and provider.open_clients == 0
    for _ in range(9):
        assert (await provider.load_document())["K"] == "v"
    await asyncio.gather(*(provider.load_document() for _ in range(10)))
    assert provider.clients_opened == 2 and provider.open_clients == 1
    assert sent_targets.count("secretsmanager.GetSecretValue") == 20
    await provider.aclose()
    await provider.aclose()
    assert provider.open_clients == 0
    assert (await provider.load_document())["K"] == "v"
    assert provider.clients_opened == 3
    await provider.aclose()
    assert provider.open_clients == 0


def _in_thread_loop(
    work: Callable[[], Awaitable[None]],
) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(work())  # type: ignore[arg-type]
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


async def test_two_running_loops_get_two_clients_closed_by_aclose(
    moto_env: MotoServer, moto_secret: str
) -> None:
    """Two threads' loops open two clients; aclose from a third loop closes both on their loops."""
    moto_env.create_secret(moto_secret, string='{"k": "v"}')
    provider = provider_for(moto_env, moto_secret)
    opened = threading.Barrier(3, timeout=20)
    finish = threading.Event()

    async def work() -> None:
        assert (await provider.load_document())["K"] == "v"
        assert (await provider.load_document())["K"] == "v"
        await asyncio.to_thread(opened.wait)
        await asyncio.to_thread(finish.wait, 20)

    assert (await provider.load_document())["K"] == "v"  # the first load: a one-shot client
    runs = [_in_thread_loop(work) for _ in range(2)]
    await asyncio.to_thread(opened.wait)
    entries = list(provider._clients.values())
    assert provider.clients_opened == 3 and provider.open_clients == 2
    assert len({e.loop for e in entries}) == 2
    await provider.aclose()
    assert provider.open_clients == 0
    assert all(e.task is not None and e.task.done() for e in entries)
    await provider.aclose()
    finish.set()
    for thread, errors in runs:
        await asyncio.to_thread(thread.join, 20)
        assert not errors
    gc.collect()  # an unclosed session would warn (an error here) when collected


async def test_client_closes_with_its_loop(moto_env: MotoServer, moto_secret: str) -> None:
    """A loop that ends (asyncio.run returns) closes its client; nothing leaks or warns."""
    moto_env.create_secret(moto_secret, string='{"k": "v"}')
    provider = provider_for(moto_env, moto_secret)

    async def work() -> None:
        assert (await provider.load_document())["K"] == "v"

    assert (await provider.load_document())["K"] == "v"  # the first load: a one-shot client
    for _ in range(2):
        thread, errors = _in_thread_loop(work)
        await asyncio.to_thread(thread.join, 20)
        assert not errors
    assert provider.clients_opened == 3 and provider.open_clients == 0
    await provider.aclose()
    gc.collect()


async def test_concurrent_cold_gets_send_one_request(
    moto_env: MotoServer, moto_secret: str, sent_targets: list[str], closing: Any
) -> None:
    """200 concurrent first gets of 20 keys: one client, exactly one GetSecretValue request."""
    moto_env.create_secret(
        moto_secret, string=json.dumps({f"key-{i}": f"value-{i}" for i in range(20)})
    )
    provider = closing(provider_for(moto_env, moto_secret))
    started = time.perf_counter()
    values = await asyncio.gather(*(provider.get(f"KEY_{i % 20}") for i in range(200)))
    elapsed = time.perf_counter() - started
    assert values == [f"value-{i % 20}" for i in range(200)]
    assert sent_targets == ["secretsmanager.GetSecretValue"]
    assert provider.clients_opened == 1
    assert elapsed < 5.0


async def test_cancelled_first_caller_does_not_cancel_the_others(
    moto_env: MotoServer, moto_secret: str, closing: Any
) -> None:
    """Cancelling the call that started opening the client leaves the other callers served."""
    moto_env.create_secret(moto_secret, string='{"k": "v"}')
    provider = closing(provider_for(moto_env, moto_secret))
    # The provider's first load reads through a one-shot botocore client; the next ones open
    # the shared per-loop client, which is what this test cancels the opening of.
    assert (await provider.load_document())["K"] == "v"
    assert provider.clients_opened == 1
    first = asyncio.create_task(provider.load_document())
    await asyncio.sleep(0)
    others = [asyncio.create_task(provider.load_document()) for _ in range(3)]
    await asyncio.sleep(0)
    first.cancel()
    results = await asyncio.gather(*others)
    assert all(r["K"] == "v" for r in results)
    assert first.cancelled()
    assert provider.clients_opened == 2  # the one-shot client, then one per-loop client


HEARTBEAT_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys, time

    from simpletuner_secrets.providers.aws import AWSSecretsManagerProvider
    from tests.heartbeat import Beats, beat

    async def main():
        cold = not any(m == "botocore" or m.startswith(("botocore.", "aioboto3")) for m in sys.modules)
        provider = AWSSecretsManagerProvider()
        beats = Beats()
        done = asyncio.Event()
        ticker = asyncio.create_task(beat(beats, done))
        await asyncio.sleep(0.05)
        beats.cpu.clear()
        beats.wall.clear()
        started = time.perf_counter()
        value = await provider.get("beat")
        elapsed = time.perf_counter() - started
        await asyncio.sleep(0.01)
        done.set()
        await ticker
        await provider.aclose()
        print(json.dumps({"cold": cold, "ok": value == "ok", "max_busy": beats.max_busy,
                          "max_wall_gap": beats.max_wall, "ticks": len(beats.cpu),
                          "elapsed": elapsed}))

    asyncio.run(main())
    """
)


def run_fresh_script(script: str, secret_name: str) -> dict[str, Any]:
    """Run ``script`` in a fresh interpreter reading ``secret_name`` from moto (warnings are
    errors); the JSON object it printed last."""
    env = dict(os.environ, SIMPLETUNER_AWS_SECRET_NAME=secret_name, PYTHONPATH=str(ROOT))
    return run_json_script(script, env, ROOT)


def test_first_cold_get_never_stalls_the_loop(moto_env: MotoServer, moto_secret: str) -> None:
    """In a fresh process, the first get (SDK import and client creation included) never
    blocks the event loop for more than 0.1 s."""
    moto_env.create_secret(moto_secret, string='{"beat": "ok"}')
    result = run_fresh_script(HEARTBEAT_SCRIPT, moto_secret)
    assert result["cold"] and result["ok"], result
    assert result["ticks"] >= 5, result
    assert result["max_busy"] < 0.1, result
    assert result["max_wall_gap"] < HANG_GUARD_S, result


FIRST_ANSWER_SCRIPT = textwrap.dedent(
    """
    import json, sys

    from simpletuner_secrets import SecretsManager

    def loaded():
        return sorted(m for m in ("aiohttp", "aiobotocore", "aioboto3", "httpx") if m in sys.modules)

    manager = SecretsManager(cache_ttl=0, min_refresh_interval=0)
    first = manager.sync.get("FIRST")
    after_first = loaded()
    second = manager.sync.get("FIRST")  # a second load: the event loop's async client
    after_second = loaded()
    counters = manager.stats()["providers"]["aws"]
    manager.sync.close()
    print(json.dumps({"values": [first, second], "first": after_first, "second": after_second,
                      "requests": counters["requests"]}))
    """
)


def test_a_fresh_process_first_answer_does_not_import_aiohttp(
    moto_env: MotoServer, moto_secret: str
) -> None:
    """A fresh process's first AWS answer comes without importing aiohttp or aiobotocore (a
    botocore client in a worker thread); its next load opens the aiobotocore client."""
    moto_env.create_secret(moto_secret, string='{"first": "answer"}')
    result = run_fresh_script(FIRST_ANSWER_SCRIPT, moto_secret)
    assert result["values"] == ["answer", "answer"], result
    assert result["first"] == [], result
    assert "aiobotocore" in result["second"] and "aiohttp" in result["second"], result
    assert result["requests"] == 2, result


LOADER_AT_EXIT_SCRIPT = textwrap.dedent(
    """
    import atexit, json

    from simpletuner_secrets import SecretsManager
    from simpletuner_secrets.providers import aws

    manager = SecretsManager()
    value = manager.sync.get("FIRST")
    manager.sync.close()
    held = aws._loader is not None
    atexit._run_exitfuncs()  # what the interpreter runs first at exit
    print(json.dumps({"value": value, "held": held, "after_exit": aws._loader is not None}))
    """
)


def test_the_parsed_service_files_are_let_go_at_exit(
    moto_env: MotoServer, moto_secret: str
) -> None:
    """The process-wide parsed Secrets Manager files, kept for the next client, are dropped by
    the exit functions, before the interpreter's teardown (which took far longer to free them:
    ``benchmarks/bench_startup.py``)."""
    moto_env.create_secret(moto_secret, string='{"first": "answer"}')
    result = run_fresh_script(LOADER_AT_EXIT_SCRIPT, moto_secret)
    assert result == {"value": "answer", "held": True, "after_exit": False}, result


# -- logging and repr -------------------------------------------------------------------


async def test_repr_and_logs_hold_no_value(
    moto_env: MotoServer, moto_secret: str, caplog: pytest.LogCaptureFixture, closing: Any
) -> None:
    """repr names the secret, region, endpoint and stage; no value reaches repr or our logs."""
    moto_env.create_secret(moto_secret, string=json.dumps({"token": SECRET_VALUE}))
    botocore_level = logging.getLogger("botocore").level
    provider = closing(provider_for(moto_env, moto_secret))
    with caplog.at_level(logging.DEBUG, logger="simpletuner_secrets"):
        assert await provider.get("token") == SECRET_VALUE
    text = repr(provider)
    for part in (moto_secret, moto_env.region, moto_env.endpoint_url, "AWSCURRENT"):
        assert part in text
    assert SECRET_VALUE not in text
    assert all(SECRET_VALUE not in r.getMessage() for r in caplog.records)
    assert logging.getLogger("botocore").level == botocore_level


def test_endpoint_password_masked_in_repr() -> None:
    """A password in the endpoint URL is masked in repr."""
    provider = AWSSecretsManagerProvider(
        "n", "us-east-1", endpoint_url="http://user:hunter2@127.0.0.1:9/"
    )
    assert "hunter2" not in repr(provider) and "user:***@127.0.0.1:9" in repr(provider)
