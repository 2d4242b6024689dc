"""An aiohttp service that reads its secrets through simpletuner-secrets.

``python examples/aiohttp_service.py`` serves on a free loopback port, calls itself once and
stops (a self-check). ``--serve`` keeps it running on 127.0.0.1:8080.
Needs ``pip install 'simpletuner-secrets[aiohttp]'``.
"""

from __future__ import annotations

import asyncio
import os
import sys

import aiohttp
from aiohttp import web

from simpletuner_secrets import HF_TOKEN
from simpletuner_secrets.integrations.aiohttp import get_secret, setup


async def models(request: web.Request) -> web.Response:
    """Use the token upstream; never send it back. 503 JSON error when it is not configured."""
    token = await get_secret(request, HF_TOKEN, required=True)
    return web.json_response({"authenticated": True, "token_length": len(token)})


async def health(request: web.Request) -> web.Response:
    """Optional secrets: a default instead of an error."""
    webhook = await get_secret(request, "cloud-webhook-secret", default=None)
    return web.json_response({"ok": True, "webhooks_signed": webhook is not None})


def create_app() -> web.Application:
    app = web.Application()
    # The manager is built at startup, installed process-wide and closed at cleanup.
    setup(app)
    app.router.add_get("/models", models)
    app.router.add_get("/health", health)
    return app


async def self_check() -> None:
    """Serve on a free loopback port, make two requests, clean up."""
    os.environ.setdefault("HF_TOKEN", "hf_demo_token_for_the_self_check")
    runner = web.AppRunner(create_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
            async with session.get("/models") as response:
                body = await response.json()
                if response.status != 200 or not body["authenticated"]:
                    sys.exit(f"unexpected answer from /models: {response.status}")
            async with session.get("/health") as response:
                print(
                    f"GET /models -> 200, GET /health -> {response.status} {await response.json()}"
                )
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    if "--serve" in sys.argv:
        web.run_app(create_app(), host="127.0.0.1", port=8080)
    else:
        asyncio.run(self_check())
