"""A real Celery worker decodes its jobs' files in confined children, not in itself.

An evaluate job reads an S3 prefix that any holder of that bucket's keys may have filled, and
a DICOM zip keeps its compressed pixel data through de-identification: those bytes reach the
decoders in the worker, a process holding the database URL, the S3 keys and the broker. With
``BRAINMRI_WORKER_DECODE_SANDBOX`` (the default) the worker's pool process must have decode
children whose environment is gone, and its log must say they are confined; with the setting
off there are none. Both workers give the same answers on the same inputs, a broken file
included.

Services: real Postgres, Redis, moto's S3 over HTTP, a real ``brainmri worker`` process.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from brainmri.imaging.confine import landlock_abi
from brainmri.phantom import FOLDER_NAMES, phantom_png
from brainmri.phantom_dicom import phantom_series, zip_series
from brainmri_api.main import create_app
from tests.infra import S3Server, WorkerProcess, services_env, settings_from_env, wait_for_job

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/environ").exists(), reason="reads the process tree from Linux /proc"
)

USER_KEY = "sandbox-user-0123456789abcdef"
USER = {"X-API-Key": USER_KEY}
BUCKET = "sandbox-datasets"
PREFIX = f"s3://{BUCKET}/eval/"


@pytest.fixture(scope="module")
def env(
    postgres_url: str,
    redis_url: str,
    s3: S3Server,
    service_bucket: str,
    platform_bundle: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    base = tmp_path_factory.mktemp("worker-sandbox")
    s3.make_bucket(BUCKET)
    objects = {
        f"eval/{folder}/{name}_{i}.png": phantom_png(name, seed=40 + i, size=72)
        for name, folder in FOLDER_NAMES.items()
        for i in range(2)
    }
    objects["eval/glioma/broken.png"] = b"\x89PNG\r\n\x1a\n and then nothing a decoder wants"
    for key, data in objects.items():
        s3.client().put_object(BUCKET, key, io.BytesIO(data), len(data))
    return services_env(
        postgres_url=postgres_url,
        redis_url=redis_url,
        s3=s3,
        bucket=service_bucket,
        data_dir=base / "data",
        bundle=platform_bundle,
        allowed_roots=PREFIX,
        api_keys=f"{USER_KEY}:user",
    )


@pytest.fixture(scope="module")
def client(env: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(settings_from_env(env))) as api:
        yield api


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def decode_children(worker: WorkerProcess) -> dict[int, bytes]:
    """The worker's spawned decode children and what /proc shows of their environment."""
    assert worker.process is not None
    children = {}
    for pid in descendants(worker.process.pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"serve_child" in command:
                children[pid] = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
    return children


def run_jobs(client: TestClient) -> tuple[dict, dict]:
    """An evaluate job over the S3 prefix and a predict job of a zipped DICOM series."""
    response = client.post("/v1/jobs/evaluate", headers=USER, json={"source": PREFIX})
    assert response.status_code == 202, response.text
    evaluation = wait_for_job(client, response.json()["job_id"], USER, timeout=180)
    series = zip_series(phantom_series("meningioma", n_slices=5, size=64, seed=12))
    response = client.post(
        "/v1/jobs/predict",
        headers=USER,
        files={"file": ("series.zip", series, "application/zip")},
    )
    assert response.status_code == 202, response.text
    prediction = wait_for_job(client, response.json()["job_id"], USER, timeout=180)
    assert evaluation["status"] == "succeeded", evaluation
    assert prediction["status"] == "succeeded", prediction
    return evaluation["result"], prediction["result"]


@pytest.fixture(scope="module")
def runs(env: dict[str, str], client: TestClient, tmp_path_factory: pytest.TempPathFactory):
    """Both workers' answers, children and logs: sandbox on (default), then off."""
    outcome = {}
    for mode, extra in (("on", {}), ("off", {"BRAINMRI_WORKER_DECODE_SANDBOX": "false"})):
        log = tmp_path_factory.mktemp(f"worker-{mode}") / "worker.log"
        worker = WorkerProcess({**env, **extra}, log).start()
        try:
            results = run_jobs(client)
            outcome[mode] = (results, decode_children(worker), log)
        finally:
            worker.stop()
    return outcome


def test_the_worker_decodes_in_children_that_hold_no_secrets(runs) -> None:
    _, children, log = runs["on"]
    assert children, "the worker decoded in its own process: no decode child found"
    for pid, environ in children.items():
        # forget_environment() zeroes the inherited bytes that /proc/<pid>/environ shows
        assert b"BRAINMRI_" not in environ, f"decode child {pid} still holds the environment"
        assert b"test-secret" not in environ
    if landlock_abi() > 0:
        assert "decode children confined (Landlock ABI" in log.read_text()


def test_with_the_setting_off_the_worker_decodes_itself(runs) -> None:
    _, children, log = runs["off"]
    assert children == {}
    assert "decode children confined" not in log.read_text()


def test_both_give_the_same_answers_and_the_same_failure(runs) -> None:
    (eval_on, predict_on), _, _ = runs["on"]
    (eval_off, predict_off), _, _ = runs["off"]
    for result in (eval_on, eval_off):
        assert result["n_total"] == 9
        assert result["n_failed"] == 1
        assert [error["path"].rsplit("/", 1)[-1] for error in result["errors"]] == ["broken.png"]
    assert eval_on["errors"][0]["code"] == eval_off["errors"][0]["code"]
    assert eval_on["macro_f1"] == pytest.approx(eval_off["macro_f1"])
    assert eval_on["roc_auc_binary"] == pytest.approx(eval_off["roc_auc_binary"])
    assert predict_on["class_probs"] == pytest.approx(predict_off["class_probs"], abs=1e-6)
    assert predict_on["input"]["kind"] == "dicom_zip"
