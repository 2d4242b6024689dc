"""What the command line learns from the provider chain: concurrent probes of every provider
and the priority decision drawn from them, on top of the public provider API only.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .errors import SecretsError
from .providers.base import SecretProvider

__all__ = [
    "Decision",
    "Exit",
    "HoldsDocument",
    "ListsKeys",
    "Probe",
    "decide",
    "probe_all",
]


class Exit(enum.IntEnum):
    """The command line's exit codes (SPEC 11)."""

    OK = 0  #: found, done, healthy
    ABSENT = 1  #: no provider has the key
    USAGE = 2  #: usage or configuration error, or a failing provider that could have answered
    UNHEALTHY = 3  #: doctor: a configured provider unreachable or failing, a malformed file
    INTERRUPTED = 130  #: Ctrl-C (128 + SIGINT)
    BROKEN_PIPE = 141  #: the output pipe was closed (128 + SIGPIPE), as `yes | head` reports


@runtime_checkable
class ListsKeys(Protocol):
    """A provider that can say which keys it has without loading anything (environment)."""

    def keys(self) -> list[str]: ...


@runtime_checkable
class HoldsDocument(Protocol):
    """A provider that answers from one whole document (file, AWS, Vault)."""

    async def document(self) -> Mapping[str, str]: ...


@dataclass
class Probe:
    """One provider's answers, gathered by `probe_all`.

    Attributes:
        provider: The provider asked.
        values: The keys it holds among those asked (or all it listed), with their values.
        listed: Whether `values` is every key the provider has (False: only the keys asked,
            or a provider that cannot list its keys).
        error: Why it failed (a message without values), or None.
        elapsed_s: Seconds the probe took.
    """

    provider: SecretProvider
    values: dict[str, str] = field(default_factory=dict, repr=False)
    listed: bool = False
    error: str | None = None
    elapsed_s: float = 0.0

    @property
    def name(self) -> str:
        """The provider's name."""
        return self.provider.name


async def _ask(provider: SecretProvider, keys: Sequence[str]) -> tuple[dict[str, str], bool]:
    # One after the other: the first key loads a document and the others are answered from
    # it; a provider that answers without I/O (environment) finishes in one step, so its
    # latency is its own, not that of the other probes running at the same time.
    found: dict[str, str] = {}
    for key in keys:
        value = await provider.get(key)
        if value:
            found[key] = value
    return found, False


async def _list(provider: SecretProvider) -> tuple[dict[str, str], bool]:
    if isinstance(provider, HoldsDocument):
        return {k: v for k, v in (await provider.document()).items() if v}, True
    if isinstance(provider, ListsKeys):
        return (await _ask(provider, provider.keys()))[0], True
    return {}, False


async def _probe(provider: SecretProvider, keys: Sequence[str] | None, timeout: float) -> Probe:
    probe = Probe(provider)
    times: list[float] = []

    async def timed() -> tuple[dict[str, str], bool]:
        # Timed inside the probe's own task: the end of a probe answered without I/O is not
        # pushed back by the other probes' work in the same turn of the loop.
        times.append(time.perf_counter())
        try:
            return await (_list(provider) if keys is None else _ask(provider, keys))
        finally:
            times.append(time.perf_counter())

    try:
        probe.values, probe.listed = await asyncio.wait_for(timed(), timeout)
    except SecretsError as exc:
        probe.error = str(exc)
    except asyncio.TimeoutError:  # TimeoutError itself from 3.11; its own class on 3.10
        probe.error = f"no answer within {timeout:g} s"
    except Exception as exc:  # a user's provider: its message might hold anything
        probe.error = f"failed with {type(exc).__name__}"
    end = times[1] if len(times) > 1 else time.perf_counter()
    probe.elapsed_s = end - times[0] if times else 0.0
    return probe


async def probe_all(
    providers: Sequence[SecretProvider], keys: Sequence[str] | None, timeout: float
) -> list[Probe]:
    """Ask every provider at once, each within ``timeout`` seconds.

    Args:
        providers: The chain, highest priority first.
        keys: The keys to ask each provider for; None lists every key each one has.
        timeout: Seconds each provider may take.

    Returns:
        One `Probe` per provider, in chain order.
    """
    return list(await asyncio.gather(*(_probe(p, keys, timeout) for p in providers)))


@dataclass(frozen=True)
class Decision:
    """What the chain answers for one key, as far as the probes tell.

    Attributes:
        key: The key.
        provider: The name of the provider that decides the answer, or None.
        value: Its value (to be masked before display), or None.
        failed: The providers that failed above the deciding one (or anywhere, when none
            has the key): while any failed, the answer is unknown.
        holders: Every provider that has the key, highest priority first.
    """

    key: str
    provider: str | None
    value: str | None = field(repr=False)
    failed: tuple[str, ...]
    holders: tuple[str, ...]

    @property
    def state(self) -> str:
        """``found``, ``absent``, or ``unknown`` (a provider that could have answered failed)."""
        if self.failed:
            return "unknown"
        return "absent" if self.provider is None else "found"


def decide(probes: Sequence[Probe], key: str, unasked: Sequence[str] = ()) -> Decision:
    """Apply the chain's priority to the probes' answers for ``key`` (already normalized).

    Args:
        probes: The probes of the chain, highest priority first.
        key: The key.
        unasked: Providers that could not be asked (left out because their settings are
            wrong): when no probe has the key, they might, so it is unknown.

    Returns:
        The decision.
    """
    failed: list[str] = []
    winner: Probe | None = None
    for probe in probes:
        if probe.error is not None:
            if winner is None:
                failed.append(probe.name)
        elif winner is None and key in probe.values:
            winner = probe
    holders = tuple(p.name for p in probes if p.error is None and key in p.values)
    if winner is None:
        return Decision(key, None, None, (*failed, *unasked), holders)
    return Decision(key, winner.name, winner.values[key], tuple(failed), holders)
