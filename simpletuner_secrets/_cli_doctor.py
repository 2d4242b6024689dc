"""`simpletuner-secrets doctor`: every provider probed at once, the known keys decided from
the probes, and an exit code that says whether the chain is healthy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ._cli_chain import Decision, Exit, Probe, decide, probe_all
from .keys import KNOWN_KEYS
from .manager import SecretsManager, mask
from .providers.base import LeftOut
from .providers.file import FileSecretProvider

__all__ = ["doctor", "doctor_exit"]


def doctor_exit(probes: Sequence[Probe], left_out: Sequence[LeftOut]) -> Exit:
    """2 when a provider's settings are wrong, 3 when a configured provider failed, else 0."""
    if any(entry.misconfigured for entry in left_out):
        return Exit.USAGE
    if any(probe.error is not None for probe in probes):
        return Exit.UNHEALTHY
    return Exit.OK


def _file_note(probe: Probe) -> str | None:
    provider = probe.provider
    if isinstance(provider, FileSecretProvider) and not provider.path.exists():
        return "the file does not exist yet (`set` creates it)"
    return None


def _key_text(decision: Decision, wrong: Sequence[str]) -> str:
    if decision.state == "unknown":
        causes = [
            f"{name}'s settings are wrong" if name in wrong else f"{name} failed"
            for name in decision.failed
        ]
        text = f"unknown: {', '.join(causes)}"
        if decision.provider is not None:
            text += f" (lower in the chain, {decision.provider} has it)"
        return text
    if decision.provider is None:
        return "absent"
    return f"{decision.provider} {mask(decision.value)}"


def _report(
    manager: SecretsManager,
    probes: Sequence[Probe],
    decisions: Sequence[Decision],
    code: Exit,
) -> dict[str, Any]:
    return {
        "secrets_file": str(manager.get_secrets_file_path()),
        "providers": [
            {
                "name": probe.name,
                "configured": probe.provider.is_available(),
                "reachable": probe.error is None,
                "latency_ms": round(probe.elapsed_s * 1000, 1),
                "error": probe.error,
                "note": _file_note(probe),
                "detail": repr(probe.provider),
            }
            for probe in probes
        ],
        "left_out": [
            {"name": e.provider, "reason": e.reason, "misconfigured": e.misconfigured}
            for e in manager.left_out
        ],
        "keys": [
            {
                "key": d.key,
                "state": d.state,
                "provider": d.provider,
                "value": mask(d.value),
                "failed": list(d.failed),
            }
            for d in decisions
        ],
        "exit_code": int(code),
    }


def _print_text(report: dict[str, Any]) -> None:
    print("simpletuner-secrets doctor")
    print(f"secrets file: {report['secrets_file']}")
    print("chain (highest priority first):")
    for row in report["providers"]:
        configured = "configured" if row["configured"] else "not configured"
        if row["error"] is None:
            state = f"reachable, {row['latency_ms']:.1f} ms"
        else:
            state = f"FAILED after {row['latency_ms']:.1f} ms: {row['error']}"
        if row["note"]:
            state += f"; {row['note']}"
        print(f"  {row['name']:<6} {configured}, {state}  {row['detail']}")
    for row in report["left_out"]:
        wrong = "SETTINGS WRONG, " if row["misconfigured"] else ""
        print(f"  {row['name']:<6} left out: {wrong}{row['reason']}")
    print("known keys:")
    for row in report["keys"]:
        print(f"  {row['key']:<22} {row['text']}")
    code = report["exit_code"]
    if code == Exit.OK:
        print("status: healthy")
    elif code == Exit.USAGE:
        print("status: a provider's settings are wrong (exit 2)")
    else:
        print("status: a configured provider failed (exit 3)")


async def doctor(manager: SecretsManager, *, as_json: bool) -> Exit:
    """Probe every provider concurrently and print the report.

    Args:
        manager: The manager whose chain to check.
        as_json: Print one JSON object instead of text.

    Returns:
        `doctor_exit` of what was found.
    """
    probes = await probe_all(manager.providers, KNOWN_KEYS, manager.provider_timeout)
    wrong = [entry.provider for entry in manager.left_out if entry.misconfigured]
    decisions = [decide(probes, key, wrong) for key in KNOWN_KEYS]
    code = doctor_exit(probes, manager.left_out)
    report = _report(manager, probes, decisions, code)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        for row, decision in zip(report["keys"], decisions, strict=True):
            row["text"] = _key_text(decision, wrong)
        _print_text(report)
    return code
