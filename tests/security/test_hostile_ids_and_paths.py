"""NUL bytes and other control characters in request paths, job ids and model versions get the
client's error (400/404), never a 500 - on SQLite and on a real PostgreSQL, whose driver
raises ValueError for a NUL in any bound string. Nothing is stored for a refused request."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from brainmri.config import Settings
from brainmri.db.migrate import upgrade
from brainmri.db.models import Job
from brainmri.db.session import session_scope
from brainmri.errors import PathNotAllowedError
from brainmri.registry.versions import register_bundle
from brainmri.sources import resolve_source
from brainmri_api.main import create_app
from tests.conftest import make_bundle
from tests.infra import fresh_database

ADMIN_KEY = "ids-admin-key-0123456789abcdef"
USER_KEY = "ids-user-key-0123456789abcdef"
ADMIN = {"X-API-Key": ADMIN_KEY}
USER = {"X-API-Key": USER_KEY}


@dataclass
class Api:
    client: TestClient
    settings: Settings
    allowed: Path

    def jobs(self) -> int:
        with session_scope(self.settings.resolved_database_url) as session:
            return int(session.scalar(select(func.count()).select_from(Job)) or 0)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    base = tmp_path_factory.mktemp(f"ids-{request.param}")
    make_bundle(base / "bundle", img_size=48)
    allowed = base / "allowed"
    (allowed / "glioma").mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        database_url = (
            stack.enter_context(fresh_database()) if request.param == "postgres" else None
        )
        settings = Settings(
            data_dir=base / "data",
            model_dir=base / "bundle",
            database_url=database_url,
            api_keys=f"{ADMIN_KEY}:admin,{USER_KEY}:user",
            allowed_roots=f"{allowed},s3://datasets/eval/",
            upload_sandbox_processes=1,
            legacy_wait_seconds=0.5,
        )
        upgrade(settings.resolved_database_url)
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            yield Api(client, settings, allowed)


# --- sources -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "source",
    ["{allowed}/a\x00b", "{allowed}/glioma\x00", "{allowed}/a\nb", "s3://datasets/eval/\x00x/"],
    ids=["nul", "trailing-nul", "newline", "s3-nul"],
)
def test_control_characters_in_a_source_are_the_path_error(source: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, allowed_roots=f"{tmp_path},s3://datasets/eval/")
    with pytest.raises(PathNotAllowedError, match="control character"):
        resolve_source(source.format(allowed=tmp_path), settings)


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("/v1/jobs/evaluate", {"source": "{allowed}/a\x00b"}, USER),
        ("/v1/jobs/evaluate", {"source": "s3://datasets/eval/a\x00b/"}, USER),
        ("/v1/jobs/train", {"dataset": "{allowed}/a\x00"}, ADMIN),
        ("/metrics", {"root": "{allowed}/a\x00b"}, USER),
        ("/metrics", {"paths": ["{allowed}/glioma/x\x00.png"]}, USER),
    ],
    ids=["evaluate", "evaluate-s3", "train", "metrics-root", "metrics-paths"],
)
def test_nul_in_a_source_is_400_and_stores_nothing(
    api: Api, path: str, body: dict, headers: dict[str, str]
) -> None:
    filled = {
        key: [v.format(allowed=api.allowed) for v in value]
        if isinstance(value, list)
        else value.format(allowed=api.allowed)
        for key, value in body.items()
    }
    before = api.jobs()
    response = api.client.post(path, headers=headers, json=filled)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "path_not_allowed"
    assert "control character (U+0000" in error["message"]
    assert api.jobs() == before


def test_a_clean_source_is_still_accepted(api: Api) -> None:
    response = api.client.post(
        "/v1/jobs/evaluate", headers=USER, json={"source": f"{api.allowed}/glioma"}
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert api.client.get(f"/v1/jobs/{job_id}", headers=USER).json()["job_id"] == job_id


# --- job ids ----------------------------------------------------------------------------------
@pytest.mark.parametrize("job_id", ["%00", "abc%00def", "not-a-uuid", "%0A", "a" * 300])
@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("POST", "/cancel"), ("POST", "/retry"), ("GET", "/artifacts/cam.png")],
)
def test_malformed_job_ids_are_404(api: Api, job_id: str, method: str, suffix: str) -> None:
    response = api.client.request(method, f"/v1/jobs/{job_id}{suffix}", headers=ADMIN)
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error["code"] == "not_found"
    assert "job ids are UUIDs" in error["message"]


def test_an_unknown_well_formed_job_id_is_still_a_plain_404(api: Api) -> None:
    response = api.client.get("/v1/jobs/123e4567-e89b-42d3-a456-426614174000", headers=ADMIN)
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "no job 123e4567-e89b-42d3-a456-426614174000"


# --- model versions and names -------------------------------------------------------------------
@pytest.mark.parametrize("version", ["%00", "v1%00", "%0A", "-leading-dash", "a" * 129])
@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("POST", "/promote")])
def test_malformed_model_versions_are_404(api: Api, version: str, method: str, suffix: str) -> None:
    response = api.client.request(method, f"/v1/models/{version}{suffix}", headers=ADMIN)
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error["code"] == "model_version_not_found"
    assert "versions are 1-128 letters" in error["message"]


@pytest.mark.parametrize("name", ["%00", "brain%00mri", "a" * 65])
def test_malformed_model_names_are_404_on_rollback(api: Api, name: str) -> None:
    response = api.client.post(f"/v1/models/{name}/rollback", headers=ADMIN)
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error["code"] == "model_version_not_found"
    assert "model names are 1-64 letters" in error["message"]


def test_real_versions_and_names_still_resolve(api: Api) -> None:
    production = api.client.get("/v1/models", headers=USER).json()["production"]
    assert production
    assert api.client.get(f"/v1/models/{production}", headers=USER).status_code == 200
    assert api.client.post(f"/v1/models/{production}/promote", headers=ADMIN).status_code == 200
    rollback = api.client.post(f"/v1/models/{api.settings.model_name}/rollback", headers=ADMIN)
    assert rollback.status_code == 404  # a valid name; there is just no earlier version
    assert "no earlier production version" in rollback.json()["error"]["message"]


def test_a_model_name_outside_the_pattern_is_refused_in_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model_name"):
        Settings(data_dir=tmp_path, model_name="brain/mri")


# --- free strings that are stored ---------------------------------------------------------------
def test_nul_in_a_train_arch_is_422_and_stores_nothing(api: Api) -> None:
    before = api.jobs()
    response = api.client.post(
        "/v1/jobs/train", headers=ADMIN, json={"dataset": str(api.allowed), "arch": "res\x00net"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_arch"
    assert api.jobs() == before


def test_nul_in_a_promotion_reason_is_422_and_changes_nothing(api: Api, tmp_path: Path) -> None:
    make_bundle(tmp_path / "second", img_size=48, seed=3)
    state = api.client.app.state.brainmri  # type: ignore[attr-defined]
    with session_scope(api.settings.resolved_database_url) as session:
        candidate = register_bundle(
            session, state.store, tmp_path / "second", name=api.settings.model_name
        ).version
    production = api.client.get("/v1/models", headers=ADMIN).json()["production"]
    response = api.client.post(
        f"/v1/models/{candidate}/promote", headers=ADMIN, json={"reason": "tested\x00ok"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_text"
    assert api.client.get("/v1/models", headers=ADMIN).json()["production"] == production
    fine = api.client.post(
        f"/v1/models/{candidate}/promote", headers=ADMIN, json={"reason": "line one\nline two"}
    )
    assert fine.status_code == 200, fine.text
    assert fine.json()["stage_reason"] == "line one\nline two"
    back = api.client.post(f"/v1/models/{production}/promote", headers=ADMIN)
    assert back.status_code == 200
