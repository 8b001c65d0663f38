"""Every setting is documented where users configure it, and every configured name is a setting."""

from __future__ import annotations

import pytest

from brainmri.config import Settings
from brainmri.errors import ConfigurationError
from tests.conftest import PROJECT_ROOT
from tests.deploy import checks
from tests.deploy.conftest import DEPLOY, ENV_EXAMPLE, setting_env_names, settings_from

BRAINMRI_SERVICES = ("api", "worker", "trainer", "beat", "migrate", "worker-gpu", "trainer-gpu")


def configured_files() -> list:
    """Every file that sets BRAINMRI_* variables for a deployment."""
    files = [PROJECT_ROOT / "docker-compose.yml", ENV_EXAMPLE, PROJECT_ROOT / "Dockerfile"]
    files += [p for p in sorted(DEPLOY.rglob("*")) if p.is_file() and "__pycache__" not in p.parts]
    return files


def test_every_setting_is_in_env_example() -> None:
    names = setting_env_names()
    assert "TUMOR_THRESH" in names and "BRAINMRI_DATABASE_URL" in names
    missing = checks.names_missing_from_env_file(ENV_EXAMPLE.read_text(), names)
    assert missing == [], (
        f"add `# NAME=default` lines to .env.example for {missing} "
        "(`brainmri settings --env-template` prints them)"
    )


def test_every_setting_is_in_the_readme_settings_table() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    missing = checks.names_missing_from_table(readme, setting_env_names())
    assert missing == [], f"{missing} missing from the README table: run `make docs`"


@pytest.mark.parametrize("path", configured_files(), ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_every_configured_variable_is_a_real_setting(path) -> None:
    assert checks.unknown_setting_names(path.read_text(), setting_env_names()) == set()


def test_coverage_checks_catch_a_missing_line_and_a_typo() -> None:
    names = setting_env_names()
    original = ENV_EXAMPLE.read_text()
    text = original.replace("BRAINMRI_DICOM_MIDDLE_K=", "BRAINMRI_DICOM_MIDLE_K=")
    assert set(checks.names_missing_from_env_file(text, names)) - set(
        checks.names_missing_from_env_file(original, names)
    ) == {"BRAINMRI_DICOM_MIDDLE_K"}
    assert checks.unknown_setting_names(text, names) == {"BRAINMRI_DICOM_MIDLE_K"}
    readme = (PROJECT_ROOT / "README.md").read_text()
    broken = readme.replace("`BRAINMRI_DEVICE`", "`DEVICE`")
    assert set(checks.names_missing_from_table(broken, names)) - set(
        checks.names_missing_from_table(readme, names)
    ) == {"BRAINMRI_DEVICE"}


# --- the values are valid, not just the names --------------------------------------------------
@pytest.mark.parametrize("service", BRAINMRI_SERVICES)
def test_compose_services_get_valid_settings(compose_config: dict, service: str) -> None:
    environment = compose_config["services"][service]["environment"]
    settings = settings_from(environment)
    assert settings.broker_url == "redis://redis:6379/0"
    assert settings.resolved_database_url.startswith("postgresql+psycopg2://")
    assert settings.resolved_object_store_url == "s3://brainmri"
    assert not settings.embedded
    if service.endswith("-gpu"):
        assert settings.device == "cuda"


def test_compose_api_keys_are_accepted_by_the_api(compose_config: dict) -> None:
    from brainmri_api.auth import KeyRing

    keys = compose_config["services"]["api"]["environment"]["BRAINMRI_API_KEYS"]
    assert len(KeyRing(keys)) == 2


def test_a_bad_value_is_refused(compose_config: dict) -> None:
    environment = dict(compose_config["services"]["worker"]["environment"])
    environment["BRAINMRI_DEVICE"] = "gpu"
    with pytest.raises(ValueError, match="device"):
        settings_from(environment)


def test_kubernetes_dev_settings_are_valid(rendered: dict) -> None:
    environments = checks.container_environments(rendered["dev"])
    assert environments
    for where, environment in environments.items():
        settings = settings_from(environment)
        assert settings.environment == "development", where
        assert settings.broker_url == "redis://redis:6379/0", where


def test_kubernetes_dev_credentials_match_the_in_cluster_services(rendered: dict) -> None:
    secrets = {
        d["metadata"]["name"].rsplit("-", 1)[0]: d for d in rendered["dev"] if d["kind"] == "Secret"
    }
    infra = checks._decoded(secrets["dev-infrastructure"])
    connections = checks._decoded(secrets["brainmri-connections"])
    user, password, db = (infra[k] for k in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"))
    assert connections["BRAINMRI_DATABASE_URL"] == (
        f"postgresql+psycopg2://{user}:{password}@postgres:5432/{db}"
    )
    assert connections["BRAINMRI_S3_ACCESS_KEY"] == infra["MINIO_ROOT_USER"]
    assert connections["BRAINMRI_S3_SECRET_KEY"] == infra["MINIO_ROOT_PASSWORD"]


@pytest.mark.parametrize("variant", ["base", "gpu"])
def test_kubernetes_base_refuses_its_placeholder_secrets(rendered: dict, variant: str) -> None:
    """Deployed without real secrets, the production base must not start."""
    from brainmri_api.auth import KeyRing

    environments = checks.container_environments(rendered[variant])
    for where, environment in environments.items():
        assert environment["BRAINMRI_ENVIRONMENT"] == "production", where
        with pytest.raises(ConfigurationError, match="placeholder"):
            settings_from(environment)
    api = next(env for where, env in environments.items() if "Deployment/api" in where)
    with pytest.raises(ConfigurationError):
        KeyRing(api["BRAINMRI_API_KEYS"], production=True)


def test_only_the_api_container_gets_the_api_keys(rendered: dict) -> None:
    for where, environment in checks.container_environments(rendered["base"]).items():
        assert ("BRAINMRI_API_KEYS" in environment) == (where == "Deployment/api[api]"), where


def test_settings_helper_sees_exactly_the_given_environment() -> None:
    assert settings_from({}).broker_url is None
    assert settings_from({"TUMOR_THRESH": "0.3"}).tumor_thresh == 0.3
    assert isinstance(settings_from({}), Settings)
