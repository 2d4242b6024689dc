"""Provider edges: YAML rewrites that keep other values, the once-a-second check of a bad
file, exception chains free of values and tokens, the AWS client's lifetime, pickling, and a
CLI that never echoes an argument.

Every test names the behaviour the contract (SPEC.md sections 1, 2, 6) or a docstring promises.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simpletuner_secrets.errors import ProviderError, SecretFileError
from simpletuner_secrets.providers.aws import AWSSecretsManagerProvider
from simpletuner_secrets.providers.file import FileSecretProvider
from simpletuner_secrets.providers.vault import HashiCorpVaultProvider
from tests.clock import FakeClock

SECRET = "hf_review_secret_value_5f3a"
TOKEN = "hvs.review-token-never-shown"


def write(path: Path, data: str | bytes, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    path.chmod(mode)
    return path


def rewrite_in_place(path: Path, text: str) -> None:
    """Overwrite the file's bytes without replacing it (same inode), as an editor may."""
    with open(path, "r+") as handle:
        handle.write(text)


def chain(exc: BaseException) -> Iterator[BaseException]:
    """Every exception reachable from ``exc`` through __cause__ and __context__."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def carried_text(exc: BaseException) -> str:
    """Everything an exception carries that a handler, reporter or repr could show."""
    parts = [repr(exc), repr(exc.args), repr(getattr(exc, "__dict__", {}))]
    for attribute in ("doc", "object", "text", "errors", "json"):
        parts.append(repr(getattr(exc, attribute, None)))
    return "\n".join(parts)


def assert_chain_free_of(exc: BaseException, secret: str) -> None:
    for link in chain(exc):
        assert secret not in carried_text(link), (
            f"{type(link).__name__} in the chain of {type(exc).__name__} carries the secret"
        )


# -- file: a rewrite must not change other keys' values ---------------------------------


async def test_yaml_rewrite_keeps_the_text_of_other_number_like_values(tmp_path: Path) -> None:
    """Reading keeps `PIN: 0123` as "0123" (the text written is the value meant); setting an
    unrelated key must not turn it into 83 (nor 1.50 into 1.5, 0x1F into 31, 12:34 into 754,
    nor reformat a timestamp): the write path loads with native types, the read path as text."""
    text = "PIN: 0123\nVER: 1.50\nHEX: 0x1F\nT: 12:34\nN: 1_000\nD: 2001-12-14t21:59:43.10-05:00\n"
    path = write(tmp_path / "s.yaml", text)
    before = FileSecretProvider(path)
    expected = {k: await before.get(k) for k in ("PIN", "VER", "HEX", "T", "N", "D")}
    assert expected == {
        "PIN": "0123",
        "VER": "1.50",
        "HEX": "0x1F",
        "T": "12:34",
        "N": "1_000",
        "D": "2001-12-14t21:59:43.10-05:00",
    }

    await FileSecretProvider(path).set("OTHER", "x")

    after = FileSecretProvider(path)
    assert {k: await after.get(k) for k in expected} == expected


# -- file: the once-a-second re-check ---------------------------------------------------


async def test_same_size_edit_with_an_unchanged_mtime_is_seen(tmp_path: Path) -> None:
    """On a file system with coarse timestamps (1-2 s on HFS+, ext3, FAT; a jiffy on older
    kernels), an in-place edit of the same size made in the same tick as the last read leaves
    (mtime, size, inode) unchanged. The edit must still be seen, not missed forever.
    os.utime stands in for the coarse clock here; the ctime still changed."""
    path = write(tmp_path / "s.json", json.dumps({"A": "old-value-1"}))
    clock = FakeClock(100.0)
    provider = FileSecretProvider(path, timer=clock)
    assert await provider.get("A") == "old-value-1"
    st = os.stat(path)
    rewrite_in_place(path, json.dumps({"A": "new-value-2"}))  # another process's edit
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size
    clock.now += 5.0
    assert await provider.get("A") == "new-value-2"


async def test_a_malformed_file_is_not_parsed_again_on_every_get(tmp_path: Path) -> None:
    """The file is checked at most once a second: a malformed file (no good read before)
    raises SecretFileError, but 20 lookups within one second must not parse it 20 times."""
    path = write(tmp_path / "s.json", '{"A": "' + "x" * 1000 + '",')
    clock = FakeClock(100.0)
    provider = FileSecretProvider(path, timer=clock)
    for _ in range(20):
        with pytest.raises(SecretFileError):
            await provider.get("A")
    assert provider.parses <= 1


# -- no value in an exception chain -------------------------------------------------------


async def test_non_utf8_secrets_file_error_chain_carries_no_value(tmp_path: Path) -> None:
    """`from None` hides the context from tracebacks but keeps it on __context__: the
    UnicodeDecodeError there holds the whole file (every secret) in its `object`."""
    path = write(tmp_path / "s.json", b'{"A": "' + SECRET.encode() + b'", "B": "\xff"}')
    with pytest.raises(SecretFileError) as info:
        await FileSecretProvider(path).get("A")
    assert SECRET not in str(info.value)
    assert_chain_free_of(info.value, SECRET)


class _StubAWSClient:
    def __init__(self, response: dict[str, Any]) -> None:
        self.response = response

    async def get_secret_value(self, **kwargs: Any) -> dict[str, Any]:
        return self.response


@pytest.mark.parametrize(
    "response",
    [
        {"SecretString": '{"HF_TOKEN": "' + SECRET + '",}'},  # trailing comma
        {"SecretBinary": b'{"HF_TOKEN": "' + SECRET.encode() + b'", "X": "\xff"}'},
    ],
    ids=["malformed-json", "binary-not-utf8"],
)
async def test_aws_malformed_secret_error_chain_carries_no_value(
    monkeypatch: pytest.MonkeyPatch, response: dict[str, Any]
) -> None:
    """A malformed secret raises ProviderError; the JSONDecodeError (its `doc`) or
    UnicodeDecodeError (its `object`) left on __context__ holds the whole secret."""
    provider = AWSSecretsManagerProvider("team/app", "us-east-1", environ={})
    stub = _StubAWSClient(response)

    async def client() -> _StubAWSClient:
        return stub

    monkeypatch.setattr(provider, "_client", client)
    with pytest.raises(ProviderError) as info:
        await provider.load_document()
    assert SECRET not in str(info.value)
    assert_chain_free_of(info.value, SECRET)


class _RaisingAdapter:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def get(self, url: str, **kwargs: Any) -> Any:
        raise self.exc

    def close(self) -> None:
        pass


class _FakeHvacClient:
    def __init__(self, exc: Exception) -> None:
        self.adapter = _RaisingAdapter(exc)


async def test_vault_failure_chain_carries_no_token(tmp_path: Path) -> None:
    """An error page that echoes the request (token included) must not travel with the
    ProviderError, not even on __context__ (the provider means not to chain it)."""
    import hvac.exceptions

    provider = HashiCorpVaultProvider(
        "http://127.0.0.1:8200", TOKEN, environ={"HOME": str(tmp_path)}
    )
    echoed = f"<html>502 from proxy; request headers: X-Vault-Token: {TOKEN}</html>"
    provider._client = _FakeHvacClient(hvac.exceptions.BadGateway(echoed, errors=[echoed]))
    with pytest.raises(ProviderError) as info:
        await provider.load_document()
    assert TOKEN not in str(info.value)
    assert_chain_free_of(info.value, TOKEN)


# -- AWS client lifetime ------------------------------------------------------------------


async def test_aws_aclose_while_a_lookup_waits_for_its_client_does_not_hang() -> None:
    """aclose racing a first lookup: the keeper task is cancelled before it ever ran, so its
    `except CancelledError` never sets `ready`, and the lookup waits forever. It must end
    (with ProviderError or a value), not hang."""
    provider = AWSSecretsManagerProvider(
        "team/app", "us-east-1", endpoint_url="http://127.0.0.1:9", environ={}
    )
    lookup = asyncio.create_task(provider.load_document())
    await asyncio.sleep(0)  # the lookup creates the keeper task and waits on it
    await provider.aclose()  # cancels the keeper before its first step
    try:
        done, _ = await asyncio.wait({lookup}, timeout=3.0)
        assert lookup in done, "the lookup still waits for a client that will never open"
        assert isinstance(lookup.exception(), ProviderError)
    finally:
        lookup.cancel()
        await asyncio.gather(lookup, return_exceptions=True)


# -- file: parse errors name the line -----------------------------------------------------


@pytest.mark.parametrize("bad", ["\x07", "\x00", "\x1b"], ids=["bell", "nul", "escape"])
async def test_yaml_control_character_error_names_the_line(tmp_path: Path, bad: str) -> None:
    """A malformed file raises SecretFileError naming the path and line (SPEC 2). PyYAML's
    ReaderError (a control character) is not a MarkedYAMLError, so no line is given."""
    path = write(tmp_path / "s.yaml", f"A: ok\nB: {SECRET}{bad}\nC: x\n")
    with pytest.raises(SecretFileError) as info:
        await FileSecretProvider(path).get("A")
    assert SECRET not in str(info.value)
    assert info.value.line == 2
    assert "line 2" in str(info.value)


# -- errors -------------------------------------------------------------------------------


def test_secret_file_error_survives_pickling() -> None:
    """Exceptions cross process boundaries (ProcessPoolExecutor, multiprocessing, copy.copy):
    SecretFileError's required keyword `path` makes unpickling raise TypeError."""
    import copy
    import pickle

    error = SecretFileError("secrets file /x is not valid JSON at line 3", path="/x", line=3)
    clone = pickle.loads(pickle.dumps(error))
    assert isinstance(clone, SecretFileError)
    assert (str(clone), clone.path, clone.line, clone.provider) == (
        str(error),
        Path("/x"),
        3,
        "file",
    )
    assert copy.copy(error).path == Path("/x")


# -- command line -------------------------------------------------------------------------


def test_set_with_a_value_on_the_command_line_does_not_echo_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`set KEY VALUE` is refused (exit 2), but argparse's usage error repeats the value on
    stderr ("unrecognized arguments: <value>"), into terminals and CI logs: CLI output other
    than an explicit `get` must not show a value."""
    from simpletuner_secrets import cli

    try:
        code = cli.main(["set", "HF_TOKEN", SECRET])
    except SystemExit as exc:  # argparse's usage error
        code = exc.code  # type: ignore[assignment]
    assert code == 2
    captured = capsys.readouterr()
    assert SECRET not in captured.err + captured.out


# -- file: writes that cannot proceed say so ----------------------------------------------


async def test_writing_through_a_symlink_loop_is_a_secret_file_error(tmp_path: Path) -> None:
    """A secrets file that is a symlink loop cannot be written through: SecretFileError
    naming the file, not a bare RuntimeError (a traceback in the CLI)."""
    path = tmp_path / "secrets" / "s.json"
    path.parent.mkdir(mode=0o700)
    os.symlink(path.name, path)  # points at itself
    with pytest.raises(SecretFileError, match="symlink"):
        await FileSecretProvider(path).set("A", "value")


async def test_an_unlistable_directory_is_a_secret_file_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The directory's stale temporaries cannot be listed (permissions; root ignores them
    here, so scandir is made to refuse): SecretFileError, and the file keeps its content."""
    path = write(tmp_path / "secrets" / "s.json", json.dumps({"A": "old"}))
    real_scandir = os.scandir

    def refusing(target: Any) -> Any:
        if str(target) == str(path.parent):
            raise PermissionError(13, "Permission denied")
        return real_scandir(target)

    monkeypatch.setattr(os, "scandir", refusing)
    with pytest.raises(SecretFileError, match="cannot be listed"):
        await FileSecretProvider(path).set("A", "new")
    assert json.loads(path.read_text()) == {"A": "old"}
