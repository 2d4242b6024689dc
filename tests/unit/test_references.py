"""References (SPEC 9), without servers: parsing, the opt-in switch, file:// through the
manager's cache, one level, failures named by the reference."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from simpletuner_secrets import EnvironmentSecretProvider, ProviderError, SecretsManager
from simpletuner_secrets import _references as references_module
from simpletuner_secrets._references import Reference, parse_reference
from simpletuner_secrets.testing import InMemorySecretProvider
from tests.clock import FakeClock

SECRET = "referenced-value-do-not-print"


def value_file(tmp_path: Path, text: str, name: str = "db-password") -> Path:
    path = tmp_path / name
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


def test_reference_forms_are_parsed() -> None:
    """vault with ?version= before the #KEY, aws with ?stage= and without #KEY, file."""
    assert parse_reference("vault://secret/app/db?version=3#password") == Reference(
        "vault://secret/app/db?version=3#password", "vault", "secret/app/db", "PASSWORD", version=3
    )
    assert parse_reference("aws://prod/db?stage=AWSPREVIOUS#user") == Reference(
        "aws://prod/db?stage=AWSPREVIOUS#user", "aws", "prod/db", "USER", stage="AWSPREVIOUS"
    )
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf"
    assert parse_reference(f"aws://{arn}") == Reference(f"aws://{arn}", "aws", arn, None)
    assert parse_reference("file:///run/secrets/db") == Reference(
        "file:///run/secrets/db", "file", "/run/secrets/db"
    )


@pytest.mark.parametrize(
    "text",
    [
        "vault://secret#KEY",
        "vault://secret/app",
        "vault://secret/app?version=0#K",
        "vault://secret/app?version=x#K",
        "aws://#K",
        "aws://id?stage=#K",
        "aws://id?region=x#K",
        "aws://id#",
        "file://relative/path",
        "file:///abs#KEY",
    ],
)
def test_malformed_references_are_named(text: str) -> None:
    """A malformed reference is a ProviderError quoting it."""
    with pytest.raises(ProviderError, match="is malformed") as caught:
        parse_reference(text)
    assert repr(text) in str(caught.value)


async def test_references_are_off_unless_asked_for(tmp_path: Path) -> None:
    """By default a reference-looking value is returned as it is; resolve_references=True or
    SIMPLETUNER_RESOLVE_REFERENCES=1 resolves it."""
    path = value_file(tmp_path, SECRET + "\n")
    environ = {"DB_PASSWORD": f"file://{path}"}
    chain = [EnvironmentSecretProvider(environ=environ)]
    async with SecretsManager(chain, environ={}) as plain:
        assert await plain.get("DB_PASSWORD") == f"file://{path}"
    async with SecretsManager(chain, resolve_references=True) as on:
        assert await on.get("DB_PASSWORD") == SECRET
    switched = SecretsManager(
        [EnvironmentSecretProvider(environ=environ)],
        environ={"SIMPLETUNER_RESOLVE_REFERENCES": "1"},
    )
    async with switched:
        assert await switched.get("DB_PASSWORD") == SECRET
    async with SecretsManager(
        chain, resolve_references=False, environ={"SIMPLETUNER_RESOLVE_REFERENCES": "1"}
    ) as off:
        assert await off.get("DB_PASSWORD") == f"file://{path}"


async def test_a_file_reference_is_cached_refreshed_and_coalesced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent lookups read the file once; it is served from the cache (also by the sync
    fast path) until its refresh point (24 s here), then read again and a change is seen."""
    path = value_file(tmp_path, "v1\n")
    reads = 0
    original = references_module.run_sync

    async def counting(func, *args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal reads
        reads += 1
        return await original(func, *args, **kwargs)

    monkeypatch.setattr(references_module, "run_sync", counting)
    clock = FakeClock()
    chain = [InMemorySecretProvider({"TOKEN": f"file://{path}"})]

    class Middle:
        """The middle of every random band: the first refresh ahead at 40% of a 60 s life."""

        def uniform(self, a: float, b: float) -> float:
            return (a + b) / 2

    m = SecretsManager(chain, resolve_references=True, cache_ttl=60, timer=clock, rng=Middle())
    answers = await asyncio.gather(*(m.get("TOKEN") for _ in range(50)))
    assert answers == ["v1"] * 50
    assert reads == 1
    assert m.resolver.peek("TOKEN") == "v1"  # the fast path answers without I/O
    path.write_text("v2\n")
    clock.tick(10)
    assert await m.get("TOKEN") == "v1"
    assert reads == 1
    clock.tick(600)
    assert await m.get("TOKEN") == "v2"
    assert reads == 2
    assert list(m.stats()["references"]) == [f"file:{path}"]
    await m.aclose()


async def test_only_one_level_is_resolved(tmp_path: Path) -> None:
    """A referenced value that is itself a reference comes back as it is."""
    inner = value_file(tmp_path, "never-read", "inner")
    outer = value_file(tmp_path, f"file://{inner}\n", "outer")
    chain = [InMemorySecretProvider({"K": f"file://{outer}"})]
    async with SecretsManager(chain, resolve_references=True) as m:
        assert await m.get("K") == f"file://{inner}"


async def test_an_unresolvable_reference_is_skipped_or_raised_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A reference to a missing file fails its provider: skipped (logged, naming the
    reference) so that the next provider answers; raised in raise mode."""
    missing = f"file://{tmp_path / 'missing'}"
    # The references sit in an environment provider: InMemorySecretProvider's values count as
    # secrets for the leak audit, and a reference's text is not one.
    high = EnvironmentSecretProvider(environ={"K": missing}, name="high")
    low = InMemorySecretProvider({"K": "from-low"}, name="low")
    with caplog.at_level(logging.WARNING, logger="simpletuner_secrets"):
        async with SecretsManager([high, low], resolve_references=True) as m:
            assert await m.get("K") == "from-low"
    assert repr(missing) in caplog.text and "does not exist" in caplog.text
    async with SecretsManager(
        [high, low], resolve_references=True, on_provider_error="raise"
    ) as loud:
        with pytest.raises(ProviderError, match="does not exist") as caught:
            await loud.get("K")
    assert repr(missing) in str(caught.value)


async def test_a_failing_reference_never_shows_the_value(tmp_path: Path) -> None:
    """An oversized referenced file: the error names the reference and the reason only."""
    big = value_file(tmp_path, SECRET * 50_000, "big")
    chain = [EnvironmentSecretProvider(environ={"K": f"file://{big}"})]
    async with SecretsManager(chain, resolve_references=True, on_provider_error="raise") as m:
        with pytest.raises(ProviderError, match="larger than") as caught:
            await m.get("K")
    assert SECRET not in str(caught.value)
    assert f"file://{big}" in str(caught.value)


async def test_aws_and_vault_references_without_settings_fail_naming_them() -> None:
    """With no Vault address configured a vault:// reference cannot be resolved, and says
    so naming the reference."""
    ref = "vault://secret/app#PASSWORD"
    chain = [EnvironmentSecretProvider(environ={"K": ref})]
    async with SecretsManager(
        chain, resolve_references=True, on_provider_error="raise", environ={}
    ) as m:
        with pytest.raises(ProviderError, match="vault is not usable") as caught:
            await m.get("K")
    assert repr(ref) in str(caught.value)
