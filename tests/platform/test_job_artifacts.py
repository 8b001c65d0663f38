"""Job artifacts are fenced by the claim's attempt number, like the job row itself.

A worker presumed dead may still be running: when it fails late or its result is discarded it
must neither delete nor overwrite the files of the attempt that took over (and won). Jobs that
end for good without a result - poison jobs, and jobs cancelled while their worker was gone -
leave nothing behind. Real PostgreSQL (a fresh database for the module), a real object store
(a local folder, and S3 via moto's server), the real task runtime run through Celery's
in-process ``apply`` and the real reaper pass.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import update

from brainmri.config import Settings, get_settings
from brainmri.db.jobs import complete_job, create_job, fail_job, request_cancel
from brainmri.db.models import Job
from brainmri.db.session import session_scope
from brainmri.db.types import utcnow
from brainmri.errors import DatasetError
from brainmri.jobs.artifacts import UPLOADS_ROOT, artifact_prefix, upload_key
from brainmri.jobs.celery_app import create_celery
from brainmri.jobs.reaper import reap_once
from brainmri.jobs.runtime import JobContext, JobOutcome, job_task
from brainmri.jobs.sweep import sweep_artifacts, sweep_bundles, sweep_uploads
from brainmri.registry.versions import register_bundle
from brainmri.storage import ObjectStore, StorageUnavailableError, open_store
from tests.conftest import make_bundle
from tests.infra import S3Server, claim_as, fresh_database

JobBodyFn = Callable[[JobContext], JobOutcome]


@pytest.fixture(scope="module")
def db_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@dataclass
class Deployment:
    settings: Settings
    store: ObjectStore
    app: Celery
    url: str

    def run(self, job_id: str, body: JobBodyFn, *, retries: int | None = None) -> None:
        """Deliver the job's message to a worker running ``body`` (in this process).

        With ``retries`` (how often the message was retried before), Celery's retries run at
        once; errors then stay in the job row instead of being raised here.
        """
        task = job_task(self.app, name=f"test.job.{uuid.uuid4().hex}", time_limit=lambda _: 600)
        if retries is None:
            task(body).apply(args=[job_id], throw=True)
        else:
            task(body).apply(args=[job_id], retries=retries, throw=False)

    def job(self, job_id: str) -> Job:
        with session_scope(self.url) as session:
            job = session.get(Job, job_id)
            assert job is not None
            return job

    def keys(self, job_id: str) -> list[str]:
        return [info.key for info in self.store.list(artifact_prefix(job_id))]

    def download(self, job_id: str, name: str) -> bytes:
        """What ``GET /v1/jobs/{id}/artifacts/{name}`` serves: the URI in the artifact map."""
        uri = self.job(job_id).artifacts[name]
        return self.store.get(self.store.key_from_uri(uri))

    def go_stale(self, job_id: str) -> None:
        """The job's worker stops heartbeating (stalled, or killed)."""
        with session_scope(self.url) as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(heartbeat_at=utcnow() - timedelta(hours=1))
            )


@pytest.fixture(params=["local", "s3"])
def deployment(
    request: pytest.FixtureRequest,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Deployment]:
    env = {
        "BRAINMRI_DATABASE_URL": db_url,
        "BRAINMRI_DATA_DIR": str(tmp_path / "data"),
        # Heartbeats come only from the test; a job is stale once its heartbeat is old.
        "BRAINMRI_JOB_HEARTBEAT_SECONDS": "3600",
        "BRAINMRI_JOB_STALE_AFTER_SECONDS": "60",
        "BRAINMRI_JOB_MAX_ATTEMPTS": "3",
        "BRAINMRI_STORAGE_MAX_RETRIES": "0",
    }
    if request.param == "s3":
        s3: S3Server = request.getfixturevalue("s3")
        bucket = s3.make_bucket(f"artifacts-{uuid.uuid4().hex[:12]}")
        env |= {
            "BRAINMRI_OBJECT_STORE_URL": f"s3://{bucket}/svc",
            "BRAINMRI_S3_ENDPOINT": s3.endpoint,
            "BRAINMRI_S3_ACCESS_KEY": "test",
            "BRAINMRI_S3_SECRET_KEY": "test-secret",
        }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    settings = get_settings()
    try:
        yield Deployment(settings, open_store(settings), create_celery(settings), db_url)
    finally:
        get_settings.cache_clear()


def _new_job(deployment: Deployment, *, input_uri: str | None = None) -> str:
    job_id = str(uuid.uuid4())
    with session_scope(deployment.url) as session:
        create_job(
            session, job_id=job_id, kind="predict", owner="u", params={}, input_uri=input_uri
        )
    return job_id


def _outcome(ctx: JobContext, data: bytes) -> JobOutcome:
    uri = ctx.store.put(ctx.artifact_key("cam.png"), data, "image/png")
    return JobOutcome(
        result={"attempt": ctx.attempt}, model_version="v", artifacts={"cam.png": uri}
    )


def _claimed(deployment: Deployment, job_id: str) -> int:
    return claim_as(deployment.url, job_id, "doomed").attempt


def _crash_attempts(deployment: Deployment, job_id: str, count: int) -> None:
    """``count`` workers claim the job, write an artifact and die before finishing."""
    for _ in range(count):
        deployment.go_stale(job_id)
        attempt = _claimed(deployment, job_id)
        deployment.store.put(artifact_prefix(job_id, attempt) + "input.png", b"partial")


def test_a_stale_attempt_failing_late_leaves_the_winners_artifacts(
    deployment: Deployment,
) -> None:
    job_id = _new_job(deployment)

    def body(ctx: JobContext) -> JobOutcome:
        if ctx.attempt == 2:  # the worker that took over, and finishes
            return _outcome(ctx, b"winner")
        ctx.store.put(ctx.artifact_key("cam.png"), b"stalled", "image/png")
        deployment.go_stale(job_id)  # attempt 1 stalls; another worker takes the job over
        deployment.run(job_id, body)
        raise DatasetError("attempt 1 fails late")

    deployment.run(job_id, body)

    job = deployment.job(job_id)
    assert (job.status, job.attempts, job.error) == ("succeeded", 2, None)
    assert deployment.download(job_id, "cam.png") == b"winner"
    # The winner removed what the superseded attempt had written.
    assert deployment.keys(job_id) == [artifact_prefix(job_id, 2) + "cam.png"]


def test_a_discarded_result_does_not_overwrite_the_winners_artifacts(
    deployment: Deployment,
) -> None:
    job_id = _new_job(deployment)

    def body(ctx: JobContext) -> JobOutcome:
        if ctx.attempt == 2:
            return _outcome(ctx, b"winner")
        deployment.go_stale(job_id)
        deployment.run(job_id, body)  # taken over and finished while attempt 1 still ran
        return _outcome(ctx, b"loser")  # written after the winner's cleanup, then refused

    deployment.run(job_id, body)

    job = deployment.job(job_id)
    assert (job.status, job.result) == ("succeeded", {"attempt": 2})
    assert deployment.download(job_id, "cam.png") == b"winner"
    assert deployment.keys(job_id) == [artifact_prefix(job_id, 2) + "cam.png"]


def test_a_poison_job_failed_by_the_reaper_leaves_no_artifacts(deployment: Deployment) -> None:
    job_id = _new_job(deployment)
    _crash_attempts(deployment, job_id, 3)
    assert len(deployment.keys(job_id)) == 3
    deployment.go_stale(job_id)

    result = reap_once(deployment.settings, deployment.app)

    assert job_id in result.failed
    assert deployment.job(job_id).error["code"] == "too_many_attempts"
    assert deployment.keys(job_id) == []


def test_a_poison_job_failed_by_a_redelivered_message_leaves_no_artifacts(
    deployment: Deployment,
) -> None:
    job_id = _new_job(deployment)
    _crash_attempts(deployment, job_id, 3)
    deployment.go_stale(job_id)
    ran: list[int] = []

    def body(ctx: JobContext) -> JobOutcome:
        ran.append(ctx.attempt)
        return _outcome(ctx, b"never")

    deployment.run(job_id, body)  # the broker redelivers the dead worker's message

    job = deployment.job(job_id)
    assert ran == []
    assert (job.status, job.error["code"]) == ("failed", "too_many_attempts")
    assert deployment.keys(job_id) == []


def test_a_cancelled_job_whose_worker_died_is_finished_not_run_again(
    deployment: Deployment,
) -> None:
    job_id = _new_job(deployment)
    _crash_attempts(deployment, job_id, 1)  # running attempt 1 wrote a file, then ...
    with session_scope(deployment.url) as session:
        assert request_cancel(session, job_id=job_id).status == "running"
    deployment.go_stale(job_id)  # ... died before it saw the cancel request

    result = reap_once(deployment.settings, deployment.app)

    assert job_id in result.cancelled
    assert job_id not in {requeued for requeued, _ in result.requeue}
    job = deployment.job(job_id)
    assert job.status == "cancelled"
    assert job.error == {"code": "cancelled", "message": "cancelled by request", "retryable": False}
    assert deployment.keys(job_id) == []
    ran: list[int] = []

    def body(ctx: JobContext) -> JobOutcome:
        ran.append(ctx.attempt)
        return _outcome(ctx, b"never")

    deployment.run(job_id, body)  # the dead worker's message is redelivered anyway
    assert ran == []
    assert (deployment.job(job_id).status, deployment.job(job_id).attempts) == ("cancelled", 1)


def test_a_retryable_failure_keeps_the_input_for_the_retry(deployment: Deployment) -> None:
    input_uri = deployment.store.put(f"uploads/{uuid.uuid4()}/input.png", b"scan")
    job_id = _new_job(deployment, input_uri=input_uri)

    def body(ctx: JobContext) -> JobOutcome:
        ctx.store.put(ctx.artifact_key("input.png"), b"slice")
        raise StorageUnavailableError("the store went away")

    deployment.run(job_id, body)

    job = deployment.job(job_id)
    assert (job.status, job.error["retryable"]) == ("failed", True)
    assert deployment.keys(job_id) == []
    assert deployment.store.get(deployment.store.key_from_uri(input_uri)) == b"scan"


def test_a_result_the_database_refuses_fails_the_job_instead_of_leaving_it_running(
    deployment: Deployment,
) -> None:
    """PostgreSQL refuses NUL characters in JSONB: a data error, not an outage.

    Treated as an outage, the job stayed ``running`` until the reaper re-ran it, and after
    three times the work it failed as ``too_many_attempts``, naming nothing useful.
    """
    job_id = _new_job(deployment)

    def body(ctx: JobContext) -> JobOutcome:
        uri = ctx.store.put(ctx.artifact_key("cam.png"), b"cam", "image/png")
        return JobOutcome(
            result={"label": "glioma\x00"}, model_version="v", artifacts={"cam.png": uri}
        )

    deployment.run(job_id, body)

    job = deployment.job(job_id)
    assert (job.status, job.attempts, job.error["code"]) == ("failed", 1, "internal_error")
    assert job.result is None
    assert deployment.keys(job_id) == []


def _leave(deployment: Deployment, job_id: str, attempt: int) -> None:
    """A file of ``attempt`` that the path finishing the job failed to remove (store down)."""
    deployment.store.put(artifact_prefix(job_id, attempt) + "cam.png", b"left", "image/png")


def test_the_sweep_removes_what_nothing_references_and_only_that(
    deployment: Deployment,
) -> None:
    deleted = str(uuid.uuid4())  # a job row that no longer exists
    _leave(deployment, deleted, 1)

    failed = _new_job(deployment)
    _leave(deployment, failed, _claimed(deployment, failed))
    _leave(deployment, failed, 2)  # a retry's claim after the sweep read the row: attempt 2
    with session_scope(deployment.url) as session:
        assert fail_job(session, job_id=failed, attempt=1, code="x", message="y", retryable=True)

    succeeded = _new_job(deployment)
    _leave(deployment, succeeded, _claimed(deployment, succeeded))  # a crashed first attempt
    deployment.go_stale(succeeded)
    winner = _claimed(deployment, succeeded)
    uri = deployment.store.put(artifact_prefix(succeeded, winner) + "cam.png", b"won")
    with session_scope(deployment.url) as session:
        assert complete_job(
            session,
            job_id=succeeded,
            attempt=winner,
            result={},
            model_version="v",
            artifacts={"cam.png": uri},
        )

    running = _new_job(deployment)
    _leave(deployment, running, _claimed(deployment, running))

    result = sweep_artifacts(deployment.settings)

    assert result.removed == {deleted: [1], failed: [1], succeeded: [1]}
    assert deployment.keys(deleted) == []
    assert deployment.keys(failed) == [artifact_prefix(failed, 2) + "cam.png"]
    assert deployment.download(succeeded, "cam.png") == b"won"
    assert deployment.keys(succeeded) == [artifact_prefix(succeeded, winner) + "cam.png"]
    assert deployment.keys(running) == [artifact_prefix(running, 1) + "cam.png"]
    assert sweep_artifacts(deployment.settings).removed == {}  # nothing left to find


def test_database_waits_do_not_use_up_the_storage_retries(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The message waited out a database outage twice (Celery counts those as retries too);
    the object store then fails twice and comes back: both storage retries are still there."""
    monkeypatch.setenv("BRAINMRI_STORAGE_MAX_RETRIES", "2")
    get_settings.cache_clear()
    job_id = _new_job(deployment)
    calls: list[int] = []

    def body(ctx: JobContext) -> JobOutcome:
        calls.append(ctx.attempt)
        if len(calls) <= 2:
            raise StorageUnavailableError("the store is restarting")
        return _outcome(ctx, b"stored at last")

    deployment.run(job_id, body, retries=2)

    job = deployment.job(job_id)
    assert (job.status, job.error) == ("succeeded", None), job.error
    assert calls == [1, 2, 3]
    assert job.crashes == 1  # the released attempts did not count


# Long enough that files written before it are older than GRACE_S by any store's clock (S3
# reports LastModified in whole seconds), and files written after it are not.
SETTLE_S, GRACE_S = 3.0, 1.5


def test_the_sweep_removes_a_bundle_folder_left_without_a_row_once_it_is_old_enough(
    deployment: Deployment, tmp_path: Path
) -> None:
    """A trainer killed while uploading leaves a bundle folder that no registry row names.
    An upload in progress looks the same, so only a folder whose newest file is older than the
    grace is removed; judged by the store's own write times, so a worker that restarts more
    often than the sweep interval still sweeps."""
    bundle = tmp_path / "bundle"
    make_bundle(bundle, img_size=32, seed=1)
    metadata = json.loads((bundle / "metadata.json").read_text())
    metadata["version"] = f"swept-{uuid.uuid4().hex[:8]}"  # the database outlives one store
    (bundle / "metadata.json").write_text(json.dumps(metadata))
    with session_scope(deployment.url) as session:
        registered = register_bundle(session, deployment.store, bundle, name="brainmri")
        kept = registered.artifact_prefix
    killed = "models/brainmri/killed-mid-upload/"
    deployment.store.put(killed + "model.safetensors", b"half a file")

    assert sweep_bundles(deployment.settings, grace_seconds=3600) == []  # too fresh to judge
    time.sleep(SETTLE_S)
    uploading = "models/brainmri/uploading-now/"
    deployment.store.put(uploading + "model.safetensors", b"first file of an upload")
    removed = sweep_bundles(deployment.settings, grace_seconds=GRACE_S)

    assert removed == [killed]
    assert not list(deployment.store.list(killed))
    assert [info.key for info in deployment.store.list(uploading)] == [
        uploading + "model.safetensors"
    ]
    assert {info.key for info in deployment.store.list(kept)} == {
        kept + "metadata.json",
        kept + "model.safetensors",
    }


def test_the_sweep_removes_uploads_of_jobs_that_do_not_exist_once_old_enough(
    deployment: Deployment,
) -> None:
    """The API stores an upload before it inserts the job row: an API killed in between
    leaves an upload no job names. A job's own upload stays as long as the job."""
    job = _new_job(deployment)
    owned = upload_key(job, ".png")
    deployment.store.put(owned, b"the job's input")
    orphan = upload_key(str(uuid.uuid4()), ".dcm")
    deployment.store.put(orphan, b"an API killed before the row")
    assert sweep_uploads(deployment.settings, grace_seconds=3600) == []
    time.sleep(SETTLE_S)
    arriving = upload_key(str(uuid.uuid4()), ".png")  # its row is being inserted right now
    deployment.store.put(arriving, b"just stored")

    removed = sweep_uploads(deployment.settings, grace_seconds=GRACE_S)

    assert removed == [orphan.rsplit("/", 1)[0] + "/"]
    assert {info.key for info in deployment.store.list(UPLOADS_ROOT)} == {owned, arriving}
