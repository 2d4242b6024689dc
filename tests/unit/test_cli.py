"""The command line end to end, in subprocesses with an isolated HOME and environment."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

SECRET = "hf_cli_secret_value_123456"
#: The console script installed beside this interpreter (the real entry point).
SCRIPT = shutil.which("simpletuner-secrets", path=str(Path(sys.executable).parent))


def clean_env(home: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VAULT_", "BAO_", "AWS_", "SIMPLETUNER_"))
        and k not in ("HF_TOKEN", "REPLICATE_API_TOKEN", "CLOUD_WEBHOOK_SECRET")
        # a terminal size the runner exports (pytest-xdist workers set LINES/COLUMNS)
        # would outrank the tests' own file keys of those names
        and k not in ("LINES", "COLUMNS")
    }
    clean["HOME"] = str(home)
    clean.update(env or {})
    return clean


def run(
    home: Path,
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    script: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run the command line (``python -m``, or with ``script`` the console script)."""
    if script:
        assert SCRIPT, "the simpletuner-secrets script is not installed beside this Python"
    command = [SCRIPT] if script and SCRIPT else [sys.executable, "-m", "simpletuner_secrets.cli"]
    return subprocess.run(
        [*command, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=clean_env(home, env),
        timeout=60,
    )


def write_secrets(home: Path, document: dict[str, str]) -> Path:
    """Write ``document`` as the default secrets file (0600 in a 0700 directory)."""
    target = home / ".simpletuner"
    target.mkdir(mode=0o700, exist_ok=True)
    path = target / "secrets.json"
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    return path


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


def test_doctor_on_a_fresh_machine_exits_zero(home: Path) -> None:
    """doctor with nothing configured lists the chain, why AWS and Vault are out, the keys."""
    proc = run(home, "doctor")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "env" in out and "file" in out
    assert "aws    left out" in out and "vault  left out" in out
    assert "the file does not exist yet" in out
    for key in ("REPLICATE_API_TOKEN", "HF_TOKEN", "CLOUD_WEBHOOK_SECRET"):
        assert f"{key:<22} absent" in out
    assert "status: healthy" in out


def test_set_from_stdin_then_get_which_list_delete(home: Path) -> None:
    """set reads stdin (one newline stripped); get prints; which/list mask; delete removes."""
    proc = run(home, "set", "hf-token", stdin=SECRET + "\n", script=True)
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert proc.stdout.startswith("HF_TOKEN written to ")  # the stored name, not the typed one
    path = home / ".simpletuner" / "secrets.json"
    assert json.loads(path.read_text()) == {"HF_TOKEN": SECRET}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    got = run(home, "get", "HF_TOKEN")
    assert (got.returncode, got.stdout) == (0, SECRET + "\n")

    which = run(home, "which", "hf-token")
    assert which.returncode == 0
    assert "file" in which.stdout and SECRET not in which.stdout
    assert "hf**********" in which.stdout

    listed = run(home, "list")
    assert listed.returncode == 0 and "HF_TOKEN" in listed.stdout
    assert SECRET not in listed.stdout

    doctor = run(home, "doctor")
    assert SECRET not in doctor.stdout and "hf**********" in doctor.stdout

    assert run(home, "delete", "hf-token").returncode == 0
    assert run(home, "delete", "hf-token").returncode == 1
    assert run(home, "get", "HF_TOKEN").returncode == 1


def test_absent_key_exits_one_and_bad_key_exits_two(home: Path) -> None:
    """get/which of an absent key exit 1; an empty key is a usage error (exit 2, one line)."""
    assert run(home, "get", "NOPE").returncode == 1
    assert run(home, "which", "NOPE").returncode == 1
    bad = run(home, "get", " ")
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error:")


def test_set_refuses_a_value_on_the_command_line(home: Path) -> None:
    """A value given as an extra argument is a usage error, never written."""
    proc = run(home, "set", "HF_TOKEN", SECRET)
    assert proc.returncode == 2
    assert not (home / ".simpletuner" / "secrets.json").exists()


def test_environment_wins_and_list_shows_prefixed_variables(home: Path) -> None:
    """An environment variable beats the file; with a prefix, list shows its variables."""
    run(home, "set", "HF_TOKEN", stdin="from-file")
    env = {"HF_TOKEN": "from-env-value-long"}
    assert run(home, "get", "HF_TOKEN", env=env).stdout == "from-env-value-long\n"
    listed = run(home, "--env-prefix", "APP", "list", env={"APP_DB_PASSWORD": "pg-password-long"})
    assert "DB_PASSWORD" in listed.stdout and "pg-password-long" not in listed.stdout


def test_malformed_file_is_a_one_line_error_without_the_value(home: Path) -> None:
    """A broken secrets file gives exit 2 and a message naming the file, not the secret."""
    target = home / ".simpletuner"
    target.mkdir(mode=0o700)
    (target / "secrets.json").write_text('{"HF_TOKEN": "' + SECRET + '",,}')
    (target / "secrets.json").chmod(0o600)
    proc = run(home, "get", "HF_TOKEN")
    assert proc.returncode == 2
    assert "secrets.json" in proc.stderr and SECRET not in proc.stderr + proc.stdout


def test_help_and_version(home: Path) -> None:
    """--help lists the commands; --version prints the version."""
    helped = run(home, "--help")
    assert helped.returncode == 0
    for command in ("get", "set", "delete", "which", "list", "doctor"):
        assert command in helped.stdout
    assert run(home, "--version").stdout.startswith("simpletuner-secrets ")


# -- exit codes: configuration mistakes are not "absent" (SPEC 11) --------------------------


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"VAULT_ADDR": "htp://127.0.0.1:8200", "VAULT_TOKEN": "t"}, "htp://"),
        ({"VAULT_ADDR": "http://127.0.0.1:8200"}, "VAULT_TOKEN"),
    ],
    ids=["mistyped-scheme", "address-without-token"],
)
@pytest.mark.parametrize(
    "command",
    [("get", "HF_TOKEN"), ("which", "HF_TOKEN"), ("export", "--key", "HF_TOKEN")],
    ids=lambda c: c[0],
)
def test_wrong_provider_settings_exit_two_not_absent(
    home: Path, settings: dict[str, str], named: str, command: tuple[str, ...]
) -> None:
    """A provider left out because its settings are wrong is a configuration error: exit 2
    with an error line naming the setting, never exit 1 ("absent")."""
    proc = run(home, *command, env=settings)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "vault" in errors[0] and named in errors[0]


def test_wrong_settings_make_run_exit_two_without_running(home: Path, tmp_path: Path) -> None:
    """`run` with a provider's settings wrong exits 2 and never starts the command."""
    marker = tmp_path / "ran"
    proc = run(
        home,
        "run",
        "--all",
        "--",
        "touch",
        str(marker),
        env={"VAULT_ADDR": "http://127.0.0.1:8200"},
    )
    assert proc.returncode == 2, proc.stderr
    assert not marker.exists()


def test_a_failing_provider_that_could_answer_exits_two(home: Path) -> None:
    """Vault refusing connections: `get` of a key only Vault could hold exits 2, not 1."""
    env = {"VAULT_ADDR": f"http://127.0.0.1:{closed_port()}", "VAULT_TOKEN": "t"}
    proc = run(home, "get", "HF_TOKEN", env=env)
    assert proc.returncode == 2, proc.stderr
    assert "error: vault" in proc.stderr


# -- doctor ------------------------------------------------------------------------------


def test_doctor_with_vault_unreachable_exits_three_and_keys_are_unknown(home: Path) -> None:
    """A configured Vault that refuses connections: doctor exits 3 and reports the known keys
    it could hold as "unknown", not "absent"; a key a higher provider has is still found."""
    env = {
        "VAULT_ADDR": f"http://127.0.0.1:{closed_port()}",
        "VAULT_TOKEN": "t",
        "HF_TOKEN": SECRET,
    }
    proc = run(home, "doctor", env=env)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    (vault,) = [line for line in lines if line.strip().startswith("vault")]
    assert "FAILED" in vault
    assert any(line.split() == ["HF_TOKEN", "env", "hf**********"] for line in lines)
    for key in ("REPLICATE_API_TOKEN", "CLOUD_WEBHOOK_SECRET"):
        (row,) = [line for line in lines if line.strip().startswith(key)]
        assert "unknown: vault failed" in row and "absent" not in row
    assert SECRET not in proc.stdout + proc.stderr


def test_doctor_with_a_malformed_file_exits_three_without_the_value(home: Path) -> None:
    """A malformed secrets file: doctor exits 3, names the file, keys unknown, no value."""
    target = home / ".simpletuner"
    target.mkdir(mode=0o700)
    (target / "secrets.json").write_text('{"HF_TOKEN": "' + SECRET + '",,}')
    (target / "secrets.json").chmod(0o600)
    proc = run(home, "doctor")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "secrets.json" in proc.stdout and SECRET not in proc.stdout + proc.stderr
    (row,) = [line for line in proc.stdout.splitlines() if line.strip().startswith("HF_TOKEN")]
    assert "unknown: file failed" in row


def test_doctor_with_wrong_settings_exits_two(home: Path) -> None:
    """doctor reports a provider left out for wrong settings and exits 2."""
    proc = run(home, "doctor", env={"VAULT_ADDR": "http://127.0.0.1:8200"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "vault  left out: SETTINGS WRONG" in proc.stdout


def test_doctor_json_is_one_object_with_states(home: Path) -> None:
    """doctor --json: providers, left-out providers, keys with state, and the exit code."""
    write_secrets(home, {"HF_TOKEN": SECRET})
    env = {"VAULT_ADDR": f"http://127.0.0.1:{closed_port()}", "VAULT_TOKEN": "t"}
    proc = run(home, "doctor", "--json", env=env)
    assert proc.returncode == 3
    report = json.loads(proc.stdout)
    states = {p["name"]: p["reachable"] for p in report["providers"]}
    assert states == {"env": True, "file": True, "vault": False}
    keys = {k["key"]: (k["state"], k["provider"], k["value"]) for k in report["keys"]}
    assert keys["HF_TOKEN"] == ("found", "file", "hf**********")
    assert keys["REPLICATE_API_TOKEN"] == ("unknown", None, None)
    # The secrets directory is left out too: none is set and /run/secrets does not exist.
    assert [e["name"] for e in report["left_out"]] == ["dir", "aws"]
    assert report["exit_code"] == 3
    assert SECRET not in proc.stdout


# -- option placement (SPEC 11: global options before or after the command) ----------------


@pytest.mark.parametrize(
    "args",
    [
        ("--file", "{f}", "get", "K"),
        ("get", "--file", "{f}", "K"),
        ("get", "K", "--file", "{f}"),
        ("get", "--file={f}", "K"),
    ],
    ids=["before", "after-command", "after-key", "equals"],
)
def test_file_option_before_or_after_the_command(
    home: Path, tmp_path: Path, args: tuple[str, ...]
) -> None:
    """`--file X` is accepted before the command, after it, and after the key."""
    path = tmp_path / "elsewhere.json"
    path.write_text(json.dumps({"K": "from-elsewhere"}))
    path.chmod(0o600)
    proc = run(home, *(a.format(f=path) for a in args))
    assert (proc.returncode, proc.stdout) == (0, "from-elsewhere\n"), proc.stderr


def test_env_prefix_after_the_command(home: Path) -> None:
    """`get KEY --env-prefix APP` reads APP_KEY."""
    proc = run(home, "get", "db-password", "--env-prefix", "APP", env={"APP_DB_PASSWORD": "pg"})
    assert (proc.returncode, proc.stdout) == (0, "pg\n"), proc.stderr


def test_set_and_delete_with_file_after_the_command(home: Path, tmp_path: Path) -> None:
    """`set --file X KEY` writes X; `delete KEY --file X` removes it there."""
    path = tmp_path / "store" / "s.yaml"
    assert run(home, "set", "--file", str(path), "k", stdin="v").returncode == 0
    assert "K: v" in path.read_text()
    assert run(home, "delete", "K", "--file", str(path)).returncode == 0
    assert run(home, "get", "K", "--file", str(path)).returncode == 1


# -- a closed output pipe ------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [("list",), ("get", "HF_TOKEN"), ("export", "--all"), ("doctor",)],
    ids=lambda a: a[0],
)
def test_a_closed_output_pipe_ends_quietly(home: Path, args: tuple[str, ...]) -> None:
    """Output to a pipe whose reader is gone: no traceback, nothing on stderr, exit 141."""
    write_secrets(home, {"HF_TOKEN": SECRET, "OTHER_KEY": "other-value"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "simpletuner_secrets.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(home),
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before the first write
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert err.decode() == ""
    assert proc.returncode == 141


def test_list_piped_into_head_prints_no_traceback(home: Path) -> None:
    """`list | head -2` with more output than a pipe holds: two lines, no error text."""
    write_secrets(home, {f"KEY_{i:05d}": f"value-{i}-long-enough" for i in range(6000)})
    proc = subprocess.run(
        [
            "bash",
            "-o",
            "pipefail",
            "-c",
            f"{sys.executable} -m simpletuner_secrets.cli list | head -2",
        ],
        capture_output=True,
        text=True,
        env=clean_env(home),
        timeout=60,
    )
    assert proc.stdout.splitlines() == ["[env]", "[file]"]
    assert proc.stderr == ""
    assert proc.returncode == 141


# -- run -------------------------------------------------------------------------------------

SHOW_ENV = (
    "import os, sys; print(os.environ.get(sys.argv[1], '<unset>')); sys.exit(int(sys.argv[2]))"
)


def test_run_puts_secrets_in_the_environment_and_returns_the_code(home: Path) -> None:
    """`run --key K -- CMD`: CMD sees K in its environment, not in argv; exit code is CMD's."""
    write_secrets(home, {"HF_TOKEN": SECRET})
    proc = run(
        home, "run", "--key", "hf-token", "--", sys.executable, "-c", SHOW_ENV, "HF_TOKEN", "7"
    )
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout == SECRET + "\n"


def test_run_all_passes_every_listed_key(home: Path) -> None:
    """`run --all` passes every key `list` shows: file keys and environment keys."""
    write_secrets(home, {"DB_PASSWORD": "pg-secret"})
    script = "import os; print(os.environ['DB_PASSWORD'], os.environ['HF_TOKEN'])"
    proc = run(
        home, "run", "--all", "--", sys.executable, "-c", script, env={"HF_TOKEN": "from-env"}
    )
    assert (proc.returncode, proc.stdout) == (0, "pg-secret from-env\n"), proc.stderr


def test_run_argv_of_the_child_holds_no_secret(home: Path) -> None:
    """The child's command line (/proc/self/cmdline) is exactly what was given."""
    write_secrets(home, {"HF_TOKEN": SECRET})
    script = "print(open('/proc/self/cmdline','rb').read().split(b'\\0'))"
    proc = run(home, "run", "--key", "HF_TOKEN", "--", sys.executable, "-c", script)
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout and "/proc/self/cmdline" in proc.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("run", "--key", "NOPE", "--", "true"), 1, "no provider has NOPE"),
        (("run", "--key", "HF_TOKEN"), 2, "run needs a command"),
        (("run", "--", "true"), 2, "--key KEY"),
        (("run", "--key", "HF_TOKEN", "--", "no-such-command-xyz"), 127, "command not found"),
    ],
    ids=["absent-key", "no-command", "no-keys", "not-found"],
)
def test_run_refusals(home: Path, args: tuple[str, ...], code: int, message: str) -> None:
    """`run` refuses an absent key (1), a missing command or key list (2), and says 127
    for a command that does not exist."""
    write_secrets(home, {"HF_TOKEN": SECRET})
    proc = run(home, *args)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr and SECRET not in proc.stderr + proc.stdout


# -- export ----------------------------------------------------------------------------------

NASTY = {
    "SPACES": "a value with  spaces",
    "QUOTES": 'it\'s "quoted" `here`',
    "SUBST": "$(touch /tmp/pwned) ${HOME} $HOME",
    "LINES": "line one\nline two\n\ttabbed\\n",
}


def test_export_sh_round_trips_through_eval_in_bash(home: Path, tmp_path: Path) -> None:
    """`eval "$(export --all)"` in bash sets every value exactly; nothing is executed."""
    marker = tmp_path / "pwned"
    values = {**NASTY, "SUBST": NASTY["SUBST"].replace("/tmp/pwned", str(marker))}
    write_secrets(home, values)
    script = (
        f'eval "$({sys.executable} -m simpletuner_secrets.cli export --all --format sh)" || exit 9\n'
        + "".join(f'printf "%s\\0" "${name}"\n' for name in values)
    )
    proc = subprocess.run(
        ["bash", "-c", script], capture_output=True, env=clean_env(home), timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().split("\0")[:-1] == list(values.values())
    assert not marker.exists()


def test_export_dotenv_reads_back_with_python_dotenv(home: Path) -> None:
    """`export --format dotenv` is read back exactly by python-dotenv (interpolate=False)."""
    import io

    from dotenv import dotenv_values

    write_secrets(home, NASTY)
    proc = run(home, "export", "--all", "--format", "dotenv")
    assert proc.returncode == 0, proc.stderr
    assert dotenv_values(stream=io.StringIO(proc.stdout), interpolate=False) == NASTY


def test_export_json_holds_the_keys_asked(home: Path) -> None:
    """`export --key A --key B --format json`: one object with exactly those keys."""
    write_secrets(home, {**NASTY, "UNASKED": "x"})
    proc = run(home, "export", "--key", "spaces", "--key", "LINES", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"SPACES": NASTY["SPACES"], "LINES": NASTY["LINES"]}


def test_export_of_an_absent_key_exits_one_and_prints_nothing(home: Path) -> None:
    """`export --key NOPE` exits 1 and prints no partial output."""
    write_secrets(home, {"HF_TOKEN": SECRET})
    proc = run(home, "export", "--key", "HF_TOKEN", "--key", "NOPE")
    assert proc.returncode == 1
    assert proc.stdout == "" and "NOPE" in proc.stderr


def test_export_skips_keys_that_cannot_be_variables(home: Path) -> None:
    """`export --all` skips a key that is no shell name, with a warning naming it."""
    write_secrets(home, {"GOOD": "1", "1BAD": "2"})
    proc = run(home, "export", "--all")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "export GOOD=1\n"
    assert "1BAD" in proc.stderr and "2" not in proc.stderr


# -- --json and which --all -------------------------------------------------------------------


def test_list_json(home: Path) -> None:
    """list --json: each provider's keys, values masked, and the providers left out."""
    write_secrets(home, {"HF_TOKEN": SECRET})
    proc = run(home, "list", "--json", env={"REPLICATE_API_TOKEN": "short"})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    keys = {p["name"]: p["keys"] for p in data["providers"]}
    assert keys == {
        "env": {"REPLICATE_API_TOKEN": "********"},
        "file": {"HF_TOKEN": "hf**********"},
    }
    assert {e["name"] for e in data["left_out"]} == {"aws", "dir", "vault"}
    assert SECRET not in proc.stdout


def test_which_all_lists_every_holder_and_marks_the_answer(home: Path) -> None:
    """which --all: every provider that holds the key; the first one answers."""
    write_secrets(home, {"HF_TOKEN": SECRET})
    env = {"HF_TOKEN": "env-value-long-enough"}
    text = run(home, "which", "--all", "hf-token", env=env)
    assert text.returncode == 0, text.stderr
    assert "env    has it (en**********)  <- answers" in text.stdout
    assert "file   has it (hf**********)" in text.stdout
    data = json.loads(run(home, "which", "--all", "--json", "HF_TOKEN", env=env).stdout)
    assert data["provider"] == "env" and data["state"] == "found"
    assert [p["name"] for p in data["providers"] if p["has"]] == ["env", "file"]
    assert SECRET not in text.stdout


def test_which_json_and_which_all_of_an_absent_key(home: Path) -> None:
    """which --json prints explain()'s fields; an absent key exits 1 with or without --all."""
    write_secrets(home, {"HF_TOKEN": SECRET})
    data = json.loads(run(home, "which", "--json", "HF_TOKEN").stdout)
    assert (data["key"], data["provider"], data["value"]) == ("HF_TOKEN", "file", "hf**********")
    assert run(home, "which", "--json", "NOPE").returncode == 1
    assert run(home, "which", "--all", "NOPE").returncode == 1


def test_which_all_with_a_failed_provider_is_unknown(home: Path) -> None:
    """which --all of a key no one has while Vault fails: state unknown, exit 2."""
    env = {"VAULT_ADDR": f"http://127.0.0.1:{closed_port()}", "VAULT_TOKEN": "t"}
    proc = run(home, "which", "--all", "--json", "NOPE", env=env)
    assert proc.returncode == 2
    data = json.loads(proc.stdout)
    assert data["state"] == "unknown"
    assert [p["name"] for p in data["providers"] if p["error"]] == ["vault"]


# -- help ------------------------------------------------------------------------------------

COMMANDS = ("get", "set", "delete", "which", "list", "export", "run", "doctor")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_a_description_and_argument_help(home: Path, command: str) -> None:
    """`COMMAND --help` has a description, help for each argument, and names the default file."""
    proc = run(home, command, "--help")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    # argparse prints the description after the usage block, before the argument lists.
    description = lines[lines.index("") + 1]
    assert description and not description.startswith(("positional", "options"))
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(("KEY ", "--", "-h")) and "  " in stripped:
            assert len(stripped.split("  ", 1)[1].strip()) > 5, line
    assert "~/.simpletuner/secrets.json" in proc.stdout
    assert "exit codes:" in proc.stdout


def stalled_listener() -> socket.socket:
    """A loopback socket that accepts connections into its backlog and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def test_doctor_probes_stalled_providers_at_the_same_time(home: Path) -> None:
    """Vault and AWS both stalled: doctor reports both timed out after one provider timeout
    (5 s), not one after the other (10 s and more)."""
    import time

    with stalled_listener() as vault, stalled_listener() as aws:
        empty = home / "aws-empty"
        empty.write_text("")
        env = {
            "VAULT_ADDR": f"http://127.0.0.1:{vault.getsockname()[1]}",
            "VAULT_TOKEN": "t",
            "SIMPLETUNER_AWS_SECRET_NAME": "name",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{aws.getsockname()[1]}",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_CONFIG_FILE": str(empty),
            "AWS_SHARED_CREDENTIALS_FILE": str(empty),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        start = time.monotonic()
        proc = run(home, "doctor", "--json", env=env)
        elapsed = time.monotonic() - start
    assert proc.returncode == 3, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    failed = {p["name"]: p["error"] for p in report["providers"] if not p["reachable"]}
    assert failed == {"aws": "no answer within 5 s", "vault": "no answer within 5 s"}
    # Two 5 s timeouts in sequence take 10 s at least; at once, 5 s plus the start-up.
    assert elapsed < 9.5, elapsed


def test_readme_block_for_other_programs_runs(home: Path, tmp_path: Path) -> None:
    """The README's `run`/`export` block runs line by line (train.py and deploy.sh stand-ins
    report what they received) and every line exits 0."""
    from tests.unit.test_readme import blocks
    from tests.unit.test_readme import clean_env as readme_env

    (block,) = [b for b in blocks("sh") if "simpletuner-secrets run" in b]
    write_secrets(home, {"HF_TOKEN": SECRET})
    work = tmp_path / "work"
    work.mkdir()
    (work / "train.py").write_text("import os\nprint('train', os.environ['HF_TOKEN'])\n")
    deploy = work / "deploy.sh"
    deploy.write_text('#!/bin/sh\necho "deploy $HF_TOKEN"\n')
    deploy.chmod(0o755)
    lines = [line.split("  #")[0].strip() for line in block.splitlines()]
    outputs = []
    for line in filter(None, lines):
        proc = subprocess.run(
            ["bash", "-c", f'{line} && echo "eval:${{HF_TOKEN:-}}"'],
            capture_output=True,
            text=True,
            env=readme_env(home),
            cwd=work,
            timeout=60,
        )
        assert proc.returncode == 0, f"{line}: {proc.stderr}"
        outputs.append(proc.stdout)
    assert outputs[0].startswith(f"train {SECRET}\n")
    assert outputs[1].startswith(f"deploy {SECRET}\n")
    assert outputs[2] == f"eval:{SECRET}\n"  # export + eval set it in that shell
    assert (work / ".env").read_text() == f'HF_TOKEN="{SECRET}"\n'


def test_list_with_a_failing_provider_or_wrong_settings_exits_two(home: Path) -> None:
    """list prints what it can, marks a malformed file unavailable, and exits 2; wrong
    settings of a provider also exit 2 after the listing."""
    target = home / ".simpletuner"
    target.mkdir(mode=0o700)
    (target / "secrets.json").write_text('{"HF_TOKEN": "' + SECRET + '",,}')
    (target / "secrets.json").chmod(0o600)
    proc = run(home, "list", env={"REPLICATE_API_TOKEN": "from-env-long-value"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "REPLICATE_API_TOKEN = fr**********" in proc.stdout
    assert "[file]\n  unavailable: secrets file" in proc.stdout
    assert SECRET not in proc.stdout + proc.stderr
    (target / "secrets.json").write_text("{}")
    wrong = run(home, "list", env={"VAULT_ADDR": "http://127.0.0.1:8200"})
    assert wrong.returncode == 2
    assert "[vault] left out: its settings are partial, missing VAULT_TOKEN" in wrong.stdout


def test_doctor_keys_are_unknown_while_a_provider_with_wrong_settings_is_left_out(
    home: Path,
) -> None:
    """Vault left out for a missing token might hold the known keys: they are "unknown",
    not "absent"; a key the environment has is found."""
    env = {"VAULT_ADDR": "http://127.0.0.1:8200", "HF_TOKEN": SECRET}
    proc = run(home, "doctor", "--json", env=env)
    assert proc.returncode == 2
    keys = {k["key"]: (k["state"], k["failed"]) for k in json.loads(proc.stdout)["keys"]}
    assert keys["HF_TOKEN"] == ("found", [])
    assert keys["REPLICATE_API_TOKEN"] == ("unknown", ["vault"])
    text = run(home, "doctor", env=env).stdout
    assert "unknown: vault's settings are wrong" in text
