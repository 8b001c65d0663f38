"""Production refuses every placeholder secret the project ships or documents - API keys that
merely contain a placeholder marker, the example keys, a placeholder password inside a
connection URL - and says which setting is wrong without printing the secret. Development
accepts them, so the shipped development files keep working."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from brainmri.config import Settings
from brainmri.errors import ConfigurationError
from brainmri_api.auth import KeyRing
from tests.conftest import PROJECT_ROOT

REAL_KEYS = "Q2xkT3VnaFZ0Ym9vcmF5bWFya2Vy:admin,bm9ib2R5IGd1ZXNzZXMgdGhpcw:user"
REAL_SECRET = "s3-9f2c1e7a4b6d8e0f"
SHIPPED_KEYS = "dev-admin-key-change-me:admin,dev-user-key-change-me:user"

#: Files that set BRAINMRI_* values for a deployment (their uncommented lines are read).
SHIPPED_FILES = [
    PROJECT_ROOT / ".env.example",
    PROJECT_ROOT / "docker-compose.yml",
    *sorted((PROJECT_ROOT / "deploy").rglob("*.env*")),
    *sorted((PROJECT_ROOT / "deploy" / "k8s").rglob("kustomization.yaml")),
]
_LINE = re.compile(
    r"^\s*-?\s*(BRAINMRI_API_KEYS|BRAINMRI_DATABASE_URL|BRAINMRI_BROKER_URL)=(\S+)\s*$",
    re.MULTILINE,
)


def shipped_values(name: str) -> list[tuple[str, str]]:
    """``(file, value)`` for every literal (no ``${...}``) value of ``name`` the repo ships."""
    found = []
    for path in SHIPPED_FILES:
        for variable, value in _LINE.findall(path.read_text()):
            if variable == name and "${" not in value:
                found.append((str(path.relative_to(PROJECT_ROOT)), value))
    return found


def production(tmp_path: Path, **values: str) -> Settings:
    return Settings(
        **{
            "environment": "production",
            "data_dir": tmp_path,
            "s3_secret_key": REAL_SECRET,
            **values,
        }
    )


def test_the_repo_ships_the_values_these_tests_guard() -> None:
    keys = [value for _, value in shipped_values("BRAINMRI_API_KEYS")]
    urls = [value for _, value in shipped_values("BRAINMRI_DATABASE_URL")]
    assert SHIPPED_KEYS in keys and "changeme:admin" in keys
    assert any(":changeme@" in url for url in urls)


# --- API keys -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec",
    [
        SHIPPED_KEYS,
        "dev-admin-key-change-me:admin",
        "a-perfectly-long-key-CHANGEME-42:admin",
        "0123456789abcdef-Change_Me:user",
        f"{REAL_KEYS.split(',')[0]},this-is-a-placeholder-key:user",
    ],
    ids=["shipped-pair", "shipped-admin", "changeme-upper", "change_me", "placeholder-second"],
)
def test_production_refuses_keys_with_placeholder_markers(tmp_path: Path, spec: str) -> None:
    with pytest.raises(ConfigurationError, match="BRAINMRI_API_KEYS entry") as settings_error:
        production(tmp_path, api_keys=spec)
    with pytest.raises(ConfigurationError, match="BRAINMRI_API_KEYS entry") as keyring_error:
        KeyRing(spec, production=True)
    for error in (settings_error, keyring_error):
        message = str(error.value)
        assert "placeholder" in message
        for key in (entry.rpartition(":")[0] for entry in spec.split(",")):
            assert key not in message


@pytest.mark.parametrize(("where", "spec"), shipped_values("BRAINMRI_API_KEYS"))
def test_every_shipped_api_key_is_refused_in_production(
    tmp_path: Path, where: str, spec: str
) -> None:
    with pytest.raises(ConfigurationError):
        KeyRing(spec, production=True)
    with pytest.raises(ConfigurationError, match="placeholder"):
        production(tmp_path, api_keys=spec)


def test_development_accepts_the_shipped_keys(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, api_keys=SHIPPED_KEYS)
    assert len(KeyRing(settings.api_keys)) == 2


def test_production_accepts_real_keys(tmp_path: Path) -> None:
    settings = production(tmp_path, api_keys=REAL_KEYS)
    assert len(KeyRing(settings.api_keys, production=True)) == 2


# --- passwords inside connection URLs ------------------------------------------------------------
@pytest.mark.parametrize(
    ("setting", "url"),
    [
        ("database_url", "postgresql+psycopg2://brainmri:changeme@postgres:5432/brainmri"),
        ("database_url", "postgresql+psycopg2://brainmri:ChangeMe@db.internal/brainmri"),
        ("database_url", "postgresql+psycopg2://brainmri:change%2Dme@db.internal/brainmri"),
        ("database_url", "postgresql+psycopg2://postgres:password@db.internal/brainmri"),
        ("database_url", "postgresql+psycopg2://brainmri:REPLACE_ME@db.example/brainmri"),
        ("database_url", "postgresql+psycopg2://brainmri:<POSTGRES_PASSWORD>@postgres/brainmri"),
        ("broker_url", "redis://:changeme@redis:6379/0"),
    ],
    ids=[
        "shipped",
        "mixed-case",
        "percent-encoded",
        "password",
        "replace-me",
        "template",
        "broker",
    ],
)
def test_production_refuses_a_placeholder_password_in_a_url(
    tmp_path: Path, setting: str, url: str
) -> None:
    with pytest.raises(ConfigurationError) as error:
        production(tmp_path, api_keys=REAL_KEYS, **{setting: url})
    message = str(error.value)
    assert f"BRAINMRI_{setting.upper()}" in message and "placeholder" in message
    assert url not in message and "changeme" not in message.lower().replace(" ", "")


@pytest.mark.parametrize(("where", "url"), shipped_values("BRAINMRI_DATABASE_URL"))
def test_every_shipped_database_url_is_refused_in_production(
    tmp_path: Path, where: str, url: str
) -> None:
    with pytest.raises(ConfigurationError, match="BRAINMRI_DATABASE_URL"):
        production(tmp_path, api_keys=REAL_KEYS, database_url=url)


@pytest.mark.parametrize(
    ("where", "url"),
    [(where, url) for where, url in shipped_values("BRAINMRI_BROKER_URL") if "@" in url],
)
def test_every_shipped_broker_password_is_refused_in_production(
    tmp_path: Path, where: str, url: str
) -> None:
    with pytest.raises(ConfigurationError, match="BRAINMRI_BROKER_URL"):
        production(tmp_path, api_keys=REAL_KEYS, broker_url=url)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg2://brainmri:Zp8-qL2v-w9Xr@db.internal:5432/brainmri",
        "postgresql+psycopg2://brainmri@db.internal/brainmri",  # peer/IAM auth: no password
        "sqlite:////var/lib/brainmri/brainmri.db",
    ],
)
def test_production_accepts_real_or_absent_passwords(tmp_path: Path, url: str) -> None:
    assert production(tmp_path, api_keys=REAL_KEYS, database_url=url).database_url == url


def test_development_accepts_the_placeholder_password(tmp_path: Path) -> None:
    url = "postgresql+psycopg2://brainmri:changeme@postgres:5432/brainmri"
    assert Settings(data_dir=tmp_path, database_url=url).database_url == url


def test_production_s3_secret_with_a_marker_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="BRAINMRI_S3_SECRET_KEY"):
        production(tmp_path, api_keys=REAL_KEYS, s3_secret_key="minio-secret-CHANGEME-0123")
