"""The pytest plugin, proven on sample suites run by pytester in a subprocess.

The subprocess gets the plugin the way users do: through the installed ``pytest11`` entry point.
"""

from __future__ import annotations

import textwrap

import pytest

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""

SAMPLE_CONFTEST = """
import pytest

from simpletuner_secrets import SecretsManager, set_secrets_manager
from simpletuner_secrets.testing import InMemorySecretProvider

SESSION_MANAGER = SecretsManager([InMemorySecretProvider({"HF_TOKEN": "hf_session"})])


@pytest.fixture(scope="session", autouse=True)
def session_manager():
    set_secrets_manager(SESSION_MANAGER)
    yield SESSION_MANAGER
    SESSION_MANAGER.sync.close()
"""

SAMPLE_TESTS = """
from pathlib import Path

import pytest

from simpletuner_secrets import SecretsManager, get_secrets_manager
from conftest import SESSION_MANAGER

USED = []


def test_manager_is_isolated_and_installed(secrets_manager, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_from_the_environment")
    assert isinstance(secrets_manager, SecretsManager)
    assert get_secrets_manager() is secrets_manager
    assert secrets_manager.sync.get("HF_TOKEN") is None
    USED.append(secrets_manager)


def test_previous_manager_is_back_and_the_test_one_closed():
    assert get_secrets_manager() is SESSION_MANAGER
    assert USED[0].closed


def test_override_with_a_mapping(override_secrets):
    override_secrets({"hf-token": "hf_override", "OTHER": "o"}, THIRD="t")
    manager = get_secrets_manager()
    assert manager.sync.get("HF_TOKEN") == "hf_override"
    assert manager.sync.get("third") == "t"
    assert dict(override_secrets) == {"HF_TOKEN": "hf_override", "OTHER": "o", "THIRD": "t"}
    assert "hf_override" not in repr(override_secrets)


def test_overrides_are_gone_in_the_next_test(secrets_manager):
    assert secrets_manager.sync.get("HF_TOKEN") is None
    assert secrets_manager.sync.get("OTHER") is None


async def test_async_test_sees_changes_at_once(override_secrets, secrets_manager):
    override_secrets["HF_TOKEN"] = "hf_one"
    assert await secrets_manager.get("HF_TOKEN") == "hf_one"
    override_secrets["HF_TOKEN"] = "hf_two"
    assert await get_secrets_manager().get("HF_TOKEN") == "hf_two"
    del override_secrets["HF_TOKEN"]
    assert await secrets_manager.get("HF_TOKEN") is None
    override_secrets({"HF_TOKEN": "hf_three"})
    override_secrets({"HF_TOKEN": None})
    assert await secrets_manager.get("HF_TOKEN") is None


async def test_set_secret_writes_a_temporary_file(secrets_manager):
    await secrets_manager.set_secret("WANDB_API_KEY", "wandb_value")
    assert await secrets_manager.get("wandb-api-key") == "wandb_value"
    path = secrets_manager.get_secrets_file_path()
    assert not path.is_relative_to(Path.home() / ".simpletuner")
    assert path.exists()


def test_override_beats_the_file_and_outages_are_simulated(
    override_secrets, secrets_manager, secrets_provider
):
    secrets_manager.sync.set_secret("HF_TOKEN", "hf_file")
    override_secrets["HF_TOKEN"] = "hf_override"
    assert secrets_manager.sync.get("HF_TOKEN") == "hf_override"
    secrets_provider.failure = "down"
    secrets_manager.clear_cache()
    assert secrets_manager.sync.get("HF_TOKEN") == "hf_file"


def test_values_must_be_text(override_secrets):
    with pytest.raises(TypeError):
        override_secrets["PORT"] = 5432
"""


@pytest.fixture
def sample(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INI)
    pytester.makeconftest(SAMPLE_CONFTEST)
    pytester.makepyfile(test_sample=SAMPLE_TESTS)
    return pytester


def test_fixtures_work_in_a_users_suite(sample: pytest.Pytester) -> None:
    """secrets_manager, override_secrets and secrets_provider behave as documented."""
    result = sample.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=8)


def test_fixtures_come_from_the_entry_point(sample: pytest.Pytester) -> None:
    """With the entry point plugin disabled, the fixtures do not exist."""
    result = sample.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:simpletuner_secrets")
    result.assert_outcomes(errors=7, failed=1)
    result.stdout.fnmatch_lines(["*fixture 'secrets_manager' not found*"])


def test_fixtures_are_listed(pytester: pytest.Pytester) -> None:
    """``pytest --fixtures`` shows the three fixtures with their docs."""
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        [
            "*fixtures defined from simpletuner_secrets.pytest_plugin*",
            "secrets_provider -- *",
            "secrets_manager -- *",
            "override_secrets -- *",
        ]
    )


def test_plugin_changes_nothing_when_its_fixtures_are_unused(pytester: pytest.Pytester) -> None:
    """Loaded but unused, the plugin installs no manager and starts no thread."""
    pytester.makeini(INI)
    pytester.makepyfile(
        test_untouched=textwrap.dedent(
            """
            import threading

            from simpletuner_secrets.manager import installed_manager


            def test_nothing_installed(request):
                assert "simpletuner_secrets" in {
                    name for name, _ in request.config.pluginmanager.list_name_plugin()
                }
                assert installed_manager() is None
                assert not [t for t in threading.enumerate() if "simpletuner" in t.name]
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
