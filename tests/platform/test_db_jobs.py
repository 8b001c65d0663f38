"""Job state machine on real PostgreSQL and SQLite: claims, fencing, reaping, cancel."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

import brainmri.db.jobs
import brainmri.db.types
from brainmri.db.jobs import (
    ReapResult,
    claim_job,
    complete_job,
    create_job,
    ended_without_result,
    fail_job,
    forgive_interrupted,
    heartbeat,
    reap,
    release_for_retry,
    request_cancel,
    requeue_failed,
)
from brainmri.db.migrate import alembic_config, upgrade
from brainmri.db.models import Base, Job, Prediction
from brainmri.db.session import get_engine, session_scope
from brainmri.db.types import utcnow
from tests.infra import fresh_database


@pytest.fixture
def db_url(any_database: str) -> str:
    return any_database


def _new_job(url: str, kind: str = "predict") -> str:
    job_id = str(uuid.uuid4())
    with session_scope(url) as session:
        create_job(session, job_id=job_id, kind=kind, owner="owner-a", params={"tta": False})
    return job_id


def _claim(
    url: str, job_id: str, worker: str = "w1", stale_seconds: float = 30.0, max_attempts: int = 3
):
    with session_scope(url) as session:
        claim = claim_job(
            session,
            job_id=job_id,
            worker=worker,
            stale_after=timedelta(seconds=stale_seconds),
            max_attempts=max_attempts,
        )
        return None if claim is None else claim.attempt


def _row(job_id: str) -> dict:
    return {
        "item_index": 0,
        "input_uri": "s3://b/k",
        "sha256": "0" * 64,
        "class_probs": {"no_tumor": 0.9, "glioma": 0.1},
        "predicted_class": "no_tumor",
        "tumor_prob": 0.1,
        "threshold": 0.5,
        "has_tumor": False,
        "true_class": None,
        "cam_uri": None,
        "model_version": "v1",
    }


def test_migrations_match_the_models(db_url: str) -> None:
    with get_engine(db_url).connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_only_one_of_many_concurrent_claims_wins(db_url: str) -> None:
    job_id = _new_job(db_url)
    results: list[int | None] = []
    barrier = threading.Barrier(6)

    def contender(index: int) -> None:
        barrier.wait()
        results.append(_claim(db_url, job_id, worker=f"w{index}"))

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results, key=lambda r: r or 0) == [None] * 5 + [1]


def test_stale_claim_is_taken_over_and_the_old_owner_is_fenced_off(db_url: str) -> None:
    job_id = _new_job(db_url)
    first = _claim(db_url, job_id)
    assert first == 1
    assert _claim(db_url, job_id, worker="w2") is None  # heartbeat is fresh
    second = _claim(db_url, job_id, worker="w2", stale_seconds=-1)  # everything counts as stale
    assert second == 2
    with session_scope(db_url) as session:
        assert not heartbeat(session, job_id=job_id, attempt=first).owned
        assert not complete_job(
            session,
            job_id=job_id,
            attempt=first,
            result={"x": 1},
            model_version="v1",
            predictions=[_row(job_id)],
        )
        assert complete_job(
            session,
            job_id=job_id,
            attempt=second,
            result={"x": 2},
            model_version="v1",
            predictions=[_row(job_id)],
        )
    with session_scope(db_url) as session:
        job = session.get(Job, job_id)
        assert (job.status, job.result, job.attempts) == ("succeeded", {"x": 2}, 2)
        count = session.scalar(select(func.count()).where(Prediction.job_id == job_id))
        assert count == 1


def test_completing_twice_never_duplicates_predictions(db_url: str) -> None:
    job_id = _new_job(db_url)
    attempt = _claim(db_url, job_id)
    with session_scope(db_url) as session:
        assert complete_job(
            session,
            job_id=job_id,
            attempt=attempt,
            result={},
            model_version="v",
            predictions=[_row(job_id)],
        )
    with session_scope(db_url) as session:
        assert not complete_job(
            session,
            job_id=job_id,
            attempt=attempt,
            result={},
            model_version="v",
            predictions=[_row(job_id)],
        )
        assert session.scalar(select(func.count()).where(Prediction.job_id == job_id)) == 1


def test_reaper_requeues_stale_jobs_and_fails_poison_jobs(db_url: str) -> None:
    stale = _new_job(db_url)
    poison = _new_job(db_url)
    _claim(db_url, stale)
    for _ in range(3):  # three workers died on it
        _claim(db_url, poison, stale_seconds=-1)
    with session_scope(db_url) as session:
        result = reap(
            session,
            stale_after=timedelta(seconds=-60),
            queued_after=timedelta(hours=1),
            max_attempts=3,
        )
    assert (stale, "predict") in result.requeue
    assert poison in result.failed
    with session_scope(db_url) as session:
        assert session.get(Job, stale).status == "queued"
        failed = session.get(Job, poison)
        assert failed.status == "failed" and failed.error["code"] == "too_many_attempts"
        # A redelivered message for the poison job cannot run it again.
    assert _claim(db_url, poison, stale_seconds=-1) is None


def _reap_everything_due(session: Session, waiting: dict[str, int] | None = None) -> ReapResult:
    """A reaper pass for which every running job is stale and every queued one overdue."""
    return reap(
        session,
        stale_after=timedelta(0),
        queued_after=timedelta(seconds=-1),
        max_attempts=3,
        waiting=waiting,
    )


def test_reaper_resends_jobs_whose_message_was_lost(db_url: str) -> None:
    job_id = _new_job(db_url)
    with session_scope(db_url) as session:
        result = _reap_everything_due(session)
        again = reap(
            session,
            stale_after=timedelta(0),
            queued_after=timedelta(minutes=5),
            max_attempts=3,
        )
    assert (job_id, "predict") in result.requeue
    assert (job_id, "predict") not in again.requeue  # re-sent at most once per interval


@pytest.fixture(params=["sqlite", "postgresql"])
def own_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database holding only this test's jobs (counts of queued jobs matter here)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'own.db'}"
        upgrade(url)
        yield url
        return
    with fresh_database() as url:
        yield url


def test_overdue_jobs_are_resent_only_for_messages_the_broker_is_missing(own_db_url: str) -> None:
    """A backlog is not a loss: with 3 predict jobs queued and 3 messages waiting, nothing is
    sent again; with 1 waiting, the 2 oldest are; with the depth unknown, all 3 are."""
    url = own_db_url
    jobs = [_new_job(url) for _ in range(3)]
    other = _new_job(url, kind="evaluate")  # another kind's count is its own
    with session_scope(url) as session:
        backlog = _reap_everything_due(session, waiting={"predict": 3, "evaluate": 1})
        assert backlog.requeue == []
        lost = _reap_everything_due(session, waiting={"predict": 1, "evaluate": 1})
        assert lost.requeue == [(jobs[0], "predict"), (jobs[1], "predict")]
        unknown = _reap_everything_due(session, waiting=None)
        assert set(unknown.requeue) == {*((job, "predict") for job in jobs), (other, "evaluate")}


def test_a_stale_job_sent_back_in_the_same_pass_is_not_a_missing_message(
    own_db_url: str,
) -> None:
    """The reaper sends the stale job's message after the pass; counted as queued before
    that, it made the overdue job (whose message still waits in the broker) look lost."""
    waiting_job = _new_job(own_db_url)
    stale_job = _new_job(own_db_url)
    _claim(own_db_url, stale_job)
    with session_scope(own_db_url) as session:
        result = _reap_everything_due(session, waiting={"predict": 1})
    assert result.requeue == [(stale_job, "predict")]
    assert waiting_job not in {job for job, _ in result.requeue}


def test_forgiveness_and_a_release_never_leave_a_negative_crash_count(own_db_url: str) -> None:
    job_id = _new_job(own_db_url)
    attempt = _claim(own_db_url, job_id, worker="w-shutting-down")
    with session_scope(own_db_url) as session:
        assert forgive_interrupted(session, worker="w-shutting-down") == 1
        assert forgive_interrupted(session, worker="w-shutting-down") == 0  # nothing left
        assert release_for_retry(session, job_id=job_id, attempt=attempt)
        assert session.get(Job, job_id).crashes == 0


def test_cancel_queued_and_running(db_url: str) -> None:
    queued = _new_job(db_url)
    running = _new_job(db_url)
    attempt = _claim(db_url, running)
    with session_scope(db_url) as session:
        assert request_cancel(session, job_id=queued).status == "cancelled"
        assert request_cancel(session, job_id=running).status == "running"
        state = heartbeat(session, job_id=running, attempt=attempt)
        assert state.owned and state.cancel_requested
    assert _claim(db_url, queued) is None


def test_release_for_retry_does_not_count_as_a_crash(db_url: str) -> None:
    job_id = _new_job(db_url)
    attempt = _claim(db_url, job_id)
    with session_scope(db_url) as session:
        assert release_for_retry(session, job_id=job_id, attempt=attempt)
    assert _claim(db_url, job_id) == 2  # a new fence; the released attempt's is dead
    with session_scope(db_url) as session:
        assert session.get(Job, job_id).crashes == 1
        assert not fail_job(session, job_id=job_id, attempt=1, code="x", message="y")
        assert fail_job(session, job_id=job_id, attempt=2, code="x", message="y")
        assert session.get(Job, job_id).error == {"code": "x", "message": "y", "retryable": False}


def test_a_job_sent_back_to_the_queue_starts_its_progress_again(db_url: str) -> None:
    """Requeued by the reaper or released for a retry, the next attempt starts from zero; the
    old progress (and its stage, e.g. "training epoch 7 of 9") used to stay, so the job's
    progress went backwards once it ran again."""
    reaped, released = _new_job(db_url), _new_job(db_url)
    attempts = {job_id: _claim(db_url, job_id) for job_id in (reaped, released)}
    with session_scope(db_url) as session:
        for job_id, attempt in attempts.items():
            detail = {"stage": "training", "epoch": 7}
            heartbeat(session, job_id=job_id, attempt=attempt, progress=0.6, detail=detail)
            assert session.get(Job, job_id).progress == pytest.approx(0.6)
        assert release_for_retry(session, job_id=released, attempt=attempts[released])
    with session_scope(db_url) as session:
        result = reap(
            session,
            stale_after=timedelta(seconds=-60),
            queued_after=timedelta(hours=1),
            max_attempts=3,
        )
    assert (reaped, "predict") in result.requeue
    with session_scope(db_url) as session:
        for job_id in (reaped, released):
            job = session.get(Job, job_id)
            assert (job.status, job.progress, job.progress_detail) == ("queued", 0.0, None)


CANCELLED = {"code": "cancelled", "message": "cancelled by request", "retryable": False}


def test_a_cancelled_job_whose_worker_died_is_cancelled_by_the_reaper(db_url: str) -> None:
    job_id = _new_job(db_url)
    _claim(db_url, job_id)
    with session_scope(db_url) as session:
        assert request_cancel(session, job_id=job_id).status == "running"
    # Its worker died before seeing the request: a reaper for which every heartbeat is stale.
    with session_scope(db_url) as session:
        result = reap(
            session,
            stale_after=timedelta(seconds=-60),
            queued_after=timedelta(hours=1),
            max_attempts=3,
        )
    assert job_id in result.cancelled
    assert job_id not in result.failed
    assert (job_id, "predict") not in result.requeue
    with session_scope(db_url) as session:
        job = session.get(Job, job_id)
        assert (job.status, job.error, job.attempts) == ("cancelled", CANCELLED, 1)
        assert job.finished_at is not None
        assert ended_without_result(session, job_id=job_id)
    assert _claim(db_url, job_id, stale_seconds=-1) is None  # a redelivery cannot run it


def test_claim_refuses_and_cancels_a_job_asked_to_stop(db_url: str) -> None:
    stale = _new_job(db_url)
    released = _new_job(db_url)
    attempts = {job_id: _claim(db_url, job_id) for job_id in (stale, released)}
    with session_scope(db_url) as session:
        for job_id in (stale, released):
            request_cancel(session, job_id=job_id)
        # A storage outage hands this one back to the queue after the cancel request.
        assert release_for_retry(session, job_id=released, attempt=attempts[released])
    assert _claim(db_url, stale, worker="w2", stale_seconds=-1) is None
    assert _claim(db_url, released, worker="w2") is None
    with session_scope(db_url) as session:
        for job_id in (stale, released):
            job = session.get(Job, job_id)
            assert (job.status, job.error) == ("cancelled", CANCELLED)


def test_reaper_cancels_a_queued_job_asked_to_stop_instead_of_resending_it(db_url: str) -> None:
    job_id = _new_job(db_url)
    attempt = _claim(db_url, job_id)
    with session_scope(db_url) as session:
        request_cancel(session, job_id=job_id)
        assert release_for_retry(session, job_id=job_id, attempt=attempt)
    with session_scope(db_url) as session:
        result = _reap_everything_due(session)
    assert job_id in result.cancelled
    assert (job_id, "predict") not in result.requeue
    with session_scope(db_url) as session:
        assert session.get(Job, job_id).status == "cancelled"


def test_only_jobs_over_for_good_without_a_result_have_garbage_artifacts(db_url: str) -> None:
    final, retryable, done, running = (_new_job(db_url) for _ in range(4))
    for job_id in (final, retryable, done, running):
        _claim(db_url, job_id)
    with session_scope(db_url) as session:
        assert fail_job(session, job_id=final, attempt=1, code="bad_input", message="x")
        assert fail_job(
            session, job_id=retryable, attempt=1, code="storage", message="x", retryable=True
        )
        assert complete_job(session, job_id=done, attempt=1, result={}, model_version="v")
    with session_scope(db_url) as session:
        assert ended_without_result(session, job_id=final)
        assert not ended_without_result(session, job_id=retryable)  # may be requeued
        assert not ended_without_result(session, job_id=done)
        assert not ended_without_result(session, job_id=running)
        assert not ended_without_result(session, job_id="no-such-job")


def test_a_retry_never_reuses_an_attempt_number_but_restores_the_crash_budget(
    db_url: str,
) -> None:
    """A user's retry used to reset ``attempts`` to 0, so the retried claim was attempt 1
    again and a worker still holding the old attempt 1 (presumed dead) matched its fence."""
    job_id = _new_job(db_url)
    old = _claim(db_url, job_id)
    with session_scope(db_url) as session:  # a transient error: back to the queue
        assert release_for_retry(session, job_id=job_id, attempt=old)
    released = _claim(db_url, job_id)
    with session_scope(db_url) as session:  # then a retryable failure, and the user's retry
        assert fail_job(
            session,
            job_id=job_id,
            attempt=released,
            code="storage_unavailable",
            message="store down",
            retryable=True,
        )
        assert requeue_failed(session, job_id=job_id)
    retried = _claim(db_url, job_id)
    assert (old, released, retried) == (1, 2, 3)
    with session_scope(db_url) as session:
        for stale in (old, released):  # the fences of attempts before the retry are dead
            assert not heartbeat(session, job_id=job_id, attempt=stale).owned
            assert not complete_job(
                session, job_id=job_id, attempt=stale, result={}, model_version="v"
            )
        job = session.get(Job, job_id)
        assert (job.status, job.attempts, job.crashes) == ("running", 3, 1)


def test_the_crash_budget_counts_crashes_not_releases(db_url: str) -> None:
    job_id = _new_job(db_url)
    for _ in range(4):  # four transient releases: none of them is a crash
        attempt = _claim(db_url, job_id, max_attempts=2)
        with session_scope(db_url) as session:
            assert release_for_retry(session, job_id=job_id, attempt=attempt)
    assert _claim(db_url, job_id, max_attempts=2) == 5  # still claimable, a fresh number
    assert _claim(db_url, job_id, stale_seconds=-1, max_attempts=2) == 6  # its worker died
    assert _claim(db_url, job_id, stale_seconds=-1, max_attempts=2) is None  # two crashes
    with session_scope(db_url) as session:
        job = session.get(Job, job_id)
        assert (job.status, job.error["code"]) == ("failed", "too_many_attempts")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_crashes_migration_keeps_each_jobs_crash_budget(backend: str, tmp_path: Path) -> None:
    """Rows written before 0002 start with ``crashes = attempts``: the budget they had."""
    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path / 'old.db'}"
            upgrade(url)
        else:
            url = stack.enter_context(fresh_database())
        command.downgrade(alembic_config(url), "0001")
        with get_engine(url).begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO jobs (id, kind, status, progress, params, artifacts, attempts,"
                    " owner, cancel_requested, created_at) VALUES (:id, 'predict', 'running',"
                    " 0, '{}', '{}', 2, 'owner-a', false, :now)"
                ),
                {"id": (job_id := str(uuid.uuid4())), "now": utcnow()},
            )
        upgrade(url)
        with session_scope(url) as session:
            job = session.get(Job, job_id)
            assert (job.attempts, job.crashes) == (2, 2)


def test_a_worker_whose_clock_runs_behind_is_not_taken_for_dead(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hosts' clocks drift. A worker whose clock ran two minutes behind stamped heartbeats
    that any correct host read as two minutes old, so a second worker took its job over while
    it still ran. Heartbeats are now stamped, and judged, by the database's clock."""
    job_id = _new_job(postgres_url)
    attempt = _claim(postgres_url, job_id, worker="w-behind")
    assert attempt == 1

    def two_minutes_behind() -> datetime:
        return datetime.now(UTC) - timedelta(minutes=2)

    with monkeypatch.context() as host:  # the lagging worker's host
        host.setattr(brainmri.db.types, "utcnow", two_minutes_behind)
        host.setattr(brainmri.db.jobs, "utcnow", two_minutes_behind, raising=False)
        with session_scope(postgres_url) as session:
            assert heartbeat(session, job_id=job_id, attempt=attempt, progress=0.5).owned

    with session_scope(postgres_url) as session:
        stamped = session.get(Job, job_id).heartbeat_at
    assert abs((stamped - utcnow()).total_seconds()) < 5
    # A worker and a reaper with correct clocks and a 60 s stale timeout leave it alone.
    assert _claim(postgres_url, job_id, worker="w-correct", stale_seconds=60) is None
    with session_scope(postgres_url) as session:
        result = reap(
            session,
            stale_after=timedelta(seconds=60),
            queued_after=timedelta(hours=1),
            max_attempts=3,
        )
    assert job_id not in {requeued for requeued, _ in result.requeue}
    with session_scope(postgres_url) as session:
        job = session.get(Job, job_id)
        assert (job.status, job.worker, job.attempts) == ("running", "w-behind", 1)
