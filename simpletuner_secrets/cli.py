"""The `simpletuner-secrets` command line, built on the public API only.

Exit codes (SPEC 11): 0 found / done / healthy; 1 absent; 2 usage or configuration error (a
provider left out because its settings are wrong, or a failing provider that could have
answered); 3 `doctor` found a configured provider failing or a malformed file; 130 interrupted;
141 the output pipe was closed (`| head`). Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._cli_chain import Exit, decide, probe_all
from ._cli_doctor import doctor
from ._cli_formats import ExportFormat, is_variable_name, render
from ._cli_prompt import Interrupted, NoValueGiven, read_value
from .errors import SecretsError
from .keys import normalize_key
from .manager import SecretsManager, mask

__all__ = ["Exit", "main"]

PROG = "simpletuner-secrets"

FILE_HELP = (
    "secrets file to read and write (default: the first existing of "
    "~/.simpletuner/secrets.json, secrets.yaml, secrets.yml; a new file is "
    "~/.simpletuner/secrets.json)"
)
ENV_PREFIX_HELP = (
    "read environment variables under this prefix: with APP, key DB_PASSWORD is "
    "APP_DB_PASSWORD (default: no prefix)"
)
EXIT_CODES = """\
exit codes:
  0    found, done, healthy
  1    absent: no provider has the key
  2    usage or configuration error: bad arguments, a provider left out because its
       settings are wrong, or a failing provider that could have answered
  3    doctor: a configured provider is unreachable or failing, or a file is malformed
  130  interrupted (Ctrl-C)
  141  the output pipe was closed (| head)

Global options (--file, --env-prefix) go before or after the command."""


def _add_global_options(parser: argparse.ArgumentParser, *, on_command: bool) -> None:
    # On a command the defaults are SUPPRESS, so that an option given before the command is
    # not reset by the command's parser (argparse copies every default into the namespace).
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if on_command else value

    parser.add_argument(
        "--file", dest="file_path", metavar="PATH", default=default(None), help=FILE_HELP
    )
    parser.add_argument("--env-prefix", metavar="PREFIX", default=default(""), help=ENV_PREFIX_HELP)


def _key_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("key", metavar="KEY", help=f"{what}; any spelling: hf-token is HF_TOKEN")


def _selection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key",
        dest="keys",
        metavar="KEY",
        action="append",
        default=[],
        help="a key to include (repeat for more); exit 1 when no provider has it",
    )
    parser.add_argument("--all", action="store_true", help="include every key `list` shows")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the command line (global options before or after the command)."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Resolve secrets from the chain environment > secrets file > AWS Secrets Manager "
            "> Vault, configured by environment variables."
        ),
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_global_options(parser, on_command=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, summary: str, description: str, usage: str | None = None
    ) -> argparse.ArgumentParser:
        child = sub.add_parser(
            name,
            help=summary,
            usage=usage,
            description=textwrap.fill(description, 88),
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_global_options(child, on_command=True)
        return child

    get = command(
        "get",
        "print a secret's value (exit 1 when absent)",
        "Print the value of KEY from the highest-priority provider that has it.",
    )
    _key_argument(get, "the key to print")

    put = command(
        "set",
        "write a secret to the secrets file; value from stdin or a hidden prompt",
        "Write KEY to the secrets file. The value is read from standard input (one trailing "
        "newline stripped) or, on a terminal, typed at a hidden prompt; never from the "
        "command line, where other users and the shell history could see it.",
    )
    _key_argument(put, "the key to write")

    delete = command(
        "delete",
        "remove a secret from the secrets file (exit 1 when absent)",
        "Remove KEY from the secrets file. Other providers are not changed.",
    )
    _key_argument(delete, "the key to remove")

    which = command(
        "which",
        "say which provider answers a key, value masked (exit 1 when absent)",
        "Say which provider answers KEY, with the value masked; with --all, every provider "
        "that holds it.",
    )
    _key_argument(which, "the key to look up")
    which.add_argument(
        "--all", action="store_true", help="ask every provider, not only until one answers"
    )
    which.add_argument("--json", action="store_true", help="print one JSON object")

    listing = command(
        "list",
        "list the keys of every provider, values masked",
        "List the keys each provider holds, values masked. For the environment: the known "
        "keys, or with --env-prefix every variable under the prefix.",
    )
    listing.add_argument("--json", action="store_true", help="print one JSON object")

    export = command(
        "export",
        "print secrets for a shell, a .env file or JSON (values shown)",
        'Print the chosen secrets with their values, for `eval "$(simpletuner-secrets '
        'export --all)"`, a .env file, or a JSON consumer.',
    )
    _selection_arguments(export)
    export.add_argument(
        "--format",
        choices=[f.value for f in ExportFormat],
        default=ExportFormat.SH.value,
        help='sh: export lines quoted for eval (default); dotenv: KEY="value" lines; '
        "json: one object",
    )

    run = command(
        "run",
        "run a command with secrets in its environment",
        "Run CMD with the chosen secrets added to its environment (never to its arguments); "
        "the exit code is CMD's.",
        usage=f"{PROG} run [options] [--key KEY]... [--all] -- CMD [ARGS...]",
    )
    _selection_arguments(run)
    run.add_argument(
        "cmd",
        metavar="-- CMD [ARGS...]",
        nargs=argparse.REMAINDER,
        help="the command to run, after --",
    )

    check = command(
        "doctor",
        "check every provider: configured, reachable, latency",
        "Probe every provider at once and report whether it is configured, reachable and "
        "how fast, which providers are left out and why, and who answers the known keys "
        "(values masked). Exit 3 when a configured provider fails.",
    )
    check.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


@dataclass
class ExecRequest:
    """`run`'s command, to replace this process once the manager is closed."""

    argv: list[str]
    env: dict[str, str] = field(repr=False)


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _refuse_misconfigured(manager: SecretsManager) -> bool:
    wrong = [entry for entry in manager.left_out if entry.misconfigured]
    for entry in wrong:
        reason = entry.reason.removeprefix(f"{entry.provider}: ")
        _error(f"{entry.provider} provider left out: {reason} (fix its settings or unset them)")
    return bool(wrong)


async def _which(manager: SecretsManager, key: str, *, every: bool, as_json: bool) -> Exit:
    if not every:
        info = await manager.explain(key)
        if as_json:
            print(json.dumps(info))
        elif info["provider"] is None:
            print(f"{info['key']}: not found")
        else:
            print(f"{info['key']}: {info['provider']} ({info['value']})")
        return Exit.ABSENT if info["provider"] is None else Exit.OK
    nkey = normalize_key(key)
    probes = await probe_all(manager.providers, [nkey], manager.provider_timeout)
    decision = decide(probes, nkey)
    rows: list[dict[str, Any]] = [
        {
            "name": p.name,
            "has": nkey in p.values,
            "value": mask(p.values.get(nkey)),
            "error": p.error,
        }
        for p in probes
    ]
    if as_json:
        print(
            json.dumps(
                {
                    "key": nkey,
                    "provider": decision.provider,
                    "state": decision.state,
                    "providers": rows,
                }
            )
        )
    else:
        print(f"{nkey}: {decision.state}")
        for row in rows:
            if row["error"] is not None:
                print(f"  {row['name']:<6} FAILED: {row['error']}")
            elif row["has"]:
                answers = "  <- answers" if row["name"] == decision.provider else ""
                print(f"  {row['name']:<6} has it ({row['value']}){answers}")
            else:
                print(f"  {row['name']:<6} -")
    if decision.state == "unknown":
        return Exit.USAGE
    return Exit.ABSENT if decision.provider is None else Exit.OK


async def _list(manager: SecretsManager, *, as_json: bool) -> Exit:
    probes = await probe_all(manager.providers, None, manager.provider_timeout)
    rows: list[dict[str, Any]] = [
        {
            "name": p.name,
            "listed": p.listed,
            "keys": {k: mask(p.values[k]) for k in sorted(p.values)},
            "error": p.error,
        }
        for p in probes
    ]
    left_out = [
        {"name": e.provider, "reason": e.reason, "misconfigured": e.misconfigured}
        for e in manager.left_out
    ]
    if as_json:
        print(json.dumps({"providers": rows, "left_out": left_out}, indent=2))
    else:
        for row in rows:
            print(f"[{row['name']}]")
            if row["error"] is not None:
                print(f"  unavailable: {row['error']}")
            elif not row["listed"]:
                print("  (this provider cannot list its keys)")
            for key, shown in row["keys"].items():
                print(f"  {key} = {shown}")
        for entry in left_out:
            print(f"[{entry['name']}] left out: {entry['reason']}")
    failed = any(p.error is not None for p in probes)
    wrong = any(e.misconfigured for e in manager.left_out)
    return Exit.USAGE if failed or wrong else Exit.OK


async def _select(
    manager: SecretsManager, keys: Sequence[str], every: bool, *, any_name: bool
) -> dict[str, str] | Exit:
    """The values `export` and `run` pass on: the keys asked, and with ``every`` all keys
    `list` shows. Keys asked that no provider has exit 1; keys that cannot be variable names
    exit 2 when asked, and are skipped with a warning when only listed."""
    asked = list(dict.fromkeys(normalize_key(k) for k in keys))
    if not asked and not every:
        _error("name the secrets with --key KEY (repeatable) or --all")
        return Exit.USAGE
    bad = [k for k in asked if not (any_name or is_variable_name(k))]
    if bad:
        _error(f"not a valid environment variable name: {', '.join(bad)}")
        return Exit.USAGE
    wanted = list(asked)
    if every:
        probes = await probe_all(manager.providers, None, manager.provider_timeout)
        failed = [p for p in probes if p.error is not None]
        for probe in failed:
            _error(f"cannot list every key: {probe.name}: {probe.error}")
        if failed:
            return Exit.USAGE
        for probe in probes:
            if not probe.listed:
                print(
                    f"warning: provider {probe.name} cannot list its keys; name them with --key",
                    file=sys.stderr,
                )
        listed = sorted({k for p in probes for k in p.values})
        for key in listed:
            if key in wanted:
                continue
            if any_name or is_variable_name(key):
                wanted.append(key)
            else:
                print(f"warning: skipped {key}: not a valid variable name", file=sys.stderr)
    values = await asyncio.gather(*(manager.get(k) for k in wanted))
    missing = [k for k, v in zip(wanted, values, strict=True) if v is None and k in asked]
    if missing:
        _error(f"no provider has {', '.join(missing)}")
        return Exit.ABSENT
    return {k: v for k, v in zip(wanted, values, strict=True) if v is not None}


async def _run(args: argparse.Namespace, box: list[str]) -> Exit | ExecRequest:
    config: dict[str, Any] = {"env_prefix": args.env_prefix}
    if args.file_path:
        config["file_path"] = args.file_path
    command = args.command
    # A lookup must not answer "absent" because a provider failed: that is an error (exit 2).
    # The commands that probe every provider themselves report each failure and go on.
    tolerant = command in ("list", "doctor") or (command == "which" and args.all)
    async with SecretsManager(
        config=config, on_provider_error="skip" if tolerant else "raise"
    ) as manager:
        if command in ("get", "which", "export", "run") and _refuse_misconfigured(manager):
            return Exit.USAGE
        if command == "get":
            value = await manager.get(args.key)
            if value is None:
                return Exit.ABSENT
            print(value)
            return Exit.OK
        if command == "set":
            await manager.set_secret(args.key, box.pop())
            print(f"{normalize_key(args.key)} written to {manager.get_secrets_file_path()}")
            return Exit.OK
        if command == "delete":
            nkey = normalize_key(args.key)
            removed = await manager.delete_secret(nkey)
            path = manager.get_secrets_file_path()
            print(f"{nkey} removed from {path}" if removed else f"{nkey} is not in {path}")
            return Exit.OK if removed else Exit.ABSENT
        if command == "which":
            return await _which(manager, args.key, every=args.all, as_json=args.json)
        if command == "list":
            return await _list(manager, as_json=args.json)
        if command == "doctor":
            return await doctor(manager, as_json=args.json)
        argv = _command_line(args.cmd) if command == "run" else []
        if command == "run" and not argv:
            _error(f"run needs a command: {PROG} run --key KEY -- CMD [ARGS...]")
            return Exit.USAGE
        fmt = ExportFormat(args.format) if command == "export" else ExportFormat.SH
        selected = await _select(manager, args.keys, args.all, any_name=fmt is ExportFormat.JSON)
        if isinstance(selected, Exit):
            return selected
        if command == "export":
            sys.stdout.write(render(selected, fmt))
            return Exit.OK
        return ExecRequest(argv, {**os.environ, **selected})


def _command_line(words: Sequence[str]) -> list[str]:
    # argparse keeps the `--` that ends the options in front of the remainder.
    return list(words[1:] if words[:1] == ["--"] else words)


def _exec(request: ExecRequest) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(request.argv[0], request.argv, request.env)
    except FileNotFoundError:
        _error(f"{request.argv[0]}: command not found")
        return 127
    except PermissionError:
        _error(f"{request.argv[0]}: permission denied")
        return 126
    except OSError as exc:
        _error(f"{request.argv[0]}: cannot run: {exc.strerror}")
        return 126


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # Not argparse's own message, which repeats them: one may be a value typed after
        # `set KEY`.
        if args.command == "set":
            _error(
                f"{len(extra)} unexpected argument(s) after the command; `set` reads the value "
                "from stdin or a prompt, never from the command line"
            )
        else:
            _error(
                f"{len(extra)} unexpected argument(s) for `{args.command}` "
                f"(see {PROG} {args.command} --help)"
            )
        return Exit.USAGE
    box: list[str] = []
    try:
        if args.command == "set":
            # Before any event loop: see _cli_prompt. The key first, so that a bad one is
            # refused before anything is typed.
            shown = normalize_key(args.key)
            box.append(read_value(shown))
            if not box[0]:
                box.clear()
                _error("empty value; nothing written")
                return Exit.USAGE
        outcome = asyncio.run(_run(args, box))
        if isinstance(outcome, ExecRequest):
            return _exec(outcome)
        sys.stdout.flush()  # here, so that a closed pipe is seen while it can be handled
        return outcome
    except NoValueGiven:
        _error("no value given; nothing written")
        return Exit.USAGE
    except Interrupted:
        return Exit.INTERRUPTED  # the prompt has already moved to a fresh line
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return Exit.INTERRUPTED
    except (SecretsError, ValueError) as exc:
        _error(str(exc))
        return Exit.USAGE
    finally:
        box.clear()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code.

    Args:
        argv: The arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code (see the module docstring).
    """
    try:
        return int(_main(argv))
    except BrokenPipeError:
        # The reader went away (`| head`): end quietly. What is still buffered goes to
        # /dev/null, so that the interpreter's last flush does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return Exit.BROKEN_PIPE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
