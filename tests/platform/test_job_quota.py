"""The per-key limit on active jobs (``BRAINMRI_MAX_ACTIVE_JOBS_PER_KEY``): the API on a real
PostgreSQL database, Redis broker and S3 server, with no worker, so submitted jobs stay queued
and hold their places; and the limit's lock under parallel submissions on both databases."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from brainmri.db.jobs import count_active_jobs, create_job
from brainmri.db.models import Job
from brainmri.db.session import session_scope
from brainmri.errors import TooManyActiveJobsError
from brainmri.phantom import phantom_png, write_phantom_dataset
from brainmri_api.main import create_app
from tests.infra import (
    REDIS_BASE,
    S3Server,
    fresh_database,
    services_env,
    settings_from_env,
)

LIMIT = 2
USER_KEY = "quota-user-0123456789abcdef"
OTHER_KEY = "quota-other-0123456789abcdef"
USER = {"X-API-Key": USER_KEY}
OTHER = {"X-API-Key": OTHER_KEY}
PRIVATE_REDIS_DB = 12  # this module's messages are never consumed: keep them out of db 11


class QuotaStack:
    def __init__(self, client: TestClient, env: dict[str, str], s3: S3Server, bucket: str):
        self.client, self.env, self.s3, self.bucket = client, env, s3, bucket
        self.database_url = env["BRAINMRI_DATABASE_URL"]
        self.data_root = Path(env["BRAINMRI_ALLOWED_ROOTS"])

    def written(self) -> tuple[int, list[str], int]:
        """Job rows, stored uploads and broker messages: what a refusal must leave alone."""
        with session_scope(self.database_url) as session:
            rows = int(session.scalar(select(func.count()).select_from(Job)) or 0)
        broker = redis_lib.Redis.from_url(self.env["BRAINMRI_BROKER_URL"])
        messages = sum(int(broker.llen(queue)) for queue in ("predict", "evaluate", "train"))
        return rows, self.s3.keys(self.bucket, "uploads/"), messages

    def active(self, key_id: str) -> int:
        with session_scope(self.database_url) as session:
            return count_active_jobs(session, key_id)

    def predict(self, headers: dict[str, str], path: str = "/v1/jobs/predict"):  # type: ignore[no-untyped-def]
        data = phantom_png("glioma", seed=3, size=64)
        return self.client.post(path, headers=headers, files={"file": ("a.png", data)})


@pytest.fixture(scope="module")
def stack(
    s3: S3Server, platform_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[QuotaStack]:
    base = tmp_path_factory.mktemp("quota")
    write_phantom_dataset(base / "allowed" / "eval", per_class=1, size=64, seed=1)
    bucket = s3.make_bucket("quota")
    redis_url = f"{REDIS_BASE}/{PRIVATE_REDIS_DB}"
    broker = redis_lib.Redis.from_url(redis_url)
    broker.flushdb()
    with fresh_database() as database_url:
        env = services_env(
            postgres_url=database_url,
            redis_url=redis_url,
            s3=s3,
            bucket=bucket,
            data_dir=base / "data",
            bundle=platform_bundle,
            allowed_roots=str(base / "allowed"),
            api_keys=f"{USER_KEY}:user,{OTHER_KEY}:user",
            extra={
                "BRAINMRI_MAX_ACTIVE_JOBS_PER_KEY": str(LIMIT),
                "BRAINMRI_LEGACY_WAIT_SECONDS": "1",
            },
        )
        with TestClient(create_app(settings_from_env(env))) as client:
            yield QuotaStack(client, env, s3, bucket)
    broker.flushdb()


def key_id(stack: QuotaStack, headers: dict[str, str]) -> str:
    return stack.client.get("/v1/me", headers=headers).json()["key_id"]


def test_a_key_at_its_limit_is_refused_with_429_and_nothing_written(stack: QuotaStack) -> None:
    user = key_id(stack, USER)
    first = stack.predict(USER)
    assert first.status_code == 202, first.text
    evaluation = stack.client.post(
        "/v1/jobs/evaluate", headers=USER, json={"source": str(stack.data_root / "eval")}
    )
    assert evaluation.status_code == 202, evaluation.text
    assert stack.active(user) == LIMIT

    before = stack.written()
    refusals = [
        stack.predict(USER),
        stack.client.post(
            "/v1/jobs/evaluate", headers=USER, json={"source": str(stack.data_root / "eval")}
        ),
        stack.predict(USER, path="/predict"),  # the original endpoint counts too
    ]
    for refused in refusals:
        assert refused.status_code == 429, refused.text
        error = refused.json()["error"]
        assert error["code"] == "too_many_active_jobs"
        assert f"the limit is {LIMIT}" in error["message"]
        assert "BRAINMRI_MAX_ACTIVE_JOBS_PER_KEY" in error["message"]
        assert int(refused.headers["Retry-After"]) > 0
    assert stack.written() == before  # no row, no stored upload, no queue message

    # Another key is not affected by this one's jobs.
    other = stack.predict(OTHER)
    assert other.status_code == 202, other.text

    # A place frees when a job ends (here: cancelled), and the next submission is taken.
    cancelled = stack.client.post(f"/v1/jobs/{first.json()['job_id']}/cancel", headers=USER)
    assert cancelled.json()["status"] == "cancelled"
    again = stack.predict(USER)
    assert again.status_code == 202, again.text
    assert stack.active(user) == LIMIT


def test_a_retry_needs_a_free_place(stack: QuotaStack) -> None:
    """A failed job that is retried becomes active again, so it is held to the same limit."""
    user = key_id(stack, USER)
    failed_id = str(uuid.uuid4())
    with session_scope(stack.database_url) as session:
        create_job(session, job_id=failed_id, kind="predict", owner=user, params={})
        session.execute(
            update(Job)
            .where(Job.id == failed_id)
            .values(status="failed", error={"code": "storage_unavailable", "retryable": True})
        )
    while stack.active(user) < LIMIT:
        assert stack.predict(USER).status_code == 202
    refused = stack.client.post(f"/v1/jobs/{failed_id}/retry", headers=USER)
    assert refused.status_code == 429, refused.text
    with session_scope(stack.database_url) as session:
        assert session.get(Job, failed_id).status == "failed"  # type: ignore[union-attr]

    listed = stack.client.get("/v1/jobs?status=queued", headers=USER).json()["items"]
    stack.client.post(f"/v1/jobs/{listed[0]['job_id']}/cancel", headers=USER)
    retried = stack.client.post(f"/v1/jobs/{failed_id}/retry", headers=USER)
    assert retried.status_code == 202, retried.text
    assert retried.json()["status"] == "queued"


def test_parallel_submissions_cannot_overshoot_the_limit(isolated_database: str) -> None:
    """Eight submissions of one owner at once against a limit of three: exactly three jobs.
    Without the owner's lock each would count the others' uncommitted jobs as absent."""
    limit, tries = 3, 8
    start = threading.Barrier(tries)
    outcomes: list[str] = []

    def submit() -> None:
        start.wait()
        try:
            with session_scope(isolated_database) as session:
                create_job(
                    session,
                    job_id=str(uuid.uuid4()),
                    kind="predict",
                    owner="racer",
                    params={},
                    max_active=limit,
                )
                # Hold the transaction open a moment: a count that skipped the lock would
                # now be stale for every other submission.
                time.sleep(0.2)
            outcomes.append("created")
        except TooManyActiveJobsError:
            outcomes.append("refused")

    threads = [threading.Thread(target=submit) for _ in range(tries)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["created"] * limit + ["refused"] * (tries - limit)
    with session_scope(isolated_database) as session:
        assert count_active_jobs(session, "racer") == limit
        assert count_active_jobs(session, "someone-else") == 0
