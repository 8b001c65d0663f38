"""Fault injection on dependencies: PostgreSQL down for 10 s, the object store down."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from brainmri.db.migrate import upgrade
from brainmri.phantom import phantom_png, write_phantom_dataset
from brainmri_api.main import create_app
from tests.conftest import need
from tests.infra import (
    PrivatePostgres,
    S3Server,
    WorkerProcess,
    fresh_database,
    services_env,
    settings_from_env,
    wait_for_job,
)

KEY = "dependency-key-0123456789abcdef"
HEADERS = {"X-API-Key": KEY}


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    need(server.available, "PostgreSQL server binaries (initdb, pg_ctl) not installed")
    server.init()
    upgrade(server.url)
    yield server
    server.destroy()


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def test_postgres_outage_gives_503_then_recovers(
    private_postgres: PrivatePostgres,
    redis_url: str,
    s3: S3Server,
    platform_bundle: Path,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    bucket = s3.make_bucket("brainmri-pg-outage")
    allowed = tmp_path / "allowed"
    write_phantom_dataset(allowed / "eval", per_class=60, size=64, seed=3)
    env = services_env(
        postgres_url=private_postgres.url,
        redis_url=redis_url,
        s3=s3,
        bucket=bucket,
        data_dir=tmp_path / "data",
        bundle=platform_bundle,
        allowed_roots=str(allowed),
        api_keys=f"{KEY}:admin",
    )
    settings = settings_from_env(env)
    workers.append(WorkerProcess(env, tmp_path / "worker.log").start())
    with TestClient(create_app(settings)) as client:
        job_id = client.post(
            "/v1/jobs/evaluate",
            headers=HEADERS,
            json={"source": str(allowed / "eval"), "tta": True},
        ).json()["job_id"]
        wait_for_job(client, job_id, HEADERS, until=("running",))
        private_postgres.stop()
        outage_started = time.monotonic()
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["down"][0] == "database"
        keys_before = s3.keys(bucket, "uploads/")
        refused = client.post(
            "/v1/jobs/predict",
            headers=HEADERS,
            files={"file": ("a.png", phantom_png("glioma", seed=1))},
        )
        assert refused.status_code == 503
        assert s3.keys(bucket, "uploads/") == keys_before  # the stored upload was removed again
        time.sleep(max(0.0, 10.0 - (time.monotonic() - outage_started)))
        private_postgres.start()
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.get("/readyz").status_code == 200
        job = wait_for_job(client, job_id, HEADERS, timeout=300)
    assert job["status"] == "succeeded", job
    assert job["result"]["n_scored"] == 240


def test_object_store_outage_fails_retryably_then_succeeds_on_retry(
    redis_url: str,
    platform_bundle: Path,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    store = S3Server()  # a private S3 endpoint that this test can stop
    try:
        # Its own database too: the session's registry points at objects in another bucket.
        with fresh_database() as postgres_url:
            bucket = store.make_bucket("brainmri-store-outage")
            env = services_env(
                postgres_url=postgres_url,
                redis_url=redis_url,
                s3=store,
                bucket=bucket,
                data_dir=tmp_path / "data",
                bundle=platform_bundle,
                api_keys=f"{KEY}:admin",
                extra={"BRAINMRI_STORAGE_MAX_RETRIES": "2"},
            )
            settings = settings_from_env(env)
            with TestClient(create_app(settings)) as client:
                workers.append(WorkerProcess(env, tmp_path / "warm.log").start())
                warm = client.post(
                    "/v1/jobs/predict",
                    headers=HEADERS,
                    files={"file": ("a.png", phantom_png("glioma", seed=2))},
                ).json()
                warmed = wait_for_job(client, warm["job_id"], HEADERS)
                assert warmed["status"] == "succeeded", warmed["error"]
                workers.pop().stop()
                job_id = client.post(
                    "/v1/jobs/predict",
                    headers=HEADERS,
                    files={"file": ("a.png", phantom_png("meningioma", seed=3))},
                ).json()["job_id"]
                host, port = store.endpoint.split(":")
                store.server.stop()  # the store goes away with the job queued
                ready = client.get("/readyz")  # unauthenticated: it names no internal host
                assert ready.status_code == 503
                assert ready.json()["checks"]["object_store"] == "down: StorageUnavailableError"
                assert host not in ready.text and bucket not in ready.text
                workers.append(WorkerProcess(env, tmp_path / "worker.log").start())
                failed = wait_for_job(client, job_id, HEADERS, timeout=120)
                assert failed["status"] == "failed"
                assert failed["error"]["code"] == "storage_unavailable"
                assert failed["error"]["retryable"] is True
                from moto.server import ThreadedMotoServer

                store.server = ThreadedMotoServer(ip_address=host, port=int(port), verbose=False)
                store.server.start()  # moto keeps its state in this process: objects are back
                retried = client.post(f"/v1/jobs/{job_id}/retry", headers=HEADERS)
                assert retried.status_code == 202, retried.text
                job = wait_for_job(client, job_id, HEADERS, timeout=120)
                assert job["status"] == "succeeded", job
                assert job["result"]["cam_url"]
                again = client.post(f"/v1/jobs/{job_id}/retry", headers=HEADERS)
                assert again.status_code == 409  # only failed, retryable jobs run again
    finally:
        store.stop()
