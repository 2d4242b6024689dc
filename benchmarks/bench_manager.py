"""SecretsManager against what a user would pick: warm gets, the sync facade, cold fan-out.

Warm lookups run with the environment first in the chain (the key absent there, read live on
every call) and one cached document provider behind it, the shape of a service reading
`HF_TOKEN` from AWS or Vault. The anchors are an `async_lru` hit, the cheapest async cache a user
would wrap a fetch in, and aws-secretsmanager-caching's `SecretCache` hit. The Vault login row
compares the same warm lookup through a Vault provider that logged in with AppRole against one
given a plain token, both on a real `bao server -dev` started here: a login method must cost
nothing once the document is cached.

Run: `nox -s bench` or `python benchmarks/bench_manager.py [--rounds N] [--quick] [--check]
[--only warm|cold|vault-login]`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from _harness import (
    Target,
    finish,
    gc_rule,
    machine,
    on_loop,
    parse_args,
    print_table,
    round_robin,
    settle,
    summarize,
    timed,
)
from async_lru import alru_cache

from simpletuner_secrets import (
    DocumentSecretProvider,
    EnvironmentSecretProvider,
    SecretsManager,
    normalize_key,
)

SECTIONS = ("warm", "cold", "vault-login")
OPS = 20_000
KEYS = [f"BENCH_SECRET_{i}" for i in range(20)]
VALUE = "bench-value-0123456789"


class RemoteDocument(DocumentSecretProvider):
    """A stand-in remote back-end on the public provider base: one document per load, after
    ``latency`` seconds, loads counted."""

    def __init__(self, secrets: Mapping[str, str], *, latency: float = 0.0, name: str) -> None:
        super().__init__()
        self.secrets = {normalize_key(k): v for k, v in secrets.items()}
        self.latency = latency
        self.loads = 0
        self.name = name  # type: ignore[misc]  # one name per instance in the chain

    async def load_document(self) -> Mapping[str, str]:
        self.loads += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        return dict(self.secrets)


def _aws_cache_hit() -> Callable[[int], None] | None:
    """aws-secretsmanager-caching's SecretCache over a stub client, for scale."""
    try:
        from aws_secretsmanager_caching import SecretCache, SecretCacheConfig
    except ImportError:  # pragma: no cover - in the test extra
        return None

    class StubClient:
        meta = type("Meta", (), {"config": None})()

        def describe_secret(self, SecretId: str) -> dict[str, Any]:
            return {
                "ARN": f"arn:aws:secretsmanager:us-east-1:0:secret:{SecretId}",
                "Name": SecretId,
                "VersionIdsToStages": {"v1": ["AWSCURRENT"]},
            }

        def get_secret_value(self, SecretId: str, **_: str) -> dict[str, Any]:
            return {"Name": SecretId, "VersionId": "v1", "SecretString": json.dumps({"K": VALUE})}

    cache = SecretCache(config=SecretCacheConfig(), client=StubClient())
    cache.get_secret_string("bench")

    def run(ops: int) -> None:
        get = cache.get_secret_string
        for _ in range(ops):
            get("bench")

    return run


def bench_warm(rounds: int) -> tuple[list[float], list[float]]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    manager = SecretsManager(
        [EnvironmentSecretProvider(), RemoteDocument({k: VALUE for k in KEYS}, name="remote")]
    )

    @alru_cache(maxsize=1000, ttl=300)
    async def alru(key: str) -> str:
        return VALUE

    async def warm() -> None:
        for k in KEYS:
            assert await manager.get(k) == VALUE
            await alru(k)

    loop.run_until_complete(warm())
    assert manager.sync.get(KEYS[0]) == VALUE

    async def run_ours(ops: int) -> None:
        get = manager.get
        for _ in range(ops // len(KEYS)):
            for k in KEYS:
                await get(k)

    async def run_alru(ops: int) -> None:
        for _ in range(ops // len(KEYS)):
            for k in KEYS:
                await alru(k)

    def run_sync(ops: int) -> None:
        get = manager.sync.get
        for _ in range(ops // len(KEYS)):
            for k in KEYS:
                get(k)

    contenders: dict[str, Callable[[int], float]] = {
        "await m.get (ours)": on_loop(loop, run_ours),
        "m.sync.get (ours)": timed(run_sync),
        "async_lru hit": on_loop(loop, run_alru),
    }
    aws = _aws_cache_hit()
    if aws is not None:
        contenders["aws-secretsmanager-caching get_secret_string hit"] = timed(aws)
    results = round_robin(contenders, rounds, OPS // 4)
    manager.sync.close()
    loop.run_until_complete(manager.aclose())
    loop.close()
    asyncio.set_event_loop(None)
    print_table("Warm lookup: env (absent, live) + one cached provider", results, "async_lru hit")
    return (
        results.ratios("await m.get (ours)", "async_lru hit"),
        results.ratios("m.sync.get (ours)", "async_lru hit"),
    )


def _approle(bao: Any, path: str) -> tuple[str, str]:
    """An AppRole on ``bao`` whose tokens (1 h, renewable) read ``secret/<path>`` only:
    its role id and a secret id."""
    mount = "bench-approle"
    bao.request("POST", f"sys/auth/{mount}", {"type": "approle"})
    hcl = f'path "secret/data/{path}" {{ capabilities = ["read"] }}'
    bao.request("PUT", "sys/policies/acl/bench-read", {"policy": hcl})
    bao.request(
        "POST",
        f"auth/{mount}/role/bench",
        {"token_policies": ["bench-read"], "token_ttl": "1h", "token_max_ttl": "4h"},
    )
    role_id = bao.request("GET", f"auth/{mount}/role/bench/role-id")["data"]["role_id"]
    secret_id = bao.request("POST", f"auth/{mount}/role/bench/secret-id")["data"]["secret_id"]
    return str(role_id), str(secret_id)


def bench_vault_login(rounds: int) -> list[float]:
    """Warm `await m.get` with the environment first and Vault behind it: AppRole vs token."""
    from simpletuner_secrets import HashiCorpVaultProvider, VaultAppRoleAuth
    from tests.servers.bao import run_bao

    path = "bench-login"
    with run_bao(kv1_mount=None, audit=False) as bao:
        bao.request("POST", f"secret/data/{path}", {"data": {k: VALUE for k in KEYS}})
        role_id, secret_id = _approle(bao, path)
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        given = HashiCorpVaultProvider(bao.url, bao.token, path, environ={})
        login = HashiCorpVaultProvider(
            bao.url,
            path=path,
            auth=VaultAppRoleAuth(role_id, secret_id, mount="bench-approle"),
            environ={},
        )
        with_token = SecretsManager([EnvironmentSecretProvider(), given])
        with_login = SecretsManager([EnvironmentSecretProvider(), login])

        async def warm() -> None:
            for k in KEYS:
                assert await with_token.get(k) == VALUE
                assert await with_login.get(k) == VALUE

        loop.run_until_complete(warm())
        assert login.auth_status()["logins"] == 1

        def run_with(manager: SecretsManager) -> Callable[[int], float]:
            async def run(ops: int) -> None:
                get = manager.get
                for _ in range(ops // len(KEYS)):
                    for k in KEYS:
                        await get(k)

            return on_loop(loop, run)

        contenders: dict[str, Callable[[int], float]] = {
            "await m.get, Vault with a token": run_with(with_token),
            "await m.get, Vault with an AppRole login": run_with(with_login),
        }
        results = round_robin(contenders, rounds, OPS // 4)
        status = login.auth_status()
        assert status["logins"] == 1 and status["forced_logins"] == 0, status
        loop.run_until_complete(with_token.aclose())
        loop.run_until_complete(with_login.aclose())
        loop.close()
        asyncio.set_event_loop(None)
    print_table(
        "Warm lookup: env (absent, live) + Vault (OpenBao), AppRole login vs a given token",
        results,
        "await m.get, Vault with a token",
    )
    return results.ratios(
        "await m.get, Vault with an AppRole login", "await m.get, Vault with a token"
    )


def bench_cold(rounds: int) -> list[float]:
    latency = 0.1

    async def one_round() -> float:
        providers = [RemoteDocument({}, latency=latency, name=f"p{i}") for i in range(2)] + [
            RemoteDocument({"ONLY_IN_LAST": VALUE}, latency=latency, name="p2")
        ]
        async with SecretsManager(providers) as manager:
            with gc_rule():
                start = time.perf_counter()
                value = await manager.get("only-in-last")
                elapsed = time.perf_counter() - start
            assert value == VALUE
            assert [p.loads for p in providers] == [1, 1, 1]
        return elapsed / latency

    settle()
    samples = [asyncio.run(one_round()) for _ in range(max(5, rounds // 2))]
    s = summarize(samples)
    print("\n### Cold lookup over three providers of 100 ms each, key only in the last\n")
    print("| contender | wall / 100 ms (median) | IQR |\n|---|---|---|")
    print(f"| await m.get (ours, concurrent fan-out) | {s.value:.2f}x | {s.q1:.2f}-{s.q3:.2f}x |")
    print("| one provider after another (for scale) | 3.00x | |")
    return samples


def main() -> int:
    args = parse_args(__doc__ or "", SECTIONS)
    run = set(args.only or SECTIONS)
    print(f"# bench_manager ({machine()}, {args.rounds} rounds, medians)")
    targets: list[tuple[Target, list[float]]] = []
    if "warm" in run:
        warm_async, warm_sync = bench_warm(args.rounds)
        targets.append((Target("warm await m.get vs async_lru hit", 1.25), warm_async))
        targets.append((Target("warm m.sync.get vs async_lru hit", 1.1), warm_sync))
    if "cold" in run:
        cold = bench_cold(args.rounds)
        targets.append((Target("cold get, 3 x 100 ms providers, vs 100 ms", 1.1), cold))
    if "vault-login" in run:
        login = bench_vault_login(args.rounds)
        targets.append((Target("warm await m.get, Vault AppRole login vs given token", 1.1), login))
    return finish("bench_manager", args, targets)


if __name__ == "__main__":
    sys.exit(main())
