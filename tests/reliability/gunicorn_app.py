"""A WSGI app for test_fork.py, run by gunicorn with ``--preload``: the process-wide manager
is created and used in the master before the workers fork (its facade's loop thread runs)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from simpletuner_secrets import SecretsManager, get_secrets_manager, set_secrets_manager

set_secrets_manager(
    SecretsManager(config={"file_path": os.environ["APP_SECRETS_FILE"]}, cache_ttl=60)
)
assert get_secrets_manager().sync.get("APP_KEY") == "app-value"  # used before the fork


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    value = get_secrets_manager().sync.get("APP_KEY")
    body = f"{os.getpid()} {value}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
