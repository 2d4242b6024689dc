"""Fixtures shared by the integration tests."""

from __future__ import annotations

from typing import Any

import pytest
from aiobotocore.endpoint import AioEndpoint


@pytest.fixture
def sent_targets(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The X-Amz-Target of every HTTP request botocore sends, counted below the provider."""
    targets: list[str] = []
    original = AioEndpoint._send

    async def counting_send(self: Any, request: Any) -> Any:
        target = request.headers.get("X-Amz-Target", b"")
        targets.append(target.decode() if isinstance(target, bytes) else str(target))
        return await original(self, request)

    monkeypatch.setattr(AioEndpoint, "_send", counting_send)
    return targets
