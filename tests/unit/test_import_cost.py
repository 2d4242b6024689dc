"""What a fresh process imports: the library's import and a default chain load no SDK or
parser they do not use (`benchmarks/bench_startup.py`: the start-up of a script or CLI call)."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

from tests.fresh_process import run_json_script

ROOT = Path(__file__).resolve().parents[2]

#: Heavy packages the import, and a manager over a JSON file, must not load.
UNUSED = ("yaml", "aiohttp", "aiobotocore", "aioboto3", "httpx", "botocore", "hvac", "requests")

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import simpletuner_secrets
    after_import = sorted(m for m in {unused!r} if m in sys.modules)
    manager = simpletuner_secrets.SecretsManager()
    value = manager.sync.get("FROM_JSON")
    manager.sync.close()
    after_get = sorted(m for m in {unused!r} if m in sys.modules)
    print(json.dumps({{"import": after_import, "get": after_get, "value": value}}))
    """
)


def run_fresh(code: str, tmp_path: Path, **extra: str) -> dict[str, object]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "VAULT_", "BAO_", "SIMPLETUNER_"))
    }
    env.update(PYTHONPATH=str(ROOT), HOME=str(tmp_path), **extra)
    return run_json_script(code, env, tmp_path)


def test_import_and_a_json_file_load_no_yaml_sdk_or_http_client(tmp_path: Path) -> None:
    """`import simpletuner_secrets`, a default manager and a lookup answered by a JSON
    secrets file import neither PyYAML nor any SDK or HTTP client."""
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps({"FROM_JSON": "json-value"}))
    secrets_file.chmod(0o600)
    result = run_fresh(
        SCRIPT.format(unused=UNUSED), tmp_path, SIMPLETUNER_SECRETS_FILE=str(secrets_file)
    )
    assert result == {"import": [], "get": [], "value": "json-value"}, result


def test_a_yaml_file_still_loads_pyyaml_when_read(tmp_path: Path) -> None:
    """PyYAML, imported lazily, is there when a YAML secrets file is read."""
    secrets_file = tmp_path / "secrets.yaml"
    secrets_file.write_text("FROM_JSON: yaml-value\n")
    secrets_file.chmod(0o600)
    result = run_fresh(
        SCRIPT.format(unused=UNUSED), tmp_path, SIMPLETUNER_SECRETS_FILE=str(secrets_file)
    )
    assert result == {"import": [], "get": ["yaml"], "value": "yaml-value"}, result


def test_no_anyio_on_the_way_to_a_first_answer(tmp_path: Path) -> None:
    """Neither the import nor a lookup loads anyio (its asyncio back-end cost a fresh process
    ~35 ms); Python 3.10 alone takes its timeout scope, once a provider is called."""
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps({"FROM_JSON": "json-value"}))
    secrets_file.chmod(0o600)
    result = run_fresh(
        SCRIPT.format(unused=("anyio", "sniffio")),
        tmp_path,
        SIMPLETUNER_SECRETS_FILE=str(secrets_file),
    )
    assert result["import"] == [] and result["value"] == "json-value", result
    if sys.version_info >= (3, 11):
        assert result["get"] == [], result
