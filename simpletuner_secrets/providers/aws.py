"""AWSSecretsManagerProvider: JSON secrets in AWS Secrets Manager, read with aiobotocore (the
engine of aioboto3, the ``[aws]`` extra's dependency).

The SDK is imported, and its service model loaded, in a worker thread; one client per event
loop is kept open for the provider's lifetime and closed with the loop or by `aclose`. The
provider's first load is the exception: a one-shot botocore client in a worker thread, so that
a process's first answer does not wait for aiohttp's import (see `_threaded_load`).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import functools
import importlib.util
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from .. import _fork
from .._settings import (
    ENV_AWS_CONNECT_TIMEOUT,
    ENV_AWS_READ_TIMEOUT,
    ENV_AWS_VERSION_STAGE,
    env_seconds,
)
from .._threads import run_sync
from ..errors import ConfigurationError, ProviderError
from ._common import (
    WarnOnce,
    WorkerSlots,
    display_url,
    mask_url,
    missing_extra_reason,
    sdk_imports,
    setting,
)
from ._network import describe_connection_failure
from .base import DocumentSecretProvider, LeftOut, document_from_mapping

__all__ = ["AWSSecretsManagerProvider", "split_names"]

logger = logging.getLogger(__name__)

SERVICE = "secretsmanager"
INSTALL_HINT = "pip install 'simpletuner-secrets[aws]'"
#: Timeouts used unless ``client_config`` sets its own; botocore's defaults are 60 s each.
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_READ_TIMEOUT_S = 10.0
#: How long `aclose` waits for a client owned by another, running event loop to close.
CLOSE_OTHER_LOOP_TIMEOUT_S = 5.0

# Data files botocore parses (synchronously, JSON) when a Secrets Manager client is created:
# together 50-250 ms of CPU, loaded in the worker thread instead of on the event loop. Importing
# aiobotocore (~250 ms) happens there too. What stays on the loop, measured on a cold first get:
# assembling the client from the warmed loader (~5-10 ms) and aiohttp's TLS context, built on
# the first request from certifi's bundle (~20 ms); the longest loop gap seen was 30-50 ms.
_SERVICE_DATA = ("service-2", "endpoint-rule-set-1")
# Not ``endpoints``: a Secrets Manager client resolves its endpoint from the service's rule set
# and ``partitions``; parsing the 1.2 MB ``endpoints.json`` cost ~25 ms nothing used.
_SHARED_DATA = ("partitions", "_retry", "sdk-default-configuration")

#: Worker threads for first loads (each holds one while its one-shot client lives).
_FIRST_LOAD_WORKERS = WorkerSlots(4, daemon="simpletuner-secrets aws first load")
#: Requests in flight at once within one threaded first load (one per secret, at most this).
_FIRST_LOAD_FAN_OUT = 10

_sdk_found: bool | None = None


def _sdk_importable() -> bool:
    """Whether aioboto3 can be imported, found without importing it (which takes ~250 ms)."""
    global _sdk_found
    if _sdk_found is None:
        _sdk_found = importlib.util.find_spec("aioboto3") is not None
    return _sdk_found


def _missing_sdk() -> ImportError:
    return ImportError(f"the AWS provider needs aioboto3: {INSTALL_HINT}")


_loader: Any = None
_loader_lock = threading.Lock()
#: Clients inherited from the parent by a forked child: never used, never collected.
_orphans: list[Any] = []


def _warm_loader(core: Any) -> Any:
    """The process's botocore data loader, its Secrets Manager files parsed (the first call
    parses them, in the worker thread that opens a session)."""
    global _loader
    with _loader_lock:
        if _loader is None:
            loader = core.get_component("data_loader")
            # Parsed once here, the files are served from the loader's cache when a client is
            # created on a loop. A file a botocore version lacks is simply loaded later.
            for type_name in _SERVICE_DATA:
                try:
                    loader.load_service_model(SERVICE, type_name)
                except Exception:
                    pass
            for data_name in _SHARED_DATA:
                try:
                    loader.load_data(data_name)
                except Exception:
                    pass
            _loader = loader
            # Dropped before the interpreter's own teardown, which took ~70 ms of CPU more to
            # free the parsed files than this does at exit (~15 ms): a short script pays it.
            atexit.register(_drop_loader)
        return _loader


def _drop_loader() -> None:
    """At exit: let the parsed files go while the interpreter is still whole."""
    global _loader
    with _loader_lock:
        _loader = None


def _new_loader_lock() -> None:
    global _loader_lock
    _loader_lock = threading.Lock()


_fork.after_fork(_new_loader_lock)


class _LoopClient:
    """The client of one event loop, owned by a keeper task running on that loop.

    The keeper opens the client, publishes it through `ready`, and holds it open until it is
    cancelled: by `aclose`, or by the loop's own shutdown (``asyncio.run`` cancels every task
    before closing the loop), so the client is always closed on the loop it belongs to.
    """

    __slots__ = ("loop", "ready", "task")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.ready: asyncio.Future[Any] = loop.create_future()
        self.task: asyncio.Task[None] | None = None


class AWSSecretsManagerProvider(DocumentSecretProvider):
    """Secrets in AWS Secrets Manager, each holding a JSON object of key/value pairs.

    Settings come from the arguments, else from ``config`` (``aws_secret_name``,
    ``aws_region``, ``aws_endpoint_url``, ``aws_version_stage``, ``aws_connect_timeout``,
    ``aws_read_timeout``), else from the environment (``SIMPLETUNER_AWS_SECRET_NAME``;
    ``AWS_DEFAULT_REGION`` then ``AWS_REGION``; ``AWS_ENDPOINT_URL``;
    ``SIMPLETUNER_AWS_VERSION_STAGE``; ``SIMPLETUNER_AWS_CONNECT_TIMEOUT``,
    ``SIMPLETUNER_AWS_READ_TIMEOUT``). Only the secret name is required: without a region, botocore
    resolves it as usual (its own environment variables, then the profile in
    ``~/.aws/config``), and a client that still has none fails with `ProviderError` naming
    ``NoRegionError``. Credentials come from the standard AWS chain and are never handled here.

    Several secrets: ``secret_name="app/shared,app/api"`` (any setting level) reads each as
    its own document, all fetched concurrently with one ``GetSecretValue`` each per refresh;
    on a key both hold, the earlier secret wins. A missing one is an empty document; any
    other failure fails the load (`ProviderError` naming that secret), so that a lookup never
    answers from a lower secret while a higher one that might hold the key is unknown.

    The secret is read with ``GetSecretValue`` (``SecretString``, or ``SecretBinary`` as UTF-8)
    and must hold one JSON object. A missing secret (or version stage) is an empty document,
    logged once at WARNING; every other failure raises `ProviderError` naming the secret and
    the cause, never the value.

    Clients: aiobotocore clients belong to the event loop that opened them, so the provider keeps
    one per loop, opened on first use (concurrent first calls share one) and reused by every
    later call. Importing aiobotocore and loading botocore's Secrets Manager model happen in a
    worker thread, so the event loop never stalls on them. A client is closed by `aclose`, or
    when its loop is shut down by ``asyncio.run`` (or any runner that cancels leftover tasks).

    Args:
        secret_name: Name or ARN of the secret, or several, comma-separated.
        region_name: AWS region.
        endpoint_url: Endpoint override (a local emulator, a VPC endpoint).
        version_stage: The staging label read (``AWSCURRENT``, ``AWSPREVIOUS``, or your own);
            default ``AWSCURRENT``.
        config: The `SecretsManager` settings mapping.
        environ: Environment for the settings above (default ``os.environ``). botocore still
            reads ``os.environ`` for credentials and its own settings.
        client_config: A ``botocore.config.Config`` merged over the provider's defaults
            (connect timeout 5 s, read timeout 10 s, or the two settings above; standard
            retry mode); use it for retries, proxies, timeouts.
        name: This provider's name in the chain (default ``aws``).

    Raises:
        ImportError: aioboto3 is not installed (the message names the ``[aws]`` extra).
        ValueError: ``version_stage`` is empty, or a ``config`` timeout is not a number > 0.
        ConfigurationError: A settings variable is malformed (named, its value not shown).

    Attributes:
        secret_names: The secrets read, highest priority first.
        clients_opened: How many clients were opened, over all loops (diagnostics).
        requests: How many ``GetSecretValue`` requests were sent (also in `counters`).
    """

    name = "aws"
    config_keys = frozenset(
        {
            "aws_secret_name",
            "aws_region",
            "aws_endpoint_url",
            "aws_version_stage",
            "aws_connect_timeout",
            "aws_read_timeout",
        }
    )

    def __init__(
        self,
        secret_name: str | None = None,
        region_name: str | None = None,
        *,
        endpoint_url: str | None = None,
        version_stage: str | None = None,
        config: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        client_config: Any = None,
        name: str | None = None,
    ) -> None:
        if not _sdk_importable():
            raise _missing_sdk()
        if version_stage is not None and not version_stage.strip():
            raise ValueError("version_stage must be a non-empty staging label")
        super().__init__(name=name)
        cfg: Mapping[str, Any] = config if config is not None else {}
        env: Mapping[str, str] = environ if environ is not None else os.environ
        self.version_stage = (
            setting(version_stage, cfg, "aws_version_stage", env, ENV_AWS_VERSION_STAGE)
            or "AWSCURRENT"
        )
        self.connect_timeout = _timeout_setting(
            cfg, "aws_connect_timeout", env, ENV_AWS_CONNECT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT_S
        )
        self.read_timeout = _timeout_setting(
            cfg, "aws_read_timeout", env, ENV_AWS_READ_TIMEOUT, DEFAULT_READ_TIMEOUT_S
        )
        self.secret_name = setting(
            secret_name, cfg, "aws_secret_name", env, "SIMPLETUNER_AWS_SECRET_NAME"
        )
        self.secret_names = split_names(self.secret_name)
        self.region_name = setting(
            region_name, cfg, "aws_region", env, "AWS_DEFAULT_REGION", "AWS_REGION"
        )
        self.endpoint_url = setting(endpoint_url, cfg, "aws_endpoint_url", env, "AWS_ENDPOINT_URL")
        self.client_config = client_config
        self.clients_opened = 0
        self.requests = 0
        self._clients: dict[asyncio.AbstractEventLoop, _LoopClient] = {}
        self._lock = threading.Lock()
        # The first load goes through a one-shot botocore client in a thread (see
        # `_threaded_load`); cleared once it is claimed, or when an async client opens first.
        self._first_load_threaded = True
        _fork.track(self)
        self._missing = WarnOnce()

    @classmethod
    def from_settings(
        cls, config: Mapping[str, Any], environ: Mapping[str, str]
    ) -> AWSSecretsManagerProvider | LeftOut:
        """The AWS provider of the default chain, when a secret name is set.

        Left out (debug) with no ``aws_secret_name`` / ``SIMPLETUNER_AWS_SECRET_NAME``;
        (warning) when a setting is malformed, or a secret name is set but aioboto3 is not
        installed (the warning names the ``[aws]`` extra).
        """
        if not (config.get("aws_secret_name") or environ.get("SIMPLETUNER_AWS_SECRET_NAME")):
            return LeftOut(
                cls.name, "no aws_secret_name / SIMPLETUNER_AWS_SECRET_NAME set (extra [aws])"
            )
        try:
            return cls(config=config, environ=environ)
        except ImportError as exc:
            return LeftOut(cls.name, missing_extra_reason(exc), logging.WARNING)
        except (ConfigurationError, ValueError) as exc:
            return LeftOut(cls.name, str(exc), logging.WARNING)

    def reset_after_fork(self) -> None:
        """In a forked child: the parent's clients share its sockets and loops; they are
        dropped unclosed, and each loop of the child opens its own. They stay referenced: if
        collected, their keepers would try to close connections the parent still uses."""
        self._lock = threading.Lock()
        _orphans.extend(self._clients.values())
        self._clients = {}

    def __repr__(self) -> str:
        # getattr: an error tracker may repr a provider whose __init__ raised half-way.
        return (
            f"{type(self).__name__}(secret_name={getattr(self, 'secret_name', None)!r}, "
            f"region_name={getattr(self, 'region_name', None)!r}, "
            f"endpoint_url={mask_url(getattr(self, 'endpoint_url', None))!r}, "
            f"version_stage={getattr(self, 'version_stage', None)!r})"
        )

    def missing_settings(self) -> list[str]:
        """Name the required settings that are absent.

        Returns:
            An empty list when the provider can run; else the missing settings (only the
            secret name is required: the region may come from botocore's own configuration).
        """
        if self.secret_names:
            return []
        return ["secret name (aws_secret_name / SIMPLETUNER_AWS_SECRET_NAME)"]

    def is_available(self) -> bool:
        """Return whether aioboto3 is importable and a secret name is set."""
        return _sdk_importable() and bool(self.secret_names)

    def counters(self) -> Mapping[str, int]:
        """``requests``: ``GetSecretValue`` calls sent; ``documents``: secrets read per load."""
        return {"requests": self.requests, "documents": len(self.secret_names)}

    @property
    def open_clients(self) -> int:
        """How many event loops have a client open (or opening) now (closed loops' clients
        are released by the next client opened, so they do not count)."""
        with self._lock:
            return sum(not loop.is_closed() for loop in self._clients)

    # -- reads -------------------------------------------------------------------------

    async def load_document(self) -> Mapping[str, str]:
        """Read every secret, concurrently, one ``GetSecretValue`` call each, and merge them.

        Returns:
            The normalized document (earlier secrets win on a shared key); a secret or
            version stage that does not exist adds nothing.

        Raises:
            ProviderError: No secret name, the client cannot be created, a call failed
                (unreachable, denied, throttled after botocore's retries), or a secret is
                not a UTF-8 JSON object. The first failing secret, in priority order, is named.
        """
        names = self.secret_names
        if not names:
            raise ProviderError(
                "aws: no secret name set (aws_secret_name / SIMPLETUNER_AWS_SECRET_NAME)",
                provider=self.name,
            )
        started = time.monotonic()
        if self._claim_threaded_load():
            document = await self._threaded_load(names, started)
            if document is not None:
                return document
        client = await self._client()
        if len(names) == 1:
            return await self._load_one(client, names[0], started)
        results: list[Any] = await asyncio.gather(
            *(self._load_one(client, name, started) for name in names), return_exceptions=True
        )
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            # No document of the other secrets stays in this frame (error trackers record the
            # locals of every frame on a traceback).
            results.clear()
            raise failure
        return _earlier_wins(results)

    # -- the first load: botocore in a worker thread ----------------------------------------

    def _claim_threaded_load(self) -> bool:
        """Whether this load is the provider's first, to be read with `_threaded_load`: true
        once, and only while no async client has been opened."""
        with self._lock:
            claimed = self._first_load_threaded and not self._clients
            self._first_load_threaded = False
            return claimed

    async def _threaded_load(self, names: tuple[str, ...], started: float) -> dict[str, str] | None:
        """The provider's first load, on a one-shot botocore client in a worker thread.

        aiobotocore imports aiohttp (and httpx when installed), which costs a fresh process
        about as much as botocore itself; a process that reads its secrets once at start-up,
        a script or a CLI call, would pay it for one request (``benchmarks/bench_startup.py``).
        botocore's own client sends that request with urllib3 instead; the async client is
        opened by the next load, off the critical path. Same settings, timeouts, retries,
        credentials, error messages and counters; the parsed service model is shared with the
        async clients. A caller cancelled meanwhile stops waiting at once; the thread finishes
        its requests within the client's timeouts and closes the client.

        Returns:
            The merged document, or None when ``client_config`` is an ``AioConfig`` (whose
            aiobotocore-only options botocore would drop): the load then goes through the
            async client.
        """
        outcome = await _FIRST_LOAD_WORKERS.run(functools.partial(self._fetch_blocking, names))
        if outcome is None:
            return None
        documents: list[dict[str, str]] = []
        failure: ProviderError | None = None
        for name, (response, error) in zip(names, outcome, strict=True):
            if failure is not None:
                continue
            if error is not None:
                try:
                    self._request_failed(name, error, started)
                except ProviderError as exc:
                    failure = exc  # raised below, once no response is left in this frame
                else:
                    documents.append({})
                continue
            self._missing.clear(name)
            document, problem = self._parse(name, response)
            if problem is not None:
                failure = ProviderError(problem, provider=self.name)
            documents.append(document)
        # No response (the whole secret) or document stays in this frame (see `_load_one`).
        outcome.clear()
        del response
        document = {}
        if failure is not None:
            documents.clear()
            raise failure
        return _earlier_wins(documents)

    def _fetch_blocking(self, names: tuple[str, ...]) -> list[tuple[Any, Exception | None]] | None:
        """In a worker thread: open a botocore client, send one ``GetSecretValue`` per name
        (concurrently when several), close the client. Each name's (response, error)."""
        try:
            client = self._open_blocking_client()
        except Exception as exc:
            raise self._client_error(exc) from _safe_cause(exc)
        if client is None:
            return None
        with self._lock:
            self.clients_opened += 1
        try:
            if len(names) == 1:
                return [self._get_blocking(client, names[0])]
            return self._get_all_blocking(client, names)
        finally:
            client.close()

    def _get_all_blocking(
        self, client: Any, names: tuple[str, ...]
    ) -> list[tuple[Any, Exception | None]]:
        """Each name's (response, error), at most `_FIRST_LOAD_FAN_OUT` requests at once, in
        daemon threads (a pool's threads would hold the interpreter's exit, see `WorkerSlots`).
        """
        outcomes: list[tuple[Any, Exception | None]] = [(None, None)] * len(names)
        pending = iter(range(len(names)))
        pending_lock = threading.Lock()

        def work() -> None:
            while True:
                with pending_lock:
                    index = next(pending, None)
                if index is None:
                    return
                outcomes[index] = self._get_blocking(client, names[index])

        threads = [
            threading.Thread(target=work, name="simpletuner-secrets aws first load", daemon=True)
            for _ in range(min(len(names), _FIRST_LOAD_FAN_OUT))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return outcomes

    def _get_blocking(self, client: Any, name: str) -> tuple[Any, Exception | None]:
        with self._lock:
            self.requests += 1
        try:
            return client.get_secret_value(SecretId=name, VersionStage=self.version_stage), None
        except Exception as exc:
            # The traceback's botocore frames hold the HTTP response, and with it the pooled
            # connection, out of reach of `client.close()`: the socket would stay open for as
            # long as the caller keeps the error (a server waiting on it never sees it close).
            # The error keeps its type, code and message; its frames are of a finished thread.
            _drop_tracebacks(exc)
            return None, exc

    def _open_blocking_client(self) -> Any:
        """A botocore Secrets Manager client with the async clients' settings, or None when
        ``client_config`` is not a plain ``botocore.config.Config`` (an ``AioConfig``)."""
        try:
            with sdk_imports():  # one SDK import at a time: see sdk_imports
                from botocore.config import Config
                from botocore.session import get_session
        except ImportError as exc:
            raise _missing_sdk() from exc
        if self.client_config is not None and type(self.client_config) is not Config:
            # An AioConfig may hold what only aiobotocore applies (connector_args: an SSL
            # context, keep-alive; http_session_cls), which botocore's merge would drop.
            return None
        client_config = Config(**self._config_options())
        if self.client_config is not None:
            client_config = client_config.merge(self.client_config)
        core = get_session()
        core.register_component("data_loader", _warm_loader(core))
        return core.create_client(
            SERVICE,
            region_name=self.region_name,
            endpoint_url=self.endpoint_url,
            config=client_config,
        )

    # -- the async client's loads ---------------------------------------------------------

    async def _load_one(self, client: Any, name: str, started: float) -> dict[str, str]:
        """One secret's document: one ``GetSecretValue`` at `version_stage`."""
        response = await self._get_secret_value(client, name, self.version_stage, started)
        if response is None:
            return {}
        document, problem = self._parse(name, response)
        # Raised from this frame, the response (the whole secret) dropped first: error
        # trackers and `capture_locals` tracebacks record every local of every frame.
        del response
        if problem is not None:
            raise ProviderError(problem, provider=self.name)
        return document

    async def read_secret_text(self, secret_id: str, stage: str = "AWSCURRENT") -> str | None:
        """The whole text of one secret at ``stage``, JSON or not, on this provider's client.

        For references (``aws://<secret-id>?stage=...``): one ``GetSecretValue``, counted in
        `requests` like every other.

        Returns:
            ``SecretString`` (or ``SecretBinary`` as UTF-8); None when the secret or the stage
            does not exist.

        Raises:
            ProviderError: The call failed, or the secret holds no UTF-8 text.
        """
        client = await self._client()
        response = await self._get_secret_value(client, secret_id, stage)
        if response is None:
            return None
        text, problem = _secret_text(f"secret {secret_id!r} (stage {stage})", response)
        del response
        if problem is not None:
            raise ProviderError(problem, provider=self.name)
        return text

    async def _get_secret_value(
        self, client: Any, name: str, stage: str, started: float | None = None
    ) -> Any:
        """The ``GetSecretValue`` response, or None when the secret or stage is missing.

        ``started``: when the load began (client creation included), for the error's "after
        N s"; now when None.
        """
        if started is None:
            started = time.monotonic()
        with self._lock:
            self.requests += 1
        try:
            response = await client.get_secret_value(SecretId=name, VersionStage=stage)
        except Exception as exc:
            return self._request_failed(name, exc, started)
        self._missing.clear(name)
        return response

    def _request_failed(self, name: str, exc: Exception, started: float) -> None:
        """A failed ``GetSecretValue``: None when the secret or stage is missing (warned once),
        else the error naming it is raised."""
        if _error_code(exc) == "ResourceNotFoundException":
            self._report_missing(name)
            return None
        raise self._call_error(name, exc, time.monotonic() - started) from _safe_cause(exc)

    def _report_missing(self, name: str) -> None:
        if self._missing.first(name):
            logger.warning(
                "aws: secret %r (stage %s, region %s) not found; reading it as empty",
                name,
                self.version_stage,
                self.region_name or "default",
            )

    def _call_error(self, name: str, exc: Exception, elapsed: float) -> ProviderError:
        code = _error_code(exc)
        network = None if code is not None else describe_connection_failure(exc)
        if network is not None:
            # Refused, DNS, TLS, timeout: what happened, where, and how long the attempts
            # (botocore's retries included) really took.
            endpoint = self.endpoint_url or getattr(exc, "kwargs", {}).get("endpoint_url")
            where = f" at {display_url(str(endpoint))}" if endpoint else ""
            return ProviderError(
                f"aws: cannot read secret {name!r}: {network}{where} after {elapsed:.1f} s",
                provider=self.name,
            )
        if code is not None:
            response: Mapping[str, Any] = getattr(exc, "response", {}) or {}
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = str(response.get("Error", {}).get("Message") or "")[:300]
            cause = f"{code}, HTTP {status}" + (f": {message}" if message else "")
        elif _is_botocore_error(exc):
            # botocore's own errors are built from names, URLs and counts, not response bodies.
            cause = f"{type(exc).__name__}: {exc}"
        else:
            cause = f"{type(exc).__name__} (details withheld)"
        return ProviderError(f"aws: cannot read secret {name!r} ({cause})", provider=self.name)

    def _parse(self, name: str, response: Mapping[str, Any]) -> tuple[dict[str, str], str | None]:
        """The response's document, or what is wrong with it: never raises, so that no frame
        holding the secret's text is on an error's traceback (the caller raises)."""
        source = f"secret {name!r} (stage {self.version_stage})"
        text, problem = _secret_text(source, response)
        if text is None:
            return {}, problem
        try:
            data = json.loads(text)
        except ValueError as exc:
            where = (
                f" at line {exc.lineno} column {exc.colno}"
                if isinstance(exc, json.JSONDecodeError)
                else ""
            )
            return {}, f"aws: {source} is not valid JSON{where}; it must hold one JSON object"
        try:
            return document_from_mapping(data, provider=self.name, source=source), None
        except ProviderError as exc:
            return {}, str(exc)  # the exception and its frames, holding `data`, are dropped

    # -- clients -----------------------------------------------------------------------

    async def _client(self) -> Any:
        """The client of the running loop, opened on first use (once for concurrent callers)."""
        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is None:
            self._release_closed_loops()
            with self._lock:
                entry = self._clients.get(loop)
                if entry is None:
                    entry = _LoopClient(loop)
                    entry.task = loop.create_task(
                        self._keep_client(entry),
                        name=f"simpletuner-secrets aws client {id(self):x}",
                    )
                    self._clients[loop] = entry
                    # A keeper cancelled before its first step (aclose right after a lookup
                    # began) never runs its body: its waiters are told here, not left hanging.
                    entry.task.add_done_callback(functools.partial(self._keeper_done, entry))
        ready = entry.ready
        if not ready.done():
            # shield: a caller cancelled while the client opens must not cancel it for the others.
            await asyncio.shield(ready)
        return ready.result()

    def _release_closed_loops(self) -> None:
        """Drop and close the clients of event loops closed without `asyncio.run`.

        `asyncio.run` cancels every task before it closes its loop, and the keeper closes its
        client on that loop. A loop closed by hand (``new_event_loop`` ... ``close()``) cancels
        nothing: its client would stay open, sockets and several MiB of botocore state, as long
        as the provider lives. Such clients are closed here on a short-lived loop in a thread
        of their own (aiohttp closes its connections without their loop running).
        """
        with self._lock:
            dead = [entry for loop, entry in self._clients.items() if loop.is_closed()]
            for entry in dead:
                del self._clients[entry.loop]
        if dead:
            threading.Thread(
                target=_release_clients,
                args=(dead,),
                name="simpletuner-secrets aws client release",
                daemon=True,
            ).start()

    async def _keep_client(self, entry: _LoopClient) -> None:
        ready = entry.ready
        try:
            try:
                session, client_config = await run_sync(self._open_session)
                context = session.create_client(
                    SERVICE,
                    region_name=self.region_name,
                    endpoint_url=self.endpoint_url,
                    config=client_config,
                )
            except Exception as exc:
                raise self._client_error(exc) from _safe_cause(exc)
            async with context as client:
                with self._lock:
                    self.clients_opened += 1
                ready.set_result(client)
                await asyncio.Event().wait()  # held open until cancelled
        except asyncio.CancelledError:
            self._fail(entry, _closed_while_opening())
            raise
        except ProviderError as exc:
            self._fail(entry, exc)
        except Exception as exc:  # opening the client failed on the loop (credentials, region)
            self._fail(entry, self._client_error(exc))
        finally:
            with self._lock:
                if self._clients.get(entry.loop) is entry:
                    del self._clients[entry.loop]

    def _keeper_done(self, entry: _LoopClient, task: asyncio.Task[None]) -> None:
        self._fail(entry, _closed_while_opening())

    def _fail(self, entry: _LoopClient, exc: ProviderError) -> None:
        with self._lock:
            if self._clients.get(entry.loop) is entry:
                del self._clients[entry.loop]  # the next call tries again
        if not entry.ready.done():
            entry.ready.set_exception(exc)
            entry.ready.exception()  # retrieved: no "exception never retrieved" if nobody waits

    def _client_error(self, exc: Exception) -> ProviderError:
        if isinstance(exc, ImportError):
            detail = f"aiobotocore cannot be imported ({INSTALL_HINT})"
        elif _is_botocore_error(exc):
            detail = f"{type(exc).__name__}: {exc}"
        else:
            detail = f"{type(exc).__name__} (details withheld)"
        return ProviderError(
            f"aws: cannot create a Secrets Manager client for secret {self.secret_name!r}: {detail}",
            provider=self.name,
        )

    def _open_session(self) -> tuple[Any, Any]:
        """Import the SDK and load the service model: blocking work, run in a worker thread.

        The client is created from aiobotocore's session, which aioboto3 wraps: aioboto3's
        own layer (and boto3's, which it imports: resources, collections) serves nothing a
        Secrets Manager client uses, and costs tens of milliseconds of a process's start-up
        (``benchmarks/bench_startup.py``). aioboto3 stays the ``[aws]`` extra's dependency.
        """
        try:
            with sdk_imports():  # one SDK import at a time: see sdk_imports
                from aiobotocore.config import AioConfig
                from aiobotocore.session import get_session
        except ImportError as exc:
            raise _missing_sdk() from exc
        core = get_session()
        # One botocore session per event loop (its credentials hold asyncio locks), but the
        # parsed service model is loop-free data: shared by every session of the process, so a
        # process running `asyncio.run` per task parses it once, not per run.
        core.register_component("data_loader", _warm_loader(core))
        client_config = AioConfig(**self._config_options())
        if self.client_config is not None:
            client_config = client_config.merge(self.client_config)
        return core, client_config

    def _config_options(self) -> dict[str, Any]:
        """The client settings both kinds of client start from (``client_config`` is merged
        over them): the provider's timeouts, its user agent, and standard retry mode (3
        attempts, short backoff) unless botocore's own variable says otherwise: the legacy
        default spends ~9 s retrying a refused connection, longer than the manager's
        provider_timeout, which then hides the cause behind "no answer"."""
        retries = {} if os.environ.get("AWS_RETRY_MODE") else {"retries": {"mode": "standard"}}
        return {
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            "user_agent_extra": "simpletuner-secrets",
            **retries,
        }

    # -- closing -----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every client this provider opened, on every event loop. Safe to repeat.

        A client of the running loop is closed here; one of another running loop is closed on
        that loop (waited for up to 5 s); one of a loop closed without cancelling it is closed
        on a short-lived loop in a worker thread. A later lookup opens a new client.
        """
        with self._lock:
            entries = list(self._clients.values())
            self._clients.clear()
        current = asyncio.get_running_loop()
        for entry in entries:
            task = entry.task
            if task is None:
                continue
            if entry.loop is current:
                task.cancel()
                await asyncio.wait({task})
            elif entry.loop.is_closed():
                await run_sync(_release_clients, [entry])
            else:
                await self._close_on_other_loop(entry, task)

    async def _close_on_other_loop(self, entry: _LoopClient, task: asyncio.Task[None]) -> None:
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def _mark_done(_: object) -> None:
            if not done.done():
                done.set_result(None)

        def _stop() -> None:  # runs on the client's own loop
            task.cancel()
            task.add_done_callback(_mark_done)

        try:
            entry.loop.call_soon_threadsafe(_stop)
        except RuntimeError:
            return  # the loop closed meanwhile; its shutdown closed the client
        try:
            await asyncio.wait_for(asyncio.wrap_future(done), CLOSE_OTHER_LOOP_TIMEOUT_S)
        except asyncio.TimeoutError:
            logger.warning(
                "aws: a client on another event loop did not close within %.0f s",
                CLOSE_OTHER_LOOP_TIMEOUT_S,
            )


def _release_clients(entries: list[_LoopClient]) -> None:
    """Close the clients of closed loops (see `_release_closed_loops`); runs in a thread."""
    for entry in entries:
        task, ready = entry.task, entry.ready
        if task is not None:
            # Its loop is closed: the task can never run or be cancelled again, so asyncio's
            # "Task was destroyed but it is pending" would only be noise.
            task._log_destroy_pending = False  # type: ignore[attr-defined]
        if ready.done() and not ready.cancelled() and ready.exception() is None:
            try:
                asyncio.run(ready.result().__aexit__(None, None, None))
            except Exception as exc:
                logger.debug("aws: closing a closed loop's client failed: %s", type(exc).__name__)
        coro = None if task is None else task.get_coro()  # None only for eager tasks (3.12+)
        if coro is not None:
            coro.close()  # ends the keeper: its `async with` exits, nothing left


def _timeout_setting(
    config: Mapping[str, Any],
    key: str,
    environ: Mapping[str, str],
    variable: str,
    default: float,
) -> float:
    """A client timeout from ``config[key]``, else ``variable``, else ``default`` (seconds > 0).

    Raises:
        ValueError: The config value is not a number > 0.
        ConfigurationError: The variable is malformed (named, its value not shown).
    """
    given = config.get(key)
    if given is None:
        found = env_seconds(environ, variable, positive=True)
        return default if found is None else found
    try:
        number = float(given)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number of seconds > 0") from None
    if not number > 0 or number == float("inf"):
        raise ValueError(f"{key} must be a number of seconds > 0")
    return number


def split_names(setting_text: str | None) -> tuple[str, ...]:
    """The secret names of a comma-separated setting, in order, blanks and repeats dropped."""
    names: list[str] = []
    for part in (setting_text or "").split(","):
        name = part.strip()
        if name and name not in names:
            names.append(name)
    return tuple(names)


def _secret_text(source: str, response: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The secret's text (``SecretString``, or ``SecretBinary`` as UTF-8), or what is wrong
    with it; never raises (see `AWSSecretsManagerProvider._parse`)."""
    text = response.get("SecretString")
    if text is not None:
        return str(text), None
    binary = response.get("SecretBinary")
    if binary is None:
        return None, f"aws: {source} has neither SecretString nor SecretBinary"
    try:
        return bytes(binary).decode("utf-8"), None
    except UnicodeDecodeError as exc:
        # The decode error holds the whole secret (its `object`): only its offset is kept.
        return (
            None,
            f"aws: {source} SecretBinary is not UTF-8 text (invalid byte at offset {exc.start})",
        )


def _closed_while_opening() -> ProviderError:
    return ProviderError("aws: the provider was closed while its client opened", provider="aws")


def _error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError``, else None."""
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return None
    error = response.get("Error")
    if not isinstance(error, Mapping):
        return None
    code = error.get("Code")
    return str(code) if code else None


def _is_botocore_error(exc: BaseException) -> bool:
    try:
        from botocore.exceptions import BotoCoreError
    except ImportError:
        return False
    return isinstance(exc, BotoCoreError)


def _earlier_wins(documents: list[dict[str, str]]) -> dict[str, str]:
    """Several secrets' documents as one, an earlier secret's key winning; ``documents`` is
    emptied (no document stays referenced by the caller's frame)."""
    merged: dict[str, str] = {}
    for document in reversed(documents):
        merged.update(document)
    documents.clear()
    return merged


def _drop_tracebacks(exc: BaseException) -> None:
    """Clear the traceback of ``exc`` and of every error it chains (cause or context)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__


def _safe_cause(exc: BaseException) -> BaseException | None:
    """Chain botocore errors (useful, value-free); hide anything else that might quote data."""
    if _error_code(exc) is not None or _is_botocore_error(exc):
        return exc
    return None
