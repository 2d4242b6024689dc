"""Suite-wide fixtures: real back-end servers come from tests/servers/, loaded as plugins."""

from __future__ import annotations

pytest_plugins = [
    "pytester",
    "tests.servers.bao",
    "tests.servers.bao_cluster",
    "tests.servers.moto",
    "tests.leak_audit",
]
