"""The shared provider contract, run on the environment, file and in-memory providers.

The AWS and Vault providers run the same contract against their real servers in
`tests/integration`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from simpletuner_secrets import EnvironmentSecretProvider, FileSecretProvider, SecretProvider
from simpletuner_secrets.testing import InMemorySecretProvider
from tests.provider_contract import SECRET, ProviderContract, Seed


class TestEnvironmentContract(ProviderContract):
    expected_name = "env"
    typed_values = False

    @pytest.fixture
    def seed(self, monkeypatch: pytest.MonkeyPatch) -> Seed:
        async def seed(secrets: dict[str, Any]) -> SecretProvider:
            for key, value in secrets.items():
                monkeypatch.setenv("CONTRACT_" + key.upper().replace("-", "_"), str(value))
            return EnvironmentSecretProvider("contract")

        return seed

    async def test_numbers_and_booleans_come_back_as_json_text(self, seed: Seed) -> None:
        """Environment values are text already: they come back exactly as set."""
        provider = await seed({"PORT": "5432"})
        assert await provider.get("port") == "5432"


class TestInMemoryContract(ProviderContract):
    expected_name = "memory"

    @pytest.fixture
    def seed(self) -> Seed:
        async def seed(secrets: dict[str, Any]) -> SecretProvider:
            return InMemorySecretProvider(secrets)

        return seed

    async def test_one_load_answers_every_key(self) -> None:
        """Concurrent first lookups of different keys make one load."""
        import asyncio

        provider = InMemorySecretProvider({f"K{i}": SECRET for i in range(20)}, latency=0.01)
        await asyncio.gather(*(provider.get(f"k{i % 20}") for i in range(200)))
        assert provider.loads == 1

    async def test_failure_switch_and_writes(self) -> None:
        """`failure` makes loads raise ProviderError; set/delete are seen at once."""
        from simpletuner_secrets import ProviderError

        provider = InMemorySecretProvider(name="custom")
        await provider.set("hf-token", SECRET)
        assert await provider.get("HF_TOKEN") == SECRET
        assert await provider.delete("HF_TOKEN") is True
        assert await provider.delete("HF_TOKEN") is False
        assert await provider.get("HF_TOKEN") is None
        provider.failure = "down"
        provider.invalidate()
        with pytest.raises(ProviderError, match="custom: down"):
            await provider.get("HF_TOKEN")
        assert provider.name == "custom" and SECRET not in repr(provider)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
class TestFileContract(ProviderContract):
    expected_name = "file"

    @pytest.fixture
    def seed(self, tmp_path: Path, suffix: str) -> Seed:
        async def seed(secrets: dict[str, Any]) -> SecretProvider:
            path = tmp_path / f"secrets{suffix}"
            text = json.dumps(secrets) if suffix == ".json" else yaml.safe_dump(secrets)
            path.write_text(text)
            path.chmod(0o600)
            return FileSecretProvider(path)

        return seed
