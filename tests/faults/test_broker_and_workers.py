"""Fault injection: workers killed mid-job, poison jobs, Redis restarts and redelivery."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from brainmri.db.models import Job, Prediction
from brainmri.db.session import session_scope
from brainmri.phantom import phantom_png, write_phantom_dataset
from brainmri_api.main import create_app
from tests.infra import (
    PrivateRedis,
    S3Server,
    WorkerProcess,
    services_env,
    settings_from_env,
    wait_for_job,
)

KEY = "fault-key-0123456789abcdef"
HEADERS = {"X-API-Key": KEY}


@pytest.fixture
def env_factory(
    postgres_url: str,
    redis_url: str,
    s3: S3Server,
    service_bucket: str,
    platform_bundle: Path,
    tmp_path: Path,
):  # type: ignore[no-untyped-def]
    bucket = service_bucket
    data = tmp_path / "allowed"

    def make(broker: str | None = None, **extra: str) -> dict[str, str]:
        return services_env(
            postgres_url=postgres_url,
            redis_url=broker or redis_url,
            s3=s3,
            bucket=bucket,
            data_dir=tmp_path / "data",
            bundle=platform_bundle,
            allowed_roots=str(data),
            api_keys=f"{KEY}:admin",
            extra=extra,
        )

    make.data = data  # type: ignore[attr-defined]
    return make


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def _predictions(url: str, job_id: str) -> int:
    with session_scope(url) as session:
        return int(session.scalar(select(func.count()).where(Prediction.job_id == job_id)) or 0)


def _evaluation_under_way(client: TestClient, folder: Path) -> str:
    """Submit a TTA evaluation of ``folder``; its id once it has scored a few images."""
    job_id = client.post(
        "/v1/jobs/evaluate", headers=HEADERS, json={"source": str(folder), "tta": True}
    ).json()["job_id"]
    running = wait_for_job(client, job_id, HEADERS, until=("running",))
    deadline = time.monotonic() + 60
    while running["progress"] < 0.05 and time.monotonic() < deadline:
        running = client.get(f"/v1/jobs/{job_id}", headers=HEADERS).json()
        time.sleep(0.1)
    return job_id


def test_job_survives_its_worker_being_killed(
    env_factory, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    env = env_factory()
    folder = env_factory.data / "big"
    write_phantom_dataset(folder, per_class=100, size=64, seed=4)
    settings = settings_from_env(env)
    first = WorkerProcess(env, tmp_path / "w1.log").start()
    workers.append(first)
    with TestClient(create_app(settings)) as client:
        job_id = _evaluation_under_way(client, folder)
        first.kill()  # SIGKILL mid-job: no chance to clean up or acknowledge
        assert client.get(f"/v1/jobs/{job_id}", headers=HEADERS).json()["status"] == "running"
        second = WorkerProcess(env, tmp_path / "w2.log").start()
        workers.append(second)
        job = wait_for_job(client, job_id, HEADERS, timeout=240)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2
    assert job["result"]["n_scored"] == 400
    assert _predictions(settings.resolved_database_url, job_id) == 400  # exactly once


def test_a_job_stopped_by_a_worker_shutdown_keeps_its_crash_budget(
    env_factory, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    """A rollout: SIGTERM to the worker (warm shutdown), then SIGKILL when the grace period
    ends with the job still running. With a budget of one crash, counting that as a crash
    failed the job as ``too_many_attempts``; a shutdown is not the job's fault, so the next
    worker runs it to the end."""
    env = env_factory(BRAINMRI_JOB_MAX_ATTEMPTS="1")
    folder = env_factory.data / "rollout"
    write_phantom_dataset(folder, per_class=300, size=64, seed=6)  # outlasts the waits here
    settings = settings_from_env(env)
    first = WorkerProcess(env, tmp_path / "w1.log").start()
    workers.append(first)
    with TestClient(create_app(settings)) as client:
        job_id = _evaluation_under_way(client, folder)
        assert first.process is not None
        os.kill(first.process.pid, signal.SIGTERM)  # what Kubernetes sends the main process
        with session_scope(settings.resolved_database_url) as session:
            spared = time.monotonic() + 10
            while (crashes := session.get(Job, job_id, populate_existing=True).crashes) and (
                time.monotonic() < spared
            ):
                session.rollback()
                time.sleep(0.1)
        assert crashes == 0  # given back as the shutdown began, while the job still runs
        first.kill()  # the grace period is over
        assert client.get(f"/v1/jobs/{job_id}", headers=HEADERS).json()["status"] == "running"
        workers.append(WorkerProcess(env, tmp_path / "w2.log").start())
        job = wait_for_job(client, job_id, HEADERS, timeout=240)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2
    assert "shutdown: 1 running job(s) may finish" in (tmp_path / "w1.log").read_text()


def test_restarting_redis_with_jobs_queued_loses_none(
    env_factory, workers: list[WorkerProcess], private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """With AOF persistence (appendonly yes, appendfsync always) queued messages survive."""
    env = env_factory(broker=private_redis.url, BRAINMRI_REQUEUE_QUEUED_AFTER_SECONDS="3600")
    settings = settings_from_env(env)
    with TestClient(create_app(settings)) as client:
        ids = [
            client.post(
                "/v1/jobs/predict",
                headers=HEADERS,
                files={"file": ("a.png", phantom_png("glioma", seed=i, size=64))},
                data={"cam": "false"},
            ).json()["job_id"]
            for i in range(6)
        ]
        private_redis.stop()
        during = client.post(
            "/v1/jobs/predict",
            headers=HEADERS,
            files={"file": ("a.png", phantom_png("glioma", seed=99, size=64))},
        )
        assert during.status_code == 503  # refused cleanly while the broker is down
        private_redis.start()
        workers.append(WorkerProcess(env, tmp_path / "w.log").start())
        jobs = [wait_for_job(client, job_id, HEADERS, timeout=120) for job_id in ids]
    assert [job["status"] for job in jobs] == ["succeeded"] * 6
    with session_scope(settings.resolved_database_url) as session:
        assert session.scalar(select(func.count()).select_from(Job).where(Job.id.in_(ids))) == 6


def test_lost_broker_messages_are_resent_by_the_reaper(
    env_factory, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    """Without persistence a Redis restart drops queued messages; the database still knows the
    jobs, and the reaper sends them again after BRAINMRI_REQUEUE_QUEUED_AFTER_SECONDS."""
    server = PrivateRedis(tmp_path / "volatile", appendonly=False).start()
    try:
        env = env_factory(broker=server.url, BRAINMRI_REQUEUE_QUEUED_AFTER_SECONDS="2")
        settings = settings_from_env(env)
        with TestClient(create_app(settings)) as client:
            ids = [
                client.post(
                    "/v1/jobs/predict",
                    headers=HEADERS,
                    files={"file": ("a.png", phantom_png("pituitary", seed=i, size=64))},
                    data={"cam": "false"},
                ).json()["job_id"]
                for i in range(3)
            ]
            server.stop()
            server.start()  # empty: the messages are gone
            workers.append(WorkerProcess(env, tmp_path / "w.log").start())
            jobs = [wait_for_job(client, job_id, HEADERS, timeout=120) for job_id in ids]
        assert [job["status"] for job in jobs] == ["succeeded"] * 3
    finally:
        server.stop()


def _write_eval_set(folder: Path, per_class: int, seed: int) -> Path:
    write_phantom_dataset(folder, per_class=per_class, size=64, seed=seed)
    return folder


@pytest.mark.timeout(1500)
def test_twenty_sigkills_lose_and_duplicate_nothing(
    env_factory, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    """SIGKILL a worker in the middle of a job, 20 times over; every job still succeeds once.

    Three workers share 20 evaluation jobs. Whenever a job is under way, the worker running it
    is killed and a replacement is launched (not awaited, so kills keep coming while it boots).
    Victims are chosen among the least-killed jobs so that the kills spread over the jobs.
    """
    env = env_factory(BRAINMRI_JOB_MAX_ATTEMPTS="6")
    settings = settings_from_env(env)
    folder = _write_eval_set(env_factory.data / "kills", per_class=10, seed=5)
    pool = [WorkerProcess(env, tmp_path / f"w{i}.log").start() for i in range(3)]
    workers.extend(pool)
    with TestClient(create_app(settings)) as client:
        ids = [
            client.post(
                "/v1/jobs/evaluate", headers=HEADERS, json={"source": str(folder), "tta": True}
            ).json()["job_id"]
            for _ in range(20)
        ]
        kills = 0
        deadline = time.monotonic() + 1200
        while kills < 20 and time.monotonic() < deadline:
            with session_scope(settings.resolved_database_url) as session:
                running = session.scalars(
                    select(Job).where(Job.id.in_(ids), Job.status == "running", Job.progress > 0.05)
                ).all()
                running = sorted(running, key=lambda job: job.attempts)
                nodes = [job.worker or "" for job in running]
            victim = next(
                (
                    w
                    for w in pool
                    for node in nodes
                    if node.endswith(w.name) and w.process.poll() is None
                ),
                None,
            )
            if victim is None:
                time.sleep(0.05)
                continue
            victim.kill()
            kills += 1
            pool.remove(victim)
            replacement = WorkerProcess(env, tmp_path / f"w-after-{kills}.log").start(wait=False)
            pool.append(replacement)
            workers.append(replacement)
        assert kills == 20
        jobs = [wait_for_job(client, job_id, HEADERS, timeout=600) for job_id in ids]
    assert [job["status"] for job in jobs] == ["succeeded"] * 20
    assert sum(job["attempts"] for job in jobs) >= 20 + 20  # every kill cost one attempt
    for job in jobs:
        assert _predictions(settings.resolved_database_url, job["job_id"]) == 40


def test_poison_job_stops_after_max_attempts(
    env_factory, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    """A job that kills every worker running it fails after N attempts; no requeue loop."""
    env = env_factory(BRAINMRI_JOB_MAX_ATTEMPTS="3")
    settings = settings_from_env(env)
    folder = _write_eval_set(env_factory.data / "poison", per_class=60, seed=6)
    with TestClient(create_app(settings)) as client:
        job_id = client.post(
            "/v1/jobs/evaluate", headers=HEADERS, json={"source": str(folder), "tta": True}
        ).json()["job_id"]
        for attempt in range(1, 4):
            worker = WorkerProcess(env, tmp_path / f"poison-{attempt}.log").start()
            workers.append(worker)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                job = client.get(f"/v1/jobs/{job_id}", headers=HEADERS).json()
                if job["status"] == "running" and job["attempts"] == attempt:
                    break
                time.sleep(0.05)
            worker.kill()  # the job "crashes" its worker
        survivor = WorkerProcess(env, tmp_path / "survivor.log").start()
        workers.append(survivor)
        job = wait_for_job(client, job_id, HEADERS, timeout=60)
        assert job["status"] == "failed"
        assert job["error"]["code"] == "too_many_attempts"
        time.sleep(5)  # no requeue loop: nothing touches it again
        again = client.get(f"/v1/jobs/{job_id}", headers=HEADERS).json()
    assert (again["status"], again["attempts"]) == ("failed", 3)
    assert _predictions(settings.resolved_database_url, job_id) == 0


def test_visibility_timeout_shorter_than_a_job_still_gives_one_result(
    env_factory, workers: list[WorkerProcess], private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """Redis hands the running job's message to a second worker; the claim refuses it.

    kombu restores timed-out unacknowledged messages when a consumer starts (and then only
    every ~100 s), so the second worker is started once the first has held the message for
    longer than the 2 s visibility timeout.
    """
    env = env_factory(broker=private_redis.url, BRAINMRI_BROKER_VISIBILITY_TIMEOUT_SECONDS="2")
    settings = settings_from_env(env)
    # The job must outlast the 3 s wait plus the second worker's start (~6 s): ~15 s here.
    per_class = 500
    folder = _write_eval_set(env_factory.data / "slow", per_class=per_class, seed=8)
    first = WorkerProcess(env, tmp_path / "first.log").start()
    workers.append(first)
    with TestClient(create_app(settings)) as client:
        job_id = client.post(
            "/v1/jobs/evaluate", headers=HEADERS, json={"source": str(folder), "tta": True}
        ).json()["job_id"]
        wait_for_job(client, job_id, HEADERS, until=("running",))
        time.sleep(3)  # longer than the visibility timeout
        second = WorkerProcess(env, tmp_path / "second.log").start()
        workers.append(second)
        job = wait_for_job(client, job_id, HEADERS, timeout=300)
    assert job["status"] == "succeeded"
    assert job["attempts"] == 1
    assert _predictions(settings.resolved_database_url, job_id) == 4 * per_class
    logs = (tmp_path / "first.log").read_text() + (tmp_path / "second.log").read_text()
    assert logs.count("job started: kind=evaluate") == 1
    assert "job not claimable" in (tmp_path / "second.log").read_text(), (
        "the message was never redelivered; the test would prove nothing"
    )
