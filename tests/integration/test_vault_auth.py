"""Vault reading rules and token sources (SPEC 8) on a real OpenBao dev server: the KV
version asked before the first read, several paths, ``path@N``, token files, AppRole (plain
and wrapped), one login for every task, thread and loop, revocation on close, and a 403
answered by at most one new login."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from simpletuner_secrets import (
    ConfigurationError,
    ProviderError,
    SecretsManager,
    VaultAppRoleAuth,
    VaultTokenAuth,
)
from simpletuner_secrets.providers.vault import HashiCorpVaultProvider
from tests.heartbeat import max_gap_during
from tests.leak_audit import register_secret
from tests.servers.bao import BaoServer

pytestmark = pytest.mark.integration

LOGGER = "simpletuner_secrets.providers.vault"


def unique(prefix: str = "st") -> str:
    """A name no other test uses."""
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty HOME (no ~/.vault-token)."""
    path = tmp_path / "home"
    path.mkdir()
    return path


def reader_policy(bao: BaoServer, *paths: str, namespace: str | None = None) -> str:
    """A policy that may read exactly ``paths`` (API paths); returns its name."""
    name = unique("reader")
    hcl = "\n".join(f'path "{p}" {{ capabilities = ["read"] }}' for p in paths)
    bao.cli("policy", "write", name, "-", input=hcl, extra_env=ns_env(namespace))
    return name


def ns_env(namespace: str | None) -> dict[str, str]:
    """The CLI variables that put a command in ``namespace``."""
    return {"BAO_NAMESPACE": namespace, "VAULT_NAMESPACE": namespace} if namespace else {}


def approle(
    bao: BaoServer,
    policy: str,
    *,
    ttl: str = "1h",
    max_ttl: str = "2h",
    namespace: str | None = None,
) -> tuple[str, str, str]:
    """An AppRole mount with one role: (mount, role id, secret id)."""
    mount = unique("approle")
    env = ns_env(namespace)
    bao.cli("auth", "enable", f"-path={mount}", "approle", extra_env=env)
    bao.cli(
        "write",
        f"auth/{mount}/role/app",
        f"token_policies={policy}",
        f"token_ttl={ttl}",
        f"token_max_ttl={max_ttl}",
        extra_env=env,
    )
    role_id = bao.cli(
        "read", "-field=role_id", f"auth/{mount}/role/app/role-id", extra_env=env
    ).stdout.strip()
    secret_id = new_secret_id(bao, mount, namespace=namespace)
    return mount, role_id, secret_id


def new_secret_id(bao: BaoServer, mount: str, *, namespace: str | None = None) -> str:
    """A fresh secret id of the role ``app`` on ``mount`` (registered with the leak audit)."""
    secret_id = bao.cli(
        "write",
        "-f",
        "-field=secret_id",
        f"auth/{mount}/role/app/secret-id",
        extra_env=ns_env(namespace),
    ).stdout.strip()
    register_secret(secret_id)
    return secret_id


def make(bao: BaoServer, home: Path, **kwargs: Any) -> HashiCorpVaultProvider:
    """A provider on ``bao`` with no ambient settings."""
    kwargs.setdefault("url", bao.url)
    kwargs.setdefault("environ", {"HOME": str(home)})
    return HashiCorpVaultProvider(**kwargs)


def logins(bao_audit: Any, mount: str) -> int:
    """How many logins on ``mount`` the server answered since the audit mark."""
    return len(bao_audit.responses(f"auth/{mount}/login"))


# -- reading (priority 1) ------------------------------------------------------------------


async def test_least_privilege_token_reads_a_kv1_mount(bao: BaoServer, home: Path) -> None:
    """A token that may read only kv1/<path> reads it: the version comes from
    sys/internal/ui/mounts, never from a KV v2 probe that would be refused."""
    path = unique("v1")
    bao.cli("write", f"kv1/{path}", "HF_TOKEN=hf_v1_least")
    policy = reader_policy(bao, f"kv1/{path}")
    token = bao.cli("token", "create", f"-policy={policy}", "-field=token").stdout.strip()
    register_secret(token)
    audit = bao.audit_mark()
    vault = make(bao, home, token=token, path=path, mount_point="kv1")
    assert await vault.get("HF_TOKEN") == "hf_v1_least"
    assert vault.kv_version == 1
    assert audit.responses() == ["sys/internal/ui/mounts/kv1", f"kv1/{path}"]
    await vault.aclose()


async def test_least_privilege_token_reads_a_kv2_secret(bao: BaoServer, home: Path) -> None:
    """A token that may read only secret/data/<path> reads it, KV v2 detected first."""
    path = unique("v2")
    bao.cli("kv", "put", f"secret/{path}", "HF_TOKEN=hf_v2_least")
    policy = reader_policy(bao, f"secret/data/{path}")
    token = bao.cli("token", "create", f"-policy={policy}", "-field=token").stdout.strip()
    register_secret(token)
    vault = make(bao, home, token=token, path=path)
    assert await vault.get("HF_TOKEN") == "hf_v2_least"
    assert vault.kv_version == 2
    await vault.aclose()


async def test_forbidden_read_names_the_token_and_policies_not_kv1(
    bao: BaoServer, home: Path
) -> None:
    """A token that sees the mount but not the path: 403 naming the given token and its
    policies, no KV v1 hint (the mount said v2) and no v1 read."""
    path = unique("denied")
    bao.cli("kv", "put", f"secret/{path}", "HF_TOKEN=hf_denied")
    policy = reader_policy(bao, "secret/data/some-other-path")
    token = bao.cli("token", "create", f"-policy={policy}", "-field=token").stdout.strip()
    register_secret(token)
    audit = bao.audit_mark()
    vault = make(bao, home, token=token, path=path)
    with pytest.raises(ProviderError) as info:
        await vault.get("HF_TOKEN")
    message = str(info.value)
    assert "HTTP 403" in message and f"secret/data/{path}" in message
    assert f"the given token (policies: default, {policy})" in message
    assert "kv_version" not in message and "KV v1" not in message
    assert f"secret/{path}" not in audit.responses()
    await vault.aclose()


async def test_several_paths_earlier_wins(bao: BaoServer, home: Path) -> None:
    """vault_path "a,b": keys of both are answered; on a key in both, a's value wins; a
    missing path among them is only a warning."""
    first, second, missing = unique("a"), unique("b"), unique("none")
    bao.cli("kv", "put", f"secret/{first}", "HF_TOKEN=hf_first", "ONLY_A=a")
    bao.cli("kv", "put", f"secret/{second}", "HF_TOKEN=hf_second", "ONLY_B=b")
    vault = make(bao, home, token=bao.token, path=f"{first}, {missing},{second}")
    assert vault.paths == (first, missing, second)
    document = await vault.load_document()
    assert document == {"HF_TOKEN": "hf_first", "ONLY_A": "a", "ONLY_B": "b"}
    await vault.aclose()


async def test_path_at_version_pins_kv2_version(bao: BaoServer, home: Path) -> None:
    """path@1 reads version 1 after a second write; the plain path reads the latest."""
    path = unique("pinned")
    bao.cli("kv", "put", f"secret/{path}", "HF_TOKEN=hf_v1_value")
    bao.cli("kv", "put", f"secret/{path}", "HF_TOKEN=hf_v2_value")
    pinned = make(bao, home, token=bao.token, path=f"{path}@1")
    latest = make(bao, home, token=bao.token, path=path)
    assert await pinned.get("HF_TOKEN") == "hf_v1_value"
    assert await latest.get("HF_TOKEN") == "hf_v2_value"
    both = make(bao, home, token=bao.token, path=f"{path}@1,{path}")
    assert await both.get("HF_TOKEN") == "hf_v1_value"
    for vault in (pinned, latest, both):
        await vault.aclose()


async def test_path_at_version_on_a_kv1_mount_is_refused(bao: BaoServer, home: Path) -> None:
    """path@2 on a KV v1 mount: ProviderError saying a pin needs KV v2 (detected), and a
    ConfigurationError at once when kv_version=1 is given."""
    vault = make(bao, home, token=bao.token, path="x@2", mount_point="kv1")
    with pytest.raises(ProviderError, match="pins a KV v2 version"):
        await vault.get("HF_TOKEN")
    await vault.aclose()
    with pytest.raises(ConfigurationError, match="pins a KV v2 version"):
        make(bao, home, token=bao.token, path="x@2", mount_point="kv1", kv_version=1)


async def test_kv_version_variable_skips_detection(bao: BaoServer, home: Path) -> None:
    """SIMPLETUNER_VAULT_KV_VERSION=1: no sys/internal/ui/mounts request, a v1 read."""
    path = unique("envv1")
    bao.cli("write", f"kv1/{path}", "HF_TOKEN=hf_env_v1")
    audit = bao.audit_mark()
    vault = HashiCorpVaultProvider(
        environ={
            "HOME": str(home),
            "BAO_ADDR": bao.url,
            "BAO_TOKEN": bao.token,
            "SIMPLETUNER_VAULT_MOUNT": "kv1",
            "SIMPLETUNER_VAULT_PATH": path,
            "SIMPLETUNER_VAULT_KV_VERSION": "1",
        }
    )
    assert vault.kv_version == 1
    assert await vault.get("HF_TOKEN") == "hf_env_v1"
    assert audit.responses() == [f"kv1/{path}"]
    await vault.aclose()


# -- token sources (priority 2) ------------------------------------------------------------


async def test_token_file_is_re_read_when_it_changes(bao: BaoServer, home: Path) -> None:
    """An Agent-style token sink: a new token written to the file is used by the next load;
    the old one, revoked, is never sent again."""
    path = unique("sink")
    bao.cli("kv", "put", f"secret/{path}", "HF_TOKEN=hf_sink")
    policy = reader_policy(bao, f"secret/data/{path}")
    first = bao.cli("token", "create", f"-policy={policy}", "-field=token").stdout.strip()
    second = bao.cli("token", "create", f"-policy={policy}", "-field=token").stdout.strip()
    register_secret(first)
    register_secret(second)
    sink = home / "sink-token"
    sink.write_text(first + "\n")
    sink.chmod(0o600)
    vault = make(bao, home, path=path, config={"vault_token_file": str(sink)})
    assert vault.missing_settings() == []
    assert await vault.load_document() == {"HF_TOKEN": "hf_sink"}
    sink.write_text(second + "\n")
    bao.cli("token", "revoke", first)
    assert await vault.load_document() == {"HF_TOKEN": "hf_sink"}
    assert vault.auth_status()["method"] == "token"
    await vault.aclose()
    # Never revoked: a given token is not the provider's to revoke.
    assert bao.cli("token", "lookup", second, check=False).returncode == 0


async def test_token_file_readable_by_others_is_warned_about(
    bao: BaoServer, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A token file of mode 0644 is used with one WARNING naming the file."""
    path = unique("loose")
    bao.cli("kv", "put", f"secret/{path}", "HF_TOKEN=hf_loose")
    sink = home / "loose-token"
    sink.write_text(bao.token)
    sink.chmod(0o644)
    vault = make(bao, home, path=path, auth=VaultTokenAuth(token_file=str(sink)))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert await vault.load_document() == {"HF_TOKEN": "hf_loose"}
        vault.invalidate()
        assert await vault.load_document() == {"HF_TOKEN": "hf_loose"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and str(sink) in warnings[0] and "0644" in warnings[0]
    await vault.aclose()


async def test_approle_login_once_for_tasks_threads_and_loops(bao: BaoServer, home: Path) -> None:
    """One cold provider used by 3 threads, each with its own event loop and 30 tasks: one
    AppRole login reaches the server, every lookup gets the value."""
    path = unique("once")
    bao.cli("kv", "put", f"secret/{path}", "HF_TOKEN=hf_once")
    mount, role_id, secret_id = approle(bao, reader_policy(bao, f"secret/data/{path}"))
    vault = make(bao, home, path=path, auth=VaultAppRoleAuth(role_id, secret_id, mount=mount))
    audit = bao.audit_mark()
    answers: list[str | None] = []
    lock = threading.Lock()

    async def many() -> None:
        got = await asyncio.gather(*(vault.get("HF_TOKEN") for _ in range(30)))
        with lock:
            answers.extend(got)

    threads = [threading.Thread(target=asyncio.run, args=(many(),)) for _ in range(3)]
    for thread in threads:
        thread.start()
    await asyncio.gather(*(vault.get("HF_TOKEN") for _ in range(30)))
    for thread in threads:
        thread.join(60)
    assert answers == ["hf_once"] * 90
    assert logins(audit, mount) == 1
    status = vault.auth_status()
    assert status["method"] == "approle" and status["mount"] == mount
    assert status["logins"] == 1
    assert 3000 < status["ttl_remaining_s"] <= 3600
    await vault.aclose()


async def test_approle_wrapped_secret_id_value_and_file(bao: BaoServer, home: Path) -> None:
    """A response-wrapped secret id (as a value, and from a file) is unwrapped once and
    logs in; a second unwrap of the same wrapping token is refused by the server."""
    path = unique("wrapped")
    bao.cli("kv", "put", f"secret/{path}", "HF_TOKEN=hf_wrapped")
    mount, role_id, _ = approle(bao, reader_policy(bao, f"secret/data/{path}"))

    def wrapped_secret_id() -> str:
        token = bao.cli(
            "write",
            "-f",
            "-wrap-ttl=60s",
            "-field=wrapping_token",
            f"auth/{mount}/role/app/secret-id",
        ).stdout.strip()
        register_secret(token)
        return token

    by_value = make(
        bao,
        home,
        path=path,
        auth=VaultAppRoleAuth(role_id, wrapped_secret_id(), wrapped=True, mount=mount),
    )
    assert await by_value.get("HF_TOKEN") == "hf_wrapped"
    await by_value.aclose()
    wrap_file = home / "wrapped-secret-id"
    wrap_file.write_text(wrapped_secret_id())
    wrap_file.chmod(0o600)
    config = {
        "vault_auth": "approle",
        "vault_auth_mount": mount,
        "vault_role_id": role_id,
        "vault_secret_id_file": str(wrap_file),
        "vault_secret_id_wrapped": "true",
    }
    by_file = make(bao, home, path=path, config=config)
    assert await by_file.get("HF_TOKEN") == "hf_wrapped"
    by_file.invalidate()  # a second load logs in with the kept secret id, no second unwrap
    assert await by_file.get("HF_TOKEN") == "hf_wrapped"
    await by_file.aclose()
    again = make(bao, home, path=path, config=config)
    with pytest.raises(ProviderError, match="unwrapping the secret id") as info:
        await again.get("HF_TOKEN")
    assert wrap_file.read_text() not in str(info.value)
    await again.aclose()


async def test_approle_from_the_environment_through_the_manager(bao: BaoServer, home: Path) -> None:
    """SIMPLETUNER_VAULT_AUTH=approle with role id and secret-id file in the environment:
    the default chain builds the provider and reads through it."""
    path = unique("envrole")
    bao.cli("kv", "put", f"secret/{path}", "HF_TOKEN=hf_env_role")
    mount, role_id, secret_id = approle(bao, reader_policy(bao, f"secret/data/{path}"))
    secret_file = home / "secret-id"
    secret_file.write_text(secret_id)
    secret_file.chmod(0o600)
    environ = {
        "HOME": str(home),
        "BAO_ADDR": bao.url,
        "SIMPLETUNER_VAULT_AUTH": "approle",
        "SIMPLETUNER_VAULT_AUTH_MOUNT": mount,
        "SIMPLETUNER_VAULT_ROLE_ID": role_id,
        "SIMPLETUNER_VAULT_SECRET_ID_FILE": str(secret_file),
        "SIMPLETUNER_VAULT_PATH": path,
    }
    built = HashiCorpVaultProvider.from_settings({}, environ)
    assert isinstance(built, HashiCorpVaultProvider)
    assert isinstance(built.auth, VaultAppRoleAuth) and built.auth.mount == mount
    async with SecretsManager(providers=[built], on_provider_error="raise") as manager:
        assert await manager.get("HF_TOKEN") == "hf_env_role"
        stats = manager.stats()["providers"]["vault"]
        assert stats["auth"]["method"] == "approle" and stats["auth"]["logins"] == 1
        info = await manager.explain("HF_TOKEN")
        assert info["auth"]["method"] == "approle" and info["auth"]["mount"] == mount
        assert 0 < info["auth"]["ttl_remaining_s"] <= 3600


async def test_aclose_revokes_a_login_token_never_a_given_one(bao: BaoServer, home: Path) -> None:
    """aclose revokes the AppRole token (revoke-self); with revoke_on_close=False it does
    not; a given token is never revoked."""
    path = unique("revoke")
    bao.cli("kv", "put", f"secret/{path}", "HF_TOKEN=hf_revoke")
    mount, role_id, secret_id = approle(bao, reader_policy(bao, f"secret/data/{path}"))
    audit = bao.audit_mark()
    vault = make(bao, home, path=path, auth=VaultAppRoleAuth(role_id, secret_id, mount=mount))
    assert await vault.get("HF_TOKEN") == "hf_revoke"
    await vault.aclose()
    assert audit.responses("auth/token/revoke-self") == ["auth/token/revoke-self"]
    kept = make(
        bao,
        home,
        path=path,
        auth=VaultAppRoleAuth(role_id, secret_id, mount=mount),
        revoke_on_close=False,
    )
    assert await kept.get("HF_TOKEN") == "hf_revoke"
    given = make(bao, home, path=path, token=bao.token)
    assert await given.get("HF_TOKEN") == "hf_revoke"
    mark = bao.audit_mark()
    await kept.aclose()
    await given.aclose()
    assert mark.responses("auth/token/revoke-self") == []
    assert bao.healthy() and bao.cli("token", "lookup", check=False).returncode == 0


# -- the token's life (priority 3) ---------------------------------------------------------


async def test_revoked_login_token_is_replaced_with_one_warning(
    bao: BaoServer, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every token of the AppRole mount revoked: the next load gets 403, logs in once
    more and retries; one WARNING; a second revocation within the backoff window is not
    answered by a login loop."""
    path = unique("revoked")
    bao.cli("kv", "put", f"secret/{path}", "HF_TOKEN=hf_after")
    mount, role_id, secret_id = approle(bao, reader_policy(bao, f"secret/data/{path}"))
    vault = make(bao, home, path=path, auth=VaultAppRoleAuth(role_id, secret_id, mount=mount))
    assert await vault.load_document() == {"HF_TOKEN": "hf_after"}
    bao.cli("token", "revoke", "-mode=path", f"auth/{mount}/")
    audit = bao.audit_mark()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert await vault.load_document() == {"HF_TOKEN": "hf_after"}
        bao.cli("token", "revoke", "-mode=path", f"auth/{mount}/")
        with pytest.raises(ProviderError, match="HTTP 403"):
            await vault.load_document()  # within the window: no new login, no loop
    assert logins(audit, mount) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "refused" in warnings[0], warnings
    assert vault.auth_status()["forced_logins"] == 1
    await vault.aclose()


async def test_failed_login_is_a_provider_error_without_the_secret(
    bao: BaoServer, home: Path
) -> None:
    """A wrong secret id: ProviderError naming the method and mount and Vault's words,
    never the secret id."""
    mount, role_id, _ = approle(bao, "default")
    wrong = "not-the-secret-id-" + secrets.token_hex(8)
    register_secret(wrong)
    vault = make(bao, home, auth=VaultAppRoleAuth(role_id, wrong, mount=mount))
    with pytest.raises(ProviderError, match=f"approle login at auth/{mount}") as info:
        await vault.get("HF_TOKEN")
    assert "HTTP 400" in str(info.value) and wrong not in str(info.value)
    await vault.aclose()


async def test_login_never_blocks_the_loop(bao: BaoServer, home: Path) -> None:
    """A cold AppRole provider's first get (hvac import done before: client, login, mount
    lookup, read) leaves no loop stall over 0.1 s."""
    path = unique("beat")
    bao.cli("kv", "put", f"secret/{path}", "HF_TOKEN=hf_beat")
    mount, role_id, secret_id = approle(bao, reader_policy(bao, f"secret/data/{path}"))
    vault = make(bao, home, path=path, auth=VaultAppRoleAuth(role_id, secret_id, mount=mount))
    stall, value = await max_gap_during(vault.get("HF_TOKEN"))
    assert value == "hf_beat"
    assert stall < 0.1, f"the event loop stalled {stall * 1000:.0f} ms"
    await vault.aclose()


def test_doctor_shows_method_mount_and_ttl(bao: BaoServer, home: Path) -> None:
    """`simpletuner-secrets doctor` with AppRole settings in the environment names the
    method, its mount and the token's remaining TTL, and never the secret id."""
    path = unique("doctor")
    bao.cli("kv", "put", f"secret/{path}", "HF_TOKEN=hf_doctor_value")
    mount, role_id, secret_id = approle(bao, reader_policy(bao, f"secret/data/{path}"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "AWS_"))},
        "HOME": str(home),
        "VAULT_ADDR": bao.url,
        "SIMPLETUNER_VAULT_AUTH": "approle",
        "SIMPLETUNER_VAULT_AUTH_MOUNT": mount,
        "SIMPLETUNER_VAULT_ROLE_ID": role_id,
        "SIMPLETUNER_VAULT_SECRET_ID": secret_id,
        "SIMPLETUNER_VAULT_PATH": path,
    }
    done = subprocess.run(
        [sys.executable, "-m", "simpletuner_secrets.cli", "doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.strip().startswith("vault"))
    assert "reachable" in line
    assert f"auth='approle', auth_mount='{mount}', token_ttl_s=" in line
    assert secret_id not in done.stdout and secret_id not in done.stderr
