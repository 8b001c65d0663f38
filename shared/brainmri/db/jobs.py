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

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, case, delete, func, or_, select, update
from sqlalchemy.orm import Session

from brainmri.db.locks import hold_owner_lock
from brainmri.db.models import Job, JobStatus, Prediction
from brainmri.db.types import database_now, database_now_value
from brainmri.errors import TooManyActiveJobsError

#: A job in one of these holds a place in its owner's ``max_active`` limit.
ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


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
    max_active: int = 0,
) -> Job:
    """Insert a queued job. With ``max_active`` > 0, refuse (:class:`TooManyActiveJobsError`)
    when ``owner`` already has that many queued or running jobs; the check and the insert
    hold the owner's lock, so concurrent submissions cannot both take the last place."""
    check_active_job_limit(session, owner, max_active)
    now = database_now(session)
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
        created_at=now,
        enqueued_at=now,
    )
    session.add(job)
    session.flush()
    return job


def count_active_jobs(session: Session, owner: str) -> int:
    """Queued plus running jobs of ``owner``, every kind."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.owner == owner, Job.status.in_(ACTIVE_STATUSES))
        )
        or 0
    )


def check_active_job_limit(session: Session, owner: str, limit: int, *, lock: bool = True) -> None:
    """Raise :class:`TooManyActiveJobsError` if ``owner`` has ``limit`` active jobs already
    (``limit`` 0: no limit, nothing checked).

    With ``lock``, takes the owner's lock first (held to the end of the transaction): the
    caller inserts or requeues the job in the same transaction, so the count it passed stays
    true. Without it the answer is only a cheap early one, to be checked again under the lock.
    """
    if limit <= 0:
        return
    if lock:
        hold_owner_lock(session, owner)
    active = count_active_jobs(session, owner)
    if active >= limit:
        raise TooManyActiveJobsError(active, limit)


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


def oldest_queued(session: Session) -> list[tuple[str, datetime]]:
    """Per job kind, when its longest-waiting queued job was (last) sent to the broker."""
    rows = session.execute(
        select(Job.kind, func.min(Job.enqueued_at))
        .where(Job.status == JobStatus.QUEUED, Job.enqueued_at.is_not(None))
        .group_by(Job.kind)
    )
    # min() over rows whose enqueued_at IS NOT NULL, within a non-empty group: never NULL.
    return [(kind, cast(datetime, when)) for kind, when in rows]


def _transition(session: Session, where: tuple[Any, ...], **values: Any) -> bool:
    """Apply ``values`` to the job matched by ``where``; False when it no longer matches.

    Every state change is one guarded UPDATE: the ``where`` clause is the state the caller
    saw (and, for a worker, its attempt's fence), so a change that lost a race changes nothing.
    """
    updated = cast(  # an UPDATE's result is a CursorResult, which has rowcount
        CursorResult[Any],
        session.execute(
            update(Job).where(*where).values(**values).execution_options(synchronize_session=False)
        ),
    )
    return updated.rowcount == 1


def _one_crash_less() -> Any:
    """``crashes - 1``, never below 0: a release after a shutdown's forgiveness must not
    leave the job a credit against a later real crash."""
    return case((Job.crashes > 0, Job.crashes - 1), else_=0)


def _back_to_queue(now: datetime) -> dict[str, Any]:
    """The values of a job that goes back to ``queued``: progress starts again from zero."""
    return {
        "status": JobStatus.QUEUED,
        "heartbeat_at": None,
        "enqueued_at": now,
        "progress": 0.0,
        "progress_detail": None,
    }


def _fail_as_poison(session: Session, where: tuple[Any, ...], crashes: int, now: datetime) -> bool:
    """Finish a job that keeps killing its workers as failed, never to be sent again."""
    return _transition(
        session, where, status=JobStatus.FAILED, finished_at=now, error=_poison_error(crashes)
    )


def claim_job(
    session: Session,
    *,
    job_id: str,
    worker: str,
    stale_after: timedelta,
    max_attempts: int,
) -> Claim | None:
    """Take the job for this worker, or None (finished, cancelled, or someone else has it).

    A claimable job that was asked to stop (its worker died, or it was released for a retry,
    after the request) is finished as cancelled instead of being run. A job that has already
    crashed ``max_attempts`` workers is marked failed instead of being run again, so a poison
    job cannot loop forever. Either way its artifacts are the caller's to remove (see
    :func:`ended_without_result`).

    A running job counts as abandoned once its heartbeat is older than ``stale_after`` by
    the database's clock, the clock every heartbeat is written by: one read serves both.
    """
    now = database_now(session)
    stale_before = now - stale_after
    claimable = or_(
        Job.status == JobStatus.QUEUED,
        and_(Job.status == JobStatus.RUNNING, Job.heartbeat_at < stale_before),
    )
    claimed = _transition(
        session,
        (Job.id == job_id, claimable, Job.crashes < max_attempts, Job.cancel_requested.is_(False)),
        status=JobStatus.RUNNING,
        attempts=Job.attempts + 1,
        crashes=Job.crashes + 1,
        worker=worker,
        heartbeat_at=now,
        started_at=func.coalesce(Job.started_at, now),
    )
    if claimed:
        job = session.get(Job, job_id, populate_existing=True)
        assert job is not None
        return Claim(job, job.attempts)
    _cancel(session, (Job.id == job_id, claimable, Job.cancel_requested.is_(True)), now)
    _fail_as_poison(
        session, (Job.id == job_id, claimable, Job.crashes >= max_attempts), max_attempts, now
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


@dataclass(frozen=True, slots=True)
class ArtifactOwner:
    """What the artifact sweep needs to know of a job: may its files still be needed?"""

    status: JobStatus
    attempts: int


def artifact_owners(session: Session, job_ids: Sequence[str]) -> dict[str, ArtifactOwner]:
    """The state of each job in ``job_ids`` that still exists (chunked: lists can be long)."""
    owners: dict[str, ArtifactOwner] = {}
    for chunk in _id_chunks(job_ids):
        rows = session.execute(
            select(Job.id, Job.status, Job.attempts).where(Job.id.in_(chunk))
        ).all()
        for job_id, status, attempts in rows:
            owners[job_id] = ArtifactOwner(JobStatus(status), int(attempts))
    return owners


def existing_job_ids(session: Session, job_ids: Sequence[str]) -> set[str]:
    """The ids in ``job_ids`` that have a job row (chunked: lists can be long)."""
    found: set[str] = set()
    for chunk in _id_chunks(job_ids):
        found.update(session.execute(select(Job.id).where(Job.id.in_(chunk))).scalars())
    return found


def _id_chunks(job_ids: Sequence[str], size: int = 500) -> Iterator[list[str]]:
    """``job_ids`` in lists of at most ``size``: one ``IN (...)`` of thousands of ids can
    exceed a driver's parameter limit (SQLite's is 32,766)."""
    ids = list(job_ids)
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def ended_without_result(session: Session, *, job_id: str) -> bool:
    """True when the job is over for good and produced nothing: its artifacts are garbage.

    Cancelled jobs and jobs failed with an error that cannot be retried never run again
    (:func:`requeue_failed` takes only retryable failures), so no attempt can ever record the
    files under their artifact folder. A retryable failure may still be requeued, and a
    succeeded job's files are its result.
    """
    job = session.get(Job, job_id, populate_existing=True)  # as stored now, not as cached
    if job is None:
        return False
    status, error = job.status, job.error
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
    values: dict[str, Any] = {"heartbeat_at": database_now_value(session)}
    if progress is not None:
        values["progress"] = max(0.0, min(1.0, progress))
    if detail is not None:
        values["progress_detail"] = detail
    owned = _transition(session, _owned(job_id, attempt), **values)
    cancel = bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))
    return HeartbeatState(owned=owned, cancel_requested=cancel)


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
    succeeded = _transition(
        session,
        _owned(job_id, attempt),
        status=JobStatus.SUCCEEDED,
        result=result,
        error=None,
        progress=1.0,
        model_version=model_version,
        artifacts=artifacts or {},
        finished_at=database_now(session),
        inference_ms_per_image=inference_ms_per_image,
    )
    if not succeeded:
        return False
    session.execute(delete(Prediction).where(Prediction.job_id == job_id))
    session.add_all(Prediction(job_id=job_id, **row) for row in predictions)
    return True


def fail_job(
    session: Session,
    *,
    job_id: str,
    attempt: int,
    code: str,
    message: str,
    retryable: bool = False,
    status: JobStatus = JobStatus.FAILED,
) -> bool:
    """Finish this attempt's job as failed (or cancelled); False when it no longer owns it."""
    return _transition(
        session,
        _owned(job_id, attempt),
        status=status,
        finished_at=database_now(session),
        error={"code": code, "message": message, "retryable": retryable},
    )


def release_for_retry(session: Session, *, job_id: str, attempt: int) -> bool:
    """Back to ``queued`` after a transient error; the attempt does not count as a crash.

    ``attempts`` stays: the next claim gets a new number, so this attempt's fence is dead.
    """
    return _transition(
        session,
        _owned(job_id, attempt),
        crashes=_one_crash_less(),
        **_back_to_queue(database_now(session)),
    )


def forgive_interrupted(session: Session, *, worker: str) -> int:
    """Give back the crash that each job running on ``worker`` counted when it was claimed.

    Called when that worker is asked to shut down (a rollout, a scale-down, a restart). Its
    jobs may finish within the grace period; if not, the worker is killed and the reaper
    requeues them - for a reason that is not theirs, so it must not use up their crash budget
    (three rollouts during one long evaluation used to fail it as ``too_many_attempts``).
    Returns how many jobs were forgiven.
    """
    updated = cast(  # an UPDATE's result is a CursorResult, which has rowcount
        CursorResult[Any],
        session.execute(
            update(Job)
            .where(Job.worker == worker, Job.status == JobStatus.RUNNING, Job.crashes > 0)
            .values(crashes=_one_crash_less())
            .execution_options(synchronize_session=False)
        ),
    )
    return int(updated.rowcount or 0)


def request_cancel(session: Session, *, job_id: str) -> Job | None:
    """Queued jobs are cancelled at once; running jobs are asked to stop at their next check."""
    queued = (Job.id == job_id, Job.status == JobStatus.QUEUED)
    _transition(
        session,
        queued,
        status=JobStatus.CANCELLED,
        finished_at=database_now(session),
        cancel_requested=True,
        error=_cancelled_error(),
    )
    _transition(session, (Job.id == job_id, Job.status == JobStatus.RUNNING), cancel_requested=True)
    return session.get(Job, job_id, populate_existing=True)


def requeue_failed(session: Session, *, job_id: str) -> bool:
    """Put a job that failed with a *retryable* error back in the queue (fresh crash budget).

    ``attempts`` is not reset: a worker still holding an attempt from before the retry must
    not match the fence of an attempt after it.
    """
    job = session.get(Job, job_id, populate_existing=True)
    if job is None or job.status != JobStatus.FAILED or not (job.error or {}).get("retryable"):
        return False
    return _transition(
        session,
        (Job.id == job_id, Job.status == JobStatus.FAILED),
        **_back_to_queue(database_now(session)),
        error=None,
        result=None,
        crashes=0,
        started_at=None,
        finished_at=None,
        cancel_requested=False,
    )


@dataclass(frozen=True, slots=True)
class ReapResult:
    """What one reaper pass did; ``failed`` and ``cancelled`` jobs' artifacts are garbage."""

    requeue: list[tuple[str, str]]  # (job id, kind) to send to the broker again
    failed: list[str]
    cancelled: list[str] = field(default_factory=list)


def reap(
    session: Session,
    *,
    stale_after: timedelta,
    queued_after: timedelta,
    max_attempts: int,
    waiting: Mapping[str, int] | None = None,
) -> ReapResult:
    """Find jobs whose worker died (stale heartbeat) or whose broker message was lost.

    Such a job that was asked to stop is finished as cancelled, never sent again.

    Both ages are judged by the database's clock, which wrote every heartbeat and enqueue
    time. A job queued for longer than ``queued_after`` *may* have lost its message, or may just
    be waiting behind a backlog. With ``waiting`` (messages in the broker per job kind), only
    as many of the oldest such jobs are sent again as the broker is missing messages for
    (queued jobs of that kind minus messages waiting): re-sending every overdue job of a long
    backlog every interval filled the queue with duplicates, and an autoscaler that scales on
    queue length with them. Without it (broker depth unknown) every overdue job is re-sent.
    """
    now = database_now(session)
    stale_before, queued_before = now - stale_after, now - queued_after
    requeue: list[tuple[str, str]] = []
    failed: list[str] = []
    cancelled: list[str] = []
    # Counted before the stale jobs below go back to the queue: their messages are sent by
    # the caller, so they must not pass for missing ones.
    missing = None if waiting is None else _missing_messages(session, waiting)
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
            if _fail_as_poison(session, still_stale, crashes, now):
                failed.append(job_id)
            continue
        if _transition(session, still_stale, **_back_to_queue(now)):
            requeue.append((job_id, kind))
    lost = session.execute(
        select(Job.id, Job.kind, Job.cancel_requested)
        .where(Job.status == JobStatus.QUEUED, Job.enqueued_at < queued_before)
        .order_by(Job.enqueued_at)
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
        if missing is not None:
            if missing.get(kind, 0) <= 0:
                continue  # its message is most likely still waiting in the broker
            missing[kind] -= 1
        if _transition(session, still_lost, enqueued_at=now):
            requeue.append((job_id, kind))
    return ReapResult(requeue, failed, cancelled)


def _missing_messages(session: Session, waiting: Mapping[str, int]) -> dict[str, int]:
    """Per job kind: queued jobs minus the messages the broker holds for them (at least 0)."""
    queued = session.execute(
        select(Job.kind, func.count()).where(Job.status == JobStatus.QUEUED).group_by(Job.kind)
    ).all()
    return {kind: max(0, int(count) - int(waiting.get(kind, 0))) for kind, count in queued}


def _cancel(session: Session, where: tuple[Any, ...], now: datetime) -> bool:
    """Finish the job matched by ``where`` as cancelled; False if it no longer matches."""
    return _transition(
        session, where, status=JobStatus.CANCELLED, finished_at=now, error=_cancelled_error()
    )


def delete_job(session: Session, job_id: str) -> None:
    session.execute(delete(Job).where(Job.id == job_id))
