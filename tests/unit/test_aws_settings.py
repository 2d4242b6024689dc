"""AWSSecretsManagerProvider without a server: settings, availability, error mapping, repr."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from simpletuner_secrets import ProviderError, SecretsManager
from simpletuner_secrets.providers import aws
from simpletuner_secrets.providers.aws import AWSSecretsManagerProvider

VALUE = "sv-91d2-never-shown"


def make(**kwargs: Any) -> AWSSecretsManagerProvider:
    kwargs.setdefault("environ", {})
    return AWSSecretsManagerProvider(**kwargs)


# -- settings --------------------------------------------------------------------------


def test_argument_beats_config_beats_environment() -> None:
    """Each setting: the argument wins over config, which wins over the environment."""
    environ = {
        "SIMPLETUNER_AWS_SECRET_NAME": "env-name",
        "AWS_DEFAULT_REGION": "env-region",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
    }
    config = {
        "aws_secret_name": "cfg-name",
        "aws_region": "cfg-region",
        "aws_endpoint_url": "http://127.0.0.1:2",
    }
    from_env = make(environ=environ)
    assert (from_env.secret_name, from_env.region_name, from_env.endpoint_url) == (
        "env-name",
        "env-region",
        "http://127.0.0.1:1",
    )
    from_config = make(config=config, environ=environ)
    assert (from_config.secret_name, from_config.region_name, from_config.endpoint_url) == (
        "cfg-name",
        "cfg-region",
        "http://127.0.0.1:2",
    )
    from_args = make(
        secret_name="arg-name",
        region_name="arg-region",
        endpoint_url="http://127.0.0.1:3",
        config=config,
        environ=environ,
    )
    assert (from_args.secret_name, from_args.region_name, from_args.endpoint_url) == (
        "arg-name",
        "arg-region",
        "http://127.0.0.1:3",
    )


def test_region_prefers_aws_default_region_then_aws_region() -> None:
    """AWS_DEFAULT_REGION is read before AWS_REGION; AWS_REGION alone is used."""
    both = make(environ={"AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "us-west-2"})
    assert both.region_name == "eu-west-1"
    assert make(environ={"AWS_REGION": "us-west-2"}).region_name == "us-west-2"
    assert make().region_name is None  # left to botocore's own resolution


def test_empty_values_count_as_unset() -> None:
    """An empty argument, config value or variable falls through to the next source."""
    provider = make(
        secret_name="",
        config={"aws_secret_name": "", "aws_region": ""},
        environ={"SIMPLETUNER_AWS_SECRET_NAME": "env-name", "AWS_DEFAULT_REGION": ""},
    )
    assert provider.secret_name == "env-name"
    assert provider.region_name is None


def test_injected_environ_replaces_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """With environ given, the process environment is not read for settings."""
    monkeypatch.setenv("SIMPLETUNER_AWS_SECRET_NAME", "process-name")
    assert make(environ={}).secret_name is None
    assert AWSSecretsManagerProvider().secret_name == "process-name"


def test_missing_settings_and_availability() -> None:
    """Only the secret name is required; is_available follows it."""
    bare = make()
    assert bare.missing_settings() and "aws_secret_name" in bare.missing_settings()[0]
    assert not bare.is_available()
    named = make(secret_name="n")
    assert named.missing_settings() == [] and named.is_available()


def test_empty_version_stage_is_refused() -> None:
    """version_stage must be a non-empty label."""
    with pytest.raises(ValueError):
        make(secret_name="n", version_stage=" ")


def test_missing_sdk_raises_import_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without aioboto3 the constructor raises ImportError with the install hint."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "aioboto3" else real_find_spec(name, *args)

    monkeypatch.setattr(aws, "_sdk_found", None)
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ImportError, match=r"pip install 'simpletuner-secrets\[aws\]'"):
        make(secret_name="n")
    manager = SecretsManager(
        config={"aws_secret_name": "n", "file_path": str(tmp_path / "s.json")}, environ={}
    )
    assert "aws" not in [p.name for p in manager.providers]


def test_client_config_is_merged_over_defaults() -> None:
    """The provider's timeouts apply unless client_config sets its own."""
    provider = make(secret_name="n", region_name="us-east-1", client_config=Config(read_timeout=3))
    _, config = provider._open_session()
    assert config.connect_timeout == aws.DEFAULT_CONNECT_TIMEOUT_S
    assert config.read_timeout == 3
    assert "simpletuner-secrets" in config.user_agent_extra


# -- repr ------------------------------------------------------------------------------


def test_repr_names_settings_and_masks_endpoint_password() -> None:
    """repr shows name, region, endpoint (password masked) and stage."""
    provider = make(
        secret_name="team/app",
        region_name="eu-central-1",
        endpoint_url="https://svc:pa55word@127.0.0.1:4566/",
        version_stage="AWSPREVIOUS",
    )
    text = repr(provider)
    for part in ("team/app", "eu-central-1", "svc:***@127.0.0.1:4566", "AWSPREVIOUS"):
        assert part in text
    assert "pa55word" not in text


# -- reads through a stubbed client ------------------------------------------------------


class StubClient:
    """Stands in for the aiobotocore client: returns or raises what the test sets."""

    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome
        self.calls: list[dict[str, Any]] = []
        self.closed = 0
        self.blocking_calls = 0

    def answer(self, kwargs: dict[str, Any]) -> Any:
        self.calls.append(kwargs)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    async def get_secret_value(self, **kwargs: Any) -> Any:
        return self.answer(kwargs)


class BlockingStubClient:
    """Stands in for the one-shot botocore client of a first load, answering as its stub."""

    def __init__(self, stub: StubClient) -> None:
        self.stub = stub

    def get_secret_value(self, **kwargs: Any) -> Any:
        self.stub.blocking_calls += 1
        return self.stub.answer(kwargs)

    def close(self) -> None:
        self.stub.closed += 1


#: The two ways a load reaches the client: the provider's first load (a botocore client in a
#: worker thread), and every later one (the event loop's aiobotocore client).
CLIENT_PATHS = ["first load in a thread", "async client"]


@pytest.fixture(params=CLIENT_PATHS)
def client_path(request: pytest.FixtureRequest) -> str:
    """Each stubbed test runs on both client paths."""
    return str(request.param)


def stubbed(
    outcome: Any, monkeypatch: pytest.MonkeyPatch, client_path: str, **kwargs: Any
) -> StubClient:
    stub = StubClient(outcome)
    provider = make(secret_name="team/app", region_name="us-east-1", **kwargs)

    async def client() -> StubClient:
        return stub

    monkeypatch.setattr(provider, "_client", client)
    if client_path == "async client":
        provider._first_load_threaded = False
    else:
        monkeypatch.setattr(provider, "_open_blocking_client", lambda: BlockingStubClient(stub))
    stub.provider = provider  # type: ignore[attr-defined]
    return stub


def client_error(code: str, status: int, message: str) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "GetSecretValue",
    )


async def test_stubbed_call_uses_secret_id_and_version_stage(
    monkeypatch: pytest.MonkeyPatch,
    client_path: str,
) -> None:
    """GetSecretValue is called with SecretId and VersionStage."""
    stub = stubbed(
        {"SecretString": json.dumps({"k": VALUE})}, monkeypatch, client_path, version_stage="S1"
    )
    assert await stub.provider.load_document() == {"K": VALUE}  # type: ignore[attr-defined]
    assert stub.calls == [{"SecretId": "team/app", "VersionStage": "S1"}]


@pytest.mark.parametrize(
    ("code", "status"),
    [("AccessDeniedException", 400), ("ThrottlingException", 400), ("InternalServiceError", 500)],
)
async def test_stubbed_client_errors_map_to_provider_error(
    monkeypatch: pytest.MonkeyPatch, client_path: str, code: str, status: int
) -> None:
    """A botocore ClientError becomes ProviderError naming the secret, code and status."""
    stub = stubbed(client_error(code, status, "not allowed"), monkeypatch, client_path)
    with pytest.raises(ProviderError) as info:
        await stub.provider.load_document()  # type: ignore[attr-defined]
    message = str(info.value)
    assert info.value.provider == "aws"
    assert "'team/app'" in message and code in message and f"HTTP {status}" in message
    assert isinstance(info.value.__cause__, ClientError)


async def test_stubbed_connection_error_names_the_cause(
    monkeypatch: pytest.MonkeyPatch, client_path: str
) -> None:
    """botocore's own errors are named with their message."""
    stub = stubbed(
        EndpointConnectionError(endpoint_url="http://127.0.0.1:9/"), monkeypatch, client_path
    )
    with pytest.raises(ProviderError, match=r"EndpointConnectionError: .*127\.0\.0\.1:9"):
        await stub.provider.load_document()  # type: ignore[attr-defined]


async def test_stubbed_unknown_error_withholds_its_message(
    monkeypatch: pytest.MonkeyPatch, client_path: str
) -> None:
    """An unexpected exception is named by class only; its message (maybe data) is not chained."""
    stub = stubbed(RuntimeError(f"parse failed near {VALUE}"), monkeypatch, client_path)
    with pytest.raises(ProviderError) as info:
        await stub.provider.load_document()  # type: ignore[attr-defined]
    assert "RuntimeError" in str(info.value) and VALUE not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_stubbed_not_found_warns_once_until_found_again(
    monkeypatch: pytest.MonkeyPatch, client_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """ResourceNotFoundException: empty document, one warning; after a success it may warn anew."""
    stub = stubbed(client_error("ResourceNotFoundException", 400, "gone"), monkeypatch, client_path)
    provider = stub.provider  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="simpletuner_secrets"):
        for _ in range(3):
            assert await provider.load_document() == {}
        assert len(caplog.records) == 1
        stub.outcome = {"SecretString": "{}"}
        assert await provider.load_document() == {}
        stub.outcome = client_error("ResourceNotFoundException", 400, "gone")
        assert await provider.load_document() == {}
    assert len(caplog.records) == 2


async def test_stubbed_response_without_value_is_an_error(
    monkeypatch: pytest.MonkeyPatch, client_path: str
) -> None:
    """A response with neither SecretString nor SecretBinary raises ProviderError."""
    stub = stubbed({"Name": "team/app"}, monkeypatch, client_path)
    with pytest.raises(ProviderError, match="neither SecretString nor SecretBinary"):
        await stub.provider.load_document()  # type: ignore[attr-defined]


async def test_only_the_first_load_uses_a_one_shot_client_in_a_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first load reads through a botocore client closed right after it; later loads
    through the event loop's async client; both counted as clients opened and requests."""
    stub = stubbed({"SecretString": json.dumps({"k": VALUE})}, monkeypatch, CLIENT_PATHS[0])
    provider = stub.provider  # type: ignore[attr-defined]
    assert await provider.load_document() == {"K": VALUE}
    assert (stub.blocking_calls, stub.closed, len(stub.calls)) == (1, 1, 1)
    assert provider.clients_opened == 1 and provider.counters()["requests"] == 1
    for _ in range(3):
        assert await provider.load_document() == {"K": VALUE}
    assert (stub.blocking_calls, stub.closed, len(stub.calls)) == (1, 1, 4)
    assert provider.counters()["requests"] == 4


async def test_several_secrets_in_the_first_load_earlier_wins_and_first_failure_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A threaded first load of "a,b,c" merges with the earlier secret winning, and names
    the first failing secret in priority order."""
    answers = {
        "a": {"SecretString": json.dumps({"shared": "from-a"})},
        "b": {"SecretString": json.dumps({"shared": "from-b", "only_b": "2"})},
        "c": client_error("ResourceNotFoundException", 400, "gone"),
    }

    class ByName(BlockingStubClient):
        def get_secret_value(self, **kwargs: Any) -> Any:
            answer = answers[kwargs["SecretId"]]
            if isinstance(answer, BaseException):
                raise answer
            return answer

    provider = make(secret_name="a,b,c", region_name="us-east-1")
    monkeypatch.setattr(provider, "_open_blocking_client", lambda: ByName(StubClient(None)))
    assert await provider.load_document() == {"SHARED": "from-a", "ONLY_B": "2"}
    assert provider.counters()["requests"] == 3
    answers["b"] = client_error("AccessDeniedException", 400, "no")
    answers["c"] = client_error("ThrottlingException", 400, "slow down")
    provider._first_load_threaded = True  # read the same way again
    with pytest.raises(ProviderError, match=r"'b'.*AccessDeniedException"):
        await provider.load_document()


async def test_an_aioconfig_sends_the_first_load_through_the_async_client() -> None:
    """A client_config that is an AioConfig (connector_args only aiobotocore applies) is
    never reduced to a botocore Config: the first load opens no one-shot client."""
    from aiobotocore.config import AioConfig

    provider = make(
        secret_name="team/app",
        region_name="us-east-1",
        client_config=AioConfig(connector_args={"keepalive_timeout": 3}),
    )
    assert provider._open_blocking_client() is None
    plain = make(secret_name="team/app", region_name="us-east-1", client_config=Config())
    client = plain._open_blocking_client()
    try:
        assert type(client).__module__.startswith("botocore")
        assert client.meta.config.connect_timeout == 5.0
    finally:
        client.close()


async def test_no_secret_name_raises_without_opening_a_client() -> None:
    """Reading with no secret name raises ProviderError and opens nothing, before and after
    closing twice (a closed provider reports the same problem, not a closed state)."""
    provider = make()
    with pytest.raises(ProviderError, match="no secret name"):
        await provider.load_document()
    assert provider.clients_opened == 0 and provider.open_clients == 0
    await provider.aclose()
    await provider.aclose()
    with pytest.raises(ProviderError, match="no secret name"):
        await provider.load_document()
    assert provider.clients_opened == 0 and provider.open_clients == 0
