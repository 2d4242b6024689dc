"""How the Vault provider gets a token: the auth methods (SPEC 8) and the settings that pick one.

Each method says where it logs in and with what body; the token's life after the login (when
to renew, when to log in again) is `_vault_token.TokenKeeper`'s. Login secrets (secret id,
JWT, password) are held `Masked`, read from their files at each login (a projected
service-account token rotates), and never appear in a repr or a message.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ConfigurationError
from ._common import Masked, first_setting, read_regular_file, text_setting

__all__ = [
    "AUTH_CONFIG_KEYS",
    "METHODS",
    "SERVICE_ACCOUNT_TOKEN",
    "VaultAgentAuth",
    "VaultAppRoleAuth",
    "VaultAuth",
    "VaultCertAuth",
    "VaultJWTAuth",
    "VaultKubernetesAuth",
    "VaultTokenAuth",
    "VaultUserpassAuth",
    "auth_from_settings",
    "bao_env",
    "read_secret_file",
]

#: Where Kubernetes mounts a pod's service-account token.
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
#: A secret file (token, secret id, JWT, password) larger than this is refused.
SECRET_FILE_LIMIT = 65_536

#: The `SecretsManager(config=...)` keys these settings read.
AUTH_CONFIG_KEYS = frozenset(
    {
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
        "vault_revoke_on_close",
    }
)

_TRUE = frozenset({"1", "t", "true", "y", "yes", "on"})
_FALSE = frozenset({"0", "f", "false", "n", "no", "off"})


def bao_env(env: Mapping[str, str], name: str) -> str | None:
    """``env[name]``, or for a ``VAULT_*`` name its ``BAO_*`` twin (OpenBao's CLI names)
    when ``VAULT_*`` is unset or blank."""
    value = text_setting(env.get(name))
    if value is None and name.startswith("VAULT_"):
        value = text_setting(env.get("BAO_" + name[len("VAULT_") :]))
    return value


def parse_flag(value: Any, what: str) -> bool | None:
    """A boolean setting: True/False, a usual word, or None when unset."""
    if value is None or isinstance(value, bool):
        return value
    text = (text_setting(value) or "").lower()
    if not text:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(f"vault: {what} must be true or false, not {text!r}")


def read_secret_file(path: str, what: str) -> tuple[Masked | None, str]:
    """Read a small secret file (token, secret id, JWT, password), stripped.

    Returns:
        ``(secret, "")``, or ``(None, problem)`` where the problem names the file and what
        is wrong with it, never its content (so that the caller can raise from a frame that
        holds no secret).
    """
    problem = ""
    try:
        raw, status = read_regular_file(Path(path), SECRET_FILE_LIMIT)
    except (FileNotFoundError, NotADirectoryError):
        return None, f"the {what} file {path} does not exist"
    except ValueError as exc:
        return None, f"the {what} file {path} {exc}"
    except OSError as exc:
        return None, f"the {what} file {path} cannot be read ({type(exc).__name__})"
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        problem = f"the {what} file {path} is not UTF-8 text"
        text = ""
    del raw
    if problem:
        return None, problem
    if not text:
        return None, f"the {what} file {path} is empty"
    if status.st_mode & (stat.S_IRWXG | stat.S_IRWXO) and what != "service-account token":
        # Kubernetes mounts the service-account token 0644 by design: no warning for it.
        problem = f"group-readable:{stat.S_IMODE(status.st_mode):04o}"
    return Masked(text), problem


class VaultAuth:
    """How the provider gets its token. Subclasses are the methods of SPEC 8.

    Attributes:
        method: The method's name (``approle``, ``kubernetes``...), as ``vault_auth`` says it.
        mount: The auth mount path (default: the method's name).
        logs_in: Whether the method logs in (a token so obtained is renewed, replaced when
            refused, and revoked on close); the token and Agent methods do not.
    """

    method: ClassVar[str] = ""
    logs_in: ClassVar[bool] = True
    mount: str = ""
    # A repr may be taken of an object whose __init__ raised half-way (a frame-locals
    # capture): every repr reads its attributes with getattr.

    def login_path(self) -> str:
        """The API path the login is sent to, under ``/v1/``."""
        return f"auth/{self.mount}/login"

    def login_body(self) -> tuple[dict[str, Any] | None, str]:
        """The login's JSON body (holding the login secret), or ``(None, problem)``."""
        return {}, ""

    def describe(self) -> str:
        """The method and its mount, for messages (``approle at auth/approle``)."""
        return f"{self.method} login at auth/{self.mount}" if self.logs_in else self.method

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mount={getattr(self, 'mount', None)!r})"


def _mount(mount: str | None, default: str) -> str:
    text = (text_setting(mount) or default).strip("/")
    if not text:
        raise ConfigurationError("vault: the auth mount must not be empty")
    return text


def _needs(value: Any, setting: str, method: str) -> str:
    text = text_setting(value)
    if text is None:
        raise ConfigurationError(f"vault: {method} auth needs {setting}")
    return text


def _one_of(value: str | None, file: str | None, what: str, setting: str) -> None:
    if value is not None and file is not None:
        raise ConfigurationError(f"vault: give the {what} or its file ({setting}), not both")


class VaultTokenAuth(VaultAuth):
    """A token given as a value, or read from a file re-read when it changes (an Agent sink).

    Args:
        token: The token.
        token_file: A file holding the token; re-read when it changes and after a 403.
    """

    method = "token"
    logs_in = False

    def __init__(self, token: str | None = None, token_file: str | None = None) -> None:
        self.mount = "token"
        self.token = Masked(token) if token is not None and text_setting(token) else None
        self.token_file = text_setting(token_file)
        del token

    def describe(self) -> str:
        return f"token file {self.token_file}" if self.token_file else "token"

    def __repr__(self) -> str:
        return f"VaultTokenAuth(token={'***' if getattr(self, 'token', None) else None!r}, token_file={getattr(self, 'token_file', None)!r})"


class VaultAgentAuth(VaultAuth):
    """No token: a Vault Agent or OpenBao Proxy with ``use_auto_auth_token`` adds its own."""

    method = "agent"
    logs_in = False

    def __init__(self) -> None:
        self.mount = ""

    def __repr__(self) -> str:
        return "VaultAgentAuth()"


class VaultAppRoleAuth(VaultAuth):
    """AppRole: a role id and a secret id (a value or a file, optionally response-wrapped).

    Args:
        role_id: The role id (not a secret by itself).
        secret_id: The secret id, or with ``wrapped`` a response-wrapping token for it.
        secret_id_file: A file holding the secret id (re-read at each login).
        wrapped: The secret id is a wrapping token, unwrapped once (its secret id is kept).
        mount: The AppRole mount.
    """

    method = "approle"

    def __init__(
        self,
        role_id: str,
        secret_id: str | None = None,
        secret_id_file: str | None = None,
        wrapped: bool = False,
        mount: str = "approle",
    ) -> None:
        try:
            _one_of(text_setting(secret_id), text_setting(secret_id_file), "secret id", "")
            self.role_id = _needs(role_id, "a role id (vault_role_id)", "approle")
            self.mount = _mount(mount, "approle")
        except ConfigurationError as exc:
            error = exc.with_traceback(None)
        else:
            self.secret_id = Masked(secret_id) if secret_id and text_setting(secret_id) else None
            self.secret_id_file = text_setting(secret_id_file)
            self.wrapped = bool(wrapped)
            self.unwrapped: Masked | None = None
            return
        del secret_id
        raise error

    def secret(self) -> tuple[Masked | None, str]:
        """The secret id (or the wrapping token) as given or read from its file."""
        if self.secret_id_file is not None:
            secret, problem = read_secret_file(self.secret_id_file, "secret id")
            return secret, "" if problem.startswith("group-readable") else problem
        return self.secret_id, ""

    def login_body(self) -> tuple[dict[str, Any] | None, str]:
        if self.unwrapped is not None:
            secret: Masked | None = self.unwrapped
        elif self.wrapped:
            return None, "the wrapped secret id was not unwrapped"
        else:
            secret, problem = self.secret()
            if secret is None and problem:
                return None, problem
        body: dict[str, Any] = {"role_id": self.role_id}
        if secret is not None:
            body["secret_id"] = secret.reveal()  # a role may bind no secret id
        return body, ""

    def __repr__(self) -> str:
        return (
            f"VaultAppRoleAuth(role_id={getattr(self, 'role_id', None)!r}, "
            f"secret_id={'***' if getattr(self, 'secret_id', None) else None!r}, "
            f"secret_id_file={getattr(self, 'secret_id_file', None)!r}, wrapped={getattr(self, 'wrapped', None)!r}, "
            f"mount={getattr(self, 'mount', None)!r})"
        )


class VaultJWTAuth(VaultAuth):
    """JWT/OIDC: a role and a file holding a JWT (re-read at each login).

    Args:
        role: The JWT role.
        jwt_file: The file holding the JWT.
        mount: The JWT mount.
    """

    method = "jwt"
    _what = "JWT"

    def __init__(self, role: str, jwt_file: str, mount: str = "jwt") -> None:
        self.role = _needs(role, "a role (vault_role)", self.method)
        self.jwt_file = _needs(jwt_file, "a JWT file (vault_jwt_file)", self.method)
        self.mount = _mount(mount, self.method)

    def login_body(self) -> tuple[dict[str, Any] | None, str]:
        jwt, problem = read_secret_file(self.jwt_file, self._what)
        if jwt is None:
            return None, problem
        return {"role": self.role, "jwt": jwt.reveal()}, ""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(role={getattr(self, 'role', None)!r}, jwt_file={getattr(self, 'jwt_file', None)!r}, "
            f"mount={getattr(self, 'mount', None)!r})"
        )


class VaultKubernetesAuth(VaultJWTAuth):
    """Kubernetes: a role and the pod's service-account token (re-read at each login).

    Args:
        role: The Kubernetes auth role.
        jwt_file: The service-account token file.
        mount: The Kubernetes mount.
    """

    method = "kubernetes"
    _what = "service-account token"

    def __init__(
        self, role: str, jwt_file: str = SERVICE_ACCOUNT_TOKEN, mount: str = "kubernetes"
    ) -> None:
        super().__init__(role, jwt_file or SERVICE_ACCOUNT_TOKEN, mount)


class VaultCertAuth(VaultAuth):
    """TLS certificate: the client certificate and key sent in the TLS handshake.

    Args:
        cert_file: The client certificate (PEM).
        key_file: Its private key (PEM).
        name: The certificate role to log in with (any matching one when None).
        mount: The cert mount.
    """

    method = "cert"

    def __init__(
        self, cert_file: str, key_file: str, name: str | None = None, mount: str = "cert"
    ) -> None:
        self.cert_file = _needs(cert_file, "a client certificate (VAULT_CLIENT_CERT)", "cert")
        self.key_file = _needs(key_file, "a client key (VAULT_CLIENT_KEY)", "cert")
        self.name = text_setting(name)
        self.mount = _mount(mount, "cert")

    def login_body(self) -> tuple[dict[str, Any] | None, str]:
        return ({"name": self.name} if self.name else {}), ""

    def __repr__(self) -> str:
        return (
            f"VaultCertAuth(cert_file={getattr(self, 'cert_file', None)!r}, key_file={getattr(self, 'key_file', None)!r}, "
            f"name={getattr(self, 'name', None)!r}, mount={getattr(self, 'mount', None)!r})"
        )


class VaultUserpassAuth(VaultAuth):
    """Userpass: a user name and a password (a value or a file).

    Args:
        username: The user name.
        password: The password.
        password_file: A file holding the password (re-read at each login).
        mount: The userpass mount.
    """

    method = "userpass"

    def __init__(
        self,
        username: str,
        password: str | None = None,
        password_file: str | None = None,
        mount: str = "userpass",
    ) -> None:
        try:
            _one_of(text_setting(password), text_setting(password_file), "password", "")
            self.username = _needs(username, "a user name (vault_username)", "userpass")
            if text_setting(password) is None and text_setting(password_file) is None:
                raise ConfigurationError(
                    "vault: userpass auth needs a password (vault_password or vault_password_file)"
                )
            self.mount = _mount(mount, "userpass")
        except ConfigurationError as exc:
            error = exc.with_traceback(None)
        else:
            self.password = Masked(password) if password and text_setting(password) else None
            self.password_file = text_setting(password_file)
            return
        del password
        raise error

    def login_path(self) -> str:
        return f"auth/{self.mount}/login/{self.username}"

    def login_body(self) -> tuple[dict[str, Any] | None, str]:
        if self.password_file is not None:
            password, problem = read_secret_file(self.password_file, "password")
            if password is None:
                return None, problem
        else:
            password = self.password
        assert password is not None
        return {"password": password.reveal()}, ""

    def __repr__(self) -> str:
        return (
            f"VaultUserpassAuth(username={getattr(self, 'username', None)!r}, "
            f"password={'***' if getattr(self, 'password', None) else None!r}, "
            f"password_file={getattr(self, 'password_file', None)!r}, mount={getattr(self, 'mount', None)!r})"
        )


#: The ``vault_auth`` values.
METHODS = ("token", "approle", "kubernetes", "jwt", "cert", "userpass", "agent")


def auth_from_settings(
    cfg: Mapping[str, Any], env: Mapping[str, str], token: Masked | None
) -> VaultAuth:
    """The auth method the settings pick (SPEC 8's table); config wins over the environment.

    Args:
        cfg: The ``config`` mapping.
        env: The environment.
        token: The token the provider resolved (argument, config, VAULT_TOKEN,
            ~/.vault-token), for the token method.

    Raises:
        ConfigurationError: An unknown method, or one whose settings are incomplete.
    """

    def get(key: str, *names: str) -> str | None:
        return first_setting(cfg.get(key), *(bao_env(env, n) for n in names))

    method = (get("vault_auth", "SIMPLETUNER_VAULT_AUTH") or "token").lower()
    if method not in METHODS:
        raise ConfigurationError(
            f"vault: unknown auth method {method!r}; one of {', '.join(METHODS)}"
        )
    mount = get("vault_auth_mount", "SIMPLETUNER_VAULT_AUTH_MOUNT") or method
    role = get("vault_role", "SIMPLETUNER_VAULT_ROLE")
    if method == "token":
        token_file = get("vault_token_file", "SIMPLETUNER_VAULT_TOKEN_FILE")
        if token is not None:
            return VaultTokenAuth(token.reveal())
        return VaultTokenAuth(token_file=token_file)
    if method == "agent":
        return VaultAgentAuth()
    if method == "approle":
        wrapped = parse_flag(
            first_setting(
                cfg.get("vault_secret_id_wrapped"), env.get("SIMPLETUNER_VAULT_SECRET_ID_WRAPPED")
            ),
            "vault_secret_id_wrapped",
        )
        secret_id = get("vault_secret_id", "SIMPLETUNER_VAULT_SECRET_ID")
        secret_id_file = get("vault_secret_id_file", "SIMPLETUNER_VAULT_SECRET_ID_FILE")
        auth: VaultAuth = VaultAppRoleAuth(
            get("vault_role_id", "SIMPLETUNER_VAULT_ROLE_ID") or "",
            secret_id,
            secret_id_file,
            wrapped=bool(wrapped),
            mount=mount,
        )
        del secret_id
        return auth
    if method == "kubernetes":
        return VaultKubernetesAuth(
            role or "",
            get("vault_jwt_file", "SIMPLETUNER_VAULT_JWT_FILE") or SERVICE_ACCOUNT_TOKEN,
            mount,
        )
    if method == "jwt":
        return VaultJWTAuth(
            role or "", get("vault_jwt_file", "SIMPLETUNER_VAULT_JWT_FILE") or "", mount
        )
    if method == "cert":
        return VaultCertAuth(
            get("vault_client_cert", "VAULT_CLIENT_CERT") or "",
            get("vault_client_key", "VAULT_CLIENT_KEY") or "",
            role,
            mount,
        )
    password = get("vault_password", "SIMPLETUNER_VAULT_PASSWORD")
    auth = VaultUserpassAuth(
        get("vault_username", "SIMPLETUNER_VAULT_USERNAME") or "",
        password,
        get("vault_password_file", "SIMPLETUNER_VAULT_PASSWORD_FILE"),
        mount,
    )
    del password
    return auth
