"""Required secrets at startup (SPEC 10): FastAPI's `secrets_lifespan(required=...)` and
aiohttp's `setup(required=...)` fail startup naming what is missing, and once started the
first request calls no provider."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient as AiohttpClient
from aiohttp.test_utils import TestServer
from fastapi import Depends, FastAPI

from simpletuner_secrets import DocumentSecretProvider, MissingSecretError, SecretsManager
from simpletuner_secrets.integrations.aiohttp import get_secret, setup
from simpletuner_secrets.integrations.fastapi import secret, secrets_lifespan
from simpletuner_secrets.keys import normalize_key
from simpletuner_secrets.manager import installed_manager
from tests.clock import BandMiddle

from .test_fastapi import serve

HF_SECRET = "hf_required_startup_value_93ab"
DB_SECRET = "db_required_startup_value_11fe"


class Remote(DocumentSecretProvider):
    """A remote document counting its loads (as AWS or Vault would send requests)."""

    name = "remote"

    def __init__(self, data: Mapping[str, str]) -> None:
        super().__init__()
        self.data = {normalize_key(k): v for k, v in data.items()}
        self.loads = 0

    async def load_document(self) -> Mapping[str, str]:
        self.loads += 1
        return dict(self.data)


def fastapi_app(manager: SecretsManager, required: tuple[str, ...]) -> FastAPI:
    app = FastAPI(lifespan=secrets_lifespan(lambda: manager, required=required))

    @app.get("/both")
    async def both(
        hf: Annotated[str, Depends(secret("hf-token"))],
        db: Annotated[str, Depends(secret("DB_PASSWORD"))],
    ) -> dict[str, int]:
        return {"hf": len(hf), "db": len(db)}

    return app


def test_fastapi_first_request_after_startup_calls_no_provider(
    no_installed_manager: None,
) -> None:
    """Under real uvicorn: startup resolved the required keys; the request adds no load."""
    remote = Remote({"HF_TOKEN": HF_SECRET, "DB_PASSWORD": DB_SECRET})
    # The middle of every band: no random first refresh ahead within the first 120 s.
    manager = SecretsManager([remote], rng=BandMiddle())
    with serve(fastapi_app(manager, ("HF_TOKEN", "db-password"))) as url:
        assert remote.loads == 1
        calls = manager.stats()["providers"]["remote"]["calls"]
        response = httpx.get(f"{url}/both", timeout=10)
        assert response.json() == {"hf": len(HF_SECRET), "db": len(DB_SECRET)}
        assert remote.loads == 1
        assert manager.stats()["providers"]["remote"]["calls"] == calls == 1
    assert manager.closed  # built by the factory: the lifespan closed it
    assert installed_manager() is None


def test_fastapi_startup_fails_naming_every_missing_key(no_installed_manager: None) -> None:
    """A lifespan with two absent required keys raises MissingSecretError naming both."""
    from fastapi.testclient import TestClient

    remote = Remote({"HF_TOKEN": HF_SECRET})
    manager = SecretsManager([remote])
    app = fastapi_app(manager, ("HF_TOKEN", "db-password", "api.key"))
    with pytest.raises(MissingSecretError) as caught, TestClient(app):
        pass
    assert caught.value.keys == ["DB_PASSWORD", "API_KEY"]
    assert "secrets DB_PASSWORD, API_KEY are not set (providers asked: remote)" in str(caught.value)
    assert HF_SECRET not in str(caught.value)
    assert installed_manager() is None  # the failed start was undone


def test_uvicorn_refuses_to_start_and_says_which_secret_is_missing(tmp_path: Path) -> None:
    """A real uvicorn process exits non-zero at startup; its log names the key, no value."""
    (tmp_path / "app.py").write_text(
        textwrap.dedent(
            f"""
            from fastapi import FastAPI
            from simpletuner_secrets import SecretsManager
            from simpletuner_secrets.integrations.fastapi import secrets_lifespan
            from simpletuner_secrets.testing import InMemorySecretProvider

            def build():
                return SecretsManager([InMemorySecretProvider({{"HF_TOKEN": "{HF_SECRET}"}})])

            app = FastAPI(lifespan=secrets_lifespan(build, required=("HF_TOKEN", "DB_PASSWORD")))
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "uvicorn", "app:app", "--port", "0", "--host", "127.0.0.1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "MissingSecretError: secret DB_PASSWORD is not set" in proc.stderr
    assert "Application startup failed" in proc.stderr
    assert HF_SECRET not in proc.stderr + proc.stdout


async def hello(request: web.Request) -> web.Response:
    hf = await get_secret(request, "HF_TOKEN", required=True)
    db = await get_secret(request, "DB_PASSWORD", required=True)
    return web.json_response({"hf": len(hf), "db": len(db)})


async def test_aiohttp_first_request_after_startup_calls_no_provider(
    no_installed_manager: None,
) -> None:
    """setup(required=...) resolves at startup; the first request adds no load."""
    remote = Remote({"HF_TOKEN": HF_SECRET, "DB_PASSWORD": DB_SECRET})
    app = web.Application()
    manager = SecretsManager([remote], rng=BandMiddle())  # no early refresh ahead (see above)
    setup(app, manager, required=("hf-token", "DB_PASSWORD"), close=True)
    app.router.add_get("/", hello)
    async with AiohttpClient(TestServer(app, host="127.0.0.1")) as client:
        assert remote.loads == 1
        assert await (await client.get("/")).json() == {"hf": len(HF_SECRET), "db": len(DB_SECRET)}
        assert remote.loads == 1


async def test_aiohttp_startup_fails_naming_the_missing_key(no_installed_manager: None) -> None:
    """An absent required key makes the app's startup raise MissingSecretError."""
    manager = SecretsManager([Remote({"HF_TOKEN": HF_SECRET})])
    app = web.Application()
    setup(app, manager, required=("HF_TOKEN", "db-password"), close=True)
    server = TestServer(app, host="127.0.0.1")
    with pytest.raises(MissingSecretError, match=r"secret DB_PASSWORD is not set"):
        await server.start_server()
    await server.close()
    assert manager.closed and installed_manager() is None
