"""aiohttp integration on a real loopback server (aiohttp.test_utils.TestServer + TestClient)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from simpletuner_secrets import SecretsManager, get_secrets_manager, set_secrets_manager
from simpletuner_secrets.integrations.aiohttp import (
    SECRETS_MANAGER_KEY,
    get_manager,
    get_secret,
    setup,
)
from simpletuner_secrets.manager import installed_manager
from simpletuner_secrets.pytest_plugin import SecretOverrides
from simpletuner_secrets.testing import InMemorySecretProvider

HF_VALUE = "hf_aiohttp_test_value_52e0"


def memory_manager(**secrets: str) -> SecretsManager:
    return SecretsManager([InMemorySecretProvider(secrets)])


async def token(request: web.Request) -> web.Response:
    return web.json_response({"value": await get_secret(request, "hf-token")})


async def required(request: web.Request) -> web.Response:
    value = await get_secret(request, "REPLICATE_API_TOKEN", required=True)
    return web.json_response({"length": len(value)})


async def with_default(request: web.Request) -> web.Response:
    return web.json_response({"value": await get_secret(request, "MISSING", "fallback")})


async def which(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "app_is_process": request.app[SECRETS_MANAGER_KEY] is get_secrets_manager(),
            "helper_uses_app": get_manager(request) is request.config_dict[SECRETS_MANAGER_KEY],
        }
    )


def make_app(manager: SecretsManager | None = None, **kwargs: bool | None) -> web.Application:
    app = web.Application()
    setup(app, manager, **kwargs)
    app.router.add_get("/token", token)
    app.router.add_get("/required", required)
    app.router.add_get("/default", with_default)
    app.router.add_get("/which", which)
    return app


async def test_get_secret_reads_through_the_apps_manager(no_installed_manager: None) -> None:
    """get_secret answers from the manager setup() gave the app, with a default for absent keys."""
    manager = memory_manager(HF_TOKEN=HF_VALUE)
    async with TestClient(TestServer(make_app(manager), host="127.0.0.1")) as client:
        assert str(client.make_url("/")).startswith("http://127.0.0.1:")
        assert await (await client.get("/token")).json() == {"value": HF_VALUE}
        assert await (await client.get("/default")).json() == {"value": "fallback"}
        assert await (await client.get("/which")).json() == {
            "app_is_process": True,
            "helper_uses_app": True,
        }


async def test_required_secret_absent_is_a_503_json_error(no_installed_manager: None) -> None:
    """required=True and no provider has the key: 503 with a JSON detail naming the key."""
    async with TestClient(TestServer(make_app(memory_manager(HF_TOKEN=HF_VALUE)))) as client:
        response = await client.get("/required")
        assert response.status == 503
        assert response.content_type == "application/json"
        assert await response.json() == {"detail": "secret REPLICATE_API_TOKEN is not configured"}
        assert HF_VALUE not in await response.text()


async def test_required_secret_with_a_failing_provider_is_a_503(no_installed_manager: None) -> None:
    """A provider failure (on_provider_error="raise") is a 503 without the failure's text."""
    provider = InMemorySecretProvider({"REPLICATE_API_TOKEN": "r8_value"})
    provider.failure = "internal detail"
    manager = SecretsManager([provider], on_provider_error="raise")
    async with TestClient(TestServer(make_app(manager))) as client:
        response = await client.get("/required")
        assert response.status == 503
        assert await response.json() == {
            "detail": "secret REPLICATE_API_TOKEN is unavailable: provider memory failed"
        }
        assert "internal detail" not in await response.text()


async def test_required_secret_with_a_skipped_failing_provider_says_it_failed(
    no_installed_manager: None,
) -> None:
    """Skip mode with the provider down: the 503 names the failed provider, not "not
    configured"."""
    provider = InMemorySecretProvider({"REPLICATE_API_TOKEN": "r8_value"})
    provider.failure = "down"
    async with TestClient(TestServer(make_app(SecretsManager([provider])))) as client:
        response = await client.get("/required")
        assert response.status == 503
        assert await response.json() == {
            "detail": "secret REPLICATE_API_TOKEN is unavailable: provider memory failed"
        }


async def test_cleanup_closes_a_created_manager_and_uninstalls_it(
    no_installed_manager: None, clean_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """setup(app) with nothing installed builds SecretsManager() at startup, closes it at cleanup."""
    monkeypatch.setenv("HF_TOKEN", HF_VALUE)
    app = make_app()
    async with TestClient(TestServer(app)) as client:
        created = app[SECRETS_MANAGER_KEY]
        assert installed_manager() is created
        assert [p.name for p in created.providers] == ["env", "file"]
        assert await (await client.get("/token")).json() == {"value": HF_VALUE}
    assert created.closed
    assert installed_manager() is None


async def test_a_given_manager_is_left_open_unless_close_is_set(no_installed_manager: None) -> None:
    """A manager passed to setup() is the caller's: kept open, unless close=True."""
    previous = memory_manager()
    set_secrets_manager(previous)
    kept, closed = memory_manager(), memory_manager()
    async with TestClient(TestServer(make_app(kept))):
        assert installed_manager() is kept
    async with TestClient(TestServer(make_app(closed, close=True))):
        pass
    assert not kept.closed and closed.closed
    assert installed_manager() is previous


async def test_sub_application_uses_the_parents_manager(no_installed_manager: None) -> None:
    """A handler of a sub-application finds the manager set up on the main app."""
    manager = memory_manager(HF_TOKEN=HF_VALUE)
    app = web.Application()
    setup(app, manager)
    sub = web.Application()
    sub.router.add_get("/token", token)
    app.add_subapp("/sub", sub)
    async with TestClient(TestServer(app)) as client:
        assert await (await client.get("/sub/token")).json() == {"value": HF_VALUE}


async def test_app_without_setup_reads_the_process_manager(
    override_secrets: SecretOverrides,
) -> None:
    """Without setup(), get_secret falls back to get_secrets_manager() (here the plugin's)."""
    override_secrets({"HF_TOKEN": "hf_process_wide"})
    app = web.Application()
    app.router.add_get("/token", token)
    async with TestClient(TestServer(app)) as client:
        assert await (await client.get("/token")).json() == {"value": "hf_process_wide"}


async def test_setup_adopts_the_test_manager(
    secrets_manager: SecretsManager, override_secrets: SecretOverrides
) -> None:
    """setup(app) with the plugin's manager installed uses it and leaves it open."""
    override_secrets["HF_TOKEN"] = "hf_override"
    app = make_app()
    async with TestClient(TestServer(app)) as client:
        assert app[SECRETS_MANAGER_KEY] is secrets_manager
        assert await (await client.get("/token")).json() == {"value": "hf_override"}
    assert not secrets_manager.closed


def test_missing_aiohttp_names_the_extra() -> None:
    """Without aiohttp installed, importing the integration says which extra to install."""
    code = (
        "import sys; sys.modules['aiohttp'] = None\n"
        "try:\n"
        "    import simpletuner_secrets.integrations.aiohttp\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "pip install 'simpletuner-secrets[aiohttp]'" in out
