"""HashiCorpVaultProvider: KV secrets (v2 or v1) from HashiCorp Vault or OpenBao, via hvac.

hvac blocks, so every hvac call, client creation and the hvac import included, runs in a
worker thread, and so does everything done with an answer (its JSON parsed, its values
turned into text), every login and every renewal: the event loop only waits. At most four
such threads run per event loop, each slot held until its thread really returns, and every
load has a total deadline (hvac's own timeout is per receive): a watchdog thread shuts the
load's sockets down when it passes (_vault_http.py). Redirects are never followed, since the
token header would go along to wherever they point. How the token is obtained and kept alive
is in _vault_auth.py and _vault_token.py.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import _fork
from .._events import EventKind, LoopRelay
from .._threads import run_sync
from ..errors import ConfigurationError, ProviderError
from ._common import (
    Masked,
    WarnOnce,
    convert_document,
    display_url,
    first_setting,
    is_loopback_host,
    missing_extra_reason,
    read_regular_file,
    text_setting,
)
from ._vault_auth import (
    AUTH_CONFIG_KEYS,
    VaultAgentAuth,
    VaultAppRoleAuth,
    VaultAuth,
    VaultCertAuth,
    VaultJWTAuth,
    VaultKubernetesAuth,
    VaultTokenAuth,
    VaultUserpassAuth,
    auth_from_settings,
    bao_env,
    parse_flag,
)
from ._vault_http import (
    ERROR_BODY_LIMIT,
    INSTALL_HINT,
    WORKERS,
    Deadline,
    Refusal,
    decode,
    folder_context,
    guarded,
    hvac_installed,
    import_hvac,
    request,
    session_type,
)
from ._vault_token import TokenKeeper
from .base import DocumentSecretProvider, LeftOut

__all__ = [
    "HashiCorpVaultProvider",
    "VaultAgentAuth",
    "VaultAppRoleAuth",
    "VaultAuth",
    "VaultCertAuth",
    "VaultJWTAuth",
    "VaultKubernetesAuth",
    "VaultTokenAuth",
    "VaultUserpassAuth",
]

logger = logging.getLogger(__name__)

DEFAULT_PATH = "simpletuner"
DEFAULT_MOUNT = "secret"
#: Larger answers are refused (like the file provider's max_file_size).
DEFAULT_MAX_DOCUMENT_SIZE = 1_048_576
#: A token file larger than this is not a token file.
TOKEN_FILE_LIMIT = 65_536
_TRUE = frozenset({"1", "t", "true", "y", "yes", "on"})
_FALSE = frozenset({"0", "f", "false", "n", "no", "off"})


def _hvac_installed() -> bool:
    # Looked up in this module at each call, so that tests can pretend hvac is missing.
    return hvac_installed()


def _parse_verify(text: str) -> bool | str:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    return text  # a CA bundle file or directory


def _parse_kv_version(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or str(value).strip() not in ("1", "2"):
        raise ConfigurationError(f"vault: kv_version must be 1, 2 or None, not {value!r}")
    return int(str(value).strip())


@dataclass(frozen=True)
class _Source:
    """One secret path of the document, and the KV v2 version it pins (``path@N``)."""

    path: str
    version: int | None = None


def _parse_paths(text: str) -> tuple[_Source, ...]:
    sources = []
    for raw in text.split(","):
        item = raw.strip().strip("/")
        path, at, pin = item.rpartition("@")
        if not at:
            path, pin = item, ""
        path = path.strip().strip("/")
        if not path:
            raise ConfigurationError(
                f"vault: an empty secret path in {text!r} (paths are comma-separated)"
            )
        version: int | None = None
        if at:
            if not pin.strip().isdigit() or int(pin) < 1:
                raise ConfigurationError(
                    f"vault: {item!r}: a version pin is @N with N a positive whole number"
                )
            version = int(pin)
        sources.append(_Source(path, version))
    return tuple(sources)


@dataclass(frozen=True)
class _Read:
    """What one read of the secret came to. It never holds the answer's text: an error about
    a malformed answer is raised from a frame that holds no value."""

    document: dict[str, str] | None = None  # the secret, converted
    refusal: Refusal | None = None  # the request failed
    problem: str = ""  # the answer is malformed: what is wrong, never a value


def _unused_token(argument: Any, cfg: Mapping[str, Any], method: str) -> None:
    """Say that a token set beside another auth method is not sent (where it was set, never
    its value): WARNING when the caller passed it, DEBUG when it is only in the environment
    (a shell's VAULT_TOKEN beside a service's own login)."""
    if text_setting(argument) is not None:
        where, level = "the token argument", logging.WARNING
    elif text_setting(cfg.get("vault_token")) is not None:
        where, level = "the vault_token setting", logging.WARNING
    else:
        where, level = "VAULT_TOKEN or BAO_TOKEN", logging.DEBUG
    how = "the Agent or Proxy adds its own" if method == "agent" else f"a {method} login gets one"
    logger.log(
        level, "vault: a token is set (%s) but auth is %r: it is not sent; %s", where, method, how
    )


class HashiCorpVaultProvider(DocumentSecretProvider):
    """Secrets in KV secrets of HashiCorp Vault (or OpenBao): ``<mount>/<path>[,<path>...]``.

    The secret is the document; every key is answered from it. With several comma-separated
    paths on the mount, each is read and an earlier path wins on the same key; ``path@N``
    reads version N of a KV v2 secret. Before the first read the mount's KV version is asked
    of ``sys/internal/ui/mounts/<mount>`` (as the vault CLI does), so a least-privilege token
    reads a KV v1 mount too; ``kv_version`` (``SIMPLETUNER_VAULT_KV_VERSION``) skips that. A
    403 never falls back to another version: it raises `ProviderError` naming the token's
    source and policies.

    A missing secret is an empty document, logged once at WARNING (again only after it was
    found in between). A missing mount is a configuration mistake, not an empty document: it
    raises `ProviderError` naming the mount.

    Authentication (SPEC 8): ``auth`` is one of `VaultTokenAuth` (the default: the token
    argument, ``vault_token``, ``VAULT_TOKEN``, ``~/.vault-token``, or a token file re-read
    when it changes), `VaultAppRoleAuth`, `VaultKubernetesAuth`, `VaultJWTAuth`,
    `VaultCertAuth`, `VaultUserpassAuth`, `VaultAgentAuth`; with ``auth=None`` it is built
    from ``config`` then the environment (``vault_auth`` / ``SIMPLETUNER_VAULT_AUTH`` and the
    table of the README). A login method logs in on first use, in a worker thread, once for
    every task, thread and event loop; its token is renewed in the background at about two
    thirds of its TTL, replaced by a new login when renewal is refused or the max TTL is
    near, and after a 403 at most one new login and one retry happen per backoff window.
    `aclose` revokes a token obtained by login (``revoke_on_close``), never a given one.

    Settings: an argument wins over ``config`` (``vault_url``, ``vault_token``, ``vault_path``,
    ``vault_mount_point``, ``vault_namespace``, ``vault_verify``, ``vault_kv_version``, and
    the auth keys), which wins over the environment (``VAULT_ADDR``, ``VAULT_TOKEN`` then
    ``~/.vault-token``, ``SIMPLETUNER_VAULT_PATH``, ``SIMPLETUNER_VAULT_MOUNT``,
    ``SIMPLETUNER_VAULT_KV_VERSION``, ``VAULT_NAMESPACE``, ``VAULT_SKIP_VERIFY``,
    ``VAULT_CACERT``, ``VAULT_CAPATH``, ``VAULT_CLIENT_CERT``, ``VAULT_CLIENT_KEY``). Every
    ``VAULT_*`` variable is also read as ``BAO_*``; ``VAULT_*`` wins when both are set. Blank
    counts as unset at every level, ``verify`` included. A truthy ``VAULT_SKIP_VERIFY`` wins
    over a CA setting, as with the vault CLI. A CA folder (``VAULT_CAPATH``) is read file by
    file: every PEM certificate in it is trusted, no ``openssl rehash`` needed.

    ``~/.vault-token`` is read only when it is a regular file of at most 64 KiB (opened
    without blocking, so a FIFO cannot hang the constructor); one readable by group or others
    is used with a WARNING naming it. An ``http://`` address that is not loopback logs one
    WARNING when a token is set: the token would cross the network in clear. Tokens and login
    secrets are kept masked: no repr, ``vars()`` or captured frame locals of the library show
    them.

    Args:
        url: The Vault address, ``http(s)://host:port``.
        token: The Vault token (the token method).
        path: The secret's path inside the mount (default ``simpletuner``); several
            comma-separated, ``path@N`` for a KV v2 version.
        mount_point: The KV mount (default ``secret``).
        namespace: The Vault namespace, sent as ``X-Vault-Namespace`` (logins included).
        verify: TLS verification: True, False, or a CA bundle file or folder.
        kv_version: 1 or 2 to skip the version detection.
        auth: The auth method (built from the settings when None).
        revoke_on_close: Revoke a token obtained by login on `aclose` (default true;
            ``vault_revoke_on_close``).
        timeout: Seconds one load may take in all (connecting and every read of every
            request it makes, a login included): a total deadline, not a per-read one.
        max_document_size: Larger answers are refused with `ProviderError` (default 1 MiB).
        config: Settings by config key (see above).
        environ: The environment to read settings from (defaults to ``os.environ``); its
            ``HOME``, when present, locates ``~/.vault-token``.
        name: This provider's name in the chain (default ``vault``).

    Raises:
        ImportError: hvac is not installed (the message names the ``[vault]`` extra).
        ConfigurationError: A setting is invalid (an address that is not http(s), a
            ``kv_version`` other than 1 or 2, an empty path, a bad ``@N``, an unknown or
            incomplete auth method, a token file that is not a small regular file).
        ValueError: ``max_document_size`` is not positive.
    """

    name = "vault"
    config_keys = frozenset(
        {
            "vault_url",
            "vault_token",
            "vault_path",
            "vault_mount_point",
            "vault_namespace",
            "vault_verify",
            "vault_kv_version",
            *AUTH_CONFIG_KEYS,
        }
    )

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        path: str | None = None,
        mount_point: str | None = None,
        *,
        namespace: str | None = None,
        verify: bool | str | None = None,
        kv_version: int | None = None,
        auth: VaultAuth | None = None,
        revoke_on_close: bool | None = None,
        timeout: float = 10.0,
        max_document_size: int = DEFAULT_MAX_DOCUMENT_SIZE,
        config: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        try:
            self._settle(
                url=url,
                token=token,
                path=path,
                mount_point=mount_point,
                namespace=namespace,
                verify=verify,
                kv_version=kv_version,
                auth=auth,
                revoke_on_close=revoke_on_close,
                timeout=timeout,
                max_document_size=max_document_size,
                cfg=config or {},
                env=os.environ if environ is None else environ,
            )
        except (ImportError, ConfigurationError, ValueError) as exc:
            # Dropping the traceback drops the frames that held the settings.
            error = exc.with_traceback(None)
        else:
            return
        # Raised from this frame without the token, the config or the environment among its
        # locals: a frame-locals capture (Sentry, pytest --showlocals) would print them.
        del token, config, environ
        raise error

    def _settle(
        self,
        *,
        url: str | None,
        token: str | None,
        path: str | None,
        mount_point: str | None,
        namespace: str | None,
        verify: bool | str | None,
        kv_version: int | None,
        auth: VaultAuth | None,
        revoke_on_close: bool | None,
        timeout: float,
        max_document_size: int,
        cfg: Mapping[str, Any],
        env: Mapping[str, str],
    ) -> None:
        if not _hvac_installed():
            raise ImportError(f"the vault provider needs hvac: {INSTALL_HINT}")
        if max_document_size <= 0:
            raise ValueError("vault: max_document_size must be positive")
        url = first_setting(url, cfg.get("vault_url"), bao_env(env, "VAULT_ADDR"))
        if url is not None:
            if urlsplit(url).scheme not in ("http", "https"):
                raise ConfigurationError(
                    f"vault: the address {display_url(url)!r} must start with http:// or https://"
                )
            url = url.rstrip("/")
        self.url = url
        given = first_setting(token, cfg.get("vault_token"), bao_env(env, "VAULT_TOKEN"))
        chosen = first_setting(cfg.get("vault_auth"), env.get("SIMPLETUNER_VAULT_AUTH"))
        token_file = first_setting(
            cfg.get("vault_token_file"), env.get("SIMPLETUNER_VAULT_TOKEN_FILE")
        )
        if given is not None:
            self._token: Masked | None = Masked(given)
        elif auth is None and (chosen or "token").lower() == "token" and token_file is None:
            self._token = self._token_from_file(env)
        else:
            self._token = None
        del given
        self.auth = auth if auth is not None else auth_from_settings(cfg, env, self._token)
        if isinstance(self.auth, VaultTokenAuth) and self.auth.token is not None:
            self._token = self.auth.token
        elif self._token is not None and not isinstance(self.auth, VaultTokenAuth):
            _unused_token(token, cfg, self.auth.method)
            self._token = None
        self.path = (
            first_setting(path, cfg.get("vault_path"), env.get("SIMPLETUNER_VAULT_PATH"))
            or DEFAULT_PATH
        ).strip("/")
        self.mount_point = (
            first_setting(
                mount_point, cfg.get("vault_mount_point"), env.get("SIMPLETUNER_VAULT_MOUNT")
            )
            or DEFAULT_MOUNT
        ).strip("/")
        if not self.path or not self.mount_point:
            raise ConfigurationError("vault: the secret path and the mount must not be empty")
        self._sources = _parse_paths(self.path)
        self.namespace = first_setting(
            namespace, cfg.get("vault_namespace"), bao_env(env, "VAULT_NAMESPACE")
        )
        self.verify = self._resolve_verify(verify, cfg, env)
        self._explicit_kv_version = _parse_kv_version(
            first_setting(
                kv_version, cfg.get("vault_kv_version"), env.get("SIMPLETUNER_VAULT_KV_VERSION")
            )
        )
        if self._explicit_kv_version == 1 and any(s.version for s in self._sources):
            raise ConfigurationError("vault: path@N pins a KV v2 version; the mount is KV v1")
        self._kv_version = self._explicit_kv_version
        flag = parse_flag(
            revoke_on_close if revoke_on_close is not None else cfg.get("vault_revoke_on_close"),
            "revoke_on_close",
        )
        self.revoke_on_close = True if flag is None else flag
        if isinstance(self.auth, VaultCertAuth):
            self._client_cert: tuple[str, str] | None = (self.auth.cert_file, self.auth.key_file)
        else:
            cert = first_setting(cfg.get("vault_client_cert"), bao_env(env, "VAULT_CLIENT_CERT"))
            key = first_setting(cfg.get("vault_client_key"), bao_env(env, "VAULT_CLIENT_KEY"))
            self._client_cert = (cert, key) if cert and key else None
        self.timeout = timeout
        self.max_document_size = max_document_size
        self._client: Any = None
        self._client_lock = threading.Lock()
        # Logins and renewals happen in worker threads; their events reach the manager's
        # listeners on the loop that last loaded (SPEC 10: `login`, `token_renewed`).
        self._events = LoopRelay()
        self._keeper = TokenKeeper(
            self.auth, self._client_or_create, url=url or "", timeout=timeout, events=self._events
        )
        _fork.track(self)
        self._warned = WarnOnce()
        # The deadlines of this provider's loads in flight, so that aclose can cut them.
        self._loads: set[Deadline] = set()
        self._loads_lock = threading.Lock()
        sends_token = self._token is not None or self.auth.logs_in
        if url is not None and sends_token:
            parts = urlsplit(url)
            if parts.scheme == "http" and not is_loopback_host(parts.hostname):
                logger.warning(
                    "vault: the address %s is plain http://: the token and every secret "
                    "cross the network unencrypted; use https://",
                    display_url(url),
                )

    @classmethod
    def from_settings(
        cls, config: Mapping[str, Any], environ: Mapping[str, str]
    ) -> HashiCorpVaultProvider | LeftOut:
        """The Vault provider of the default chain, when an address is set.

        Left out (debug) with no ``vault_url`` / ``VAULT_ADDR`` / ``BAO_ADDR``; (warning) when
        a setting is malformed or partial (an address and no token), or an address is set but
        hvac is not installed (the warning names the ``[vault]`` extra).
        """
        if not (config.get("vault_url") or bao_env(environ, "VAULT_ADDR")):
            return LeftOut(cls.name, "no vault_url / VAULT_ADDR set (extra [vault])")
        try:
            provider = cls(config=config, environ=environ)
        except ImportError as exc:
            return LeftOut(cls.name, missing_extra_reason(exc), logging.WARNING)
        except ConfigurationError as exc:
            return LeftOut(cls.name, str(exc), logging.WARNING)
        missing = provider.missing_settings()
        if missing:
            return LeftOut(
                cls.name,
                f"its settings are partial, missing {', '.join(missing)}",
                logging.WARNING,
            )
        return provider

    def reset_after_fork(self) -> None:
        """In a forked child: the parent's hvac session shares its pooled sockets; it is
        dropped, and the child opens its own; the parent's loads in flight are not the
        child's to cut."""
        self._client = None
        self._client_lock = threading.Lock()
        self._loads = set()
        self._loads_lock = threading.Lock()
        self._events.forget_loop()

    # -- settings ----------------------------------------------------------------------

    @staticmethod
    def _token_from_file(env: Mapping[str, str]) -> Masked | None:
        home = text_setting(env.get("HOME"))
        token_file = (Path(home) if home is not None else Path.home()) / ".vault-token"
        problem = ""
        token: str | None = None
        try:
            raw, status = read_regular_file(token_file, TOKEN_FILE_LIMIT)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except ValueError as exc:
            problem = str(exc)  # not a regular file, or too large
        except OSError as exc:
            problem = f"cannot be read ({type(exc).__name__})"
        if not problem:
            try:
                token = text_setting(raw.decode("utf-8"))
            except UnicodeDecodeError:
                problem = "is not UTF-8 text"
        if problem:
            raise ConfigurationError(f"vault: the token file {token_file} {problem}; refused")
        if token is None:
            return None
        if status.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            logger.warning(
                "vault: the token file %s can be read or changed by group or others "
                "(mode %04o); make it 0600",
                token_file,
                stat.S_IMODE(status.st_mode),
            )
        return Masked(token)

    @staticmethod
    def _resolve_verify(
        verify: bool | str | None, cfg: Mapping[str, Any], env: Mapping[str, str]
    ) -> bool | str:
        # Blank means unset here too: requests reads verify="" as False, verification off.
        for value in (verify, cfg.get("vault_verify")):
            if isinstance(value, bool):
                return value
            text = text_setting(value)
            if text is not None:
                return _parse_verify(text)
        if (bao_env(env, "VAULT_SKIP_VERIFY") or "").lower() in _TRUE:
            return False
        ca = first_setting(bao_env(env, "VAULT_CACERT"), bao_env(env, "VAULT_CAPATH"))
        return ca if ca is not None else True

    @property
    def kv_version(self) -> int | None:
        """The KV version used: given, or detected by the first load (None until then)."""
        return self._kv_version

    @property
    def paths(self) -> tuple[str, ...]:
        """The secret paths read, earliest (winning) first, each with its ``@N`` pin."""
        return tuple(
            s.path if s.version is None else f"{s.path}@{s.version}" for s in self._sources
        )

    def missing_settings(self) -> list[str]:
        """Name the settings still needed before the provider can be used.

        Returns:
            ``["VAULT_ADDR"]``, ``["VAULT_TOKEN"]``, both, or ``[]`` when complete. A login
            method, a token file or Agent mode needs no token.
        """
        missing = []
        if self.url is None:
            missing.append("VAULT_ADDR")
        auth = self.auth
        if isinstance(auth, VaultTokenAuth) and auth.token is None and auth.token_file is None:
            missing.append("VAULT_TOKEN")
        return missing

    def is_available(self) -> bool:
        """Return whether hvac is importable and an address and a way to a token are set."""
        return not self.missing_settings() and _hvac_installed()

    def bind_events(self, emit: Callable[[EventKind], None]) -> None:
        """Report ``login`` and ``token_renewed`` to ``emit`` (the `EventSource` protocol;
        the manager calls this once).

        Logins and renewals run in worker threads: each event is handed to the event loop
        that last loaded this provider and ``emit`` runs there, so a listener never holds up
        a renewal. An event carries the kind alone, never the token.
        """
        self._events.bind(emit)

    def auth_status(self) -> dict[str, Any]:
        """The auth method, its mount, the token's remaining TTL and the login and renewal
        counters, without I/O; never a token or a login secret.

        Returns:
            ``method``, ``mount``, ``ttl_remaining_s`` (None: unknown or never expires),
            ``logins``, ``renewals``, ``renewal_failures``, ``forced_logins``.
        """
        return self._keeper.status()

    def __repr__(self) -> str:
        # getattr: an error tracker may repr a provider whose __init__ raised half-way.
        raw_url = getattr(self, "url", None)
        url = display_url(raw_url) if raw_url is not None else None
        token = "***" if getattr(self, "_token", None) is not None else None
        keeper: TokenKeeper | None = getattr(self, "_keeper", None)
        auth = ""
        if keeper is not None:
            status = keeper.status()
            auth = f", auth={status['method']!r}"
            if keeper.auth.logs_in:
                auth += f", auth_mount={status['mount']!r}"
                auth += f", token_ttl_s={status['ttl_remaining_s']!r}"
        return (
            f"{type(self).__name__}(url={url!r}, "
            f"mount_point={getattr(self, 'mount_point', None)!r}, "
            f"path={getattr(self, 'path', None)!r}, "
            f"namespace={getattr(self, 'namespace', None)!r}, token={token!r}{auth})"
        )

    # -- loading -----------------------------------------------------------------------

    async def load_document(self) -> Mapping[str, str]:
        """Read the secrets from Vault in a worker thread, with no caching.

        The answer is parsed and converted in that thread too, so a large document does not
        stall the event loop; a login, when one is due, happens there as well.

        Returns:
            The normalized document (earlier paths winning); empty when no secret exists.

        Raises:
            ConfigurationError: The address or the token is missing.
            ProviderError: Vault refused (403 and other errors), could not be reached within
                the timeout, redirected, has no such mount, the login failed, or it sent
                something that is not a secret or is larger than ``max_document_size``.
        """
        missing = self.missing_settings()
        if missing:
            raise ConfigurationError(f"vault: missing settings: {', '.join(missing)}")
        self._events.note_loop()
        # A caller's timeout (the manager's provider_timeout) ends the wait at once; the
        # thread goes on until its load's deadline at most, holding its worker slot.
        document, absent = await WORKERS.run(self._load_blocking)
        for path, where in absent.items():
            if self._warned.first(("missing", path)):
                logger.warning(
                    "vault: no secret at %s on %s; using an empty document",
                    where,
                    display_url(self.url or ""),
                )
        for source in self._sources:
            if source.path not in absent:
                self._warned.clear(("missing", source.path))
        return document

    def _client_or_create(self) -> Any:
        client = self._client
        if client is None:
            with self._client_lock:
                client = self._client
                if client is None:
                    client = self._new_client()
                    self._client = client
        return client

    def _new_client(self) -> Any:
        verify = self.verify
        context = None
        if isinstance(verify, str):
            where = Path(verify)
            if not where.exists():
                raise ProviderError(
                    f"vault: the CA file {verify} (VAULT_CACERT / VAULT_CAPATH / verify) "
                    "does not exist",
                    provider=self.name,
                )
            if where.is_dir():
                try:
                    context = folder_context(where, self._client_cert)
                except (ValueError, OSError) as exc:
                    raise ProviderError(f"vault: {exc}", provider=self.name) from None
        if self._client_cert is not None:
            for part in self._client_cert:
                if not Path(part).is_file():
                    raise ProviderError(
                        f"vault: the client certificate file {part} does not exist",
                        provider=self.name,
                    )
        hvac = import_hvac()
        session = session_type()(context)
        session.verify = verify
        if self._client_cert is not None:
            session.cert = self._client_cert
        return hvac.Client(
            url=self.url,
            token="",  # sent per request, from the token keeper
            namespace=self.namespace,
            verify=verify,
            timeout=self.timeout,
            allow_redirects=False,
            session=session,
            cert=self._client_cert,
            # The plain adapter: hvac's JSON one would read and parse a whole answer before
            # its size is known.
            adapter=hvac.adapters.RawAdapter,
        )

    def _load_blocking(self) -> tuple[dict[str, str], dict[str, str]]:
        """One load under its total deadline; runs in a worker thread."""
        deadline = Deadline(self.timeout)
        with self._loads_lock:
            self._loads.add(deadline)
        try:
            with guarded(deadline):
                return self._load_within(deadline)
        finally:
            with self._loads_lock:
                self._loads.discard(deadline)

    def _load_within(self, deadline: Deadline) -> tuple[dict[str, str], dict[str, str]]:
        """Read every path (detecting the KV version first if needed), earlier paths winning.

        Returns:
            The merged document, and the paths that hold no secret (with their API path).
        """
        client = self._client_or_create()
        keeper = self._keeper
        token, generation = keeper.token(deadline)
        if self._kv_version is None:
            self._detect_version(client, deadline, token, generation)
        del token, generation
        merged: dict[str, str] = {}
        absent: dict[str, str] = {}
        for source in reversed(self._sources):  # the earliest path is merged last: it wins
            document, where = self._read_source(client, deadline, source)
            if document is None:
                absent[source.path] = where
            else:
                merged.update(document)
        keeper.succeeded()
        return merged, absent

    def _read_source(
        self, client: Any, deadline: Deadline, source: _Source
    ) -> tuple[dict[str, str] | None, str]:
        """One path: its converted document (None when no secret is there) and API path."""
        version = self._kv_version
        if version == 1 and source.version is not None:
            raise ProviderError(
                f"vault: {source.path}@{source.version} pins a KV v2 version, but the mount "
                f"{self.mount_point!r} is KV v1",
                provider=self.name,
            )
        if version == 2:
            where = f"{self.mount_point}/data/{source.path}"
            params = {"version": str(source.version)} if source.version else None
            read = self._read_retrying(client, where, deadline, levels=2, params=params)
        else:
            where = f"{self.mount_point}/{source.path}"
            read = self._read_retrying(client, where, deadline, levels=1, params=None)
        if read.refusal is None:
            if read.problem:
                raise ProviderError(read.problem, provider=self.name)
            # None: the latest version was deleted or destroyed, so no secret is there now.
            return read.document, where
        refusal = read.refusal
        if not refusal.not_found:
            raise self._failure(refusal, where, deadline)
        if refusal.no_route:
            raise self._mount_missing(f"HTTP 404 on {where}")
        return None, where

    def _read_retrying(
        self,
        client: Any,
        source: str,
        deadline: Deadline,
        *,
        levels: int,
        params: Mapping[str, str] | None,
    ) -> _Read:
        """`_read`, and after a 403 one retry with a new token when the keeper allows it."""
        keeper = self._keeper
        token, generation = keeper.token(deadline)
        read = self._read(client, source, deadline, levels=levels, token=token, params=params)
        if (
            read.refusal is not None
            and read.refusal.forbidden
            and keeper.refused(deadline, generation)
        ):
            token, generation = keeper.token(deadline)
            read = self._read(client, source, deadline, levels=levels, token=token, params=params)
        del token
        return read

    def _read(
        self,
        client: Any,
        source: str,
        deadline: Deadline,
        *,
        levels: int,
        token: Masked | None,
        params: Mapping[str, str] | None,
    ) -> _Read:
        """Fetch, parse and convert the secret at ``source``. Never raises for what the
        answer holds: the answer's text and its parsed form end with this frame."""
        body = request(client, source, deadline, self.max_document_size, token=token, params=params)
        del token
        if isinstance(body, Refusal):
            return _Read(refusal=body)
        data, problem = decode(body, source, levels)
        if problem:
            return _Read(problem=problem)
        if data is None:
            return _Read()
        document, problem = convert_document(data, provider=self.name, source=source)
        return _Read(document=document, problem=problem)

    def _detect_version(
        self, client: Any, deadline: Deadline, token: Masked | None, generation: int
    ) -> None:
        """Ask Vault for the mount's KV version before the first read, and remember it."""
        source = f"sys/internal/ui/mounts/{self.mount_point}"
        body = request(client, source, deadline, ERROR_BODY_LIMIT, token=token)
        if (
            isinstance(body, Refusal)
            and body.forbidden
            and self._keeper.refused(deadline, self._keeper.generation)
        ):
            token, _ = self._keeper.token(deadline)
            body = request(client, source, deadline, ERROR_BODY_LIMIT, token=token)
        del token
        if isinstance(body, Refusal):
            refusal = body
            if refusal.not_found and not refusal.no_route:
                # A Vault too old for this endpoint: KV v2 is the default since Vault 1.1.
                self._kv_version = 2
                return
            if refusal.forbidden:
                who = self._keeper.who(client, deadline)
                raise ProviderError(
                    f"vault: Forbidden (HTTP 403): {who} may not use the mount "
                    f"{self.mount_point!r} on {display_url(self.url or '')} (HTTP 403 on "
                    f"{source}), or no such mount exists; check the token's policies grant "
                    f"access to {self.mount_point}/...",
                    provider=self.name,
                )
            raise self._failure(refusal, source, deadline)
        info, problem = decode(body, source, 1)
        if problem:
            raise ProviderError(problem, provider=self.name)
        if not isinstance(info, Mapping):
            raise ProviderError(
                f"vault: unexpected response for {source}: 'data' is a {type(info).__name__}",
                provider=self.name,
            )
        kind = info.get("type")
        if kind not in ("kv", "generic"):
            raise ProviderError(
                f"vault: the mount {self.mount_point!r} is a {kind!r} engine, not KV",
                provider=self.name,
            )
        options = info.get("options")
        version = str(options.get("version")) if isinstance(options, Mapping) else "1"
        self._kv_version = 2 if kind == "kv" and version == "2" else 1

    def _mount_missing(self, cause: str) -> ProviderError:
        self._kv_version = self._explicit_kv_version
        return ProviderError(
            f"vault: no mount {self.mount_point!r} on {display_url(self.url or '')} "
            f"(or the token may not see it): {cause}",
            provider=self.name,
        )

    def _failure(self, refusal: Refusal, source: str, deadline: Deadline) -> ProviderError:
        cause = refusal.describe()
        if refusal.errors:
            cause = f"{cause}: {'; '.join(refusal.errors)}"
        hint = ""
        if refusal.forbidden:
            hint = f"; {self._keeper.who(self._client_or_create(), deadline)} is not allowed to read it"
        elif refusal.status is None and not refusal.detail:
            cause = f"{cause}, after {deadline.elapsed():.1f} s"
        return ProviderError(
            f"vault: reading {source} from {display_url(self.url or '')} failed: {cause}{hint}",
            provider=self.name,
        )

    # -- lifetime ----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the hvac client's HTTP session, after revoking a token obtained by login
        (``revoke_on_close``). Safe to call more than once.

        Loads still in flight are cut (their sockets shut down): they raise `ProviderError`
        at once instead of running on to their deadline. A later lookup opens a new client
        (and logs in again).
        """
        self.invalidate()
        with self._loads_lock:
            loads = list(self._loads)
        for load in loads:
            load.cut("closed")
        token = self._keeper.stop()
        if token is not None and self.revoke_on_close and self._client is not None:
            await run_sync(self._keeper.revoke, token)
        del token
        if self._client is not None:
            # Not through the worker slots: closing must not wait behind loads of others.
            await run_sync(self._close_blocking)

    def _close_blocking(self) -> None:
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.adapter.close()
