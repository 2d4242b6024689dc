"""A plain script (no asyncio) that reads and writes secrets through the blocking facade.

``python examples/sync_script.py`` works in a temporary secrets file, so it leaves your own
``~/.simpletuner`` alone; in a real script use ``get_secrets_manager().sync``.
"""

from __future__ import annotations

import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from simpletuner_secrets import SecretsManager


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        secrets_file = Path(tmp) / "secrets.json"
        manager = SecretsManager(config={"file_path": str(secrets_file)})
        # `with` closes the manager and the facade's background loop at the end.
        with manager.sync as secrets:
            secrets.set_secret("WANDB_API_KEY", "wandb_demo_value_for_the_script")
            secrets.set_replicate_token("r8_demo_value_for_the_script")

            # Any spelling of a key; the environment still wins over the file.
            key = secrets.get("wandb-api-key")
            if key is None:
                sys.exit("the secret just written was not found")

            # Many threads at once share one cache.
            with ThreadPoolExecutor(max_workers=8) as pool:
                found = list(pool.map(secrets.get, ["REPLICATE_API_TOKEN"] * 32))
            if len(set(found)) != 1:
                sys.exit("threads disagreed")

            info = secrets.explain("replicate-api-token")
            print(f"REPLICATE_API_TOKEN from {info['provider']}, shown as {info['value']}")
            print(
                f"file: {secrets.get_secrets_file_path().name}, mode "
                f"{oct(secrets_file.stat().st_mode & 0o777)}"
            )

            secrets.delete_secret("WANDB_API_KEY")
            if secrets.get("WANDB_API_KEY") is not None:
                sys.exit("the deleted secret is still there")


if __name__ == "__main__":
    main()
