"""Small API promises: stats show the given settings, closed managers, typed defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from simpletuner_secrets import SecretsError, SecretsManager, get_secrets_manager
from simpletuner_secrets import _process as process_module

from .test_manager import DocProvider


def test_stats_report_the_cache_ttl_the_user_gave() -> None:
    """stats()['cache']['default_ttl'] is cache_ttl, not the internal fresh-plus-stale life."""
    m = SecretsManager([DocProvider({})], cache_ttl=2, max_stale=60)
    cache = m.stats()["cache"]
    assert cache["default_ttl"] == 2.0
    assert cache["max_stale"] == 60.0


async def test_async_with_on_a_closed_manager_raises() -> None:
    """Entering a closed manager is refused, naming what to do instead."""
    m = SecretsManager([DocProvider({"K": "v"})])
    await m.aclose()
    with pytest.raises(SecretsError, match="closed"):
        async with m:
            pass


async def test_a_closed_process_wide_manager_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the installed manager is closed, get_secrets_manager() builds a new one."""
    monkeypatch.setattr(process_module, "_instance", None)
    first = get_secrets_manager()
    await first.aclose()
    second = get_secrets_manager()
    assert second is not first and not second.closed
    await second.aclose()


async def test_closed_manager_error_names_reset() -> None:
    """A lookup on a closed manager says how to get a working one."""
    m = SecretsManager([DocProvider({"K": "v"})])
    await m.aclose()
    with pytest.raises(SecretsError, match=r"SecretsManager\.reset\(\)"):
        await m.get("K")


async def test_set_hf_token_writes_hf_token(tmp_path: Path) -> None:
    """set_hf_token sits beside set_replicate_token and writes HF_TOKEN to the file."""
    path = tmp_path / "s.json"
    async with SecretsManager(config={"file_path": str(path)}, environ={}) as m:
        await m.set_hf_token("hf_written_token_value")
        assert await m.get("HF_TOKEN") == "hf_written_token_value"
        m.sync.set_hf_token("hf_second_token_value")
        assert m.sync.get("HF_TOKEN") == "hf_second_token_value"


def _library_locals(error: BaseException) -> str:
    import traceback

    import simpletuner_secrets

    package = str(Path(simpletuner_secrets.__file__).resolve().parent)
    summary = traceback.TracebackException.from_exception(error, capture_locals=True)
    return "\n".join(
        f"{name}={text}"
        for frame in summary.stack
        if frame.filename.startswith(package) and frame.locals
        for name, text in frame.locals.items()
    )


WRITTEN = "hf_refused_write_value_0042"


async def test_a_refused_write_keeps_the_value_out_of_library_frame_locals() -> None:
    """set_secret / set_hf_token on a closed manager: no library frame's locals hold the value."""
    m = SecretsManager([DocProvider({})])
    await m.aclose()
    for write in (lambda: m.set_secret("K", WRITTEN), lambda: m.set_hf_token(WRITTEN)):
        with pytest.raises(SecretsError) as caught:
            await write()
        assert WRITTEN not in _library_locals(caught.value)
    for sync_write in (
        lambda: m.sync.set_secret("K", WRITTEN),
        lambda: m.sync.set_hf_token(WRITTEN),
    ):
        with pytest.raises(SecretsError) as caught:
            sync_write()
        assert WRITTEN not in _library_locals(caught.value)


def test_an_unknown_config_key_is_refused_naming_the_nearest_valid_one() -> None:
    """config={"vault_adr": ...} is a ConfigurationError suggesting vault_url, naming no value."""
    from simpletuner_secrets import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"'vault_adr'.*did you mean 'vault_url'") as info:
        SecretsManager(config={"vault_adr": "http://127.0.0.1:8200"})
    assert "127.0.0.1" not in str(info.value)
    with pytest.raises(ConfigurationError, match="unknown config key 'zzz'"):
        SecretsManager([DocProvider({})], config={"zzz": 1})


def test_every_documented_config_key_is_accepted(tmp_path: Path) -> None:
    """The keys the README's settings table lists build a manager without complaint."""
    config = {
        "env_prefix": "APP",
        "file_path": str(tmp_path / "s.json"),
        "aws_region": "us-east-1",
        "aws_endpoint_url": "http://127.0.0.1:1",
        "vault_path": "app",
        "vault_mount_point": "secret",
        "vault_namespace": "team",
        "vault_verify": True,
        "vault_kv_version": 2,
    }
    m = SecretsManager(config=config, environ={})
    assert [p.name for p in m.providers] == ["env", "file"]
