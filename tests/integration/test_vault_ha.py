"""HashiCorpVaultProvider against a real 3-node OpenBao raft cluster: standbys, a killed leader.

The cluster (tests/servers/bao_cluster.py) is shared by the session; a test that kills a node
restarts it and waits for every node to be a voter again before it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from simpletuner_secrets import ProviderError, SecretsManager
from simpletuner_secrets.providers.vault import HashiCorpVaultProvider
from tests.clock import FakeClock
from tests.leak_audit import register_secret
from tests.round_robin import RoundRobinFront
from tests.servers.bao_cluster import DOCUMENT, DOCUMENT_PATH, BaoCluster, BaoNode

pytestmark = pytest.mark.integration

LOGGER = "simpletuner_secrets"
#: Concurrent lookups in each round of the failover test.
LOOKUPS = 1_000
#: The failover test's cache TTL and the fake seconds each round moves the clock: every
#: round finds the document past its freshness (TTL plus 10% jitter < STEP) and revalidates
#: it, unless a failed refresh is backing off.
TTL = 0.2
STEP = 0.25
#: The contract: fresh reads again within this many seconds of the new leader.
FRESH_AGAIN_WITHIN_S = 10.0
#: Hang guard for the whole failover (wall clock).
FAILOVER_GUARD_S = 90.0


@pytest.fixture(autouse=True)
def audited(bao_cluster: BaoCluster) -> None:
    """The root token, the unseal key and the document's values are audited in every test
    (no log, error, warning or repr may hold them)."""
    for value in (bao_cluster.token, bao_cluster.unseal_key, *DOCUMENT.values()):
        register_secret(value)


def provider_at(url: str, cluster: BaoCluster) -> HashiCorpVaultProvider:
    """A provider reading the cluster's document at ``url``, with no ambient settings."""
    return HashiCorpVaultProvider(
        url=url, token=cluster.token, path=DOCUMENT_PATH, environ={}, timeout=10.0
    )


@contextlib.contextmanager
def restored(cluster: BaoCluster) -> Iterator[None]:
    """On the way out, restart every killed node, unseal every sealed one, and wait for
    three voters again."""
    try:
        yield
    finally:
        for node in cluster.nodes:
            if node.running:
                cluster.unseal(node)
            else:
                cluster.restart(node)
        cluster.wait_active()
        cluster.wait_voters()


class Decoy:
    """A listener on a loopback port that counts the connections made to it."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


async def test_standby_forwards_reads_to_the_active_node(bao_cluster: BaoCluster) -> None:
    """A provider pointed at a standby reads the document, and sees at once a value just
    written through the active node: the standby forwards, it does not serve its own copy."""
    cluster = bao_cluster
    active = cluster.wait_active()
    standby = cluster.standbys()[0]
    assert standby.health() == 429  # a standby indeed
    provider = provider_at(standby.url, cluster)
    try:
        assert dict(await provider.load_document()) == DOCUMENT
        path = f"{DOCUMENT_PATH}-forwarded"
        cluster.cli(active, "kv", "put", f"secret/{path}", "HF_TOKEN=hf_written_just_now")
        other = HashiCorpVaultProvider(
            url=standby.url, token=cluster.token, path=path, environ={}, timeout=10.0
        )
        try:
            assert (await other.load_document())["HF_TOKEN"] == "hf_written_just_now"
        finally:
            await other.aclose()
    finally:
        await provider.aclose()


async def test_standby_redirect_is_named_and_not_followed(
    bao_cluster: BaoCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """With no quorum left, a standby redirects to the lost leader's address: the provider
    raises a ProviderError saying what a standby's redirect means, and sends nothing
    there (a listener on that address gets no connection); the token is in no message."""
    cluster = bao_cluster
    with restored(cluster):
        leader = cluster.wait_active()
        first, second = cluster.standbys()[:2]
        provider = provider_at(second.url, cluster)
        try:
            await provider.load_document()  # connected, version detected
            cluster.kill(leader)
            cluster.kill(first)  # one node of three: no quorum, no new leader
            decoy = Decoy(leader.port)
            try:
                with pytest.raises(ProviderError) as caught:
                    await provider.load_document()
            finally:
                decoy.close()
            message = str(caught.value)
            assert "307 redirect" in message
            assert f"127.0.0.1:{leader.port}" in message
            assert "what a standby answers when it cannot forward" in message
            assert "never followed" in message
            assert decoy.accepted == 0
            assert cluster.token not in message
            assert cluster.token not in caplog.text
        finally:
            await provider.aclose()


async def test_sealed_node_is_named(bao_cluster: BaoCluster) -> None:
    """A node restarted and not yet unsealed answers 503: the provider's error says the node
    is sealed, and the same provider reads again once the node is unsealed."""
    cluster = bao_cluster
    with restored(cluster):
        cluster.wait_active()
        standby = cluster.standbys()[0]
        provider = provider_at(standby.url, cluster)
        try:
            cluster.kill(standby)
            cluster.restart(standby, unseal=False)
            assert standby.health() == 503
            with pytest.raises(ProviderError) as caught:
                await provider.load_document()
            message = str(caught.value)
            assert "HTTP 503" in message
            assert "this node is sealed" in message
            cluster.unseal(standby)
            assert dict(await provider.load_document()) == DOCUMENT
        finally:
            await provider.aclose()


@dataclass
class Round:
    """One round of concurrent lookups in the failover test."""

    began: float  # wall clock
    ended: float
    values: set[str | None]
    failed: int  # lookups that raised or answered None


async def lookup_round(manager: SecretsManager, clock: FakeClock) -> Round:
    """Move the clock past the TTL and run `LOOKUPS` concurrent lookups of one key."""
    clock.tick(STEP)
    began = time.monotonic()
    results = await asyncio.gather(
        *(manager.get("HF_TOKEN") for _ in range(LOOKUPS)), return_exceptions=True
    )
    values = {r for r in results if isinstance(r, str)}
    failed = sum(1 for r in results if not isinstance(r, str))
    return Round(began, time.monotonic(), values, failed)


class LeaderWatch:
    """A thread that waits for a new active node (not ``old``), notes when it appeared, and
    writes a new value through it."""

    def __init__(self, cluster: BaoCluster, old: BaoNode, new_value: str) -> None:
        self.cluster = cluster
        self.old = old
        self.new_value = new_value
        self.elected_at: float | None = None
        self.written_at: float | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            node = self.cluster.wait_active(other_than=self.old, deadline_s=FAILOVER_GUARD_S)
            self.elected_at = time.monotonic()
            pairs = [f"{k}={v}" for k, v in {**DOCUMENT, "HF_TOKEN": self.new_value}.items()]
            deadline = time.monotonic() + 30
            while True:  # the new leader may refuse writes for a moment after taking over
                done = self.cluster.cli(
                    node, "kv", "put", f"secret/{DOCUMENT_PATH}", *pairs, check=False
                )
                if done.returncode == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert done.returncode == 0, done.stderr
            self.written_at = time.monotonic()
        except BaseException as exc:
            self.error = exc

    def join(self) -> None:
        self._thread.join(FAILOVER_GUARD_S)


async def test_leader_killed_during_concurrent_lookups(
    bao_cluster: BaoCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Behind a round-robin front, the leader killed while rounds of 1,000 concurrent lookups
    run: no lookup fails (the last good value is served stale during the election), the
    failure and the recovery are each logged once, and a value written through the new leader
    is read within 10 s of the election."""
    cluster = bao_cluster
    caplog.set_level(logging.INFO, logger=LOGGER)
    old_value = DOCUMENT["HF_TOKEN"]
    new_value = "hf_after_failover"
    register_secret(new_value)
    with restored(cluster):
        leader = cluster.wait_active()
        # The leader first: the provider's kept-alive connection goes to the node killed.
        order = [leader, *(n for n in cluster.nodes if n is not leader)]
        with RoundRobinFront([n.port for n in order]) as front:
            clock = FakeClock()
            provider = provider_at(front.url, cluster)
            manager = SecretsManager([provider], cache_ttl=TTL, timer=clock, rng=random.Random(14))
            watch = LeaderWatch(cluster, leader, new_value)
            rounds: list[Round] = []
            try:
                assert await manager.get("HF_TOKEN") == old_value
                assert front.dialled[leader.port] == 1
                guard = time.monotonic() + FAILOVER_GUARD_S
                for _ in range(3):
                    rounds.append(await lookup_round(manager, clock))
                # Killed while a round of lookups is in flight.
                kill = asyncio.ensure_future(asyncio.to_thread(cluster.kill, leader))
                rounds.append(await lookup_round(manager, clock))
                await kill
                killed_at = time.monotonic()
                watch.start()
                while time.monotonic() < guard:
                    began = time.monotonic()
                    done = await lookup_round(manager, clock)
                    rounds.append(done)
                    if watch.written_at is not None and done.values == {new_value}:
                        break
                    if watch.error is not None:
                        break
                    # Pace the rounds to the fake clock's step (not a TTL wait).
                    await asyncio.sleep(max(0.0, STEP - (time.monotonic() - began)))
                stats = manager.stats()
            finally:
                await manager.aclose()
                watch.join()
    if watch.error is not None:
        raise watch.error
    assert watch.elected_at is not None and watch.written_at is not None
    failed = sum(r.failed for r in rounds)
    assert failed == 0, f"{failed} lookups failed"
    assert all(r.values <= {old_value, new_value} for r in rounds)
    vault = stats["providers"]["vault"]
    assert vault["stale_served"] > 0  # the election was really served stale
    during = [r for r in rounds if killed_at <= r.began < watch.elected_at]
    assert during and all(r.values == {old_value} for r in during)
    fresh_at = next(r.ended for r in rounds if r.values == {new_value})
    assert fresh_at - watch.elected_at <= FRESH_AGAIN_WITHIN_S
    failures = [r for r in caplog.records if "refresh failed" in r.getMessage()]
    recoveries = [r for r in caplog.records if "answers again" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in failures]
    assert len(recoveries) == 1, [r.getMessage() for r in recoveries]
    assert cluster.token not in caplog.text
    print(
        f"\nfailover: election {watch.elected_at - killed_at:.1f} s, fresh "
        f"{fresh_at - watch.elected_at:.1f} s after it, {len(rounds)} rounds of {LOOKUPS}, "
        f"{vault['stale_served']} stale, front dialled {dict(front.dialled)}, "
        f"refused {dict(front.refused)}; logged: {failures[0].getMessage()}"
    )
