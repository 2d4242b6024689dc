"""The contract every provider passes: built-in, remote, or the test-only in-memory one.

A test class subclasses `ProviderContract` and gives a `seed` fixture: an async function that
stores the given secrets in the back-end and returns a fresh provider reading them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import pytest

from simpletuner_secrets import ProviderError, SecretProvider
from simpletuner_secrets.providers.base import DocumentSecretProvider

Seed = Callable[[dict[str, Any]], Awaitable[SecretProvider]]

SECRET = "contract-secret-value-9f8e7d"


class ProviderContract:
    """Behaviour SPEC section 2 asks of every provider."""

    #: The provider's `name`.
    expected_name: ClassVar[str]
    #: Whether the back-end keeps JSON types (numbers, booleans, objects) rather than text.
    typed_values: ClassVar[bool] = True

    @pytest.fixture
    def seed(self) -> Seed:
        raise NotImplementedError

    async def test_reads_a_value_by_any_spelling_of_its_key(self, seed: Seed) -> None:
        provider = await seed({"REPLICATE_API_TOKEN": SECRET})
        try:
            assert await provider.get("REPLICATE_API_TOKEN") == SECRET
            assert await provider.get("replicate-api-token") == SECRET
            assert await provider.get("replicate.api.token") == SECRET
        finally:
            await provider.aclose()

    async def test_document_keys_match_by_normalized_form(self, seed: Seed) -> None:
        provider = await seed({"hf-token": SECRET})
        try:
            assert await provider.get("HF_TOKEN") == SECRET
        finally:
            await provider.aclose()

    async def test_absent_and_empty_values_are_none(self, seed: Seed) -> None:
        provider = await seed({"PRESENT": SECRET, "EMPTY": ""})
        try:
            assert await provider.get("NOT_THERE") is None
            assert await provider.get("EMPTY") is None
        finally:
            await provider.aclose()

    async def test_numbers_and_booleans_come_back_as_json_text(self, seed: Seed) -> None:
        if not self.typed_values:
            pytest.fail("typed_values is False: override this test for text-only back-ends")
        provider = await seed({"PORT": 5432, "DEBUG": True, "RATIO": 0.5, "NESTED": {"a": [1]}})
        try:
            assert await provider.get("PORT") == "5432"
            assert await provider.get("DEBUG") == "true"
            assert await provider.get("RATIO") == "0.5"
            assert await provider.get("NESTED") == '{"a":[1]}'
        finally:
            await provider.aclose()

    async def test_an_empty_key_is_a_value_error(self, seed: Seed) -> None:
        provider = await seed({"PRESENT": SECRET})
        try:
            for bad in ("", "   "):
                with pytest.raises(ValueError):
                    await provider.get(bad)
        finally:
            await provider.aclose()

    async def test_concurrent_lookups_agree(self, seed: Seed) -> None:
        secrets = {f"KEY_{i}": f"{SECRET}-{i}" for i in range(20)}
        provider = await seed(secrets)
        try:
            keys = [f"key-{i % 20}" for i in range(200)]
            values = await asyncio.gather(*(provider.get(k) for k in keys))
            assert values == [secrets[f"KEY_{i % 20}"] for i in range(200)]
        finally:
            await provider.aclose()

    async def test_repr_name_and_availability_show_no_value(self, seed: Seed) -> None:
        provider = await seed({"HF_TOKEN": SECRET})
        try:
            assert provider.name == self.expected_name
            assert provider.is_available()
            await provider.get("HF_TOKEN")
            assert SECRET not in repr(provider)
        finally:
            await provider.aclose()

    async def test_aclose_twice_is_fine(self, seed: Seed) -> None:
        """Closing twice raises nothing, and the provider still answers afterwards: a later
        lookup (its document forgotten, so it really reads the back-end) opens a new client."""
        provider = await seed({"HF_TOKEN": SECRET})
        assert await provider.get("HF_TOKEN") == SECRET
        await provider.aclose()
        await provider.aclose()
        try:
            if isinstance(provider, DocumentSecretProvider):
                provider.invalidate()
            assert await provider.get("HF_TOKEN") == SECRET
        finally:
            await provider.aclose()

    async def test_no_value_in_logs_or_errors(
        self, seed: Seed, caplog: pytest.LogCaptureFixture
    ) -> None:
        # The library's own records at every level; SDK loggers stay at their defaults
        # (botocore logs request bodies at DEBUG, which the README says to leave off).
        caplog.set_level(logging.DEBUG, logger="simpletuner_secrets")
        provider = await seed({"HF_TOKEN": SECRET})
        try:
            await provider.get("HF_TOKEN")
            await provider.get("MISSING")
        except ProviderError as exc:  # pragma: no cover - a contract breach is reported below
            assert SECRET not in str(exc)
            raise
        finally:
            await provider.aclose()
        assert SECRET not in caplog.text
