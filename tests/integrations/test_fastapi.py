"""FastAPI integration over a real uvicorn server on loopback, called with httpx."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
import uvicorn
from fastapi import Depends, FastAPI, Request

from simpletuner_secrets import SecretsManager, get_secrets_manager, set_secrets_manager
from simpletuner_secrets.integrations.fastapi import get_manager, secret, secrets_lifespan
from simpletuner_secrets.manager import installed_manager
from simpletuner_secrets.pytest_plugin import FixtureSecretProvider, SecretOverrides
from simpletuner_secrets.testing import InMemorySecretProvider

from .conftest import bound_socket

with warnings.catch_warnings():
    # Starlette's TestClient asks for httpx2; the test extra installs httpx, which still works.
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

HF_VALUE = "hf_fastapi_test_value_7d1c"


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread on a free loopback port; stop it on exit."""
    sock = bound_socket()
    config = uvicorn.Config(
        app, lifespan="on", log_level="warning", ws="none", http="h11", loop="asyncio"
    )
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # SystemExit from a failed startup included
            failure.append(exc)

    thread = threading.Thread(target=run, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail(f"uvicorn did not start: {failure!r}", pytrace=False)
            time.sleep(0.01)
        host, port = sock.getsockname()[:2]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
    assert not thread.is_alive(), "uvicorn did not stop"
    assert not failure, failure


def memory_manager(**secrets: str) -> SecretsManager:
    return SecretsManager([InMemorySecretProvider(secrets)])


def make_app(lifespan: Any = None) -> FastAPI:
    app = FastAPI(lifespan=lifespan)

    @app.get("/token")
    async def token(value: Annotated[str, Depends(secret("hf-token"))]) -> dict[str, str]:
        return {"value": value}

    @app.get("/replicate")
    async def replicate(
        value: Annotated[str, Depends(secret("REPLICATE_API_TOKEN"))],
    ) -> dict[str, int]:
        return {"length": len(value)}

    @app.get("/optional")
    async def optional(
        value: Annotated[str | None, Depends(secret("WEBHOOK", required=False))],
    ) -> dict[str, str | None]:
        return {"value": value}

    @app.get("/manager")
    async def manager_ids(request: Request) -> dict[str, bool]:
        return {
            "state_is_process": request.app.state.secrets_manager is get_secrets_manager(),
            "dependency_uses_state": get_manager(request) is request.app.state.secrets_manager,
        }

    return app


def test_dependency_injects_the_value_over_a_real_server(no_installed_manager: None) -> None:
    """Depends(secret(...)) injects the secret found through the app's manager."""
    manager = memory_manager(HF_TOKEN=HF_VALUE)
    with serve(make_app(secrets_lifespan(lambda: manager))) as url:
        response = httpx.get(f"{url}/token", timeout=5)
        assert response.status_code == 200
        assert response.json() == {"value": HF_VALUE}
        assert httpx.get(f"{url}/optional", timeout=5).json() == {"value": None}


def test_absent_required_secret_answers_503_with_a_json_error(no_installed_manager: None) -> None:
    """A required secret that no provider has gives 503 and a detail naming the key only."""
    manager = memory_manager(HF_TOKEN=HF_VALUE)
    with serve(make_app(secrets_lifespan(lambda: manager))) as url:
        response = httpx.get(f"{url}/replicate", timeout=5)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": "secret REPLICATE_API_TOKEN is not configured"}
    assert HF_VALUE not in response.text


def test_failing_provider_answers_503_without_its_error_text(
    no_installed_manager: None, caplog: pytest.LogCaptureFixture
) -> None:
    """With on_provider_error="raise", a failing back-end is a 503 naming the key and the
    provider, not the error; the log line carries the cause."""
    provider = InMemorySecretProvider({"HF_TOKEN": HF_VALUE})
    provider.failure = "backend says no: internal detail"
    manager = SecretsManager([provider], on_provider_error="raise")
    with serve(make_app(secrets_lifespan(lambda: manager))) as url:
        response = httpx.get(f"{url}/token", timeout=5)
    assert response.status_code == 503
    assert response.json() == {"detail": "secret HF_TOKEN is unavailable: provider memory failed"}
    assert "internal detail" not in response.text
    (line,) = [r.getMessage() for r in caplog.records if "HF_TOKEN unavailable" in r.getMessage()]
    assert "ProviderError: memory: backend says no: internal detail" in line


def test_skipped_failing_provider_answers_503_saying_it_failed(
    no_installed_manager: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Default skip mode, the only provider down: the 503 says the provider failed, not
    "not configured" (the key is unknown, not absent)."""
    provider = InMemorySecretProvider({"HF_TOKEN": HF_VALUE})
    provider.failure = "connection refused"
    manager = SecretsManager([provider])
    with serve(make_app(secrets_lifespan(lambda: manager))) as url:
        response = httpx.get(f"{url}/token", timeout=5)
        provider.failure = None
        recovered = httpx.get(f"{url}/token", timeout=5)
    assert response.status_code == 503
    assert response.json() == {"detail": "secret HF_TOKEN is unavailable: provider memory failed"}
    assert recovered.status_code == 200
    assert any("provider memory failing" in r.getMessage() for r in caplog.records)


def test_lifespan_installs_then_closes_and_uninstalls_the_manager(
    no_installed_manager: None,
) -> None:
    """At startup the manager is on app.state and process-wide; at shutdown it is closed."""
    manager = memory_manager(HF_TOKEN=HF_VALUE)
    app = make_app(secrets_lifespan(lambda: manager))
    with serve(app) as url:
        assert installed_manager() is manager
        assert httpx.get(f"{url}/manager", timeout=5).json() == {
            "state_is_process": True,
            "dependency_uses_state": True,
        }
        assert not manager.closed
    assert manager.closed
    assert installed_manager() is None
    assert not hasattr(app.state, "secrets_manager")


def test_lifespan_puts_back_the_previous_process_manager(no_installed_manager: None) -> None:
    """A factory's manager replaces the installed one while the app runs, then it comes back."""
    previous = memory_manager()
    set_secrets_manager(previous)
    manager = memory_manager(HF_TOKEN=HF_VALUE)
    with serve(make_app(secrets_lifespan(lambda: manager))):
        assert installed_manager() is manager
    assert installed_manager() is previous
    assert manager.closed and not previous.closed


def test_default_lifespan_builds_a_manager_from_the_environment(
    no_installed_manager: None, clean_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no factory and nothing installed, the lifespan builds SecretsManager() and closes it."""
    monkeypatch.setenv("HF_TOKEN", HF_VALUE)
    app = make_app(secrets_lifespan())
    with serve(app) as url:
        created = app.state.secrets_manager
        assert isinstance(created, SecretsManager)
        assert [p.name for p in created.providers] == ["env", "file"]
        assert httpx.get(f"{url}/token", timeout=5).json() == {"value": HF_VALUE}
    assert created.closed
    assert installed_manager() is None


async def test_async_factory_and_a_composed_lifespan_with_state(
    no_installed_manager: None,
) -> None:
    """An async factory works; the user's lifespan runs inside with secrets ready, its state kept."""
    manager = memory_manager(HF_TOKEN=HF_VALUE)
    seen: list[str | None] = []

    async def factory() -> SecretsManager:
        return manager

    @contextlib.asynccontextmanager
    async def user_lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        seen.append(await get_secrets_manager().get("HF_TOKEN"))
        yield {"greeting": "hello"}
        seen.append("stopped" if not manager.closed else "closed too early")

    app = FastAPI(lifespan=secrets_lifespan(factory, lifespan=user_lifespan))

    @app.get("/state")
    async def state(request: Request) -> dict[str, str]:
        return {"greeting": request.state.greeting}

    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            assert (await client.get("/state")).json() == {"greeting": "hello"}
    assert seen == [HF_VALUE, "stopped"]
    assert manager.closed


def test_lifespan_adopts_the_test_manager_and_leaves_it_open(
    secrets_manager: SecretsManager, override_secrets: SecretOverrides
) -> None:
    """The pytest plugin's manager reaches an app with the default lifespan, which does not close it."""
    override_secrets({"HF_TOKEN": "hf_from_the_override"})
    app = make_app(secrets_lifespan())
    with serve(app) as url:
        assert app.state.secrets_manager is secrets_manager
        assert httpx.get(f"{url}/token", timeout=5).json() == {"value": "hf_from_the_override"}
        override_secrets["HF_TOKEN"] = "hf_changed_mid_test"
        assert httpx.get(f"{url}/token", timeout=5).json() == {"value": "hf_changed_mid_test"}
    assert not secrets_manager.closed
    assert installed_manager() is secrets_manager


def test_close_false_keeps_a_factory_manager_open(no_installed_manager: None) -> None:
    """close=False leaves the manager open at shutdown (it is still uninstalled)."""
    manager = memory_manager()
    with serve(make_app(secrets_lifespan(lambda: manager, close=False))):
        pass
    assert not manager.closed
    assert installed_manager() is None


def test_dependency_without_lifespan_uses_the_process_manager(
    override_secrets: SecretOverrides, secrets_provider: FixtureSecretProvider
) -> None:
    """With no lifespan, the dependency reads get_secrets_manager() (here the plugin's)."""
    override_secrets(HF_TOKEN="hf_process_wide")
    with TestClient(make_app()) as client:
        assert client.get("/token").json() == {"value": "hf_process_wide"}
        assert client.get("/replicate").status_code == 503
    assert secrets_provider.loads >= 1


def test_explicit_manager_wins_over_app_state(no_installed_manager: None) -> None:
    """secret(key, manager=m) reads m, whatever the app's manager is."""
    mine = memory_manager(HF_TOKEN="hf_explicit")
    app = FastAPI(lifespan=secrets_lifespan(lambda: memory_manager(HF_TOKEN="hf_app")))

    @app.get("/explicit")
    async def explicit(value: str = Depends(secret("HF_TOKEN", manager=mine))) -> str:
        # A default-value dependency: its manager is a local, which a string annotation
        # (this module uses postponed annotations) could not name.
        return value

    with TestClient(app) as client:
        assert client.get("/explicit").json() == "hf_explicit"


def test_secret_rejects_an_empty_key_when_declared() -> None:
    """A bad key fails at import time of the route, not on the first request."""
    with pytest.raises(ValueError):
        secret("  ")


def test_missing_fastapi_names_the_extra() -> None:
    """Without FastAPI installed, importing the integration says which extra to install."""
    code = (
        "import sys; sys.modules['fastapi'] = None\n"
        "import simpletuner_secrets\n"
        "try:\n"
        "    import simpletuner_secrets.integrations.fastapi\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "pip install 'simpletuner-secrets[fastapi]'" in out


def test_the_package_imports_no_framework() -> None:
    """Importing simpletuner_secrets (and its integrations package) loads no web framework."""
    code = (
        "import sys, simpletuner_secrets, simpletuner_secrets.integrations\n"
        "print(sorted(m for m in ('fastapi', 'starlette', 'aiohttp', 'pydantic_settings')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.strip() == "[]"
