"""Application settings with pydantic-settings, secrets resolved through simpletuner-secrets.

``python examples/settings_model.py`` loads the model from a temporary secrets file and the
environment and prints it (secrets masked). Needs ``pip install 'simpletuner-secrets[pydantic]'``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from simpletuner_secrets import SecretsManager, set_secrets_manager
from simpletuner_secrets.integrations.pydantic import SecretsManagerSettingsSource


class Settings(BaseSettings):
    """Plain settings from APP_* variables; secrets from the chain (env > file > AWS > Vault)."""

    model_config = SettingsConfigDict(env_prefix="APP_")

    hf_token: SecretStr
    replicate_api_token: SecretStr | None = None
    database_url: SecretStr = Field(alias="DATABASE_URL")
    workers: int = 2

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Arguments first, then APP_* variables, then secrets (the process-wide manager).
        return (init_settings, env_settings, SecretsManagerSettingsSource(settings_cls))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        secrets_file = Path(tmp) / "secrets.json"
        secrets_file.write_text(
            json.dumps(
                {"HF_TOKEN": "hf_demo_from_the_file", "DATABASE_URL": "postgres://app@db/app"}
            )
        )
        secrets_file.chmod(0o600)
        os.environ.setdefault("APP_WORKERS", "4")
        manager = SecretsManager(config={"file_path": str(secrets_file)})
        set_secrets_manager(manager)
        with manager.sync:
            settings = Settings()  # type: ignore[call-arg]  # fields come from the sources
            print(settings)  # SecretStr fields print as '**********'
            if settings.hf_token.get_secret_value() == "" or settings.workers < 1:
                sys.exit("settings did not load")


if __name__ == "__main__":
    main()
