"""Every Vault login method against a real OpenBao dev server, at the root and inside a
namespace: AppRole, userpass, JWT (a key pair the test makes), TLS certificates (a CA and a
client certificate the test makes, on a ``-dev-tls`` server) and Kubernetes (OpenBao's
kubernetes method asking a TokenReview endpoint of the test's own)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simpletuner_secrets import (
    ProviderError,
    VaultAppRoleAuth,
    VaultCertAuth,
    VaultJWTAuth,
    VaultKubernetesAuth,
    VaultUserpassAuth,
)
from simpletuner_secrets.providers.vault import HashiCorpVaultProvider, VaultAuth
from tests.leak_audit import register_secret
from tests.servers.bao import BaoServer
from tests.servers.bao_auth import (
    TokenReview,
    client_certificate,
    make_ca,
    public_pem,
    rsa_key,
    service_account_jwt,
    sign_jwt,
    token_review,
)

pytestmark = pytest.mark.integration

METHODS = ["approle", "userpass", "jwt", "kubernetes", "cert"]


def unique(prefix: str) -> str:
    """A name no other test uses."""
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def review() -> Iterator[TokenReview]:
    """The stand-in for a cluster's TokenReview API."""
    with token_review() as endpoint:
        yield endpoint


class Setup:
    """One server (and namespace) prepared for a method: a secret, a policy reading it."""

    def __init__(self, server: BaoServer, namespace: str | None, workdir: Path) -> None:
        self.server = server
        self.namespace = namespace
        self.workdir = workdir
        self.env = {"BAO_NAMESPACE": namespace, "VAULT_NAMESPACE": namespace} if namespace else {}
        if namespace:
            server.cli("namespace", "create", namespace)
            server.cli("secrets", "enable", "-path=secret", "-version=2", "kv", extra_env=self.env)
        self.path = unique("method")
        self.value = f"hf_{secrets.token_hex(6)}"
        self.cli("kv", "put", f"secret/{self.path}", f"HF_TOKEN={self.value}")
        self.policy = unique("reader")
        hcl = f'path "secret/data/{self.path}" {{ capabilities = ["read"] }}'
        self.cli("policy", "write", self.policy, "-", input=hcl)

    def cli(self, *args: str, input: str | None = None) -> str:
        return self.server.cli(*args, input=input, extra_env=self.env).stdout.strip()

    def enable(self, method: str) -> str:
        mount = unique(method)
        self.cli("auth", "enable", f"-path={mount}", method)
        return mount

    def provider(self, auth: VaultAuth, **kwargs: Any) -> HashiCorpVaultProvider:
        home = self.workdir / "home"
        home.mkdir(exist_ok=True)
        kwargs.setdefault("verify", str(self.server.ca_path) if self.server.ca_path else None)
        return HashiCorpVaultProvider(
            self.server.url,
            path=self.path,
            namespace=self.namespace,
            auth=auth,
            environ={"HOME": str(home)},
            **kwargs,
        )


def write_secret_file(where: Path, name: str, text: str) -> str:
    """A 0600 file holding ``text``; its path."""
    path = where / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return str(path)


def approle_auth(setup: Setup, review: TokenReview) -> VaultAuth:
    mount = setup.enable("approle")
    setup.cli("write", f"auth/{mount}/role/app", f"token_policies={setup.policy}")
    role_id = setup.cli("read", "-field=role_id", f"auth/{mount}/role/app/role-id")
    secret_id = setup.cli("write", "-f", "-field=secret_id", f"auth/{mount}/role/app/secret-id")
    register_secret(secret_id)
    return VaultAppRoleAuth(role_id, secret_id, mount=mount)


def userpass_auth(setup: Setup, review: TokenReview) -> VaultAuth:
    mount = setup.enable("userpass")
    password = f"pw-{secrets.token_hex(8)}"
    register_secret(password)
    setup.cli(
        "write",
        f"auth/{mount}/users/alice",
        f"password={password}",
        f"token_policies={setup.policy}",
    )
    password_file = write_secret_file(setup.workdir, "password", password)
    return VaultUserpassAuth("alice", password_file=password_file, mount=mount)


def jwt_auth(setup: Setup, review: TokenReview) -> VaultAuth:
    mount = setup.enable("jwt")
    key = rsa_key()
    setup.cli("write", f"auth/{mount}/config", "jwt_validation_pubkeys=-", input=public_pem(key))
    setup.cli(
        "write",
        f"auth/{mount}/role/app",
        "role_type=jwt",
        "user_claim=sub",
        "bound_audiences=simpletuner",
        f"token_policies={setup.policy}",
    )
    now = int(time.time())
    jwt = sign_jwt(
        key, {"sub": "svc", "aud": "simpletuner", "iat": now, "nbf": now - 5, "exp": now + 600}
    )
    register_secret(jwt)
    return VaultJWTAuth("app", write_secret_file(setup.workdir, "jwt", jwt), mount=mount)


def kubernetes_auth(setup: Setup, review: TokenReview) -> VaultAuth:
    mount = setup.enable("kubernetes")
    namespace, name, uid = "apps", "trainer", secrets.token_hex(8)
    jwt = service_account_jwt(rsa_key(), namespace, name, uid)
    register_secret(jwt)
    review.accepted[jwt] = (namespace, name, uid)
    # The plugin wants a cluster CA with disable_local_ca_jwt; the stand-in API server
    # speaks plain http on loopback, so any CA does.
    cluster_ca = make_ca(setup.workdir / "cluster", "cluster-ca")
    setup.cli(
        "write",
        f"auth/{mount}/config",
        f"kubernetes_host={review.url}",
        "disable_local_ca_jwt=true",
        "kubernetes_ca_cert=-",
        input=cluster_ca.pem,
    )
    setup.cli(
        "write",
        f"auth/{mount}/role/app",
        f"bound_service_account_names={name}",
        f"bound_service_account_namespaces={namespace}",
        f"token_policies={setup.policy}",
    )
    return VaultKubernetesAuth(
        "app", write_secret_file(setup.workdir, "sa-token", jwt), mount=mount
    )


def cert_auth(setup: Setup, review: TokenReview) -> VaultAuth:
    mount = setup.enable("cert")
    ca = make_ca(setup.workdir / "pki")
    client = client_certificate(setup.workdir / "pki", ca, "trainer.example")
    setup.cli(
        "write",
        f"auth/{mount}/certs/app",
        "certificate=-",
        f"token_policies={setup.policy}",
        input=ca.pem,
    )
    return VaultCertAuth(str(client.cert_path), str(client.key_path), name="app", mount=mount)


BUILDERS = {
    "approle": approle_auth,
    "userpass": userpass_auth,
    "jwt": jwt_auth,
    "kubernetes": kubernetes_auth,
    "cert": cert_auth,
}


def server_for(method: str, request: pytest.FixtureRequest) -> BaoServer:
    """The TLS server for certificate auth, the plain one for the rest."""
    server: BaoServer = request.getfixturevalue("bao_tls" if method == "cert" else "bao")
    return server


@pytest.mark.parametrize("in_namespace", [False, True], ids=["root", "namespace"])
@pytest.mark.parametrize("method", METHODS)
async def test_method_logs_in_and_reads(
    method: str,
    in_namespace: bool,
    request: pytest.FixtureRequest,
    review: TokenReview,
    tmp_path: Path,
) -> None:
    """Each method logs in once (in the namespace when one is set, the login included) and
    reads the secret its policy allows; the status names the method and mount and a TTL."""
    server = server_for(method, request)
    setup = Setup(server, unique("ns") if in_namespace else None, tmp_path)
    auth = BUILDERS[method](setup, review)
    vault = setup.provider(auth)
    audit = server.audit_mark()
    assert await vault.get("HF_TOKEN") == setup.value
    vault.invalidate()
    assert await vault.get("HF_TOKEN") == setup.value
    status = vault.auth_status()
    assert status["method"] == method and status["mount"] == auth.mount
    assert status["logins"] == 1
    assert status["ttl_remaining_s"] is not None and status["ttl_remaining_s"] > 60
    login_path = auth.login_path()
    assert audit.responses(login_path) == [login_path]
    assert f"auth={method!r}" in repr(vault) and f"auth_mount={auth.mount!r}" in repr(vault)
    await vault.aclose()
    assert audit.responses("auth/token/revoke-self") == ["auth/token/revoke-self"]


async def test_method_in_a_namespace_is_not_found_at_the_root(
    bao: BaoServer, review: TokenReview, tmp_path: Path
) -> None:
    """An AppRole mount made inside a namespace: without the namespace the login fails with
    a ProviderError naming the method (the login went to the root, where no such mount is)."""
    setup = Setup(bao, unique("ns"), tmp_path)
    auth = approle_auth(setup, review)
    outside = HashiCorpVaultProvider(
        bao.url, path=setup.path, auth=auth, environ={"HOME": str(tmp_path)}
    )
    with pytest.raises(ProviderError, match=f"approle login at auth/{auth.mount}"):
        await outside.get("HF_TOKEN")
    await outside.aclose()


async def test_kubernetes_refused_review_is_a_provider_error(
    bao: BaoServer, review: TokenReview, tmp_path: Path
) -> None:
    """A service-account token the TokenReview endpoint does not authenticate: the login
    fails with ProviderError; the token is not in the message."""
    setup = Setup(bao, None, tmp_path)
    auth = kubernetes_auth(setup, review)
    assert isinstance(auth, VaultKubernetesAuth)
    stranger = service_account_jwt(rsa_key(), "apps", "trainer", "other-uid")
    register_secret(stranger)
    write_secret_file(Path(auth.jwt_file).parent, Path(auth.jwt_file).name, stranger)
    vault = setup.provider(auth)
    with pytest.raises(ProviderError, match="kubernetes login") as info:
        await vault.get("HF_TOKEN")
    assert stranger not in str(info.value)
    assert review.reviews[-1] is False
    await vault.aclose()
