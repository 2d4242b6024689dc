"""Vault hardening (issue 12): settings, on a real OpenBao server or without one.

A blank ``verify`` keeps TLS verification on; plain-http addresses and loose token files are
warned about, and the token is stored masked; ``~/.vault-token`` is read only when it is a
small regular file. Whatever can hang runs in a subprocess or under a hard timeout.
"""

from __future__ import annotations

import copy
import logging
import os
import pickle
import secrets
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import pytest

from simpletuner_secrets import ConfigurationError, ProviderError
from simpletuner_secrets.providers.vault import HashiCorpVaultProvider
from tests.servers.bao import BaoServer

pytestmark = pytest.mark.integration

# Module-level strings named *SECRET* are audited by tests/leak_audit.py in every log record,
# error message and repr of these tests.
SECRET_TOKEN = "hvs.hardening-token-6c1f0a9e"
SECRET_VALUE = "hardening-value-3e8d7b21"
KEY = "HARDENING_KEY"
LOGGER = "simpletuner_secrets.providers.vault"
WORKTREE = Path(__file__).resolve().parents[2]
PACKAGE_DIR = str(WORKTREE / "simpletuner_secrets")
#: Hard limit for a child interpreter (the unfixed code hangs forever in some cases).
CHILD_TIMEOUT = 30.0


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty HOME: no ~/.vault-token unless a test writes one."""
    path = tmp_path / "home"
    path.mkdir()
    return path


def vault_on(url: str, home: Path, **kwargs: Any) -> HashiCorpVaultProvider:
    """A provider on ``url`` whose environment is only ``HOME``."""
    kwargs.setdefault("token", SECRET_TOKEN)
    kwargs.setdefault("path", "app")
    return HashiCorpVaultProvider(url=url, environ={"HOME": str(home)}, **kwargs)


def run_child(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports this worktree's package; a child
    still running after CHILD_TIMEOUT is killed and the test fails with TimeoutExpired."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(WORKTREE), **env},
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )


def library_locals_holding(exc: BaseException, *needles: str) -> list[str]:
    """Every library frame local (``file:function:name``) on ``exc``'s traceback, and on its
    chained exceptions, whose captured repr contains one of ``needles``."""
    found = []
    shown = traceback.TracebackException.from_exception(exc, capture_locals=True)
    pending: list[traceback.TracebackException | None] = [shown]
    while pending:
        current = pending.pop()
        if current is None:
            continue
        pending += [current.__cause__, current.__context__]
        for frame in current.stack:
            if not frame.filename.startswith(PACKAGE_DIR):
                continue
            for name, text in (frame.locals or {}).items():
                if any(needle in text for needle in needles):
                    found.append(f"{Path(frame.filename).name}:{frame.name}:{name}")
    return found


# -- 2. a blank verify -------------------------------------------------------------------


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
@pytest.mark.parametrize("level", ["argument", "config", "VAULT_CACERT", "VAULT_CAPATH"])
def test_a_blank_verify_keeps_verification_on(home: Path, level: str, blank: str) -> None:
    """A blank verify, at any level, counts as unset (the one settings rule): verification
    stays on instead of requests reading "" as False."""
    kwargs: dict[str, Any] = {}
    env = {"HOME": str(home), "VAULT_ADDR": "https://127.0.0.1:8200", "VAULT_TOKEN": "t"}
    if level == "argument":
        kwargs["verify"] = blank
    elif level == "config":
        kwargs["config"] = {"vault_verify": blank}
    else:
        env[level] = blank
    vault = HashiCorpVaultProvider(environ=env, **kwargs)
    assert vault.verify is True


def test_a_blank_verify_falls_through_to_the_next_level(home: Path) -> None:
    """Blank in the argument and the config: the environment's CA is used."""
    env = {"HOME": str(home), "VAULT_CACERT": "/etc/vault/ca.pem"}
    vault = HashiCorpVaultProvider(verify=" ", config={"vault_verify": ""}, environ=env)
    assert vault.verify == "/etc/vault/ca.pem"


@pytest.mark.parametrize("level", ["argument", "config"])
async def test_a_blank_verify_against_tls_still_verifies(
    bao_tls: BaoServer, home: Path, level: str
) -> None:
    """On a TLS server with a private CA, verify="" must fail the certificate check, not
    read the secret with verification silently off."""
    path = unique("verify")
    bao_tls.request("POST", f"secret/data/{path}", {"data": {KEY: SECRET_VALUE}})
    kwargs: dict[str, Any] = {"verify": ""} if level == "argument" else {}
    config = {"vault_verify": ""} if level == "config" else None
    vault = HashiCorpVaultProvider(
        url=bao_tls.url,
        token=bao_tls.token,
        path=path,
        config=config,
        environ={"HOME": str(home)},
        **kwargs,
    )
    with pytest.raises(ProviderError, match="TLS verification failed"):
        await vault.get(KEY)
    await vault.aclose()


# -- 3. warnings and the token's storage -------------------------------------------------


def vault_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING
    ]


def test_a_plain_http_address_with_a_token_warns_once(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """http:// to a non-loopback host with a token: one WARNING naming the address."""
    caplog.set_level(logging.WARNING, LOGGER)
    vault = vault_on("http://vault.example.com:8200", home)
    assert vault.is_available()
    warnings = vault_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "http://vault.example.com:8200" in warnings[0] and "https" in warnings[0]
    assert SECRET_TOKEN not in caplog.text


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8200",
        "http://127.3.4.5:8200",
        "http://localhost:8200",
        "http://LOCALHOST.:8200",
        "http://[::1]:8200",
        "https://vault.example.com:8200",
    ],
)
def test_loopback_or_https_addresses_do_not_warn(
    home: Path, caplog: pytest.LogCaptureFixture, url: str
) -> None:
    """Loopback (127.0.0.0/8, ::1, localhost) over http, or any https address: no warning."""
    caplog.set_level(logging.WARNING, LOGGER)
    vault_on(url, home)
    assert vault_warnings(caplog) == []


def test_a_plain_http_address_without_a_token_does_not_warn(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No token, nothing to send in clear: no warning (the provider is only partial)."""
    caplog.set_level(logging.WARNING, LOGGER)
    HashiCorpVaultProvider(url="http://vault.example.com:8200", environ={"HOME": str(home)})
    assert vault_warnings(caplog) == []


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_token_file_open_to_group_or_others_warns_naming_it(
    home: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    """~/.vault-token readable by group or others: a WARNING naming the file and its mode;
    the token is still used."""
    caplog.set_level(logging.WARNING, LOGGER)
    token_file = home / ".vault-token"
    token_file.write_text(SECRET_TOKEN + "\n")
    token_file.chmod(mode)
    vault = vault_on("https://vault.example.com", home, token=None)
    assert vault.missing_settings() == []
    warnings = vault_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert str(token_file) in warnings[0] and f"{mode:04o}" in warnings[0]


def test_a_private_token_file_does_not_warn(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    token_file = home / ".vault-token"
    token_file.write_text(SECRET_TOKEN)
    token_file.chmod(0o600)
    vault_on("https://vault.example.com", home, token=None)
    assert vault_warnings(caplog) == []


def test_the_token_is_stored_masked(home: Path) -> None:
    """Neither vars() nor repr of the provider show the raw token; its holder shows ***,
    has no __dict__, refuses pickling, and copies without revealing it."""
    vault = vault_on("https://vault.example.com", home)
    assert SECRET_TOKEN not in repr(vars(vault))
    assert SECRET_TOKEN not in repr(vault)
    for value in vars(vault).values():
        assert value != SECRET_TOKEN
    holder = vars(vault)["_token"]
    assert repr(holder) == "***" and str(holder) == "***" and f"{holder}" == "***"
    with pytest.raises(TypeError):
        vars(holder)
    with pytest.raises(TypeError):
        pickle.dumps(holder)
    assert SECRET_TOKEN not in repr(vars(copy.copy(vault)))
    assert copy.deepcopy(holder) is holder


def test_a_configuration_error_holds_no_token_in_frame_locals(home: Path) -> None:
    """A ConfigurationError from the constructor: no library frame shows the token given as
    argument, in config or in the environment."""
    with pytest.raises(ConfigurationError) as info:
        HashiCorpVaultProvider(
            url="https://vault.example.com",
            token=SECRET_TOKEN,
            kv_version=3,
            config={"vault_token": SECRET_TOKEN},
            environ={"HOME": str(home), "VAULT_TOKEN": SECRET_TOKEN},
        )
    assert library_locals_holding(info.value, SECRET_TOKEN) == []


# -- 4. the token file -------------------------------------------------------------------

_MANAGER_CHILD = """
import logging, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s")
from simpletuner_secrets import SecretsManager
manager = SecretsManager()
print(",".join(p.name for p in manager.providers))
"""


def child_env(home: Path) -> dict[str, str]:
    return {"HOME": str(home), "VAULT_ADDR": "http://127.0.0.1:9"}


def test_a_fifo_token_file_does_not_block_the_manager(home: Path) -> None:
    """~/.vault-token is a FIFO nobody writes to: SecretsManager() returns at once, the
    Vault provider left out with a warning naming the file."""
    os.mkfifo(home / ".vault-token")
    started = time.monotonic()
    done = run_child(_MANAGER_CHILD, child_env(home))
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < CHILD_TIMEOUT
    assert "vault" not in done.stdout.split(",")
    assert str(home / ".vault-token") in done.stderr and "not a regular file" in done.stderr


def test_a_token_file_linked_to_dev_zero_is_refused(home: Path) -> None:
    """~/.vault-token -> /dev/zero: refused as not a regular file (no MemoryError)."""
    (home / ".vault-token").symlink_to("/dev/zero")
    done = run_child(_MANAGER_CHILD, child_env(home))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "vault" not in done.stdout.split(",")
    assert "not a regular file" in done.stderr


def test_an_oversized_token_file_is_refused(home: Path) -> None:
    """A token file over 64 KiB is refused with ConfigurationError naming it."""
    token_file = home / ".vault-token"
    token_file.write_text("x" * (64 * 1024 + 1))
    token_file.chmod(0o600)
    with pytest.raises(ConfigurationError, match="larger than") as info:
        vault_on("https://vault.example.com", home, token=None)
    assert str(token_file) in str(info.value)


def test_a_token_file_that_is_a_directory_is_refused(home: Path) -> None:
    (home / ".vault-token").mkdir()
    with pytest.raises(ConfigurationError, match="not a regular file"):
        vault_on("https://vault.example.com", home, token=None)


def test_a_missing_token_file_is_simply_no_token(home: Path) -> None:
    vault = vault_on("https://vault.example.com", home, token=None)
    assert vault.missing_settings() == ["VAULT_TOKEN"]
