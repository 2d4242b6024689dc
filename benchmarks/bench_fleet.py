"""A fleet of real processes sharing one OpenBao and one moto: what the back-ends see.

Each worker process runs a `SecretsManager` over two remote documents (one AWS secret in moto,
one KV v2 path in OpenBao, cache TTL 5 s) and looks both keys up every 50 ms. The back-end
requests are counted where the back-ends record them: OpenBao's file audit log and moto's
request log. Three phases:

1. steady: requests over the window against processes x documents x window / TTL, and the
   busiest second against the mean (the TTL jitter keeps a fleet from refreshing together);
2. outage: OpenBao is stopped for 20 s and started again (same storage, unsealed): every
   lookup meanwhile is answered (stale), and the recovery requests spread over the backoff
   window (the busiest second against the mean of the recovery window);
3. forced refresh: both documents rotated, then every process calls ``refresh()`` in a burst
   and again every 20 ms: one request per process per document per ``min_refresh_interval``
   (the servers' count in the window, less the loads no ``refresh()`` asked for: a refresh
   ahead begun just before the burst, which each worker reports).

It prints the ratios, saves ``results/bench_fleet.json`` and draws the requests per second of
the run into ``results/fleet.png`` (matplotlib, as ``nox -s bench`` installs). ``--quick`` is
the suite's smoke size: a few processes for a few seconds.
``--start together`` starts every process at once (as a pre-forking server starts its
workers) instead of the default rolling start, one process every TTL / N.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(ROOT))

AWS_KEY = "FLEET_AWS_PASSWORD"
VAULT_KEY = "FLEET_VAULT_PASSWORD"
VAULT_PATH = "fleet"
AWS_SECRET = "bench/fleet"
LOOKUP_EVERY_S = 0.05
FORCED_EVERY_S = 0.02


# -- a restartable OpenBao: raft storage, unsealed again after each start ------------------


@dataclass
class Bao:
    """An OpenBao server with persistent (raft) storage that can be stopped and started."""

    workdir: Path
    port: int
    binary: str
    token: str = ""
    unseal_key: str = ""
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def audit_path(self) -> Path:
        return self.workdir / "audit.log"

    def request(self, method: str, path: str, body: Any = None, timeout: float = 60) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.url}/v1/{path}", data=data, method=method, headers={"X-Vault-Token": self.token}
        )
        with urllib.request.urlopen(req, timeout=timeout) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def start(self) -> None:
        """Start the server (initializing it the first time) and unseal it."""
        config = self.workdir / "config.json"
        (self.workdir / "raft").mkdir(exist_ok=True)
        device = {"description": "request counting", "options": {"file_path": str(self.audit_path)}}
        config.write_text(
            json.dumps(
                {
                    "storage": {"raft": {"path": str(self.workdir / "raft"), "node_id": "fleet"}},
                    "listener": [
                        {
                            "tcp": {
                                "address": f"127.0.0.1:{self.port}",
                                "cluster_address": f"127.0.0.1:{self.port + 1}",
                                "tls_disable": True,
                            }
                        }
                    ],
                    "api_addr": self.url,
                    "cluster_addr": f"http://127.0.0.1:{self.port + 1}",
                    "audit": [{"file": {"count": device}}],
                }
            )
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        self.starts += 1
        log = (self.workdir / f"bao-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(
            [self.binary, "server", f"-config={config}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        log.close()
        self._wait(lambda: self.request("GET", "sys/seal-status", timeout=2))
        if not self.unseal_key:
            init = self.request("PUT", "sys/init", {"secret_shares": 1, "secret_threshold": 1})
            self.unseal_key, self.token = init["keys"][0], init["root_token"]
        self.request("PUT", "sys/unseal", {"key": self.unseal_key})
        self._wait(lambda: self.request("GET", "sys/health", timeout=2))
        if self.starts == 1:
            self._wait(
                lambda: self.request(
                    "POST", "sys/mounts/secret", {"type": "kv", "options": {"version": "2"}}
                )
            )

    def _wait(self, probe: Any, deadline_s: float = 90.0) -> None:
        deadline = time.monotonic() + deadline_s
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"bao server exited with {self.process.returncode}")
            try:
                probe()
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self.process = None

    def write(self, data: dict[str, str]) -> None:
        self._wait(lambda: self.request("POST", f"secret/data/{VAULT_PATH}", {"data": data}))

    def read_times(self) -> list[float]:
        """Epoch seconds of each answered read of the fleet's document, from the audit log."""
        times: list[float] = []
        if not self.audit_path.exists():
            return times
        for line in self.audit_path.read_text().splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            if entry.get("type") != "response":
                continue
            if entry["request"].get("path") != f"secret/data/{VAULT_PATH}":
                continue
            if entry["request"].get("operation") != "read":
                continue
            times.append(_rfc3339(entry["time"]))
        return times


def _rfc3339(text: str) -> float:
    whole, _, frac = text.rstrip("Z").partition(".")
    base = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return base + (float(f"0.{frac}") if frac else 0.0)


_MOTO_LINE = re.compile(r'\[(\d\d/\w{3}/\d{4} \d\d:\d\d:\d\d)\] "POST / HTTP')


def moto_times(log_path: Path) -> list[float]:
    """Epoch seconds (whole) of each POST moto answered, from its request log (local time)."""
    out: list[float] = []
    for match in _MOTO_LINE.finditer(log_path.read_text(errors="replace")):
        stamp = datetime.strptime(match.group(1), "%d/%b/%Y %H:%M:%S")
        out.append(time.mktime(stamp.timetuple()))
    return out


# -- the worker process ------------------------------------------------------------------


async def worker(args: argparse.Namespace) -> None:
    """One fleet member: lookups every 50 ms until SIGTERM; SIGUSR1 starts a forced-refresh
    burst. Prints one JSON line of what it saw."""
    from simpletuner_secrets import SecretsEvent, SecretsManager
    from simpletuner_secrets.providers.aws import AWSSecretsManagerProvider
    from simpletuner_secrets.providers.vault import HashiCorpVaultProvider

    recovered: list[float] = []
    stale = [0]

    def on_event(event: SecretsEvent) -> None:
        kinds[f"{event.kind}:{event.provider}"] += 1
        if event.kind == "provider_recovered":
            recovered.append(time.time())
        elif event.kind == "stale_served":
            stale[0] += 1

    # Loads not made by `refresh()` (refreshes ahead of expiry, recoveries), with when each
    # started and ended: the forced phase's window may hold one begun before the burst, which
    # the server logs count but `refresh()` did not ask for. A load led by a `refresh()` call
    # runs in that call's context (its task copies it), so the flag tells them apart.
    in_refresh: ContextVar[bool] = ContextVar("in_refresh", default=False)
    natural: list[tuple[float, float]] = []

    class Counted:
        """Placed before a provider class: its loads outside `refresh()` are noted."""

        async def load_document(self) -> Any:
            load = super().load_document()  # type: ignore[misc]
            if in_refresh.get():
                return await load
            began = time.time()
            try:
                return await load
            finally:
                natural.append((began, time.time()))

    class CountedAWS(Counted, AWSSecretsManagerProvider):
        pass

    class CountedVault(Counted, HashiCorpVaultProvider):
        pass

    providers = [
        CountedAWS(AWS_SECRET, "us-east-1", endpoint_url=args.aws_url),
        CountedVault(args.vault_url, args.vault_token, VAULT_PATH, environ={}),
    ]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    forced: list[float] = []
    burst = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, burst.set)
    per_second: Counter[int] = Counter()
    bad_second: Counter[int] = Counter()
    slowest = 0.0
    first_new: float | None = None
    missed: list[Any] = []
    kinds: Counter[str] = Counter()
    async with SecretsManager(
        providers, cache_ttl=args.ttl, min_refresh_interval=args.min_refresh, on_event=on_event
    ) as m:
        # Started like a service with required secrets: until both answer (a cold AWS client
        # on a loaded machine may miss provider_timeout once).
        cold_misses = 0
        while not all((await m.get_many([AWS_KEY, VAULT_KEY])).values()):
            cold_misses += 1
        print("ready", flush=True)

        async def refresher() -> None:
            await burst.wait()
            in_refresh.set(True)  # this task's context only: the lookups' loads stay natural
            start = time.monotonic()
            await asyncio.gather(*(m.refresh() for _ in range(10)))
            forced.append(time.time())
            while time.monotonic() - start < args.forced_s:
                await asyncio.sleep(FORCED_EVERY_S)
                await m.refresh()
                forced.append(time.time())

        forcing = asyncio.ensure_future(refresher())
        while not stop.is_set():
            began = time.monotonic()
            got = await m.get_many([AWS_KEY, VAULT_KEY])
            slowest = max(slowest, time.monotonic() - began)
            now = time.time()
            second = int(now)
            per_second[second] += 1
            if not got[AWS_KEY] or not got[VAULT_KEY]:
                bad_second[second] += 1
                if len(missed) < 20:
                    missed.append([round(now, 2), [k for k, v in got.items() if not v]])
            elif (
                first_new is None and got[AWS_KEY].endswith("v2") and got[VAULT_KEY].endswith("v2")
            ):
                first_new = now
            # asyncio's own class: on 3.10 it is not the builtin TimeoutError.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), LOOKUP_EVERY_S)
        forcing.cancel()
        await asyncio.gather(forcing, return_exceptions=True)
    print(
        json.dumps(
            {
                "lookups": dict(per_second),
                "unanswered": dict(bad_second),
                "slowest_lookup_s": slowest,
                "recovered": recovered,
                "stale_served": stale[0],
                "forced_calls": len(forced),
                "first_new": first_new,
                "missed": missed,
                "cold_misses": cold_misses,
                "events": dict(kinds),
                "natural_loads": natural,
            }
        ),
        flush=True,
    )


# -- the orchestrator --------------------------------------------------------------------


@dataclass
class Fleet:
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def results(self) -> list[dict[str, Any]]:
        out = []
        for proc in self.procs:
            stdout, stderr = proc.communicate(timeout=60)
            lines = [x for x in stdout.splitlines() if x.startswith("{")]
            if proc.returncode != 0 or not lines:
                raise RuntimeError(f"worker failed ({proc.returncode}): {stderr[-2000:]}")
            result = json.loads(lines[-1])
            # Library warnings (logging's last-resort handler): names and causes, no values.
            result["warnings"] = sorted({x for x in stderr.splitlines() if x.strip()})[:10]
            out.append(result)
        return out


def until_whole_second() -> float:
    """Sleep to the next whole second of the wall clock (moto logs whole seconds); return it."""
    target = math.floor(time.time()) + 1
    time.sleep(max(0.0, target - time.time()))
    return float(target)


def counts(times: list[float], start: float, end: float) -> list[int]:
    """Requests per whole second over [start, end)."""
    bins = [0] * max(0, int(end - start))
    for t in times:
        i = int(t - start)
        if start <= t < end and i < len(bins):
            bins[i] += 1
    return bins


@contextlib.contextmanager
def backends(workdir: Path) -> Iterator[tuple[Bao, Any]]:
    from tests.servers.bao import bao_binary, free_port
    from tests.servers.moto import run_moto

    bao = Bao(workdir / "bao", free_port(pair=True), bao_binary())
    bao.workdir.mkdir()
    try:
        with run_moto() as moto:
            bao.start()
            yield bao, moto
    finally:
        bao.stop()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from simpletuner_secrets._freshness import Policy

    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    report: dict[str, Any] = {"settings": settings}
    with tempfile.TemporaryDirectory(prefix="fleet-") as tmp, backends(Path(tmp)) as (bao, moto):
        version = "v1"
        moto.create_secret(AWS_SECRET, string=json.dumps({AWS_KEY: f"aws-{version}"}))
        bao.write({VAULT_KEY: f"vault-{version}"})
        env = {
            **os.environ,
            **moto.env(),
            "PYTHONPATH": str(ROOT),
            # Only moto's dummy keys: a user's ~/.aws and the metadata service stay out of it.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        fleet = Fleet()
        t_start = time.time()
        for _ in range(args.processes):
            # A rolling start, as a deployment brings a fleet up: one process every TTL/N; or
            # all at once (``--start together``), as a pre-forking server starts its workers.
            fleet.procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--worker",
                        "--aws-url",
                        moto.endpoint_url,
                        "--vault-url",
                        bao.url,
                        "--vault-token",
                        bao.token,
                        "--ttl",
                        str(args.ttl),
                        "--min-refresh",
                        str(args.min_refresh),
                        "--forced-s",
                        str(args.forced_s),
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                )
            )
            if args.start == "rolling":
                time.sleep(args.ttl / args.processes)
        for proc in fleet.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"a worker did not start: {proc.stderr.read()[-2000:]}")
        time.sleep(args.ttl)  # every process past its first refresh

        # 1. steady
        a0 = until_whole_second()
        time.sleep(args.duration)
        a1 = a0 + args.duration
        time.sleep(1.5)  # the log lines of the last second are written

        # 2. outage
        b0 = time.time()
        bao.stop()
        time.sleep(args.outage)
        b1 = time.time()
        bao.start()
        b2 = time.time()
        backoff = Policy(ttl=args.ttl).max_backoff
        # The longest backoff step a 20 s outage reaches, then a margin for a refresh.
        time.sleep(min(backoff, 2.0 ** math.ceil(math.log2(args.outage + args.ttl))) + args.ttl)

        # 3. forced refresh after a rotation
        version = "v2"
        moto.put_secret_value(AWS_SECRET, string=json.dumps({AWS_KEY: f"aws-{version}"}))
        bao.write({VAULT_KEY: f"vault-{version}"})
        c0 = until_whole_second()
        for proc in fleet.procs:
            proc.send_signal(signal.SIGUSR1)
        time.sleep(args.forced_s + 1.5)
        c1 = c0 + math.ceil(args.forced_s + 0.5)
        for proc in fleet.procs:
            proc.send_signal(signal.SIGTERM)
        workers = fleet.results()
        t_end = time.time()
        vault_times = bao.read_times()
        aws_times = moto_times(moto.log_path)

    n, docs = args.processes, 2
    steady_bins = [
        v + a for v, a in zip(counts(vault_times, a0, a1), counts(aws_times, a0, a1), strict=True)
    ]
    expected = n * docs * args.duration / args.ttl
    steady_mean = sum(steady_bins) / len(steady_bins)
    report["steady"] = {
        "requests": sum(steady_bins),
        "expected": expected,
        "ratio": sum(steady_bins) / expected,
        "busiest_second_over_mean": max(steady_bins) / steady_mean,
        # The same window's loads as the workers saw them start (a check on the servers' count).
        "worker_loads": sum(
            1 for w in workers for began, _ in w["natural_loads"] if a0 <= began < a1
        ),
    }

    recoveries = sorted(t for w in workers for t in w["recovered"] if t >= b1)
    last_recovery = max(recoveries) if len(recoveries) >= n else t_end
    window_end = math.ceil(last_recovery) + 1
    recovery_bins = counts(vault_times, math.floor(b2), window_end)
    recovery_mean = sum(recovery_bins) / max(1, len(recovery_bins))
    outage_lookups = sum(
        c for w in workers for s, c in w["lookups"].items() if b0 <= int(s) <= window_end
    )
    unanswered = sum(
        c for w in workers for s, c in w["unanswered"].items() if b0 <= int(s) <= window_end
    )
    report["outage"] = {
        "down_s": round(b1 - b0, 1),
        "processes_recovered": len(recoveries),
        "recovery_window_s": len(recovery_bins),
        "recovery_requests": sum(recovery_bins),
        "busiest_second_over_mean": max(recovery_bins) / recovery_mean if recovery_mean else None,
        "lookups_during": outage_lookups,
        "unanswered_outside": sum(c for w in workers for c in w["unanswered"].values())
        - unanswered,
        "cold_start_misses": sum(w["cold_misses"] for w in workers),
        "unanswered_lookups": unanswered,
        "slowest_lookup_s": round(max(w["slowest_lookup_s"] for w in workers), 3),
        # Unanswered lookups, seconds after OpenBao was stopped (restarted at down_s).
        "unanswered_at": sorted(
            [round(t - b0, 2), keys] for w in workers for t, keys in w["missed"]
        )[:20],
        "events": sum((Counter(w["events"]) for w in workers), Counter()),
        "warnings": sorted({x for w in workers for x in w["warnings"]})[:20],
    }

    # Calls run from c0 to c0 + forced_s: a fetch may start at 0, min_refresh, 2 x min_refresh...
    intervals = math.floor(args.forced_s / args.min_refresh) + 1
    logged = sum(counts(vault_times, c0, c1)) + sum(counts(aws_times, c0, c1))
    # The window's loads that no `refresh()` asked for (a refresh ahead begun just before the
    # burst): the servers logged them too, but they are not the forced refreshes' requests.
    natural = sum(
        1
        for w in workers
        for began, ended in w["natural_loads"]
        if c0 <= began < c1 or c0 <= ended < c1
    )
    forced = logged - natural
    allowed = n * docs * intervals
    report["forced"] = {
        "refresh_calls": sum(w["forced_calls"] for w in workers),
        "logged_requests": logged,
        "natural_loads": natural,
        "requests": forced,
        "allowed": allowed,
        "ratio": forced / allowed,
        "processes_seeing_rotation": sum(1 for w in workers if w["first_new"] is not None),
    }
    report["series"] = {
        "start": math.floor(t_start),
        "vault": counts(vault_times, math.floor(t_start), math.ceil(t_end)),
        "aws": counts(aws_times, math.floor(t_start), math.ceil(t_end)),
        "phases": {
            "steady": [a0 - math.floor(t_start), a1 - math.floor(t_start)],
            "outage": [b0 - math.floor(t_start), b1 - math.floor(t_start)],
            "forced": [c0 - math.floor(t_start), c1 - math.floor(t_start)],
        },
    }
    return report


def targets(report: dict[str, Any], processes: int) -> list[tuple[str, str, str, bool]]:
    s, o, f = report["steady"], report["outage"], report["forced"]
    busiest = o["busiest_second_over_mean"]
    return [
        (
            "steady: requests / (processes x documents x window / TTL)",
            "within 15%",
            f"{s['ratio']:.3f} ({s['requests']} / {s['expected']:.0f})",
            abs(s["ratio"] - 1) <= 0.15,
        ),
        (
            "steady: busiest second / mean",
            "<= 2",
            f"{s['busiest_second_over_mean']:.2f}",
            s["busiest_second_over_mean"] <= 2,
        ),
        (
            "outage: lookups left unanswered",
            "0",
            f"{o['unanswered_lookups']} of {o['lookups_during']}",
            o["unanswered_lookups"] == 0 and o["lookups_during"] > 0,
        ),
        (
            "outage: processes recovered",
            f"{processes}",
            f"{o['processes_recovered']}",
            o["processes_recovered"] >= processes,
        ),
        (
            "outage: busiest recovery second / mean",
            "<= 3",
            "n/a" if busiest is None else f"{busiest:.2f} over {o['recovery_window_s']} s",
            busiest is not None and busiest <= 3,
        ),
        (
            "forced: refresh() requests / (processes x documents x intervals)",
            "<= 1, every process refreshed",
            f"{f['ratio']:.3f} ({f['requests']} / {f['allowed']}; the servers logged "
            f"{f['logged_requests']}, {f['natural_loads']} of them refreshes ahead)",
            f["ratio"] <= 1 and f["processes_seeing_rotation"] == processes,
        ),
    ]


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = report["series"]
    xs = list(range(len(series["vault"])))
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.step(xs, series["vault"], where="post", label="OpenBao reads (audit log)")
    ax.step(xs, series["aws"], where="post", label="moto GetSecretValue (request log)")
    colours = {"steady": "#dfe", "outage": "#fdd", "forced": "#ddf"}
    for name, (lo, hi) in series["phases"].items():
        ax.axvspan(lo, hi, color=colours[name], label=name, zorder=0)
    settings = report["settings"]
    ax.set_title(
        f"{settings['processes']} processes, TTL {settings['ttl']:g} s, two documents each: "
        "back-end requests per second"
    )
    ax.set_xlabel("seconds since the first process started")
    ax.set_ylabel("requests per second")
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=16)
    parser.add_argument("--ttl", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=60.0, help="steady window, seconds")
    parser.add_argument("--outage", type=float, default=20.0, help="seconds OpenBao is down")
    parser.add_argument("--min-refresh", type=float, default=1.0)
    parser.add_argument("--forced-s", type=float, default=3.0, help="seconds of forced refreshes")
    parser.add_argument(
        "--start",
        choices=("rolling", "together"),
        default="rolling",
        help="start one process every TTL/N (default), or all at once",
    )
    parser.add_argument("--quick", action="store_true", help="smoke size: 3 processes, seconds")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--plot", type=Path, default=None, help="PNG path (default: results/)")
    parser.add_argument("--no-save", action="store_true", help="write no result file or plot")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--aws-url", help=argparse.SUPPRESS)
    parser.add_argument("--vault-url", help=argparse.SUPPRESS)
    parser.add_argument("--vault-token", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(args))
        return 0
    if args.quick:
        args.processes, args.ttl, args.duration, args.outage, args.forced_s = 3, 2.0, 4.0, 2.0, 1.0
    report = run(args)
    rows = targets(report, args.processes)
    print(
        f"## Fleet: {args.processes} processes ({args.start} start), TTL {args.ttl:g} s, "
        "two documents each\n"
    )
    print("### Targets\n")
    print("| row | target | measured | status |")
    print("|---|---|---|---|")
    for row, target, measured, met in rows:
        print(f"| {row} | {target} | {measured} | {'met' if met else 'MISSED'} |")
    print()
    print(json.dumps({k: v for k, v in report.items() if k != "series"}, indent=1))
    if not args.no_save and not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "bench_fleet.json").write_text(json.dumps(report, indent=1) + "\n")
        try:
            plot(report, args.plot or RESULTS / "fleet.png")
        except ImportError:
            print("matplotlib is not installed: no plot (nox -s bench installs it)")
    return 1 if args.check and not all(met for *_, met in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
