"""The `simpletuner-secrets` command line, built on the public API only.

Exit codes: 0 found/done, 1 absent, 2 usage or configuration error (one line on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import SecretsError
from .keys import KNOWN_KEYS
from .manager import SecretsManager, mask
from .providers.base import SecretProvider

EXIT_FOUND, EXIT_ABSENT, EXIT_ERROR = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="simpletuner-secrets",
        description="Resolve secrets from environment > file > AWS Secrets Manager > Vault.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--file", dest="file_path", help="secrets file (default ~/.simpletuner)")
    parser.add_argument("--env-prefix", default="", help="prefix of environment variables")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    get = sub.add_parser("get", help="print a secret's value (exit 1 when absent)")
    get.add_argument("key")
    put = sub.add_parser("set", help="write a secret to the file; value from stdin or a prompt")
    put.add_argument("key")
    delete = sub.add_parser("delete", help="remove a secret from the file (exit 1 when absent)")
    delete.add_argument("key")
    which = sub.add_parser("which", help="say which provider answers a key (exit 1 when absent)")
    which.add_argument("key")
    sub.add_parser("list", help="keys per provider, values masked")
    sub.add_parser("doctor", help="check every provider: configured, reachable, latency")
    return parser


def _read_value(key: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(f"value for {key}: ")
    value = sys.stdin.read()
    return value[:-1] if value.endswith("\n") else value


async def _provider_keys(provider: SecretProvider) -> list[str] | None:
    keys = getattr(provider, "keys", None)
    if callable(keys):
        return list(keys())
    document = getattr(provider, "document", None)
    if callable(document):
        return sorted((await document()).keys())
    return None


async def _run(args: argparse.Namespace) -> int:
    config: dict[str, Any] = {"env_prefix": args.env_prefix}
    if args.file_path:
        config["file_path"] = args.file_path
    command = args.command
    # A lookup must not answer "absent" because a provider failed: that is an error (exit 2).
    # list and doctor report each provider's failure themselves and go on.
    tolerant = command in ("list", "doctor")
    async with SecretsManager(
        config=config, on_provider_error="skip" if tolerant else "raise"
    ) as manager:
        if command == "get":
            value = await manager.get(args.key)
            if value is None:
                return EXIT_ABSENT
            print(value)
            return EXIT_FOUND
        if command == "set":
            value = _read_value(args.key)
            if not value:
                print("error: empty value; nothing written", file=sys.stderr)
                return EXIT_ERROR
            await manager.set_secret(args.key, value)
            print(f"{args.key} written to {manager.get_secrets_file_path()}")
            return EXIT_FOUND
        if command == "delete":
            removed = await manager.delete_secret(args.key)
            print(
                f"{args.key} {'removed' if removed else 'not in'} {manager.get_secrets_file_path()}"
            )
            return EXIT_FOUND if removed else EXIT_ABSENT
        if command == "which":
            info = await manager.explain(args.key)
            if info["provider"] is None:
                print(f"{info['key']}: not found")
                return EXIT_ABSENT
            print(f"{info['key']}: {info['provider']} ({info['value']})")
            return EXIT_FOUND
        if command == "list":
            for provider in manager.providers:
                print(f"[{provider.name}]")
                try:
                    keys = await asyncio.wait_for(
                        _provider_keys(provider), manager.provider_timeout
                    )
                except SecretsError as exc:
                    print(f"  unavailable: {exc}")
                    continue
                except asyncio.TimeoutError:  # TimeoutError itself from 3.11; its own class on 3.10
                    print(f"  unavailable: no answer within {manager.provider_timeout:g} s")
                    continue
                for key in keys or []:
                    print(f"  {key} = {mask(await provider.get(key))}")
            return EXIT_FOUND
        return await _doctor(manager)


async def _doctor(manager: SecretsManager) -> int:
    print("simpletuner-secrets doctor")
    print(f"secrets file: {manager.get_secrets_file_path()}")
    print("chain (highest priority first):")
    for provider in manager.providers:
        start = time.perf_counter()
        try:
            await asyncio.wait_for(provider.get(KNOWN_KEYS[0]), manager.provider_timeout)
            state = f"reachable, {(time.perf_counter() - start) * 1000:.1f} ms"
        except SecretsError as exc:
            state = f"UNREACHABLE: {exc}"
        except asyncio.TimeoutError:  # TimeoutError itself from 3.11; its own class on 3.10
            state = f"UNREACHABLE: no answer within {manager.provider_timeout:g} s"
        configured = "configured" if provider.is_available() else "not configured"
        path = getattr(provider, "path", None)
        if isinstance(path, Path) and not path.exists():
            state += "; the file does not exist yet (`set` creates it)"
        print(f"  {provider.name:<6} {configured}, {state}  {provider!r}")
    for left_out in manager.left_out:
        print(f"  {left_out.provider:<6} left out: {left_out.reason}")
    print("known keys:")
    for key in KNOWN_KEYS:
        info = await manager.explain(key)
        where = info["provider"] or "absent"
        shown = f" {info['value']}" if info["value"] else ""
        print(f"  {key:<22} {where}{shown}")
    return EXIT_FOUND


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # Not argparse's own message, which repeats them: one may be a value typed after
        # `set KEY`.
        print(
            f"error: {len(extra)} unexpected argument(s) after the command; "
            "`set` reads the value from stdin or a prompt, never from the command line",
            file=sys.stderr,
        )
        return EXIT_ERROR
    try:
        return asyncio.run(_run(args))
    except (SecretsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
