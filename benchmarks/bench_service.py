"""A FastAPI endpoint awaiting one secret per request against the same endpoint returning a
constant, under a real HTTP load on loopback.

The secret comes from a cached remote document: the app's manager is the default chain
(environment, file, AWS Secrets Manager), the key is in neither the environment nor a file, and
AWS is a `moto_server` on loopback holding it, so each request asks the environment, the file
and the manager's cached AWS document, as a service reading `HF_TOKEN` from AWS does.

uvicorn serves the app in a subprocess; the load generator is a keep-alive HTTP/1.1 client on
raw asyncio streams (cheaper per request than an HTTP library, so the server is what is
measured), with 32 connections. The endpoints are loaded in turn, the order rotating every
round, and each secret endpoint's requests per second compared with its constant twin's in the
same round. The harness's gc rule applies to the load generator; the server's gc is left on,
alike for every endpoint.

Run: `nox -s bench` or `python benchmarks/bench_service.py [--rounds N] [--quick] [--check]`.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from _harness import (
    Results,
    Target,
    finish,
    gc_rule,
    machine,
    parse_args,
    print_table,
    rotated,
    settle,
)

SECRET_NAME = "bench/service"
VALUE = "bench-service-token-from-aws-0123456789"

APP = """
from typing import Any

from fastapi import Depends, FastAPI

from simpletuner_secrets import get_secrets_manager
from simpletuner_secrets.integrations.fastapi import secret, secrets_lifespan

app = FastAPI(lifespan=secrets_lifespan())


@app.get("/stats")
async def stats() -> dict[str, Any]:
    return get_secrets_manager().stats()


@app.get("/constant")
async def constant() -> dict[str, int]:
    return {"length": @LENGTH@}


@app.get("/secret")
async def with_secret() -> dict[str, int]:
    token = await get_secrets_manager().get("BENCH_SERVICE_TOKEN")
    return {"length": len(token or "")}


async def constant_dependency() -> str:
    return "@CONSTANT@"


@app.get("/constant-dependency")
async def with_constant_dependency(token: str = Depends(constant_dependency)) -> dict[str, int]:
    return {"length": len(token)}


@app.get("/secret-dependency")
async def with_secret_dependency(
    token: str = Depends(secret("BENCH_SERVICE_TOKEN")),
) -> dict[str, int]:
    return {"length": len(token)}
"""

CONNECTIONS = 32
#: (row, path): each secret endpoint beside the same endpoint without the secret.
ENDPOINTS = [
    ("constant", "/constant"),
    ("await m.get (ours)", "/secret"),
    ("Depends(constant)", "/constant-dependency"),
    ("Depends(secret(...)) (ours)", "/secret-dependency"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux /proc), or NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(port: int, path: str, seconds: float) -> tuple[float, int]:
    """Requests per second and requests done on ``path`` over ``CONNECTIONS`` connections."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    deadline = time.perf_counter() + seconds
    counts: list[int] = []

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        done = 0
        try:
            while time.perf_counter() < deadline:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"{path}: {head[:40]!r}")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                done += 1
        finally:
            writer.close()
            await writer.wait_closed()
        counts.append(done)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CONNECTIONS)))
    return sum(counts) / (time.perf_counter() - start), sum(counts)


def app_source() -> str:
    # The constants are as long as the secret, so that every endpoint sends the same bytes.
    constant = "c" * len(VALUE)
    return APP.replace("@LENGTH@", str(len(VALUE))).replace("@CONSTANT@", constant)


def server_env(tmp: str, moto_env: dict[str, str]) -> dict[str, str]:
    """The app's environment: AWS on moto, the key nowhere else, no user settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "SIMPLETUNER_", "VAULT_", "BAO_", "BENCH_"))
    }
    env.update(moto_env)
    env.update(
        HOME=tmp,
        SIMPLETUNER_AWS_SECRET_NAME=SECRET_NAME,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    env["PYTHONPATH"] = os.pathsep.join([tmp, env.get("PYTHONPATH", "")])
    return env


def get_json(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return json.loads(response.read())


def aws_loads(port: int) -> int:
    """How many times the app's manager has loaded the AWS document (its ``stats()``)."""
    return int(get_json(port, "/stats")["providers"]["aws"]["calls"])


def main() -> int:
    from tests.servers.moto import run_moto

    args = parse_args(__doc__ or "")
    # Many short rounds, endpoints interleaved, so that drift on a shared machine hits all alike.
    seconds = 0.3 if args.quick else 0.6
    rounds = 2 if args.quick else max(args.rounds, 25)
    print(f"# bench_service ({machine()}, {rounds} rounds of {seconds:g} s per endpoint, medians)")
    with tempfile.TemporaryDirectory() as tmp, run_moto() as moto:
        moto.create_secret(SECRET_NAME, string=json.dumps({"BENCH_SERVICE_TOKEN": VALUE}))
        Path(tmp, "bench_service_app.py").write_text(app_source())
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench_service_app:app",
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env=server_env(tmp, moto.env()),
            cwd=tmp,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    answer = get_json(port, "/secret")
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("uvicorn did not start") from None
                    time.sleep(0.1)
            # The value came from AWS: the key is in no environment and no file of the app.
            assert answer == {"length": len(VALUE)}, answer
            assert aws_loads(port) == 1, get_json(port, "/stats")
            for _, path in ENDPOINTS:  # warm-up
                asyncio.run(load(port, path, 0.3))
            results = Results(unit="requests/s", samples={name: [] for name, _ in ENDPOINTS})
            cpu = Results(unit="server CPU us/request", samples={name: [] for name, _ in ENDPOINTS})
            settle()
            for r in range(rounds):
                for name, path in rotated(ENDPOINTS, r):
                    with gc_rule():
                        before = cpu_seconds(server.pid)
                        rps, done = asyncio.run(load(port, path, seconds))
                        used = cpu_seconds(server.pid) - before
                    results.add(name, rps)
                    cpu.add(name, used / done * 1e6)
            loads = aws_loads(port)
        finally:
            server.terminate()
            server.wait(timeout=10)
    print_table("FastAPI on uvicorn, 32 keep-alive connections", results, "constant")
    print_table("The server's CPU time per request (Linux /proc)", cpu, "constant")
    med = results.median
    spread = statistics.pstdev(results.samples["constant"]) / med("constant")
    print(f"\nround-to-round spread of the constant endpoint: {spread:.1%}")
    print(f"AWS document loads by the app's manager over the whole run: {loads}")
    print(
        "FastAPI's own dependency machinery, Depends(constant) vs constant: "
        f"{med('Depends(constant)') / med('constant'):.2f}x"
    )
    targets = [
        (
            Target("await m.get endpoint vs constant endpoint, rps", 0.95, at_least=True),
            results.ratios("await m.get (ours)", "constant"),
        ),
        (
            Target("Depends(secret) vs Depends(constant), rps", 0.95, at_least=True),
            results.ratios("Depends(secret(...)) (ours)", "Depends(constant)"),
        ),
    ]
    return finish("bench_service", args, targets)


if __name__ == "__main__":
    sys.exit(main())
