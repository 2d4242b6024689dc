"""A real 3-node OpenBao cluster on integrated (raft) storage, for the high-availability tests.

Not ``-dev``: each node has its own configuration file, data directory and loopback ports;
the cluster is initialised, unsealed and joined with the real CLI (``bao operator init``,
``bao operator unseal``, ``bao operator raft join``), and a node can be killed and restarted.
Standby reads are off (``disable_standby_reads``): a standby forwards every request to the
active node, and answers with a redirect to it when it cannot (during a leader election), the
classic HA model.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .bao import BaoStartError, bao_binary, free_port

__all__ = [
    "DOCUMENT",
    "DOCUMENT_PATH",
    "BaoCluster",
    "BaoNode",
    "bao_cluster",
    "run_bao_cluster",
]

#: Seconds each step of the start (a node answering, unsealing, joining, electing) may take:
#: wide, for a busy 2-core machine.
STEP_DEADLINE_S = 90.0
#: The KV v2 document every cluster gets, at ``secret/<DOCUMENT_PATH>``.
DOCUMENT_PATH = "ha/app"
DOCUMENT = {"HF_TOKEN": "hf_cluster_value", "REPLICATE_API_TOKEN": "r8_cluster_value"}
_NODES = 3


def _clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}


@dataclass
class BaoNode:
    """One node of the cluster.

    Attributes:
        node_id: Its raft node id (``node1`` ...).
        port: Its API listener on 127.0.0.1.
        cluster_port: Its cluster (raft and request forwarding) listener.
        config_path: Its configuration file; a restart reuses it and the data directory.
        log_path: Its combined output, appended to across restarts.
        process: The running server, or None while killed.
    """

    node_id: str
    port: int
    cluster_port: int
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether its process is alive."""
        return self.process is not None and self.process.poll() is None

    def health(self) -> int | None:
        """The status of ``/v1/sys/health``: 200 active, 429 standby, 503 sealed, 501 not
        initialised; None when nothing answers."""
        try:
            with urllib.request.urlopen(f"{self.url}/v1/sys/health", timeout=5) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return int(exc.code)
        except (OSError, ValueError):
            return None

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of its log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class BaoCluster:
    """A running 3-node OpenBao raft cluster.

    Attributes:
        nodes: The three nodes; ``nodes[0]`` was initialised first and led at the start.
        token: The root token.
        unseal_key: The one unseal key (one share, threshold one).
        binary: The ``bao`` binary.
        workdir: Configuration, data and logs.
        started_in_s: Wall-clock seconds the start took (processes to a written document).
    """

    nodes: list[BaoNode]
    token: str = field(repr=False)
    unseal_key: str = field(repr=False)
    binary: str
    workdir: Path
    started_in_s: float = 0.0

    @property
    def addresses(self) -> set[tuple[str, int]]:
        """Every (host, port) the cluster itself listens on, API and cluster ports."""
        found = set()
        for node in self.nodes:
            found.add(("127.0.0.1", node.port))
            found.add(("127.0.0.1", node.cluster_port))
        return found

    def cli(
        self, node: BaoNode, *args: str, token: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``bao <args>`` against ``node`` (the root token unless ``token``).

        Raises:
            AssertionError: ``check`` is set and the command failed (with its output).
        """
        env = {
            **_clean_environ(),
            "BAO_ADDR": node.url,
            "BAO_TOKEN": token if token is not None else self.token,
            "HOME": str(self.workdir),
        }
        done = subprocess.run(
            [self.binary, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"bao {' '.join(args[:3])} on {node.node_id} failed ({done.returncode}): "
                f"{done.stderr.strip()}"
            )
        return done

    def request(self, node: BaoNode, method: str, path: str, body: Any = None) -> Any:
        """Call ``node``'s HTTP API with the root token; the decoded answer (or None)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{node.url}/v1/{path.lstrip('/')}",
            data=data,
            method=method,
            headers={"X-Vault-Token": self.token},
        )
        with urllib.request.urlopen(req, timeout=10) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def active(self) -> BaoNode | None:
        """The running node that says it is the active one, or None (an election)."""
        for node in self.nodes:
            if node.running and node.health() == 200:
                return node
        return None

    def standbys(self) -> list[BaoNode]:
        """The running nodes that say they are unsealed standbys."""
        return [node for node in self.nodes if node.running and node.health() == 429]

    def wait_active(
        self, *, other_than: BaoNode | None = None, deadline_s: float = STEP_DEADLINE_S
    ) -> BaoNode:
        """Wait until a node (not ``other_than``) is active; return it.

        Raises:
            BaoStartError: None became active in time (with the nodes' log tails).
        """
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            node = self.active()
            if node is not None and node is not other_than:
                return node
            time.sleep(0.05)
        raise BaoStartError(f"no active node after {deadline_s:.0f} s\n{self.log_tails()}")

    def wait_voters(self, deadline_s: float = STEP_DEADLINE_S) -> None:
        """Wait until autopilot counts every node as a healthy voter (failure tolerance 1),
        so that losing any one node leaves a quorum that elects a new leader.

        Raises:
            BaoStartError: Not in time.
        """
        deadline = time.monotonic() + deadline_s
        state: Any = None
        while time.monotonic() < deadline:
            active = self.active()
            if active is not None:
                with contextlib.suppress(OSError, ValueError):
                    state = self.request(active, "GET", "sys/storage/raft/autopilot/state")
                    data = (state or {}).get("data") or {}
                    voters = data.get("voters") or []
                    if (
                        data.get("healthy")
                        and len(voters) == len(self.nodes)
                        and data.get("failure_tolerance", 0) >= 1
                    ):
                        return
            time.sleep(0.1)
        raise BaoStartError(
            f"the nodes are not all healthy voters after {deadline_s:.0f} s "
            f"(autopilot: {json.dumps(state)[:800]})\n{self.log_tails()}"
        )

    def kill(self, node: BaoNode) -> None:
        """Kill ``node`` at once (SIGKILL: no step-down, no goodbye to its peers)."""
        process = node.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        node.process = None

    def restart(
        self, node: BaoNode, *, unseal: bool = True, deadline_s: float = STEP_DEADLINE_S
    ) -> None:
        """Start a killed ``node`` again on its data and unseal it; return once it answers as
        an unsealed node (a standby, or the active node if it wins an election). With
        ``unseal=False`` it is left sealed, as a restarted node is until an operator (or
        auto-unseal) unseals it.

        Raises:
            BaoStartError: It did not come back in time.
        """
        if node.running:
            return
        _spawn(self.binary, node, self.workdir)
        _wait_answers(node, deadline_s)
        if unseal:
            self.unseal(node, deadline_s)

    def unseal(self, node: BaoNode, deadline_s: float = STEP_DEADLINE_S) -> None:
        """``bao operator unseal`` on ``node`` until it is unsealed (standby or active)."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            status = node.health()
            if status in (200, 429):
                return
            if status == 503:
                self.cli(node, "operator", "unseal", self.unseal_key, check=False)
            if not node.running:
                raise BaoStartError(f"{node.node_id} exited:\n{node.log_tail()}")
            time.sleep(0.2)
        raise BaoStartError(
            f"{node.node_id} not unsealed after {deadline_s:.0f} s\n{node.log_tail()}"
        )

    def log_tails(self, lines: int = 30) -> str:
        """Every node's log tail, one after another."""
        return "\n".join(
            f"--- {node.node_id} ({node.url}) ---\n{node.log_tail(lines)}" for node in self.nodes
        )

    def stop(self) -> None:
        """Terminate every node (kill those that do not exit in time)."""
        for node in self.nodes:
            process = node.process
            if process is not None and process.poll() is None:
                process.terminate()
        for node in self.nodes:
            process = node.process
            if process is not None:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=15)
            node.process = None


def _config(node: BaoNode, data_dir: Path) -> str:
    # performance_multiplier 1: production raft timings (a lost leader is noticed within
    # about a second), not the relaxed default of 5 meant for slow development machines.
    return f"""
storage "raft" {{
  path = "{data_dir}"
  node_id = "{node.node_id}"
  performance_multiplier = 1
  autopilot_reconcile_interval = "1s"
  autopilot_update_interval = "1s"
}}
listener "tcp" {{
  address = "127.0.0.1:{node.port}"
  cluster_address = "127.0.0.1:{node.cluster_port}"
  tls_disable = true
}}
api_addr = "{node.url}"
cluster_addr = "https://127.0.0.1:{node.cluster_port}"
disable_standby_reads = true
"""


def _spawn(binary: str, node: BaoNode, workdir: Path) -> None:
    with node.log_path.open("ab") as log:
        node.process = subprocess.Popen(
            [binary, "server", f"-config={node.config_path}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**_clean_environ(), "HOME": str(workdir)},
            cwd=workdir,
        )


def _wait_answers(node: BaoNode, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not node.running:
            code = node.process.returncode if node.process is not None else None
            raise BaoStartError(f"{node.node_id} exited with {code}:\n{node.log_tail()}")
        if node.health() is not None:
            return
        time.sleep(0.05)
    raise BaoStartError(
        f"{node.node_id} does not answer after {deadline_s:.0f} s\n{node.log_tail()}"
    )


def _ports() -> list[int]:
    ports: set[int] = set()
    while len(ports) < 2 * _NODES:
        ports.add(free_port())
    return sorted(ports)


def _start(binary: str, workdir: Path) -> BaoCluster:
    began = time.monotonic()
    ports = _ports()
    nodes = []
    for index in range(_NODES):
        node_id = f"node{index + 1}"
        data_dir = workdir / node_id
        data_dir.mkdir(mode=0o700)
        node = BaoNode(
            node_id=node_id,
            port=ports[2 * index],
            cluster_port=ports[2 * index + 1],
            config_path=workdir / f"{node_id}.hcl",
            log_path=workdir / f"{node_id}.log",
        )
        node.config_path.write_text(_config(node, data_dir))
        nodes.append(node)
    cluster = BaoCluster(nodes=nodes, token="", unseal_key="", binary=binary, workdir=workdir)
    try:
        for node in nodes:
            _spawn(binary, node, workdir)
        for node in nodes:
            _wait_answers(node, STEP_DEADLINE_S)
        first = nodes[0]
        init = cluster.cli(
            first, "operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json"
        )
        answer = json.loads(init.stdout)
        cluster.token = answer["root_token"]
        cluster.unseal_key = answer["unseal_keys_b64"][0]
        cluster.unseal(first)
        cluster.wait_active()
        # Autopilot makes a joined node a voter once it has been healthy this long (10 s by
        # default): shortened, so that the start does not wait for nothing.
        cluster.cli(
            first,
            "operator",
            "raft",
            "autopilot",
            "set-config",
            "-server-stabilization-time=1s",
        )
        for node in nodes[1:]:
            _join(cluster, node, first)
            cluster.unseal(node)
        cluster.wait_voters()
        active = cluster.wait_active()
        cluster.cli(active, "secrets", "enable", "-path=secret", "kv-v2")
        _put_document(cluster, active)
    except BaseException:
        cluster.stop()
        raise
    cluster.started_in_s = time.monotonic() - began
    return cluster


def _join(cluster: BaoCluster, node: BaoNode, leader: BaoNode) -> None:
    deadline = time.monotonic() + STEP_DEADLINE_S
    last = ""
    while time.monotonic() < deadline:
        done = cluster.cli(node, "operator", "raft", "join", leader.url, check=False)
        if done.returncode == 0:
            return
        last = done.stderr.strip()
        time.sleep(0.5)
    raise BaoStartError(f"{node.node_id} could not join: {last}\n{node.log_tail()}")


def _put_document(cluster: BaoCluster, active: BaoNode) -> None:
    # A new KV v2 mount upgrades itself for a moment after it is enabled: retry the write.
    deadline = time.monotonic() + STEP_DEADLINE_S
    pairs = [f"{key}={value}" for key, value in DOCUMENT.items()]
    last = ""
    while time.monotonic() < deadline:
        done = cluster.cli(active, "kv", "put", f"secret/{DOCUMENT_PATH}", *pairs, check=False)
        if done.returncode == 0:
            return
        last = done.stderr.strip()
        time.sleep(0.2)
    raise BaoStartError(f"cannot write the document: {last}\n{cluster.log_tails()}")


@contextlib.contextmanager
def run_bao_cluster() -> Iterator[BaoCluster]:
    """Start a 3-node OpenBao raft cluster on loopback ports; stop it on exit.

    It has KV v2 at ``secret/`` holding `DOCUMENT` at `DOCUMENT_PATH`, and every node is a
    voter (any one may be killed and the other two elect a new leader).

    Raises:
        BaoStartError: The cluster could not start; the message holds the nodes' log tails.
    """
    binary = bao_binary()
    with tempfile.TemporaryDirectory(prefix="bao-cluster-") as tmp:
        root = Path(tmp)
        os.chmod(root, 0o700)
        cluster: BaoCluster | None = None
        for attempt in range(1, 4):
            # A port taken by someone else between the probe and the bind: start over on
            # new ports. Anything else is not retried.
            workdir = root / f"attempt-{attempt}"
            workdir.mkdir(mode=0o700)
            try:
                cluster = _start(binary, workdir)
                break
            except BaoStartError as exc:
                if "address already in use" not in str(exc) or attempt == 3:
                    raise
        assert cluster is not None
        try:
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture(scope="session")
def bao_cluster() -> Iterator[BaoCluster]:
    """A 3-node OpenBao raft cluster shared by the session. Tests that kill a node restart it
    (`BaoCluster.restart`) before they end."""
    try:
        manager = run_bao_cluster()
        cluster = manager.__enter__()
    except (
        BaoStartError,
        OSError,
        AssertionError,
        ValueError,
        KeyError,
        subprocess.SubprocessError,
    ) as exc:
        pytest.fail(f"cannot start the OpenBao raft cluster: {exc}", pytrace=False)
    _STARTED.append(cluster.started_in_s)
    try:
        yield cluster
    finally:
        manager.__exit__(None, None, None)


#: How long each cluster of the session took to start (shown in the terminal summary).
_STARTED: list[float] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say how long the raft cluster took to start, when one was started."""
    for seconds in _STARTED:
        terminalreporter.write_line(f"OpenBao raft cluster (3 nodes) started in {seconds:.1f} s")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the cluster's node logs to the report of a failing test that used it."""
    report = yield
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, BaoCluster):
                report.sections.append(("OpenBao cluster logs", value.log_tails()))
    return report
