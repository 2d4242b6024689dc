"""A FastAPI endpoint awaiting one secret per request against the same endpoint returning a
constant, under a real HTTP load on loopback.

uvicorn serves the app in a subprocess; the load generator is a keep-alive HTTP/1.1 client on
raw asyncio streams (cheaper per request than an HTTP library, so the server is what is
measured), with 32 connections. The two endpoints are loaded in alternating rounds and the
requests per second compared by median.

Run: `nox -s bench` or `python benchmarks/bench_service.py [--rounds N] [--quick] [--check]`.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Results, Target, finish, machine, parse_args, print_table

APP = """
from fastapi import Depends, FastAPI

from simpletuner_secrets.integrations.fastapi import secret, secrets_lifespan

app = FastAPI(lifespan=secrets_lifespan())


@app.get("/constant")
async def constant() -> dict[str, int]:
    return {"length": 22}


@app.get("/secret")
async def with_secret(token: str = Depends(secret("BENCH_SERVICE_TOKEN"))) -> dict[str, int]:
    return {"length": len(token)}
"""

CONNECTIONS = 32


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def load(port: int, path: str, seconds: float) -> float:
    """Requests per second on ``path`` over ``CONNECTIONS`` keep-alive connections."""
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
    return sum(counts) / (time.perf_counter() - start)


def main() -> int:
    args = parse_args(__doc__ or "")
    seconds = 0.5 if args.quick else 2.0
    rounds = 2 if args.quick else min(args.rounds, 9)  # 2 s per endpoint and round
    print(f"# bench_service ({machine()}, {rounds} rounds of {seconds:g} s per endpoint, medians)")
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "bench_service_app.py").write_text(APP)
        port = free_port()
        env = {**os.environ, "HOME": tmp, "BENCH_SERVICE_TOKEN": "bench-service-token-value"}
        env["PYTHONPATH"] = os.pathsep.join([tmp, env.get("PYTHONPATH", "")])
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
            env=env,
            cwd=tmp,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/secret", timeout=1).read()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("uvicorn did not start") from None
                    time.sleep(0.1)
            asyncio.run(load(port, "/constant", 0.5))  # warm-up both paths
            asyncio.run(load(port, "/secret", 0.5))
            results = Results(unit="requests/s")
            for _ in range(rounds):
                for name, path in (
                    ("constant endpoint", "/constant"),
                    ("secret endpoint (ours)", "/secret"),
                ):
                    results.add(name, asyncio.run(load(port, path, seconds)))
        finally:
            server.terminate()
            server.wait(timeout=10)
    print_table("FastAPI on uvicorn, 32 keep-alive connections", results, "constant endpoint")
    ratio = results.median("secret endpoint (ours)") / results.median("constant endpoint")
    spread = statistics.pstdev(results.samples["constant endpoint"]) / results.median(
        "constant endpoint"
    )
    print(f"\nround-to-round spread of the constant endpoint: {spread:.1%}")
    target = Target("secret endpoint rps vs constant endpoint rps", 0.95, at_least=True)
    return finish("bench_service", args, [(target, ratio)])


if __name__ == "__main__":
    sys.exit(main())
