"""Agent mode against a real OpenBao Proxy: ``bao proxy`` with AppRole auto-auth in front of the
dev server, and the provider sending no token of its own (SPEC 8, ``VaultAgentAuth``)."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from simpletuner_secrets import ConfigurationError, SecretsManager, VaultAgentAuth
from simpletuner_secrets.providers.vault import HashiCorpVaultProvider
from tests.leak_audit import register_secret
from tests.servers.bao import BaoServer, free_port

pytestmark = pytest.mark.integration

#: Seconds the proxy may take to listen and finish its first auto-auth login (busy machine).
PROXY_DEADLINE_S = 60.0


@dataclass
class Proxy:
    """A running ``bao proxy`` and what the test needs to know of it."""

    url: str
    secret_path: str
    policy: str
    secret_id: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])


@pytest.fixture(autouse=True)
def audited(bao_proxy: Proxy) -> None:
    """The AppRole secret id and the secret's value are audited in every test."""
    register_secret(bao_proxy.secret_id)
    register_secret("hf_through_the_proxy")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _proxy_answers(url: str, path: str) -> bool:
    # No token: only the proxy's auto-auth token can make this read succeed.
    try:
        with urllib.request.urlopen(f"{url}/v1/secret/data/{path}", timeout=5) as answer:
            return bool(answer.status == 200)
    except urllib.error.HTTPError as exc:
        exc.close()
        return False
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="module")
def bao_proxy(bao: BaoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """An OpenBao Proxy logged in by AppRole (its own auth mount and read-only policy) with
    ``api_proxy { use_auto_auth_token = true }``, in front of the dev server."""
    workdir = tmp_path_factory.mktemp("bao-proxy")
    os.chmod(workdir, 0o700)
    tag = secrets.token_hex(4)
    mount, policy, path = f"approle-proxy-{tag}", f"proxy-read-{tag}", f"agent-{tag}"
    bao.cli("kv", "put", f"secret/{path}", "HF_TOKEN=hf_through_the_proxy", "REGION=eu")
    bao.cli(
        "policy",
        "write",
        policy,
        "-",
        input=f'path "secret/data/{path}" {{ capabilities = ["read"] }}\n',
    )
    bao.cli("auth", "enable", f"-path={mount}", "approle")
    bao.cli("write", f"auth/{mount}/role/app", f"token_policies={policy}", "token_ttl=1h")
    role_id = bao.cli("read", "-field=role_id", f"auth/{mount}/role/app/role-id").stdout.strip()
    secret_id = bao.cli(
        "write", "-f", "-field=secret_id", f"auth/{mount}/role/app/secret-id"
    ).stdout.strip()
    _write_private(workdir / "role-id", role_id)
    _write_private(workdir / "secret-id", secret_id)
    port = free_port()
    config = workdir / "proxy.hcl"
    config.write_text(
        f"""
vault {{
  address = "{bao.url}"
}}
auto_auth {{
  method "approle" {{
    mount_path = "auth/{mount}"
    config = {{
      role_id_file_path = "{workdir / "role-id"}"
      secret_id_file_path = "{workdir / "secret-id"}"
      remove_secret_id_file_after_reading = false
    }}
  }}
}}
api_proxy {{
  use_auto_auth_token = true
}}
listener "tcp" {{
  address = "127.0.0.1:{port}"
  tls_disable = true
}}
"""
    )
    log_path = workdir / "proxy.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [bao.binary, "proxy", f"-config={config}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**env, "HOME": str(workdir)},
            cwd=workdir,
        )
    proxy = Proxy(f"http://127.0.0.1:{port}", path, policy, secret_id, log_path, process)
    try:
        began = time.monotonic()
        deadline = began + PROXY_DEADLINE_S
        while not _proxy_answers(proxy.url, path):
            if process.poll() is not None:
                pytest.fail(
                    f"bao proxy exited with {process.returncode}:\n{proxy.log_tail()}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"bao proxy not serving after {PROXY_DEADLINE_S:.0f} s:\n{proxy.log_tail()}",
                    pytrace=False,
                )
            time.sleep(0.1)
        print(f"\nbao proxy ready (auto-auth done) in {time.monotonic() - began:.1f} s")
        yield proxy
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


async def test_agent_mode_reads_through_the_proxy_with_no_token(
    bao_proxy: Proxy, bao: BaoServer, tmp_path: Path
) -> None:
    """``auth=VaultAgentAuth()`` sends no token (a VAULT_TOKEN and a ~/.vault-token around
    are ignored): the proxy's auto-auth token reads the secret, as the audit log shows."""
    home = tmp_path / "home"
    home.mkdir()
    _write_private(home / ".vault-token", "s.not-a-real-token-from-home")
    provider = HashiCorpVaultProvider(
        url=bao_proxy.url,
        path=bao_proxy.secret_path,
        auth=VaultAgentAuth(),
        environ={"HOME": str(home), "VAULT_TOKEN": "s.not-a-real-token-from-env"},
    )
    assert provider.missing_settings() == []
    assert provider.is_available()
    mark = bao.audit_mark()
    try:
        document = await provider.load_document()
    finally:
        await provider.aclose()
    assert dict(document) == {"HF_TOKEN": "hf_through_the_proxy", "REGION": "eu"}
    reads = [
        entry
        for entry in mark.entries()
        if entry.get("type") == "response"
        and entry["request"]["path"] == f"secret/data/{bao_proxy.secret_path}"
    ]
    assert reads, "the read did not reach the server"
    # The server saw the proxy's AppRole token, not one the provider brought.
    assert all(e["auth"]["metadata"]["role_name"] == "app" for e in reads)
    assert all(bao_proxy.policy in e["auth"]["policies"] for e in reads)


async def test_agent_mode_from_the_environment_in_the_default_chain(
    bao_proxy: Proxy, tmp_path: Path
) -> None:
    """``SIMPLETUNER_VAULT_AUTH=agent`` with ``VAULT_ADDR`` and no token puts the Vault
    provider in the default chain (not left out for a missing token), and it reads through
    the proxy."""
    environ = {
        "HOME": str(tmp_path),
        "VAULT_ADDR": bao_proxy.url,
        "SIMPLETUNER_VAULT_AUTH": "agent",
        "SIMPLETUNER_VAULT_PATH": bao_proxy.secret_path,
    }
    config = {"file_path": str(tmp_path / "absent.json")}
    async with SecretsManager(environ=environ, config=config) as m:
        assert [p.name for p in m.providers][-1] == "vault"
        assert not [left.provider for left in m.left_out if left.provider == "vault"]
        assert await m.get("hf-token") == "hf_through_the_proxy"


async def test_agent_mode_from_config(bao_proxy: Proxy, tmp_path: Path) -> None:
    """``vault_auth="agent"`` in ``config`` selects agent mode over a token in the
    environment: the read succeeds through the proxy although that token is not valid."""
    m = SecretsManager(
        environ={"HOME": str(tmp_path), "VAULT_TOKEN": "s.not-a-real-token"},
        config={
            "vault_url": bao_proxy.url,
            "vault_auth": "agent",
            "vault_path": bao_proxy.secret_path,
            "file_path": str(tmp_path / "no.json"),
        },
    )
    async with m:
        assert await m.get("REGION") == "eu"


def test_unknown_auth_method_is_a_configuration_error(tmp_path: Path) -> None:
    """An auth method this provider does not know is refused with ConfigurationError naming
    the ones it does, not silently read as a token."""
    with pytest.raises(ConfigurationError, match="unknown auth method 'agnet'") as caught:
        HashiCorpVaultProvider(url="http://127.0.0.1:1", config={"vault_auth": "agnet"}, environ={})
    assert "agent" in str(caught.value).split("one of", 1)[1].split(", ")
