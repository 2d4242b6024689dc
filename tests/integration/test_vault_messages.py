"""Vault errors that name the real cause (issue 13) on real servers: https:// against plain
http, a missing CA file, a VAULT_CAPATH folder of plain PEM files, a refused connection and a
stalled server (how long it really took), agent mode without a token."""

from __future__ import annotations

import re
import secrets
import shutil
import socket
from pathlib import Path

import pytest

from simpletuner_secrets import ProviderError, VaultAgentAuth
from simpletuner_secrets.providers.vault import HashiCorpVaultProvider
from tests.servers.bao import BaoServer, free_port
from tests.servers.bao_auth import make_ca

pytestmark = pytest.mark.integration


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty HOME."""
    path = tmp_path / "home"
    path.mkdir()
    return path


def kv_put(server: BaoServer, value: str) -> str:
    """A KV v2 secret holding HF_TOKEN=value; its path."""
    path = f"msg-{secrets.token_hex(4)}"
    server.cli("kv", "put", f"secret/{path}", f"HF_TOKEN={value}")
    return path


async def test_https_against_plain_http_says_so(bao: BaoServer, home: Path) -> None:
    """https:// to a plain-http listener: the message says the server does not speak TLS
    there and suggests http://, not "set VAULT_CACERT"."""
    url = bao.url.replace("http://", "https://")
    vault = HashiCorpVaultProvider(url, bao.token, environ={"HOME": str(home)})
    with pytest.raises(ProviderError) as info:
        await vault.get("HF_TOKEN")
    message = str(info.value)
    assert "does not speak TLS" in message and "use http://" in message, message
    assert "VAULT_CACERT" not in message
    await vault.aclose()


async def test_missing_ca_file_is_named(bao_tls: BaoServer, home: Path) -> None:
    """VAULT_CACERT naming a file that does not exist: the message names the file, not a
    bare OSError."""
    missing = home / "no-such-ca.pem"
    vault = HashiCorpVaultProvider(
        environ={
            "HOME": str(home),
            "VAULT_ADDR": bao_tls.url,
            "VAULT_TOKEN": bao_tls.token,
            "VAULT_CACERT": str(missing),
        }
    )
    with pytest.raises(ProviderError, match=re.escape(f"the CA file {missing}")) as info:
        await vault.get("HF_TOKEN")
    assert "does not exist" in str(info.value)
    await vault.aclose()


async def test_capath_folder_of_plain_pem_files_is_trusted(bao_tls: BaoServer, home: Path) -> None:
    """VAULT_CAPATH (read as BAO_CAPATH too) pointing at a folder of PEM files under
    ordinary names (no `openssl rehash`): every certificate in it is trusted."""
    assert bao_tls.ca_path is not None
    folder = home / "cas"
    folder.mkdir()
    shutil.copy(bao_tls.ca_path, folder / "dev-server-ca.pem")
    (folder / "README").write_text("not a certificate\n")
    path = kv_put(bao_tls, "hf_capath")
    for name in ("VAULT_CAPATH", "BAO_CAPATH"):
        vault = HashiCorpVaultProvider(
            path=path,
            environ={
                "HOME": str(home),
                "VAULT_ADDR": bao_tls.url,
                "VAULT_TOKEN": bao_tls.token,
                name: str(folder),
            },
        )
        assert await vault.get("HF_TOKEN") == "hf_capath", name
        await vault.aclose()


async def test_capath_folder_without_certificates_is_named(bao_tls: BaoServer, home: Path) -> None:
    """A CA folder holding no PEM certificate: ProviderError naming the folder."""
    folder = home / "empty-cas"
    folder.mkdir()
    (folder / "notes.txt").write_text("nothing here\n")
    vault = HashiCorpVaultProvider(
        bao_tls.url, bao_tls.token, verify=str(folder), environ={"HOME": str(home)}
    )
    with pytest.raises(ProviderError, match=re.escape(f"the CA folder {folder} holds no PEM")):
        await vault.get("HF_TOKEN")
    await vault.aclose()


async def test_wrong_ca_says_tls_verification_failed(bao_tls: BaoServer, home: Path) -> None:
    """A CA that did not sign the server's certificate: "TLS verification failed" and the
    setting to fix."""
    other_ca = make_ca(bao_tls.home / f"other-{secrets.token_hex(3)}")
    vault = HashiCorpVaultProvider(
        bao_tls.url, bao_tls.token, verify=str(other_ca.cert_path), environ={"HOME": str(home)}
    )
    with pytest.raises(ProviderError, match="TLS verification failed: set VAULT_CACERT"):
        await vault.get("HF_TOKEN")
    await vault.aclose()


async def test_refused_connection_says_so_and_how_long(home: Path) -> None:
    """Nothing listening: "connection refused", and how long the attempt really took."""
    url = f"http://127.0.0.1:{free_port()}"
    vault = HashiCorpVaultProvider(url, "t-refused", environ={"HOME": str(home)})
    with pytest.raises(ProviderError) as info:
        await vault.get("HF_TOKEN")
    message = str(info.value)
    assert "connection refused" in message
    assert re.search(r"after \d+\.\d s", message), message
    await vault.aclose()


async def test_stalled_server_reports_how_long_it_really_took(home: Path) -> None:
    """A server that accepts and never answers, with timeout=0.5: the message gives the
    timeout and the time really spent (0.5 s, not a made-up figure)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        vault = HashiCorpVaultProvider(url, "t-stalled", environ={"HOME": str(home)}, timeout=0.5)
        with pytest.raises(ProviderError) as info:
            await vault.load_document()
        await vault.aclose()
    message = str(info.value)
    assert "within 0.5 s" in message, message
    spent = re.search(r"gave up after (\d+\.\d) s", message)
    assert spent is not None, message
    assert 0.4 <= float(spent.group(1)) < 3.0


async def test_agent_mode_sends_no_token(bao: BaoServer, home: Path) -> None:
    """Agent mode straight at a server (no Agent in between): the request goes without a
    token, so the server refuses it, and the message says no token was sent."""
    path = kv_put(bao, "hf_agentless")
    audit = bao.audit_mark()
    vault = HashiCorpVaultProvider(
        bao.url, path=path, auth=VaultAgentAuth(), environ={"HOME": str(home)}
    )
    with pytest.raises(ProviderError, match="without a token") as info:
        await vault.get("HF_TOKEN")
    assert "HTTP 403" in str(info.value)
    assert vault.auth_status()["logins"] == 0
    assert audit.responses("sys/internal/ui/mounts/secret") == ["sys/internal/ui/mounts/secret"]
    await vault.aclose()
