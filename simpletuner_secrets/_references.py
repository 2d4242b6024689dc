"""References: a value that only says where the secret lives (``vault://``, ``aws://``,
``file://``), replaced by what it names, through the manager's cache like any document.

Opt-in (``SecretsManager(resolve_references=True)`` or ``SIMPLETUNER_RESOLVE_REFERENCES=1``);
one level only: a referenced value that is itself a reference is returned as it is.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._threads import run_sync
from .errors import ProviderError
from .keys import normalize_key
from .providers._common import WarnOnce, read_value_file, unsafe_file_problems
from .providers.base import NOT_CACHED, SecretProvider, document_from_mapping

if TYPE_CHECKING:
    from ._resolver import Resolver, Slot

__all__ = [
    "SCHEMES",
    "Reference",
    "References",
    "parse_reference",
    "references_enabled",
]

logger = logging.getLogger("simpletuner_secrets")

#: The value prefixes that make a value a reference (when references are enabled).
SCHEMES = ("vault://", "aws://", "file://")
ENV_SWITCH = "SIMPLETUNER_RESOLVE_REFERENCES"
#: The largest file a ``file://`` reference may name.
MAX_FILE_SIZE = 1_048_576


def references_enabled(argument: bool | None, environ: Mapping[str, str]) -> bool:
    """The switch: the manager's argument when given, else ``SIMPLETUNER_RESOLVE_REFERENCES``
    (``1``, ``true``, ``yes``, ``on``)."""
    if argument is not None:
        return bool(argument)
    return (environ.get(ENV_SWITCH) or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Reference:
    """A parsed reference. Its text says where a secret is, never what it is.

    Attributes:
        text: The reference as written.
        scheme: ``vault``, ``aws`` or ``file``.
        target: The Vault ``mount/path``, the AWS secret id, or the absolute file path.
        key: The key inside the document (``#KEY``); None for a whole AWS secret or a file.
        stage: The AWS version stage (``?stage=``, default ``AWSCURRENT``).
        version: The Vault KV v2 version (``?version=N``), or None for the latest.
    """

    text: str
    scheme: str
    target: str
    key: str | None = None
    stage: str = "AWSCURRENT"
    version: int | None = None


def _bad(text: str, why: str) -> ProviderError:
    return ProviderError(f"reference {text!r} is malformed: {why}", provider="references")


def parse_reference(text: str) -> Reference:
    """Parse ``vault://<mount>/<path>[?version=N]#<KEY>``, ``aws://<secret-id>[?stage=S]
    [#<KEY>]`` or ``file://<absolute path>``.

    Raises:
        ProviderError: ``text`` starts like a reference but is malformed (named in the message).
    """
    scheme, _, rest = text.partition("://")
    rest, hash_mark, key = rest.partition("#")
    rest, _, query = rest.partition("?")
    options: dict[str, str] = {}
    for part in filter(None, query.split("&")):
        name, _, value = part.partition("=")
        options[name] = value
    if hash_mark and not key.strip():
        raise _bad(text, "an empty #KEY")
    nkey: str | None = None
    if key:
        try:
            nkey = normalize_key(key)
        except ValueError as exc:
            raise _bad(text, str(exc)) from None
    if scheme == "file":
        if not rest.startswith("/") or query or hash_mark:
            raise _bad(text, "file:// takes one absolute path, no query and no #KEY")
        return Reference(text, "file", rest)
    if scheme == "aws":
        unknown = set(options) - {"stage"}
        if not rest or unknown:
            raise _bad(text, "aws:// takes a secret id, ?stage=LABEL and #KEY")
        stage = options.get("stage", "AWSCURRENT").strip()
        if not stage:
            raise _bad(text, "an empty ?stage=")
        return Reference(text, "aws", rest, nkey, stage=stage)
    if scheme == "vault":
        mount, _, path = rest.strip("/").partition("/")
        unknown = set(options) - {"version"}
        if not mount or not path.strip("/") or nkey is None or unknown:
            raise _bad(text, "vault:// takes <mount>/<path>, ?version=N and a #KEY")
        version: int | None = None
        if "version" in options:
            try:
                version = int(options["version"])
            except ValueError:
                version = 0
            if version <= 0:
                raise _bad(text, "?version= must be a positive integer")
        return Reference(text, "vault", f"{mount}/{path.strip('/')}", nkey, version=version)
    raise _bad(text, f"unknown scheme {scheme!r}")


@dataclass(frozen=True)
class _AwsSecret:
    """One AWS secret's text, and its document when the text is a JSON object."""

    text: str | None
    document: Mapping[str, str] | None

    def __repr__(self) -> str:
        return "<aws secret>"


class _Target(SecretProvider):
    """What a reference reads from: named for stats, fetched through the resolver's cache."""

    def __init__(self, name: str, fetch: Callable[[], Awaitable[Any]]) -> None:
        self.name = name
        self.fetch = fetch

    async def get(self, key: str) -> str | None:  # never asked key by key
        raise NotImplementedError


class References:
    """Resolves reference values for one manager: one cached target per document named.

    Targets are read with the manager's settings: the chain's AWS provider's client when it
    has one (else one built from ``config`` and the environment), a Vault provider built
    from ``config`` and the environment with the reference's mount and path, and files read
    in a worker thread. Each target is one document in the manager's cache: cached for
    ``cache_ttl``, refreshed ahead, served stale while refreshes fail, concurrent lookups
    sharing one fetch.

    Args:
        chain: The manager's providers.
        config: The manager's settings.
        environ: The environment for the settings.
    """

    def __init__(
        self,
        chain: Sequence[SecretProvider],
        config: Mapping[str, Any],
        environ: Mapping[str, str],
    ) -> None:
        self._chain = list(chain)
        self._config = dict(config)
        self._environ = environ
        self._slots: dict[tuple[Any, ...], tuple[Slot, _Target]] = {}
        self._owned: list[SecretProvider] = []
        self._parsed: dict[str, Reference] = {}
        self._warned = WarnOnce()

    # -- lookups -----------------------------------------------------------------------

    def parse(self, text: str) -> Reference:
        """`parse_reference`, memoized."""
        found = self._parsed.get(text)
        if found is None:
            found = parse_reference(text)
            if len(self._parsed) < 10_000:
                self._parsed[text] = found
        return found

    def peek(self, resolver: Resolver, text: str) -> Any:
        """The referenced value from a fresh cache entry, without I/O; else `NOT_CACHED`."""
        try:
            reference = self.parse(text)
        except ProviderError:
            return NOT_CACHED
        known = self._slots.get(self._target_key(reference))
        if known is None:
            return NOT_CACHED
        fetched = resolver.peek_document(known[0])
        if fetched is NOT_CACHED:
            return NOT_CACHED
        value, _ = _pick(reference, fetched)
        return value if value else NOT_CACHED

    async def resolve(self, resolver: Resolver, text: str) -> str:
        """The value ``text`` refers to, through the resolver's cache.

        Raises:
            ProviderError: The reference is malformed, its back-end is not configured or
                failed, or what it names does not exist; the message names the reference.
        """
        reference = self.parse(text)
        try:
            slot, target = self._slot(resolver, reference)
            fetched = await resolver.cached_document(slot, target.fetch)
        except ProviderError as exc:
            raise ProviderError(
                f"reference {text!r} cannot be resolved: {exc}", provider=exc.provider
            ) from None
        value, problem = _pick(reference, fetched)
        del fetched  # not on the traceback of the error below
        if problem:
            raise ProviderError(f"reference {text!r} {problem}", provider="references")
        assert value is not None
        return value

    def stats(self) -> dict[str, Any]:
        """Per target: calls, errors, latency (the targets' names say what they read)."""
        return {slot.name: slot.stats.snapshot() for slot, _ in self._slots.values()}

    async def aclose(self) -> None:
        """Close the providers built for references (never the chain's own)."""
        owned, self._owned = self._owned, []
        for provider in owned:
            try:
                await provider.aclose()
            except Exception as exc:
                logger.warning("a reference provider did not close cleanly: %s", type(exc).__name__)

    # -- targets -----------------------------------------------------------------------

    @staticmethod
    def _target_key(reference: Reference) -> tuple[Any, ...]:
        if reference.scheme == "aws":
            return ("aws", reference.target, reference.stage)
        if reference.scheme == "vault":
            return ("vault", reference.target, reference.version)
        return ("file", reference.target)

    def _slot(self, resolver: Resolver, reference: Reference) -> tuple[Slot, _Target]:
        key = self._target_key(reference)
        known = self._slots.get(key)
        if known is None:
            target = self._target(reference)
            known = self._slots[key] = (resolver.reference_slot(target), target)
        return known

    def _target(self, reference: Reference) -> _Target:
        if reference.scheme == "file":
            path = Path(reference.target)
            return _Target(f"file:{path}", lambda: self._read_file(path))
        if reference.scheme == "aws":
            return self._aws_target(reference)
        return self._vault_target(reference)

    def _aws_target(self, reference: Reference) -> _Target:
        from .providers.aws import AWSSecretsManagerProvider

        reader = next((p for p in self._chain if isinstance(p, AWSSecretsManagerProvider)), None)
        if reader is None:
            try:
                reader = AWSSecretsManagerProvider(
                    reference.target, config=self._config, environ=self._environ
                )
            except (ImportError, ValueError) as exc:
                raise ProviderError(f"aws: {exc}", provider="aws") from None
            self._owned.append(reader)
        secret_id, stage = reference.target, reference.stage
        aws = reader

        async def fetch() -> _AwsSecret:
            return _aws_secret(secret_id, await aws.read_secret_text(secret_id, stage))

        return _Target(f"aws:{secret_id}?stage={stage}", fetch)

    def _vault_target(self, reference: Reference) -> _Target:
        from .providers.base import LeftOut
        from .providers.vault import HashiCorpVaultProvider

        mount, _, path = reference.target.partition("/")
        if reference.version is not None:
            path = f"{path}@{reference.version}"  # SPEC 8: `path@N` pins KV v2 version N
        settings = {**self._config, "vault_path": path, "vault_mount_point": mount}
        built = HashiCorpVaultProvider.from_settings(settings, self._environ)
        if isinstance(built, LeftOut):
            raise ProviderError(f"vault is not usable: {built.reason}", provider="vault")
        self._owned.append(built)
        return _Target(f"vault:{reference.target}", built.load_document)

    async def _read_file(self, path: Path) -> str | None:
        return await run_sync(self._read_file_now, path)

    def _read_file_now(self, path: Path) -> str | None:
        problem = ""
        try:
            value, status = read_value_file(path, MAX_FILE_SIZE)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except ValueError as exc:
            problem = str(exc)
        except OSError as exc:
            problem = f"cannot be read ({exc.strerror or type(exc).__name__})"
        if problem:
            raise ProviderError(f"the file {path} {problem}", provider="file")
        unsafe = unsafe_file_problems(status)
        if unsafe and self._warned.first((str(path), status.st_mode, status.st_uid)):
            logger.warning(
                "referenced file %s %s; make it readable by this user only",
                path,
                " and ".join(unsafe),
            )
        return value


def _aws_secret(secret_id: str, text: str | None) -> _AwsSecret:
    """The secret and, when its text is a JSON object, its document (never raises: no frame
    holding the text is on an error's traceback)."""
    if text is None:
        return _AwsSecret(None, None)
    try:
        data = json.loads(text)
    except ValueError:
        return _AwsSecret(text, None)
    if not isinstance(data, Mapping):
        return _AwsSecret(text, None)
    try:
        document = document_from_mapping(data, provider="aws", source=f"secret {secret_id!r}")
    except (ProviderError, ValueError, RecursionError):
        document = None
    return _AwsSecret(text, document)


def _pick(reference: Reference, fetched: Any) -> tuple[str | None, str]:
    """The value ``reference`` names in what its target fetched, or what is missing."""
    if reference.scheme == "file":
        if fetched is None:
            return None, "names a file that does not exist"
        return (fetched, "") if fetched else (None, "names an empty file")
    if reference.scheme == "aws":
        secret: _AwsSecret = fetched
        if secret.text is None:
            return None, "names a secret (or stage) that does not exist"
        if reference.key is None:
            return (secret.text, "") if secret.text else (None, "names an empty secret")
        if secret.document is None:
            return None, "names a key, but the secret is not a JSON object"
        value = secret.document.get(reference.key)
        return (value, "") if value else (None, f"names key {reference.key}, which is absent")
    document: Mapping[str, str] = fetched
    value = document.get(reference.key or "")
    return (value, "") if value else (None, f"names key {reference.key}, which is absent")
