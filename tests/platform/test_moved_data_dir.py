"""Job rows keep absolute ``file://`` URIs: moving the data directory must not break downloads.

Before the fix the artifact download of a job completed before the move answered 500
``internal_error`` (``key_from_uri`` raised a bare ValueError).
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from brainmri.config import Settings
from brainmri.db.jobs import claim_job, complete_job, create_job
from brainmri.db.migrate import upgrade
from brainmri.db.session import get_engine, session_scope
from brainmri.storage import ForeignObjectURIError, ObjectNotFoundError, open_store, store_for_uri

JOB = "11111111-1111-4111-8111-111111111111"
KEY = "k1k1k1k1k1k1k1k1k1k1"
HEADERS = {"X-API-Key": KEY}


def _settings(data_dir: Path, bundle: Path) -> Settings:
    return Settings(data_dir=data_dir, model_dir=bundle, api_keys=f"{KEY}:admin")


def _complete_job_with_artifacts(settings: Settings) -> dict[str, str]:
    url = settings.resolved_database_url
    upgrade(url)
    store = open_store(settings)
    artifacts = {
        "cam.png": store.put(f"artifacts/{JOB}/cam.png", b"\x89PNG cam"),
        "gg (1).png": store.put(f"artifacts/{JOB}/gg (1).png", b"\x89PNG odd"),
        "gone.png": store.put(f"artifacts/{JOB}/gone.png", b"\x89PNG gone"),
        "foreign.png": "s3://elsewhere/artifacts/x/foreign.png",
    }
    with session_scope(url) as session:
        create_job(session, job_id=JOB, kind="predict", owner="x", params={})
    with session_scope(url) as session:
        claim_job(session, job_id=JOB, worker="w", stale_after=timedelta(0), max_attempts=3)
        complete_job(
            session, job_id=JOB, attempt=1, result={}, model_version="v", artifacts=artifacts
        )
    get_engine(url).dispose()
    return artifacts


def test_artifacts_download_after_the_data_directory_moved(
    tmp_path: Path, random_bundle_dir: Path
) -> None:
    before = _settings(tmp_path / "var", random_bundle_dir)
    artifacts = _complete_job_with_artifacts(before)
    assert artifacts["cam.png"].startswith((tmp_path / "var" / "objects").as_uri())

    shutil.move(tmp_path / "var", tmp_path / "moved" / "var2")
    after = _settings(tmp_path / "moved" / "var2", random_bundle_dir)
    (after.data_dir / "objects" / "artifacts" / JOB / "gone.png").unlink()

    from brainmri_api.main import create_app

    with TestClient(create_app(after), raise_server_exceptions=False) as client:
        base = f"/v1/jobs/{JOB}/artifacts"
        response = client.get(f"{base}/cam.png", headers=HEADERS)
        assert response.status_code == 200, response.text
        assert response.content == b"\x89PNG cam"
        response = client.get(f"{base}/gg (1).png", headers=HEADERS)
        assert response.status_code == 200, response.text
        assert response.content == b"\x89PNG odd"
        for missing in ("gone.png", "foreign.png"):
            response = client.get(f"{base}/{missing}", headers=HEADERS)
            assert response.status_code == 404, response.text
            error = response.json()["error"]
            assert error["code"] == "artifact_missing"
            assert missing in error["message"] and str(tmp_path) not in error["message"]
    get_engine(after.resolved_database_url).dispose()


def test_local_store_resolves_a_relocated_uri_by_its_key(tmp_path: Path) -> None:
    old = store_for_uri((tmp_path / "a" / "objects").as_uri(), Settings())
    uris = {key: old.put(key, key.encode()) for key in ("x/objects/y.png", "gg (1).png")}
    shutil.move(tmp_path / "a", tmp_path / "objects" / "b")  # the root's name now repeats
    new = store_for_uri((tmp_path / "objects" / "b" / "objects").as_uri(), Settings())
    for key, uri in uris.items():
        assert new.key_from_uri(uri) == key
        assert new.get(new.key_from_uri(uri)) == key.encode()

    refused = [
        "s3://bucket/objects/x/objects/y.png",  # another store
        "file://otherhost/a/objects/gg%20(1).png",  # another host
        (tmp_path / "a" / "objects" / "missing.png").as_uri(),  # not here
        (tmp_path / "a" / "stuff" / "gg (1).png").as_uri(),  # no root segment at all
        new.url + "/../../a/objects/gg%20(1).png",  # traversal out of the root
    ]
    for uri in refused:
        with pytest.raises(ForeignObjectURIError) as caught:
            new.key_from_uri(uri)
        assert isinstance(caught.value, ObjectNotFoundError)
        assert isinstance(caught.value, ValueError)  # the original contract
