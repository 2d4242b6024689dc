"""Fixtures shared by the integration tests."""

from __future__ import annotations

from typing import Any

import pytest
from aiobotocore.endpoint import AioEndpoint
from botocore.endpoint import Endpoint


@pytest.fixture
def sent_targets(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The X-Amz-Target of every HTTP request botocore sends, counted below the provider: by
    the async clients (aiobotocore's endpoint) and by a first load's botocore client."""
    targets: list[str] = []
    original = AioEndpoint._send
    original_blocking = Endpoint._send

    def record(request: Any) -> None:
        target = request.headers.get("X-Amz-Target", b"")
        targets.append(target.decode() if isinstance(target, bytes) else str(target))

    async def counting_send(self: Any, request: Any) -> Any:
        record(request)
        return await original(self, request)

    def counting_blocking_send(self: Any, request: Any) -> Any:
        agent = request.headers.get("User-Agent", b"")
        if b"simpletuner-secrets" in (agent if isinstance(agent, bytes) else agent.encode()):
            record(request)  # not the test servers' own botocore clients (creating secrets)
        return original_blocking(self, request)

    monkeypatch.setattr(AioEndpoint, "_send", counting_send)
    monkeypatch.setattr(Endpoint, "_send", counting_blocking_send)
    return targets
