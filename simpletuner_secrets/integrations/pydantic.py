"""pydantic-settings integration: a settings source that resolves fields through the chain.

Add `SecretsManagerSettingsSource` in ``settings_customise_sources`` at the priority you want;
each field is looked up by its alias or name, normalized as a secret key.
"""

from __future__ import annotations

from types import UnionType
from typing import Any, Union, get_args, get_origin

from . import missing_extra

try:
    from pydantic import AliasChoices, AliasPath
    from pydantic.fields import FieldInfo
    from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise missing_extra("pydantic-settings", "pydantic") from exc
try:
    from pydantic_settings import SettingsError
except ImportError:  # pragma: no cover - releases before it moved to the top level
    from pydantic_settings.sources import SettingsError  # type: ignore[attr-defined,no-redef]

from ..keys import normalize_key
from ..manager import SecretsManager, get_secrets_manager

__all__ = ["SecretsManagerSettingsSource"]


class SecretsManagerSettingsSource(PydanticBaseSettingsSource):
    """Settings from a `SecretsManager`: each field is the secret named by its alias or name.

    A field named ``hf_token`` (or aliased ``HF_TOKEN``, ``hf-token``) reads the key
    ``HF_TOKEN``; a field whose secret is absent is left to the other sources and the
    default. ``SecretStr`` fields get the value wrapped as usual; list, dict and model fields
    are decoded from JSON text like environment values (a nested model is one secret named
    after its field). The settings' ``env_prefix`` is not applied: secrets keep their own
    names. Lookups use the blocking facade
    (``manager.sync.get``), so settings load in scripts and inside a running event loop alike.

    Args:
        settings_cls: The settings class (pydantic-settings passes it).
        manager: The manager to read; by default the process-wide one (`get_secrets_manager`),
            taken when the settings load.

    Example:
        ``return (init_settings, env_settings, SecretsManagerSettingsSource(settings_cls))``
        inside ``settings_customise_sources``.
    """

    def __init__(
        self, settings_cls: type[BaseSettings], manager: SecretsManager | None = None
    ) -> None:
        super().__init__(settings_cls)
        self.manager = manager

    def __repr__(self) -> str:
        return f"{type(self).__name__}(manager={self.manager!r})"

    def _candidates(self, field: FieldInfo, field_name: str) -> list[str]:
        """The input names pydantic accepts for the field, in the order they are tried."""
        names: list[str] = []
        by_alias = self.config.get("validate_by_alias", True) is not False
        alias = field.validation_alias if field.validation_alias is not None else field.alias
        if by_alias and alias is not None:
            if isinstance(alias, str):
                names.append(alias)
            elif isinstance(alias, AliasChoices):
                names.extend(choice for choice in alias.choices if isinstance(choice, str))
            # An AliasPath points inside a structured value: there is no key to look up.
        by_name = bool(self.config.get("validate_by_name") or self.config.get("populate_by_name"))
        if alias is None or not by_alias or by_name:
            names.append(field_name)
        return names

    def _union_is_complex(self, field: FieldInfo) -> bool:
        """Whether the field is a union (an Optional, say) with a list, dict or model member."""
        if get_origin(field.annotation) not in (Union, UnionType):
            return False
        return any(
            self.field_is_complex(FieldInfo.from_annotation(member))
            for member in get_args(field.annotation)
            if member is not type(None)
        )

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Return the field's secret, the input name it goes under, and False (not complex).

        Raises:
            ProviderError: A provider failed with ``on_provider_error="raise"``.
        """
        manager = self.manager if self.manager is not None else get_secrets_manager()
        candidates = self._candidates(field, field_name)
        for name in candidates:
            value = manager.sync.get(normalize_key(name))
            if value is not None:
                return value, name, False
        return None, candidates[0] if candidates else field_name, False

    def __call__(self) -> dict[str, Any]:
        """Resolve every field; return the found ones keyed by the name pydantic validates."""
        data: dict[str, Any] = {}
        source = type(self).__name__
        for field_name, field in self.settings_cls.model_fields.items():
            if isinstance(field.validation_alias, AliasPath):
                continue
            try:
                value, key, is_complex = self.get_field_value(field, field_name)
            except Exception as exc:
                data.clear()  # the values found so far: not for a traceback's frame locals
                raise SettingsError(
                    f'error getting value for field "{field_name}" from source "{source}"'
                ) from exc
            if value is None:
                continue
            # `list[str] | None` and the like: decoded from JSON as the environment source
            # does, the raw text kept when it is not JSON (another member may take it).
            in_union = not is_complex and self._union_is_complex(field)
            parsed = True
            try:
                data[key] = self.prepare_field_value(
                    field_name, field, value, is_complex or in_union
                )
            except ValueError:
                parsed = False
            if not parsed and in_union:
                data[key] = value
            elif not parsed:
                # Raised outside the handler: the decode error holds the value (its `doc`);
                # name the field only. The values found so far, and this one, are dropped
                # first: error trackers record every frame's locals.
                data.clear()
                value = None
                raise SettingsError(
                    f'error parsing value for field "{field_name}" from source "{source}"'
                )
        return data
