"""Start-up: a fresh process reading one key from AWS (moto) and one from Vault (OpenBao)
with the sync facade, against a plain script doing the same two reads with boto3 and hvac.

Each round runs both scripts once, in rotated order, as fresh interpreters (imports, client
creation, the two requests and exit included); the target is judged on the per-round ratio of
whole-process wall times, and each process's peak memory (max RSS, from `os.wait4`) is shown
beside it. Both read the same secrets from the same servers with the same dummy credentials.

Bytecode: both scripts run with every module's bytecode compiled, as after a `pip install`
(which compiles it): the children write and read it under a temporary `PYTHONPYCACHEPREFIX`,
filled by the warm-up runs. Without it, a `PYTHONDONTWRITEBYTECODE` in the caller's environment
made the library, run from its source tree, compile its ~12,000 lines in every process (about
40-60 ms here) while the SDKs loaded the bytecode their installation wrote.

Run: `nox -s bench` or `python benchmarks/bench_startup.py [--rounds N] [--quick] [--check]`.
It starts `moto_server` and `bao server -dev` on loopback ports itself.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from _harness import RECORDED, Results, Target, finish, machine, parse_args, rotated

#: Paired runs in a full run (the issue's measure: median of 10).
ROUNDS = 10
AWS_SECRET = "bench-startup/app"
VAULT_PATH = "bench-startup"
AWS_VALUE = "bench-startup-aws-value"
VAULT_VALUE = "bench-startup-vault-value"

OURS = """
from simpletuner_secrets import SecretsManager

manager = SecretsManager()
try:
    aws = manager.sync.get("AWS_KEY")
    vault = manager.sync.get("VAULT_KEY")
finally:
    manager.sync.close()
assert (aws, vault) == ({aws_value!r}, {vault_value!r}), (aws, vault)
"""

PLAIN = """
import json
import os

import boto3
import hvac

client = boto3.client(
    "secretsmanager",
    region_name=os.environ["AWS_DEFAULT_REGION"],
    endpoint_url=os.environ["AWS_ENDPOINT_URL"],
)
aws = json.loads(client.get_secret_value(SecretId={secret!r})["SecretString"])["AWS_KEY"]
vault_client = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])
read = vault_client.secrets.kv.v2.read_secret_version(
    path={path!r}, mount_point="secret", raise_on_deleted_version=True
)
vault = read["data"]["data"]["VAULT_KEY"]
assert (aws, vault) == ({aws_value!r}, {vault_value!r}), (aws, vault)
"""


def run_once(code: str, env: dict[str, str], cwd: str) -> tuple[float, float, float]:
    """Run ``python -c code`` in a fresh interpreter: (wall seconds, peak RSS in MiB, CPU
    seconds: user + system, less sensitive than wall time to a busy machine)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = (proc.stdout.read() if proc.stdout else b"") + (
        proc.stderr.read() if proc.stderr else b""
    )
    if proc.returncode != 0:
        raise SystemExit(f"a start-up script failed ({proc.returncode}):\n{out.decode()}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime  # ru_maxrss: KiB


def main() -> int:
    args = parse_args(__doc__ or "")
    # The harness's default is 31 rounds; this one's (a fresh process each) is 10.
    rounds = args.rounds if args.quick or args.rounds != 31 else ROUNDS
    from tests.servers.bao import run_bao
    from tests.servers.moto import run_moto

    print(f"## bench_startup ({machine()})")
    with (
        run_moto() as moto,
        run_bao(kv1_mount=None, audit=False) as bao,
        tempfile.TemporaryDirectory() as tmp,
    ):
        moto.create_secret(AWS_SECRET, string=json.dumps({"AWS_KEY": AWS_VALUE}))
        bao.cli("kv", "put", f"secret/{VAULT_PATH}", f"VAULT_KEY={VAULT_VALUE}")
        empty = Path(tmp) / "aws-empty"
        empty.write_text("")
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "VAULT_", "BAO_", "SIMPLETUNER_"))
            and k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
        }
        env = {
            **base,
            **moto.env(),
            "AWS_CONFIG_FILE": str(empty),
            "AWS_SHARED_CREDENTIALS_FILE": str(empty),
            "AWS_EC2_METADATA_DISABLED": "true",
            "VAULT_ADDR": bao.url,
            "VAULT_TOKEN": bao.token,
            "HOME": tmp,
            "SIMPLETUNER_AWS_SECRET_NAME": AWS_SECRET,
            "SIMPLETUNER_VAULT_PATH": VAULT_PATH,
            "PYTHONPATH": str(ROOT),
            # Bytecode for both scripts' modules, written by the warm-up runs below.
            "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache"),
        }
        fill = {"aws_value": AWS_VALUE, "vault_value": VAULT_VALUE}
        scripts = {
            "sync facade": OURS.format(**fill),
            "boto3 + hvac script": PLAIN.format(secret=AWS_SECRET, path=VAULT_PATH, **fill),
        }
        for code in scripts.values():  # warm the OS file cache for both, compile bytecode
            run_once(code, env, tmp)
        walls = Results(unit="ms", samples={name: [] for name in scripts})
        memory = Results(unit="MiB", samples={name: [] for name in scripts})
        cpu = Results(unit="ms", samples={name: [] for name in scripts})
        for r in range(rounds):
            for name in rotated(list(scripts), r):
                wall, rss, used = run_once(scripts[name], env, tmp)
                cpu.add(name, used * 1000)
                walls.add(name, wall * 1000)
                memory.add(name, rss)
    title = "Fresh process: one AWS key and one Vault key"
    RECORDED[title] = {name: walls.median(name) for name in scripts}
    RECORDED["Peak memory (max RSS)"] = {name: memory.median(name) for name in scripts}
    RECORDED["CPU time (user + system)"] = {name: cpu.median(name) for name in scripts}
    print(f"\n### {title}\n")
    print("| contender | median wall ms | IQR ms | median CPU ms | median peak RSS MiB |")
    print("|---|---|---|---|---|")
    for name in scripts:
        values = sorted(walls.samples[name])
        q1, q3 = (
            statistics.quantiles(values, n=4, method="inclusive")[::2]
            if len(values) >= 2
            else (values[0], values[0])
        )
        print(
            f"| {name} | {walls.median(name):,.0f} | {q1:,.0f}-{q3:,.0f} "
            f"| {cpu.median(name):,.0f} | {memory.median(name):,.1f} |"
        )
    targets = [
        (
            Target("start-up: sync facade / boto3 + hvac script (whole process)", 1.25),
            walls.ratios("sync facade", "boto3 + hvac script"),
        )
    ]
    ratio = statistics.median(cpu.ratios("sync facade", "boto3 + hvac script"))
    print(f"\nCPU time, sync facade / plain script (median of rounds, not judged): {ratio:.2f}x")
    return finish("bench_startup", args, targets)


if __name__ == "__main__":
    raise SystemExit(main())
