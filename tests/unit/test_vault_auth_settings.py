"""Vault auth settings and the token keeper's schedule, without a server: SPEC 8's table of
settings, BAO_* names, several paths and path@N, masked reprs, and the renewal plan."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import pytest

from simpletuner_secrets import (
    ConfigurationError,
    SecretsManager,
    VaultAgentAuth,
    VaultAppRoleAuth,
    VaultCertAuth,
    VaultJWTAuth,
    VaultKubernetesAuth,
    VaultTokenAuth,
    VaultUserpassAuth,
)
from simpletuner_secrets.providers._vault_token import plan
from simpletuner_secrets.providers.vault import HashiCorpVaultProvider

ADDR = "http://127.0.0.1:8200"
SECRET_ID = "secret-id-5f0c9e2d-unit"
PASSWORD_SECRET = "pw-unit-8c1d77a0b2"


def make(home: Path, env: dict[str, str] | None = None, **kwargs: Any) -> HashiCorpVaultProvider:
    """A provider whose environment is ``env`` plus HOME and VAULT_ADDR."""
    return HashiCorpVaultProvider(
        environ={"HOME": str(home), "VAULT_ADDR": ADDR, **(env or {})}, **kwargs
    )


# -- the table of settings ---------------------------------------------------------------


def test_every_table_key_is_a_known_config_key() -> None:
    """Each config key of SPEC 8's table is in the provider's config_keys (unknown keys are
    refused by the manager)."""
    table = {
        "vault_auth",
        "vault_auth_mount",
        "vault_role",
        "vault_role_id",
        "vault_secret_id",
        "vault_secret_id_file",
        "vault_secret_id_wrapped",
        "vault_jwt_file",
        "vault_client_cert",
        "vault_client_key",
        "vault_username",
        "vault_password",
        "vault_password_file",
        "vault_token_file",
        "vault_kv_version",
        "vault_revoke_on_close",
    }
    assert table <= HashiCorpVaultProvider.config_keys


def test_manager_accepts_auth_config_keys(tmp_path: Path) -> None:
    """SecretsManager(config=...) with AppRole keys builds a Vault provider using AppRole."""
    manager = SecretsManager(
        config={
            "vault_url": ADDR,
            "vault_auth": "approle",
            "vault_role_id": "role-1",
            "vault_secret_id": SECRET_ID,
            "file_path": str(tmp_path / "s.json"),
        }
    )
    vault = [p for p in manager.providers if p.name == "vault"]
    assert len(vault) == 1 and isinstance(vault[0], HashiCorpVaultProvider)
    assert isinstance(vault[0].auth, VaultAppRoleAuth)


@pytest.mark.parametrize(
    ("env", "kind", "mount"),
    [
        ({}, VaultTokenAuth, "token"),
        ({"SIMPLETUNER_VAULT_AUTH": "agent"}, VaultAgentAuth, ""),
        (
            {
                "SIMPLETUNER_VAULT_AUTH": "approle",
                "SIMPLETUNER_VAULT_ROLE_ID": "r",
                "SIMPLETUNER_VAULT_SECRET_ID": SECRET_ID,
            },
            VaultAppRoleAuth,
            "approle",
        ),
        (
            {"SIMPLETUNER_VAULT_AUTH": "kubernetes", "SIMPLETUNER_VAULT_ROLE": "app"},
            VaultKubernetesAuth,
            "kubernetes",
        ),
        (
            {
                "SIMPLETUNER_VAULT_AUTH": "JWT",
                "SIMPLETUNER_VAULT_ROLE": "app",
                "SIMPLETUNER_VAULT_JWT_FILE": "/run/jwt",
                "SIMPLETUNER_VAULT_AUTH_MOUNT": "oidc/",
            },
            VaultJWTAuth,
            "oidc",
        ),
        (
            {
                "SIMPLETUNER_VAULT_AUTH": "cert",
                "BAO_CLIENT_CERT": "/c.pem",
                "VAULT_CLIENT_KEY": "/k.pem",
            },
            VaultCertAuth,
            "cert",
        ),
        (
            {
                "SIMPLETUNER_VAULT_AUTH": "userpass",
                "SIMPLETUNER_VAULT_USERNAME": "alice",
                "SIMPLETUNER_VAULT_PASSWORD_FILE": "/run/pw",
            },
            VaultUserpassAuth,
            "userpass",
        ),
    ],
    ids=["token", "agent", "approle", "kubernetes", "jwt", "cert", "userpass"],
)
def test_method_from_the_environment(
    tmp_path: Path, env: dict[str, str], kind: type, mount: str
) -> None:
    """SIMPLETUNER_VAULT_AUTH picks the method; its mount defaults to the method's name."""
    vault = make(tmp_path, {"VAULT_TOKEN": "t-unit", **env})
    assert type(vault.auth) is kind
    assert vault.auth.mount == mount
    assert vault.missing_settings() == []


def test_kubernetes_defaults_to_the_service_account_token(tmp_path: Path) -> None:
    """Kubernetes auth reads the pod's service-account token unless told otherwise."""
    vault = make(tmp_path, {"SIMPLETUNER_VAULT_AUTH": "kubernetes", "SIMPLETUNER_VAULT_ROLE": "a"})
    assert isinstance(vault.auth, VaultKubernetesAuth)
    assert vault.auth.jwt_file == "/var/run/secrets/kubernetes.io/serviceaccount/token"


def test_config_wins_over_the_environment_for_auth(tmp_path: Path) -> None:
    """vault_auth in config wins over SIMPLETUNER_VAULT_AUTH; the argument auth wins over both."""
    env = {"SIMPLETUNER_VAULT_AUTH": "agent"}
    by_config = make(
        tmp_path,
        env,
        config={"vault_auth": "userpass", "vault_username": "u", "vault_password": PASSWORD_SECRET},
    )
    assert isinstance(by_config.auth, VaultUserpassAuth)
    by_argument = make(tmp_path, env, config={"vault_auth": "jwt"}, auth=VaultAgentAuth())
    assert isinstance(by_argument.auth, VaultAgentAuth)


@pytest.mark.parametrize(
    ("env", "needed"),
    [
        ({"SIMPLETUNER_VAULT_AUTH": "approle"}, "vault_role_id"),
        ({"SIMPLETUNER_VAULT_AUTH": "kubernetes"}, "vault_role"),
        ({"SIMPLETUNER_VAULT_AUTH": "jwt", "SIMPLETUNER_VAULT_ROLE": "a"}, "vault_jwt_file"),
        ({"SIMPLETUNER_VAULT_AUTH": "cert"}, "VAULT_CLIENT_CERT"),
        (
            {"SIMPLETUNER_VAULT_AUTH": "userpass", "SIMPLETUNER_VAULT_USERNAME": "u"},
            "vault_password",
        ),
        ({"SIMPLETUNER_VAULT_AUTH": "kerberos"}, "unknown auth method 'kerberos'"),
    ],
    ids=["approle", "kubernetes", "jwt", "cert", "userpass", "unknown"],
)
def test_incomplete_method_names_the_missing_setting(
    tmp_path: Path, env: dict[str, str], needed: str
) -> None:
    """A method without its required settings is a ConfigurationError naming the setting."""
    with pytest.raises(ConfigurationError, match=needed):
        make(tmp_path, env)


def test_manager_leaves_out_an_incomplete_method_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """VAULT_ADDR with approle but no role id: the default chain leaves Vault out, warning."""
    left = HashiCorpVaultProvider.from_settings(
        {}, {"HOME": str(tmp_path), "VAULT_ADDR": ADDR, "SIMPLETUNER_VAULT_AUTH": "approle"}
    )
    assert not isinstance(left, HashiCorpVaultProvider)
    assert left.misconfigured and "vault_role_id" in left.reason


def test_bao_names_are_read_like_vault_names(tmp_path: Path) -> None:
    """BAO_ADDR, BAO_TOKEN, BAO_NAMESPACE, BAO_CACERT stand in for VAULT_*; VAULT_* wins."""
    only_bao = HashiCorpVaultProvider(
        environ={
            "HOME": str(tmp_path),
            "BAO_ADDR": "https://bao.example:8200",
            "BAO_TOKEN": "t-bao-unit",
            "BAO_NAMESPACE": "team",
            "BAO_CACERT": "/etc/bao-ca.pem",
        }
    )
    assert only_bao.url == "https://bao.example:8200"
    assert only_bao.namespace == "team" and only_bao.verify == "/etc/bao-ca.pem"
    assert only_bao._token is not None and only_bao._token.reveal() == "t-bao-unit"
    both = HashiCorpVaultProvider(
        environ={
            "HOME": str(tmp_path),
            "BAO_ADDR": "https://bao.example:8200",
            "VAULT_ADDR": "https://vault.example:8200",
            "BAO_SKIP_VERIFY": "true",
            "VAULT_TOKEN": "t-vault-unit",
            "BAO_TOKEN": "t-bao-unit",
        }
    )
    assert both.url == "https://vault.example:8200" and both.verify is False
    assert both._token is not None and both._token.reveal() == "t-vault-unit"
    built = HashiCorpVaultProvider.from_settings(
        {}, {"BAO_ADDR": ADDR, "BAO_TOKEN": "t-x-unit", "HOME": str(tmp_path)}
    )
    assert isinstance(built, HashiCorpVaultProvider) and built.url == ADDR


def test_kv_version_from_the_environment(tmp_path: Path) -> None:
    """SIMPLETUNER_VAULT_KV_VERSION sets the version (config and argument win over it)."""
    assert make(tmp_path, {"VAULT_TOKEN": "t", "SIMPLETUNER_VAULT_KV_VERSION": "1"}).kv_version == 1
    assert (
        make(
            tmp_path, {"VAULT_TOKEN": "t", "SIMPLETUNER_VAULT_KV_VERSION": "1"}, kv_version=2
        ).kv_version
        == 2
    )
    with pytest.raises(ConfigurationError, match="kv_version"):
        make(tmp_path, {"VAULT_TOKEN": "t", "SIMPLETUNER_VAULT_KV_VERSION": "3"})


def test_token_file_setting_needs_no_token(tmp_path: Path) -> None:
    """SIMPLETUNER_VAULT_TOKEN_FILE alone is a complete token setting (an Agent sink)."""
    vault = make(tmp_path, {"SIMPLETUNER_VAULT_TOKEN_FILE": str(tmp_path / "sink")})
    assert isinstance(vault.auth, VaultTokenAuth)
    assert vault.auth.token_file == str(tmp_path / "sink") and vault.auth.token is None
    assert vault.missing_settings() == []


def test_agent_mode_needs_no_token_and_warns_for_nothing(tmp_path: Path) -> None:
    """Agent mode: nothing missing, no token shown in the repr."""
    vault = make(tmp_path, {"SIMPLETUNER_VAULT_AUTH": "agent"})
    assert vault.missing_settings() == [] and vault.is_available()
    assert "token=None" in repr(vault) and "auth='agent'" in repr(vault)


# -- paths -------------------------------------------------------------------------------


def test_several_paths_and_version_pins_are_parsed(tmp_path: Path) -> None:
    """'a, b@3 ,c' is three paths, b pinned to version 3; blanks around commas ignored."""
    vault = make(tmp_path, {"VAULT_TOKEN": "t"}, path=" a, b@3 ,c/ ")
    assert vault.paths == ("a", "b@3", "c")


@pytest.mark.parametrize("path", ["a,,b", "a@x", "a@0", "@2"])
def test_malformed_paths_are_refused(tmp_path: Path, path: str) -> None:
    """An empty path among commas, or a pin that is not a positive number: ConfigurationError."""
    with pytest.raises(ConfigurationError):
        make(tmp_path, {"VAULT_TOKEN": "t"}, path=path)


# -- secrets stay masked -------------------------------------------------------------------


def test_reprs_mask_login_secrets() -> None:
    """No auth object's repr shows a secret id, password or token."""
    shown = " ".join(
        repr(a)
        for a in (
            VaultAppRoleAuth("role", SECRET_ID),
            VaultUserpassAuth("alice", PASSWORD_SECRET),
            VaultTokenAuth(PASSWORD_SECRET),
        )
    )
    assert SECRET_ID not in shown and PASSWORD_SECRET not in shown
    assert "***" in shown


def test_a_refused_auth_setting_leaves_no_secret_in_frame_locals(tmp_path: Path) -> None:
    """An auth object refused for its settings raises without the password among the
    captured locals of any frame (what Sentry and --showlocals record)."""
    with pytest.raises(ConfigurationError) as info:
        VaultUserpassAuth("alice", PASSWORD_SECRET, password_file="/run/pw")
    assert PASSWORD_SECRET not in library_locals(info.value)
    with pytest.raises(ConfigurationError, match="vault_username") as info:
        make(
            tmp_path,
            {"SIMPLETUNER_VAULT_AUTH": "userpass", "SIMPLETUNER_VAULT_PASSWORD": PASSWORD_SECRET},
        )
    assert PASSWORD_SECRET not in library_locals(info.value)


def library_locals(error: BaseException) -> str:
    """The captured locals of the library's frames on ``error``'s traceback (the test's own
    frames hold the password on purpose)."""
    captured = traceback.TracebackException.from_exception(error, capture_locals=True)
    frames = [f for f in captured.stack if "simpletuner_secrets" in f.filename]
    assert frames, "no frame of the library on the traceback"
    return " ".join(repr(f.locals) for f in frames)


# -- the renewal plan ----------------------------------------------------------------------


@pytest.mark.parametrize("rand", [0.0, 0.5, 1.0])
def test_renewal_comes_at_about_two_thirds_jittered(rand: float) -> None:
    """A renewable token of 3600 s is renewed between 60% and 73.3% of its lease."""
    action = plan(
        now=100.0, issued_at=100.0, lease_s=3600, login_ttl_s=3600, renewable=True, rand=rand
    )
    assert action.kind == "renew"
    assert 100 + 0.6 * 3600 <= action.at <= 100 + 0.734 * 3600
    assert action.at == pytest.approx(100 + 3600 * (0.6 + 0.133 * rand))


def test_jitter_spreads_a_fleet() -> None:
    """Different random draws give different renewal times (a fleet does not renew at once)."""
    times = {
        plan(now=0, issued_at=0, lease_s=600, login_ttl_s=600, renewable=True, rand=r / 10).at
        for r in range(10)
    }
    assert len(times) == 10


def test_a_lease_cut_short_by_the_max_ttl_means_a_new_login() -> None:
    """A renewal answered with less than 90% of the login's TTL: next comes a login, at two
    thirds of what is left, before the max TTL ends the token."""
    action = plan(now=6.5, issued_at=6.5, lease_s=1.5, login_ttl_s=2.0, renewable=True, rand=0.5)
    assert action.kind == "login" and 6.5 < action.at < 8.0


def test_a_token_that_cannot_be_renewed_is_replaced_by_login() -> None:
    """renewable=false: a login at two thirds of the lease, never a renewal."""
    action = plan(now=0, issued_at=0, lease_s=60, login_ttl_s=60, renewable=False, rand=0.0)
    assert (action.kind, action.at) == ("login", 36.0)


def test_a_token_without_lease_needs_nothing() -> None:
    """lease 0 (a root or periodic-less token that never expires): no background action."""
    assert (
        plan(now=5, issued_at=0, lease_s=0, login_ttl_s=0, renewable=False, rand=0.3).kind == "none"
    )


@pytest.mark.parametrize(
    ("given", "level"),
    [
        ({"token": "s.unit-given-token-7d1e"}, "WARNING"),
        ({"config": {"vault_token": "s.unit-given-token-7d1e"}}, "WARNING"),
        ({"env": {"VAULT_TOKEN": "s.unit-given-token-7d1e"}}, "DEBUG"),
    ],
)
@pytest.mark.parametrize(
    "auth", [VaultAgentAuth(), VaultAppRoleAuth("role", secret_id=SECRET_ID)], ids=repr
)
def test_a_token_set_beside_another_auth_method_is_named_as_not_sent(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    given: dict[str, Any],
    level: str,
    auth: Any,
) -> None:
    """A token beside agent mode or a login method is not sent, and a log line says where it
    was set (WARNING when passed in, DEBUG from the environment), never its value."""
    caplog.set_level("DEBUG", logger="simpletuner_secrets")
    vault = make(
        tmp_path,
        given.get("env"),
        auth=auth,
        token=given.get("token"),
        config=given.get("config"),
    )
    lines = [r for r in caplog.records if "is not sent" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelname == level, caplog.text
    assert repr(auth.method) in lines[0].getMessage()
    assert "unit-given-token" not in caplog.text and "unit-given-token" not in repr(vault)
