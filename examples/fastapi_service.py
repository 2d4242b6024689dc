"""A FastAPI service that reads its secrets through simpletuner-secrets.

``python examples/fastapi_service.py`` starts the service with uvicorn on a free loopback port,
calls it once and stops (a self-check). ``--serve`` keeps it running on 127.0.0.1:8000.
Needs ``pip install 'simpletuner-secrets[fastapi]' uvicorn httpx``.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from typing import Annotated

import httpx
import uvicorn
from fastapi import Depends, FastAPI

from simpletuner_secrets import HF_TOKEN, REPLICATE_API_TOKEN
from simpletuner_secrets.integrations.fastapi import secret, secrets_lifespan

# The manager is built at startup (environment > secrets file > AWS > Vault, from the usual
# settings), installed process-wide, and closed at shutdown.
app = FastAPI(lifespan=secrets_lifespan())


@app.get("/models")
async def list_models(token: Annotated[str, Depends(secret(HF_TOKEN))]) -> dict[str, object]:
    """Call the model hub with the token; never send the token back."""
    return {"authenticated": True, "token_length": len(token)}


@app.get("/predictions")
async def predict(token: Annotated[str, Depends(secret(REPLICATE_API_TOKEN))]) -> dict[str, str]:
    """503 ``{"detail": "secret REPLICATE_API_TOKEN is not configured"}`` when absent."""
    return {"status": "queued"}


@app.get("/health")
async def health(
    webhook: Annotated[str | None, Depends(secret("CLOUD_WEBHOOK_SECRET", required=False))],
) -> dict[str, bool]:
    """Optional secrets arrive as None when absent."""
    return {"ok": True, "webhooks_signed": webhook is not None}


def self_check() -> None:
    """Serve on a free loopback port, make a few requests, stop."""
    # A demo token for this process only, when none is configured.
    os.environ.setdefault("HF_TOKEN", "hf_demo_token_for_the_self_check")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sys.exit("the server did not start")
        time.sleep(0.01)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            models = client.get("/models")
            if models.status_code != 200 or not models.json()["authenticated"]:
                sys.exit(f"unexpected answer from /models: {models.status_code}")
            predictions = client.get("/predictions")
            if predictions.status_code not in (200, 503):
                sys.exit(f"unexpected answer from /predictions: {predictions.status_code}")
            print(
                f"GET /models -> {models.status_code}, GET /predictions -> "
                f"{predictions.status_code} {predictions.json()}"
            )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


if __name__ == "__main__":
    if "--serve" in sys.argv:
        uvicorn.run(app, host="127.0.0.1", port=8000)
    else:
        self_check()
