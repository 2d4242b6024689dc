"""The shared provider contract on the AWS (moto) and Vault (OpenBao) providers."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from simpletuner_secrets import AWSSecretsManagerProvider, HashiCorpVaultProvider, SecretProvider
from tests.provider_contract import ProviderContract, Seed
from tests.servers.bao import BaoServer
from tests.servers.moto import MotoServer

pytestmark = pytest.mark.integration


class TestAWSContract(ProviderContract):
    expected_name = "aws"

    @pytest.fixture
    def seed(self, moto_env: MotoServer) -> Iterator[Seed]:
        names: list[str] = []

        async def seed(data: dict[str, Any]) -> SecretProvider:
            name = f"contract/{uuid.uuid4().hex}"
            names.append(name)
            moto_env.create_secret(name, string=json.dumps(data))
            return AWSSecretsManagerProvider(name, endpoint_url=moto_env.endpoint_url)

        yield seed
        for name in names:
            moto_env.delete_secret(name)


@pytest.mark.parametrize("kv_version", [2, 1])
class TestVaultContract(ProviderContract):
    expected_name = "vault"

    @pytest.fixture
    def seed(self, bao: BaoServer, kv_version: int) -> Seed:
        async def seed(data: dict[str, Any]) -> SecretProvider:
            path = f"contract-{secrets.token_hex(4)}"
            if kv_version == 2:
                bao.request("POST", f"secret/data/{path}", {"data": data})
                mount = "secret"
            else:
                bao.request("POST", f"kv1/{path}", data)
                mount = "kv1"
            return HashiCorpVaultProvider(bao.url, bao.token, path, mount, environ={})

        return seed
