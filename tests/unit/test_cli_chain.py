"""The CLI's provider probes: all at once, each bounded, and the priority drawn from them."""

from __future__ import annotations

import asyncio

from simpletuner_secrets import ProviderError, SecretProvider
from simpletuner_secrets._cli_chain import Probe, decide, probe_all


class Room:
    """Where `Meeting` providers wait for each other."""

    def __init__(self, everyone: int) -> None:
        self.everyone = everyone
        self.arrived: set[str] = set()
        self.full = asyncio.Event()


class Meeting(SecretProvider):
    """Answers only once every provider of its room has been asked: probed one after the
    other, the first would wait for the others forever."""

    def __init__(self, name: str, room: Room, answers: dict[str, str]) -> None:
        self.name = name  # type: ignore[misc]
        self.room = room
        self.answers = answers

    async def get(self, key: str) -> str | None:
        self.room.arrived.add(self.name)
        if len(self.room.arrived) >= self.room.everyone:
            self.room.full.set()
        await self.room.full.wait()
        return self.answers.get(key)


class Broken(SecretProvider):
    name = "broken"

    async def get(self, key: str) -> str | None:
        raise ProviderError("broken: backend down", provider="broken")


class Stalled(SecretProvider):
    name = "stalled"

    async def get(self, key: str) -> str | None:
        await asyncio.Event().wait()
        return None


def test_probes_run_concurrently() -> None:
    """Three providers that answer only when all three have been asked all answer in time."""

    async def main() -> list[Probe]:
        room = Room(3)
        providers = [Meeting(n, room, {"K": f"from-{n}"}) for n in ("a", "b", "c")]
        return await probe_all(providers, ["K"], timeout=10.0)

    probes = asyncio.run(main())
    assert [p.error for p in probes] == [None, None, None]
    assert [p.values for p in probes] == [{"K": "from-a"}, {"K": "from-b"}, {"K": "from-c"}]


def test_a_stalled_provider_times_out_alone() -> None:
    """A provider that never answers fails with its timeout; the others answer."""
    providers = [Stalled(), Meeting("m", Room(1), {"K": "v"})]
    probes = asyncio.run(probe_all(providers, ["K"], timeout=0.2))
    assert probes[0].error == "no answer within 0.2 s"
    assert probes[1].error is None and probes[1].values == {"K": "v"}


def test_decisions_follow_priority_and_failures_make_unknown() -> None:
    """A failure above every holder makes the key unknown; a holder above a failure decides."""
    low = Meeting("low", Room(1), {"BELOW": "x"})
    high = Meeting("high", Room(1), {"ABOVE": "y"})
    probes = asyncio.run(probe_all([high, Broken(), low], ["ABOVE", "BELOW", "NONE"], 5.0))
    above, below, none = (decide(probes, k) for k in ("ABOVE", "BELOW", "NONE"))
    assert (above.state, above.provider, above.failed) == ("found", "high", ())
    assert (below.state, below.provider, below.failed) == ("unknown", "low", ("broken",))
    assert (none.state, none.provider, none.failed) == ("unknown", None, ("broken",))
    assert probes[1].error == "broken: backend down"


def test_a_users_provider_error_text_is_not_shown() -> None:
    """An arbitrary exception from a user's provider is reported by its type only: its
    message could hold anything, a value included."""

    class Leaky(SecretProvider):
        name = "leaky"

        async def get(self, key: str) -> str | None:
            raise RuntimeError("the-secret-value")

    (probe,) = asyncio.run(probe_all([Leaky()], ["K"], 1.0))
    assert probe.error == "failed with RuntimeError"


def test_a_provider_that_could_not_be_asked_makes_a_missing_key_unknown() -> None:
    """A provider left out for wrong settings might hold a key no probe found: unknown; a key
    a probe found stays found."""
    probes = asyncio.run(probe_all([Meeting("env", Room(1), {"K": "v"})], ["K", "M"], 5.0))
    found, missing = decide(probes, "K", ["vault"]), decide(probes, "M", ["vault"])
    assert (found.state, found.provider) == ("found", "env")
    assert (missing.state, missing.failed) == ("unknown", ("vault",))
