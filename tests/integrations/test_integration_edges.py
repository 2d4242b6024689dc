"""Integration edges: a closed manager never left installed, managers uninstalled whatever
order apps stop in, Optional complex pydantic fields decoded, 503 errors with nothing chained."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from fastapi import FastAPI
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from simpletuner_secrets import SecretsManager, get_secrets_manager, set_secrets_manager
from simpletuner_secrets.integrations.aiohttp import setup
from simpletuner_secrets.integrations.fastapi import secrets_lifespan
from simpletuner_secrets.manager import installed_manager
from simpletuner_secrets.testing import InMemorySecretProvider

from .conftest import chain_settings

HF_VALUE = "hf_review_value_3f9a1c"


def memory_manager(**secrets: str) -> SecretsManager:
    return SecretsManager([InMemorySecretProvider(secrets)])


# -- a closed manager must not stay installed as the process-wide one ----------------------


async def test_fastapi_factory_returning_the_installed_manager_leaves_no_closed_one_installed(
    no_installed_manager: None, clean_home: Path
) -> None:
    mine = memory_manager(HF_TOKEN=HF_VALUE)
    set_secrets_manager(mine)
    app = FastAPI(lifespan=secrets_lifespan(get_secrets_manager))
    async with app.router.lifespan_context(app):
        assert get_secrets_manager() is mine
    current = installed_manager()
    try:
        # Either the lifespan does not close a manager it did not build, or it closes it
        # and uninstalls it; a closed process-wide manager breaks every later lookup.
        assert current is None or not current.closed, "a closed manager is left installed"
    finally:
        await mine.aclose()


async def test_aiohttp_close_true_on_an_adopted_manager_leaves_no_closed_one_installed(
    no_installed_manager: None, clean_home: Path
) -> None:
    mine = memory_manager(HF_TOKEN=HF_VALUE)
    set_secrets_manager(mine)
    app = web.Application()
    setup(app, close=True)
    runner = web.AppRunner(app)
    await runner.setup()  # runs the startup half of the cleanup context
    await runner.cleanup()
    assert mine.closed  # close=True was asked for
    current = installed_manager()
    assert current is None or not current.closed, "a closed manager is left installed"


# -- pydantic: Optional complex fields are decoded from JSON like required ones -------------


class Inner(BaseModel):
    n: int


def optional_settings(manager: SecretsManager) -> type[BaseSettings]:
    class Settings(chain_settings(manager)):  # type: ignore[misc]
        hosts: list[str] | None = None
        limits: dict[str, int] | None = None
        inner: Inner | None = None

    return Settings


def test_optional_list_dict_and_model_fields_are_decoded_from_json() -> None:
    manager = memory_manager(HOSTS='["a","b"]', LIMITS='{"x":1}', INNER='{"n":2}')
    try:
        settings = optional_settings(manager)()
        assert settings.hosts == ["a", "b"]  # type: ignore[attr-defined]
        assert settings.limits == {"x": 1}  # type: ignore[attr-defined]
        assert settings.inner == Inner(n=2)  # type: ignore[attr-defined]
    finally:
        manager.sync.close()


# -- aiohttp sub-applications: cleanup is not LIFO, the install chain must still unwind -----


async def test_aiohttp_parent_and_sub_app_managers_are_both_uninstalled_after_cleanup(
    no_installed_manager: None, clean_home: Path
) -> None:
    parent_manager = memory_manager(HF_TOKEN=HF_VALUE)
    child_manager = memory_manager(HF_TOKEN=HF_VALUE)
    app = web.Application()
    setup(app, parent_manager)
    sub = web.Application()
    setup(sub, child_manager)
    app.add_subapp("/sub", sub)
    runner = web.AppRunner(app)
    await runner.setup()
    assert installed_manager() is child_manager
    await runner.cleanup()
    try:
        # Nothing was installed before the app started; nothing should be after it stopped.
        assert installed_manager() is None, "the parent's manager is left installed"
    finally:
        await parent_manager.aclose()
        await child_manager.aclose()


def test_a_union_with_a_complex_member_keeps_text_that_is_not_json() -> None:
    """`str | list[str]`: JSON text is decoded, other text is kept for the `str` member."""
    manager = memory_manager(NAMES='["a","b"]', MORE="plain text")

    class Settings(chain_settings(manager)):  # type: ignore[misc]
        names: str | list[str] = "none"
        more: str | list[str] = "none"

    try:
        settings = Settings()
        assert settings.names == ["a", "b"]
        assert settings.more == "plain text"
    finally:
        manager.sync.close()


# -- 503 answers chain nothing -----------------------------------------------------------


async def test_fastapi_503_for_a_failing_provider_chains_no_error() -> None:
    """The provider's error is neither the cause nor the context of the HTTP 503."""
    from fastapi import HTTPException

    from simpletuner_secrets.integrations.fastapi import secret

    provider = InMemorySecretProvider({"HF_TOKEN": HF_VALUE})
    provider.failure = "backend down"
    manager = SecretsManager([provider], on_provider_error="raise")
    try:
        dependency = secret("HF_TOKEN", manager=manager)
        try:
            await dependency(None)  # type: ignore[arg-type]  # a fixed manager needs no request
        except HTTPException as exc:
            assert exc.status_code == 503
            assert exc.__cause__ is None and exc.__context__ is None
        else:
            raise AssertionError("no 503")
    finally:
        await manager.aclose()


async def test_aiohttp_503_for_a_failing_provider_chains_no_error(
    no_installed_manager: None, clean_home: Path
) -> None:
    """aiohttp's `get_secret` answers 503 with nothing chained to it."""
    from simpletuner_secrets.integrations.aiohttp import get_manager, get_secret

    provider = InMemorySecretProvider({"HF_TOKEN": HF_VALUE})
    provider.failure = "backend down"
    manager = SecretsManager([provider], on_provider_error="raise")
    app = web.Application()
    setup(app, manager)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        request = make_mocked_request("GET", "/", app=app)
        assert get_manager(request) is manager
        try:
            await get_secret(request, "HF_TOKEN", required=True)
        except web.HTTPServiceUnavailable as exc:
            assert "unavailable" in (exc.text or "")
            assert exc.__cause__ is None and exc.__context__ is None
        else:
            raise AssertionError("no 503")
    finally:
        await runner.cleanup()
        await manager.aclose()
