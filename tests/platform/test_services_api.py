"""Services mode end to end: FastAPI app + real Postgres + Redis + a Celery worker process +
moto's S3 server over HTTP. No mocks between the pieces."""

from __future__ import annotations

import io
import json
import platform
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis as redis_lib
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, update

from brainmri.db.jobs import create_job, delete_job
from brainmri.db.models import Job, Prediction
from brainmri.db.session import session_scope
from brainmri.db.types import utcnow
from brainmri.imaging.confine import landlock_abi
from brainmri.phantom import FOLDER_NAMES, phantom_png, write_phantom_dataset
from brainmri.phantom_dicom import FakePatient, dataset_bytes, phantom_series, zip_series
from brainmri_api.main import create_app
from tests.helpers import (
    assert_documented_result,
    encode,
    grey_image,
    png_header_only,
    zip_bomb,
    zip_bytes,
)
from tests.infra import (
    S3Server,
    WorkerProcess,
    free_port,
    poll_readyz,
    services_env,
    settings_from_env,
    wait_for_job,
)

ADMIN_KEY = "admin-key-0123456789abcdef"
USER_KEY = "user-key-0123456789abcdef"
OTHER_KEY = "other-key-0123456789abcdef"
ADMIN = {"X-API-Key": ADMIN_KEY}
USER = {"Authorization": f"Bearer {USER_KEY}"}
OTHER = {"X-API-Key": OTHER_KEY}
CLASSES = ["no_tumor", "glioma", "meningioma", "pituitary"]


class Stack:
    def __init__(
        self,
        env: dict[str, str],
        client: TestClient,
        s3: S3Server,
        bucket: str,
        data_root: Path,
        worker: WorkerProcess,
    ) -> None:
        self.env, self.client, self.s3, self.bucket = env, client, s3, bucket
        self.data_root, self.worker = data_root, worker
        self.settings = settings_from_env(env)

    def job_count(self) -> int:
        with session_scope(self.settings.resolved_database_url) as session:
            return int(session.scalar(select(func.count()).select_from(Job)) or 0)

    def upload_keys(self) -> list[str]:
        return self.s3.keys(self.bucket, "uploads/")

    def openapi(self) -> dict:
        """The document clients read, as served."""
        return self.client.get("/openapi.json").json()

    def queue_length(self) -> int:
        return int(redis_lib.Redis.from_url(self.env["BRAINMRI_BROKER_URL"]).llen("predict"))


@pytest.fixture(scope="module")
def stack(
    postgres_url: str,
    redis_url: str,
    s3: S3Server,
    service_bucket: str,
    platform_bundle: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("services")
    bucket = service_bucket
    s3.make_bucket("datasets")
    data_root = base / "allowed"
    write_phantom_dataset(data_root / "eval", per_class=4, size=72, seed=3)
    for class_name, folder in FOLDER_NAMES.items():
        for i in range(5):
            s3.client().put_object(
                "datasets",
                f"eval/{folder}/{class_name}_{i}.png",
                io.BytesIO(data := phantom_png(class_name, seed=100 + i, size=72)),
                len(data),
            )
    env = services_env(
        postgres_url=postgres_url,
        redis_url=redis_url,
        s3=s3,
        bucket=bucket,
        data_dir=base / "data",
        bundle=platform_bundle,
        allowed_roots=f"{data_root},s3://datasets/eval/",
        api_keys=f"{ADMIN_KEY}:admin,{USER_KEY}:user,{OTHER_KEY}:user",
        extra={"TUMOR_THRESH": "0.01", "BRAINMRI_LEGACY_WAIT_SECONDS": "60"},
    )
    worker = WorkerProcess(env, base / "worker.log").start()
    app = create_app(settings_from_env(env))
    with TestClient(app) as client:
        yield Stack(env, client, s3, bucket, data_root, worker)
    worker.stop()


def submit_png(
    stack: Stack, headers: dict[str, str], data: bytes | None = None, **form: str
) -> dict:
    data = data or phantom_png("glioma", seed=5, size=96)
    response = stack.client.post(
        "/v1/jobs/predict",
        headers=headers,
        files={"file": ("scan.png", data, "image/png")},
        data=form,
    )
    assert response.status_code == 202, response.text
    return response.json()


def test_predict_job_end_to_end(stack: Stack) -> None:
    created = submit_png(stack, USER, phantom_png("meningioma", seed=9, size=120))
    assert set(created) >= {"job_id", "status", "links"}
    assert created["status"] == "queued"
    job = wait_for_job(stack.client, created["job_id"], USER)
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert set(result) >= {
        "class_probs",
        "predicted_class",
        "tumor_prob",
        "threshold",
        "has_tumor",
        "tta",
        "cam_url",
    }
    assert result["threshold"] == 0.01  # TUMOR_THRESH, as the worker read it
    assert_documented_result(stack.openapi(), "predict", result)
    assert set(result["class_probs"]) == set(CLASSES)
    assert job["model_version"] and job["model_version"] == result["model_version"]
    cam = stack.client.get(result["cam_url"], headers=USER)
    assert cam.status_code == 200 and cam.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(cam.content)).size == (120, 120)
    keys = stack.s3.keys(stack.bucket, f"uploads/{created['job_id']}/")
    assert keys == [f"uploads/{created['job_id']}/input.png"]
    with session_scope(stack.settings.resolved_database_url) as session:
        rows = session.scalars(
            select(Prediction).where(Prediction.job_id == created["job_id"])
        ).all()
        assert len(rows) == 1
        assert rows[0].model_version == job["model_version"]
        assert rows[0].cam_uri.endswith("/cam.png") and len(rows[0].sha256) == 64


def test_request_threshold_and_tta(stack: Stack) -> None:
    created = submit_png(stack, USER, tta="true", cam="false", threshold="0.9")
    job = wait_for_job(stack.client, created["job_id"], USER)
    assert job["result"]["threshold"] == 0.9
    assert job["result"]["tta"] is True
    assert job["result"]["cam_url"] is None
    assert_documented_result(stack.openapi(), "predict", job["result"])
    assert job["result"]["has_tumor"] == (job["result"]["tumor_prob"] >= 0.9)


def test_zipped_dicom_series_job_reveals_no_phi(stack: Stack) -> None:
    patient = FakePatient()
    data = zip_series(phantom_series("pituitary", n_slices=5, size=64, patient=patient))
    response = stack.client.post(
        "/v1/jobs/predict", headers=USER, files={"file": ("Doe_Jane.zip", data, "application/zip")}
    )
    assert response.status_code == 202, response.text
    job = wait_for_job(stack.client, response.json()["job_id"], USER)
    assert job["status"] == "succeeded", job
    assert job["result"]["input"]["kind"] == "dicom_zip"
    assert job["result"]["input"]["n_slices"] == 5
    assert_documented_result(stack.openapi(), "predict", job["result"])
    text = json.dumps(job)
    for value in (patient.name, "Doe", patient.patient_id, patient.accession, patient.birth_date):
        assert value not in text


def test_evaluate_over_an_s3_prefix(stack: Stack) -> None:
    response = stack.client.post(
        "/v1/jobs/evaluate",
        headers=USER,
        json={"source": "s3://datasets/eval/", "limit": 12, "tta": True},
    )
    assert response.status_code == 202, response.text
    job = wait_for_job(stack.client, response.json()["job_id"], USER)
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["n_labeled"] == 12 and result["n_failed"] == 0
    assert_documented_result(stack.openapi(), "evaluate", result)
    for key in (
        "acc_multiclass",
        "macro_f1",
        "cm_multiclass",
        "roc_auc_binary",
        "ece",
        "best_threshold_by_YoudenJ",
        "sensitivity",
        "specificity",
    ):
        assert key in result
    assert set(result["artifacts"]) >= {
        "eval_report.json",
        "predictions.csv",
        "roc_binary.png",
        "cm_multiclass.png",
        "reliability.png",
    }
    report = stack.client.get(result["artifacts"]["eval_report.json"], headers=USER).json()
    assert report["n"] == 12
    plot = stack.client.get(result["artifacts"]["roc_binary.png"], headers=USER)
    assert Image.open(io.BytesIO(plot.content)).format == "PNG"
    with session_scope(stack.settings.resolved_database_url) as session:
        rows = session.scalars(select(Prediction).where(Prediction.job_id == job["job_id"])).all()
    assert Counter(row.true_class for row in rows) == dict.fromkeys(CLASSES, 3)  # balanced limit
    assert all(row.input_uri.startswith("s3://datasets/eval/") for row in rows)


def test_evaluate_local_folder_and_the_allow_list(stack: Stack) -> None:
    folder = stack.data_root / "eval"
    response = stack.client.post("/v1/jobs/evaluate", headers=USER, json={"source": str(folder)})
    assert response.status_code == 202
    job = wait_for_job(stack.client, response.json()["job_id"], USER)
    assert job["status"] == "succeeded" and job["result"]["n_labeled"] == 16
    for source in (
        "/etc",
        str(stack.data_root / ".." / ".."),
        "s3://brainmri/uploads/",
        "s3://datasets/other/",
        "http://169.254.169.254/latest",
        "file:///etc/passwd",
    ):
        response = stack.client.post("/v1/jobs/evaluate", headers=USER, json={"source": source})
        assert response.status_code == 400, source
        assert response.json()["error"]["code"] == "path_not_allowed"


def test_legacy_predict_keeps_its_fields(stack: Stack) -> None:
    response = stack.client.post(
        "/predict?save_cam=true&tta=true",
        headers=USER,
        files={"file": ("x.jpg", phantom_png("glioma", seed=1), "image/jpeg")},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    for key in (
        "has_tumor",
        "tumor_probability",
        "classification",
        "segmentation_available",
        "tumor_volume_ml",
        "notes",
        "job_id",
    ):
        assert key in body
    assert body["segmentation_available"] is False and body["tumor_volume_ml"] is None
    assert body["tumor_probability"] == round(body["tumor_probability"], 4)
    assert body["classification"] in CLASSES
    assert body["cam_url"].endswith("/cam.png")
    assert "not a medical device" in body["notes"]


def test_legacy_metrics_keeps_its_fields_and_request_threshold_wins(stack: Stack) -> None:
    root = stack.data_root / "eval"
    response = stack.client.post(
        "/metrics",
        headers=USER,
        json={
            "root": str(root),
            "threshold": 0.9,
            "return_predictions": True,
            "max_predictions": 5,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    for key in (
        "n_total",
        "n_scored",
        "n_labeled",
        "acc_multiclass",
        "acc_binary",
        "cm_multiclass",
        "cm_binary",
        "suggested_threshold_by_YoudenJ",
        "best_J",
        "notes",
        "samples",
        "job_id",
    ):
        assert key in body
    assert body["threshold"] == 0.9  # the request beats TUMOR_THRESH=0.01
    assert body["n_total"] == 16 and len(body["samples"]) == 5
    assert set(body["samples"][0]) == {"path", "pred_class", "tumor_prob", "true_class"}
    paths = [str(p) for p in sorted((root / "glioma").iterdir())][:2]
    listed = stack.client.post("/metrics", headers=USER, json={"paths": [*paths, "/etc/passwd"]})
    assert listed.status_code == 400
    listed = stack.client.post(
        "/metrics", headers=USER, json={"paths": paths, "return_predictions": True}
    )
    assert [s["path"] for s in listed.json()["samples"]] == paths
    assert [s["true_class"] for s in listed.json()["samples"]] == ["glioma", "glioma"]


def test_legacy_metrics_failed_image_does_not_shift_paths(stack: Stack) -> None:
    folder = stack.data_root / "mixed" / "glioma"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.png").write_bytes(phantom_png("glioma", seed=1, size=64))
    (folder / "b_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (folder / "c.png").write_bytes(phantom_png("glioma", seed=2, size=64))
    body = stack.client.post(
        "/metrics", headers=USER, json={"root": str(folder.parent), "return_predictions": True}
    ).json()
    assert body["n_total"] == 3 and body["n_scored"] == 2
    assert [Path(s["path"]).name for s in body["samples"]] == ["a.png", "c.png"]


def test_legacy_metrics_of_unlabelled_paths_answers_null_metrics(stack: Stack) -> None:
    """Listed files outside class folders have no label (the original contract's null
    ``true_class``): they are scored, and the metrics that need labels are null, not a 500."""
    folder = stack.data_root / "unsorted-scans"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(2):
        (path := folder / f"scan{i}.png").write_bytes(phantom_png("glioma", seed=i, size=64))
        paths.append(str(path))
    response = stack.client.post(
        "/metrics", headers=USER, json={"paths": paths, "return_predictions": True}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["n_total"], body["n_scored"], body["n_labeled"]) == (2, 2, 0)
    for key in ("acc_multiclass", "acc_binary", "suggested_threshold_by_YoudenJ", "best_J"):
        assert body[key] is None, key
    assert body["cm_multiclass"] == [] and body["cm_binary"] == []
    assert [s["path"] for s in body["samples"]] == paths
    assert all(s["true_class"] is None and s["pred_class"] in CLASSES for s in body["samples"])


def test_every_v1_endpoint_needs_a_key(stack: Stack) -> None:
    job_id = submit_png(stack, USER)["job_id"]
    calls = [
        ("post", "/v1/jobs/predict"),
        ("post", "/v1/jobs/evaluate"),
        ("get", "/v1/jobs"),
        ("get", f"/v1/jobs/{job_id}"),
        ("post", f"/v1/jobs/{job_id}/cancel"),
        ("get", f"/v1/jobs/{job_id}/artifacts/cam.png"),
        ("post", "/predict"),
        ("post", "/metrics"),
    ]
    for method, path in calls:
        for headers in ({}, {"X-API-Key": "wrong-key-0123456789"}, {"Authorization": "Bearer x"}):
            response = getattr(stack.client, method)(path, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["error"]["code"] == "unauthenticated"


def test_users_see_only_their_own_jobs(stack: Stack) -> None:
    mine = submit_png(stack, USER)["job_id"]
    theirs = submit_png(stack, OTHER)["job_id"]
    wait_for_job(stack.client, theirs, OTHER)
    assert stack.client.get(f"/v1/jobs/{theirs}", headers=USER).status_code == 404
    assert stack.client.get(f"/v1/jobs/{theirs}/artifacts/cam.png", headers=USER).status_code == 404
    assert stack.client.post(f"/v1/jobs/{theirs}/cancel", headers=USER).status_code == 404
    listed = stack.client.get("/v1/jobs?limit=200", headers=USER).json()
    ids = {item["job_id"] for item in listed["items"]}
    assert mine in ids and theirs not in ids
    everyone = stack.client.get("/v1/jobs?limit=200", headers=ADMIN).json()
    assert {mine, theirs} <= {item["job_id"] for item in everyone["items"]}
    assert stack.client.get(f"/v1/jobs/{theirs}", headers=ADMIN).status_code == 200


def test_list_filters_and_pagination(stack: Stack) -> None:
    for _ in range(4):  # enough for the page on its own, whatever ran before
        submit_png(stack, OTHER)
    page = stack.client.get("/v1/jobs?kind=predict&limit=2&offset=1", headers=OTHER).json()
    assert page["limit"] == 2 and page["offset"] == 1 and len(page["items"]) == 2
    assert page["total"] >= 4
    assert all(item["kind"] == "predict" for item in page["items"])
    none = stack.client.get("/v1/jobs?kind=evaluate", headers=OTHER).json()
    assert none["total"] == 0
    assert stack.client.get("/v1/jobs?status=bogus", headers=OTHER).status_code == 422
    deepest = stack.client.get(f"/v1/jobs?offset={2**31 - 1}", headers=OTHER)
    assert deepest.status_code == 200 and deepest.json()["items"] == []
    overflow = stack.client.get(f"/v1/jobs?offset={2**63}", headers=OTHER)  # found by fuzzing
    assert overflow.status_code == 422 and "offset" in overflow.text


def test_cancel_a_running_evaluation(stack: Stack) -> None:
    folder = stack.data_root / "many"
    write_phantom_dataset(folder, per_class=150, size=64, seed=9)
    response = stack.client.post(
        "/v1/jobs/evaluate", headers=USER, json={"source": str(folder), "tta": True}
    )
    job_id = response.json()["job_id"]
    wait_for_job(stack.client, job_id, USER, until=("running",))
    cancelled = stack.client.post(f"/v1/jobs/{job_id}/cancel", headers=USER)
    assert cancelled.status_code == 202
    job = wait_for_job(stack.client, job_id, USER)
    assert job["status"] == "cancelled", job
    assert stack.s3.keys(stack.bucket, f"artifacts/{job_id}/") == []
    again = stack.client.post(f"/v1/jobs/{job_id}/cancel", headers=USER)
    assert again.status_code == 409


BAD_INPUTS = {
    "empty file": (b"", 422, "empty_file"),
    "text file": (b"just some notes\n" * 20, 415, "unsupported_format"),
    "truncated jpeg": (encode(grey_image(256, 1), "JPEG")[:3000], 422, "truncated_image"),
    "30000x30000 png": (png_header_only(30000, 30000), 413, "too_many_pixels"),
    "zip bomb": (zip_bomb(), 413, "zip_bomb"),
    "zip slip": (zip_bytes({"../../etc/evil.dcm": b"x"}), 422, "unsafe_member_path"),
    "zip without dicom": (zip_bytes({"notes.txt": b"hello"}), 422, "no_dicom_in_archive"),
    "dicom without pixels": (None, 422, "dicom_no_pixel_data"),
    "mixed-shape series": (
        zip_series(phantom_series("glioma", n_slices=3, sizes=[64, 64, 48])),
        422,
        "inconsistent_series",
    ),
}


def _dicom_without_pixels() -> bytes:
    ds = phantom_series("glioma", n_slices=1)[0]
    del ds.PixelData
    return dataset_bytes(ds)


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_inputs_are_refused_and_leave_nothing_behind(stack: Stack, name: str) -> None:
    data, status, code = BAD_INPUTS[name]
    data = _dicom_without_pixels() if data is None else data
    # Let the worker drain jobs queued by earlier tests, so the queue cannot shrink meanwhile.
    deadline = time.monotonic() + 60
    while stack.queue_length() and time.monotonic() < deadline:
        time.sleep(0.1)
    before = (stack.job_count(), stack.upload_keys(), stack.queue_length())
    response = stack.client.post(
        "/v1/jobs/predict", headers=USER, files={"file": ("../../upload.bin", data, "image/png")}
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert (stack.job_count(), stack.upload_keys(), stack.queue_length()) == before


def test_oversize_upload_is_413(stack: Stack) -> None:
    limit = stack.settings.max_upload_bytes
    before = (stack.job_count(), stack.upload_keys())
    response = stack.client.post(
        "/v1/jobs/predict",
        headers=USER,
        files={"file": ("big.png", b"\x89PNG" + b"0" * (limit + 10))},
    )
    assert response.status_code == 413
    assert (stack.job_count(), stack.upload_keys()) == before


def test_health_readiness_and_prometheus(stack: Stack) -> None:
    assert stack.client.get("/healthz").json()["status"] == "ok"
    ready = stack.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["checks"]) == {"database", "broker", "object_store", "model"}
    job = wait_for_job(stack.client, submit_png(stack, USER)["job_id"], USER)
    assert job["status"] == "succeeded", job
    # The stack's worker consumes predict and evaluate, and reports itself every second.
    ready = poll_readyz(
        stack.client, lambda body: body["workers"]["predict"] and body["workers"]["evaluate"]
    )
    assert set(ready["workers"]) == {"predict", "evaluate", "train"}
    stuck, served = str(uuid.uuid4()), str(uuid.uuid4())
    with session_scope(stack.settings.resolved_database_url) as session:
        create_job(session, job_id=stuck, kind="train", owner="nobody", params={})
        create_job(session, job_id=served, kind="predict", owner="nobody", params={})
        session.execute(
            update(Job).where(Job.id == stuck).values(enqueued_at=utcnow() - timedelta(minutes=2))
        )
    try:
        metrics_text = stack.client.get("/metrics").text
        # No train worker runs here: a user reading the job is told why it waits.
        waiting = stack.client.get(f"/v1/jobs/{stuck}", headers=ADMIN).json()
        assert waiting["status"] == "queued"
        assert "no live worker consumes the train queue" in waiting["waiting_reason"]
        queued = stack.client.get(f"/v1/jobs/{served}", headers=ADMIN).json()
        assert queued["status"] == "queued" and queued["waiting_reason"] is None
    finally:
        with session_scope(stack.settings.resolved_database_url) as session:
            delete_job(session, stuck)
            delete_job(session, served)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
    }
    # Samples, not names: a metric's HELP line names it even when it has no value.
    assert samples[("brainmri_jobs", (("kind", "predict"), ("status", "succeeded")))] >= 1
    assert samples[("brainmri_live_workers", (("queue", "predict"),))] >= 1
    assert (("brainmri_queue_depth", (("queue", "predict"),))) in samples
    # A queue that nothing consumes shows as a growing age (no train worker runs here).
    assert samples[("brainmri_oldest_queued_job_age_seconds", (("kind", "train"),))] >= 120
    median = samples[("brainmri_inference_seconds_per_image", (("quantile", "0.5"),))]
    assert 0 < median < 60
    # The API's decode children started with it and said what holds (alert on a 0).
    guards = {
        dict(labels)["guard"]: value
        for (name, labels), value in samples.items()
        if name == "brainmri_upload_sandbox_confined"
    }
    assert set(guards) == {"files", "tcp", "signals", "sockets"}
    if landlock_abi() >= 6:
        assert set(guards.values()) == {1.0}
    # So did the workers' job decode children, through each worker's presence report: none
    # of the live workers lacks a guard this kernel grants.
    lacking = {
        dict(labels)["guard"]: value
        for (name, labels), value in samples.items()
        if name == "brainmri_worker_decode_unconfined"
    }
    assert set(lacking) == {"files", "tcp", "signals", "sockets"}
    if landlock_abi() >= 6 and platform.machine() in {"x86_64", "aarch64"}:
        assert set(lacking.values()) == {0.0}
    assert any(
        name == "brainmri_http_request_duration_seconds_count" and dict(labels)["route"]
        for name, labels in samples
    )


def test_broker_down_means_503_and_nothing_stored(stack: Stack) -> None:
    env = {**stack.env, "BRAINMRI_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    app = create_app(settings_from_env(env))
    before = (stack.job_count(), stack.upload_keys())
    with TestClient(app) as client:
        response = client.post(
            "/v1/jobs/predict",
            headers=USER,
            files={"file": ("a.png", phantom_png("glioma", seed=1))},
        )
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "service_unavailable"
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "broker" in ready.json()["down"]
    assert (stack.job_count(), stack.upload_keys()) == before
