"""Job state transitions as small keyword-only functions.

Every transition is one conditional ``UPDATE ... WHERE`` so that concurrent workers, reapers and
API calls can never both win: a worker *claims* a job (``queued`` -> ``running``, or a
``running`` job whose heartbeat went stale), and the claim's attempt number is a fencing token
that every later write must present. A worker that lost its claim (it was presumed dead and the
job was given to another) can therefore no longer complete, fail or heartbeat the job, and a
job's predictions are written exactly once, in the same transaction that marks it succeeded.

A cancel request is final: a job whose worker died after it was asked to stop is finished as
cancelled (by the reaper, or by the next claim) rather than run again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from brainmri.db.models import Job, JobStatus, Prediction
from brainmri.db.types import utcnow

UNFINISHED = (JobStatus.QUEUED, JobStatus.RUNNING)


@dataclass(frozen=True, slots=True)
class Claim:
    job: Job
    attempt: int


@dataclass(frozen=True, slots=True)
class HeartbeatState:
    owned: bool
    cancel_requested: bool


def create_job(
    session: Session,
    *,
    job_id: str,
    kind: str,
    owner: str,
    params: dict[str, Any],
    input_uri: str | None = None,
) -> Job:
    job = Job(
        id=job_id,
        kind=kind,
        owner=owner,
        params=params,
        input_uri=input_uri,
        status=JobStatus.QUEUED,
        progress=0.0,
        attempts=0,
        crashes=0,
        artifacts={},
        cancel_requested=False,
        created_at=utcnow(),
        enqueued_at=utcnow(),
    )
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: str, *, owner: str | None = None) -> Job | None:
    """The job, or None if it does not exist or belongs to someone else (``owner`` given)."""
    job = session.get(Job, job_id)
    if job is None or (owner is not None and job.owner != owner):
        return None
    return job


def list_jobs(
    session: Session,
    *,
    owner: str | None,
    kind: str | None = None,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Job], int]:
    conditions = []
    if owner is not None:
        conditions.append(Job.owner == owner)
    if kind:
        conditions.append(Job.kind == kind)
    if status:
        conditions.append(Job.status == status)
    total = session.scalar(select(func.count()).select_from(Job).where(*conditions)) or 0
    jobs = session.scalars(
        select(Job)
        .where(*conditions)
        .order_by(Job.created_at.desc(), Job.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return list(jobs), int(total)


def job_counts(session: Session) -> list[tuple[str, str, int]]:
    rows = session.execute(
        select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)
    )
    return [(kind, status, int(count)) for kind, status, count in rows]


def claim_job(
    session: Session,
    *,
    job_id: str,
    worker: str,
    stale_before: datetime,
    max_attempts: int,
) -> Claim | None:
    """Take the job for this worker, or None (finished, cancelled, or someone else has it).

    A claimable job that was asked to stop (its worker died, or it was released for a retry,
    after the request) is finished as cancelled instead of being run. A job that has already
    crashed ``max_attempts`` workers is marked failed instead of being run again, so a poison
    job cannot loop forever. Either way its artifacts are the caller's to remove (see
    :func:`ended_without_result`).
    """
    now = utcnow()
    claimable = or_(
        Job.status == JobStatus.QUEUED,
        and_(Job.status == JobStatus.RUNNING, Job.heartbeat_at < stale_before),
    )
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            claimable,
            Job.crashes < max_attempts,
            Job.cancel_requested.is_(False),
        )
        .values(
            status=JobStatus.RUNNING,
            attempts=Job.attempts + 1,
            crashes=Job.crashes + 1,
            worker=worker,
            heartbeat_at=now,
            started_at=func.coalesce(Job.started_at, now),
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:
        job = session.get(Job, job_id, populate_existing=True)
        assert job is not None
        return Claim(job, job.attempts)
    _cancel(session, (Job.id == job_id, claimable, Job.cancel_requested.is_(True)), now)
    session.execute(
        update(Job)
        .where(Job.id == job_id, claimable, Job.crashes >= max_attempts)
        .values(
            status=JobStatus.FAILED,
            finished_at=now,
            error=_poison_error(max_attempts),
        )
        .execution_options(synchronize_session=False)
    )
    return None


def _poison_error(attempts: int) -> dict[str, Any]:
    """The error of a job that keeps killing the workers that run it."""
    return {
        "code": "too_many_attempts",
        "retryable": False,
        "message": f"the job stopped {attempts} workers without finishing",
    }


def _cancelled_error() -> dict[str, Any]:
    """The error of a cancelled job, the same whoever finishes it (API, worker or reaper)."""
    return {"code": "cancelled", "message": "cancelled by request", "retryable": False}


def ended_without_result(session: Session, *, job_id: str) -> bool:
    """True when the job is over for good and produced nothing: its artifacts are garbage.

    Cancelled jobs and jobs failed with an error that cannot be retried never run again
    (:func:`requeue_failed` takes only retryable failures), so no attempt can ever record the
    files under their artifact folder. A retryable failure may still be requeued, and a
    succeeded job's files are its result.
    """
    row = session.execute(select(Job.status, Job.error).where(Job.id == job_id)).one_or_none()
    if row is None:
        return False
    status, error = row
    if status == JobStatus.CANCELLED:
        return True
    return status == JobStatus.FAILED and not (error or {}).get("retryable")


def _owned(job_id: str, attempt: int) -> tuple[Any, ...]:
    return (Job.id == job_id, Job.status == JobStatus.RUNNING, Job.attempts == attempt)


def heartbeat(
    session: Session,
    *,
    job_id: str,
    attempt: int,
    progress: float | None = None,
    detail: dict[str, Any] | None = None,
) -> HeartbeatState:
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if progress is not None:
        values["progress"] = max(0.0, min(1.0, progress))
    if detail is not None:
        values["progress_detail"] = detail
    result = session.execute(
        update(Job)
        .where(*_owned(job_id, attempt))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    cancel = bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))
    return HeartbeatState(owned=result.rowcount == 1, cancel_requested=cancel)


def complete_job(
    session: Session,
    *,
    job_id: str,
    attempt: int,
    result: dict[str, Any],
    model_version: str | None,
    predictions: Sequence[dict[str, Any]] = (),
    artifacts: dict[str, str] | None = None,
    inference_ms_per_image: float | None = None,
) -> bool:
    """Mark succeeded and (re)write the job's predictions, atomically; False if not owned."""
    updated = session.execute(
        update(Job)
        .where(*_owned(job_id, attempt))
        .values(
            status=JobStatus.SUCCEEDED,
            result=result,
            error=None,
            progress=1.0,
            model_version=model_version,
            artifacts=artifacts or {},
            finished_at=utcnow(),
            inference_ms_per_image=inference_ms_per_image,
        )
        .execution_options(synchronize_session=False)
    )
    if updated.rowcount != 1:
        return False
    session.execute(delete(Prediction).where(Prediction.job_id == job_id))
    session.add_all(Prediction(job_id=job_id, **row) for row in predictions)
    return True


def fail_job(
    session: Session,
    *,
    job_id: str,
    attempt: int | None,
    code: str,
    message: str,
    retryable: bool = False,
    status: JobStatus = JobStatus.FAILED,
) -> bool:
    """Finish as failed (or cancelled); ``attempt=None`` fails any unfinished job."""
    where = (
        _owned(job_id, attempt)
        if attempt is not None
        else (Job.id == job_id, Job.status.in_(UNFINISHED))
    )
    updated = session.execute(
        update(Job)
        .where(*where)
        .values(
            status=status,
            finished_at=utcnow(),
            error={"code": code, "message": message, "retryable": retryable},
        )
        .execution_options(synchronize_session=False)
    )
    return updated.rowcount == 1


def release_for_retry(session: Session, *, job_id: str, attempt: int) -> bool:
    """Back to ``queued`` after a transient error; the attempt does not count as a crash.

    ``attempts`` stays: the next claim gets a new number, so this attempt's fence is dead.
    """
    updated = session.execute(
        update(Job)
        .where(*_owned(job_id, attempt))
        .values(
            status=JobStatus.QUEUED,
            crashes=Job.crashes - 1,
            heartbeat_at=None,
            enqueued_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    return updated.rowcount == 1


def request_cancel(session: Session, *, job_id: str) -> Job | None:
    """Queued jobs are cancelled at once; running jobs are asked to stop at their next check."""
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
        .values(
            status=JobStatus.CANCELLED,
            finished_at=utcnow(),
            cancel_requested=True,
            error=_cancelled_error(),
        )
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
        .values(cancel_requested=True)
        .execution_options(synchronize_session=False)
    )
    return session.get(Job, job_id, populate_existing=True)


def requeue_failed(session: Session, *, job_id: str) -> bool:
    """Put a job that failed with a *retryable* error back in the queue (fresh crash budget).

    ``attempts`` is not reset: a worker still holding an attempt from before the retry must
    not match the fence of an attempt after it.
    """
    job = session.get(Job, job_id, populate_existing=True)
    if job is None or job.status != JobStatus.FAILED or not (job.error or {}).get("retryable"):
        return False
    updated = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.FAILED)
        .values(
            status=JobStatus.QUEUED,
            error=None,
            result=None,
            progress=0.0,
            progress_detail=None,
            crashes=0,
            started_at=None,
            finished_at=None,
            heartbeat_at=None,
            cancel_requested=False,
            enqueued_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    return updated.rowcount == 1


@dataclass(frozen=True, slots=True)
class ReapResult:
    """What one reaper pass did; ``failed`` and ``cancelled`` jobs' artifacts are garbage."""

    requeue: list[tuple[str, str]]  # (job id, kind) to send to the broker again
    failed: list[str]
    cancelled: list[str] = field(default_factory=list)


def reap(
    session: Session,
    *,
    stale_before: datetime,
    queued_before: datetime,
    max_attempts: int,
) -> ReapResult:
    """Find jobs whose worker died (stale heartbeat) or whose broker message was lost.

    Such a job that was asked to stop is finished as cancelled, never sent again.
    """
    now = utcnow()
    requeue: list[tuple[str, str]] = []
    failed: list[str] = []
    cancelled: list[str] = []
    stale = session.execute(
        select(Job.id, Job.kind, Job.attempts, Job.crashes, Job.cancel_requested).where(
            Job.status == JobStatus.RUNNING, Job.heartbeat_at < stale_before
        )
    ).all()
    for job_id, kind, attempts, crashes, cancel_requested in stale:
        still_stale = (
            Job.id == job_id,
            Job.status == JobStatus.RUNNING,
            Job.heartbeat_at < stale_before,
            Job.attempts == attempts,
        )
        if cancel_requested:
            if _cancel(session, still_stale, now):
                cancelled.append(job_id)
            continue
        if crashes >= max_attempts:
            updated = session.execute(
                update(Job)
                .where(*still_stale)
                .values(
                    status=JobStatus.FAILED,
                    finished_at=now,
                    error=_poison_error(crashes),
                )
                .execution_options(synchronize_session=False)
            )
            if updated.rowcount:
                failed.append(job_id)
            continue
        updated = session.execute(
            update(Job)
            .where(*still_stale)
            .values(
                status=JobStatus.QUEUED,
                heartbeat_at=None,
                enqueued_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if updated.rowcount:
            requeue.append((job_id, kind))
    lost = session.execute(
        select(Job.id, Job.kind, Job.cancel_requested).where(
            Job.status == JobStatus.QUEUED, Job.enqueued_at < queued_before
        )
    ).all()
    for job_id, kind, cancel_requested in lost:
        still_lost = (
            Job.id == job_id,
            Job.status == JobStatus.QUEUED,
            Job.enqueued_at < queued_before,
        )
        if cancel_requested:  # released for a retry after the request: do not send it again
            if _cancel(session, still_lost, now):
                cancelled.append(job_id)
            continue
        updated = session.execute(
            update(Job)
            .where(*still_lost)
            .values(enqueued_at=now)
            .execution_options(synchronize_session=False)
        )
        if updated.rowcount:
            requeue.append((job_id, kind))
    return ReapResult(requeue, failed, cancelled)


def _cancel(session: Session, where: tuple[Any, ...], now: datetime) -> bool:
    """Finish the job matched by ``where`` as cancelled; False if it no longer matches."""
    updated = session.execute(
        update(Job)
        .where(*where)
        .values(status=JobStatus.CANCELLED, finished_at=now, error=_cancelled_error())
        .execution_options(synchronize_session=False)
    )
    return updated.rowcount == 1


def delete_job(session: Session, job_id: str) -> None:
    session.execute(delete(Job).where(Job.id == job_id))
