"""The one decorator every job task uses, and the context a job body runs in.

``job_task`` turns ``body(ctx) -> JobOutcome`` into a Celery task that:

1. claims the job row (a duplicate delivery, a cancelled job or a finished job is a no-op);
2. heartbeats in a background thread while the body runs and notices cancel requests;
3. records success - result, predictions, artifacts and model version - in one transaction,
   guarded by the claim's attempt number;
4. maps failures by type: input errors fail the job at once, object-store outages are retried
   with exponential backoff (then fail as ``retryable``), time limits and unexpected errors fail
   it with a clear code.

Artifacts are written per attempt (see :mod:`brainmri.jobs.artifacts`) and removed only after
the job row, under the attempt's fence, says nothing can reference them: a failed or cancelled
attempt's once its failure is recorded, a discarded attempt's once its result was refused, other
attempts' once the winner's success is recorded, and all of a job's once it ended for good
without a result (poison or cancelled) when a redelivered message finds it so.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.orm import Session

from brainmri.config import Settings, get_settings
from brainmri.db.jobs import (
    claim_job,
    complete_job,
    ended_without_result,
    fail_job,
    forgive_interrupted,
    heartbeat,
    release_for_retry,
)
from brainmri.db.models import Job, JobStatus
from brainmri.db.session import DATABASE_OUTAGE_ERRORS, session_scope
from brainmri.errors import BrainMRIError, InputError
from brainmri.jobs.artifacts import (
    artifact_prefix,
    content_type,
    remove_artifacts,
    remove_other_attempts,
)
from brainmri.logs import job_log_context
from brainmri.storage import ObjectStore, StorageUnavailableError, open_store

log = logging.getLogger(__name__)


class JobCancelled(BrainMRIError):
    code = "cancelled"


class JobOwnershipLost(BrainMRIError):
    """Another worker took the job over (this one was presumed dead)."""

    code = "ownership_lost"


@dataclass
class JobOutcome:
    result: dict[str, Any]
    model_version: str | None = None
    predictions: list[dict[str, Any]] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)
    inference_ms_per_image: float | None = None


class JobContext:
    """What a job body may use: its row's params, the store, progress and cancellation."""

    def __init__(self, settings: Settings, job: Job, attempt: int) -> None:
        self.settings = settings
        self.job_id = job.id
        self.kind = job.kind
        self.params: dict[str, Any] = dict(job.params or {})
        self.input_uri = job.input_uri
        self.owner = job.owner
        self.attempt = attempt
        self._store: ObjectStore | None = None
        self._cancel = threading.Event()
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pending: tuple[float | None, dict[str, Any] | None] = (None, None)
        self._last_write = 0.0
        self._thread: threading.Thread | None = None

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            self._store = open_store(self.settings)
        return self._store

    def artifact_key(self, name: str) -> str:
        """Under this attempt's own folder, so no other attempt can overwrite or delete it."""
        return artifact_prefix(self.job_id, self.attempt) + name

    def put_artifact(self, name: str, data: bytes) -> str:
        """Store one artifact of this attempt (content type from its name); its store URI."""
        return self.store.put(self.artifact_key(name), data, content_type(name))

    def put_artifact_files(self, paths: Iterable[Path]) -> dict[str, str]:
        """Store files a job wrote, by file name; ``{name: store URI}`` for its artifact map."""
        return {path.name: self.put_artifact(path.name, path.read_bytes()) for path in paths}

    # --- progress, heartbeat, cancellation -----------------------------------------------------
    def progress(self, fraction: float, detail: dict[str, Any] | None = None) -> None:
        """Record progress; written at most twice a second (and by every heartbeat)."""
        with self._lock:
            self._pending = (fraction, detail if detail is not None else self._pending[1])
        if time.monotonic() - self._last_write >= 0.5:
            self._beat()
        self.check_cancelled()

    def check_cancelled(self) -> None:
        if self._lost.is_set():
            raise JobOwnershipLost(f"job {self.job_id} was taken over by another worker")
        if self._cancel.is_set():
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def hold_ownership(self, session: Session) -> None:
        """Lock this job's row in ``session`` until it commits; raise if another attempt owns it.

        For side effects outside the job row that must not outlive a lost job - a train job
        promoting its model, above all. Written inside the same transaction, they commit only
        while this attempt still owns the job, and the row lock keeps the reaper from handing
        it over before they do (the write also refreshes the heartbeat).
        """
        if not heartbeat(session, job_id=self.job_id, attempt=self.attempt).owned:
            self._lost.set()
            raise JobOwnershipLost(f"job {self.job_id} was taken over by another worker")

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set() or self._lost.is_set()

    def _beat(self) -> None:
        with self._lock:
            fraction, detail = self._pending
        try:
            with session_scope(self.settings.resolved_database_url) as session:
                state = heartbeat(
                    session,
                    job_id=self.job_id,
                    attempt=self.attempt,
                    progress=fraction,
                    detail=detail,
                )
        except SoftTimeLimitExceeded:
            raise  # raised into this (main) thread mid-write: the job's time is up, not the DB's
        except Exception:  # a missed heartbeat is not fatal; the next one may succeed
            log.warning("heartbeat failed for job %s", self.job_id, exc_info=True)
            return
        self._last_write = time.monotonic()
        if not state.owned:
            self._lost.set()
        if state.cancel_requested:
            self._cancel.set()

    def start_heartbeat(self) -> None:
        def loop() -> None:
            with job_log_context(self.job_id):
                while not self._stop.wait(self.settings.job_heartbeat_seconds):
                    self._beat()

        self._thread = threading.Thread(target=loop, name=f"heartbeat-{self.job_id}", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


JobBody = Callable[[JobContext], JobOutcome]


def job_task(
    app: Celery, *, name: str, time_limit: Callable[[Settings], int]
) -> Callable[[JobBody], Task]:
    """Register ``body`` as the Celery task ``name`` with the project's job semantics."""
    settings = get_settings()
    hard = time_limit(settings)

    def decorator(body: JobBody) -> Task:
        @app.task(
            name=name,
            bind=True,
            acks_late=True,
            reject_on_worker_lost=True,
            time_limit=hard,
            soft_time_limit=max(1, hard - 15),
            max_retries=None,  # database waits are unbounded; storage retries count their own
        )
        def task(self: Task, job_id: str, storage_retries: int = 0) -> None:
            with job_log_context(job_id):
                _run_job(self, body, job_id, storage_retries)

        return task

    return decorator


def worker_identity(nodename: str | None) -> str:
    """What a job row's ``worker`` holds: host and Celery node name of the worker running it."""
    return f"{socket.gethostname()}:{nodename or 'worker'}"


def forgive_interrupted_jobs(settings: Settings, nodename: str | None) -> None:
    """On a worker's shutdown: its running jobs will not count the crash of being killed.

    Runs in its own thread, started from Celery's shutdown signal handler: a database call
    inside a signal handler could interrupt the same thread's own use of the connection pool.
    Best effort - with the database down the jobs keep their count, as before.
    """
    worker = worker_identity(nodename)
    try:
        with session_scope(settings.resolved_database_url) as session:
            forgiven = forgive_interrupted(session, worker=worker)
    except Exception as exc:
        log.warning("shutdown: could not spare the running jobs a crash count (%s)", exc)
        return
    if forgiven:
        log.info(
            "shutdown: %d running job(s) may finish in the grace period; if stopped, they are "
            "requeued without counting a crash",
            forgiven,
        )


def _claim(task: Task, settings: Settings, job_id: str) -> JobContext | None:
    """Claim the job for this worker; None when it is not this worker's to run.

    A job that ended for good without a result (poison or cancelled - perhaps by this very
    claim) gets its artifacts removed: a redelivered message is the last chance to tidy it.
    """
    worker = worker_identity(task.request.hostname)
    stale_after = timedelta(seconds=settings.job_stale_after_seconds)
    try:
        with session_scope(settings.resolved_database_url) as session:
            claim = claim_job(
                session,
                job_id=job_id,
                worker=worker,
                stale_after=stale_after,
                max_attempts=settings.job_max_attempts,
            )
            if claim is not None:
                return JobContext(settings, claim.job, claim.attempt)
            ended = ended_without_result(session, job_id=job_id)
    except DATABASE_OUTAGE_ERRORS as exc:
        # The database is down: nothing was claimed; try this message again later.
        log.warning("database unavailable before the job started (%s); retrying", exc.orig)
        raise task.retry(exc=exc, countdown=5, max_retries=None) from exc
    log.info("job not claimable (finished, cancelled, taken or out of attempts)")
    if ended:
        remove_artifacts(open_store(settings), job_id)
    return None


def _run_job(task: Task, body: JobBody, job_id: str, storage_retries: int = 0) -> None:
    """Claim, run and record one job. ``storage_retries`` counts this job's retries for an
    object-store outage: Celery's own retry count also grows while the database is down
    before a claim, and used to spend the storage budget before the store was ever tried."""
    settings = get_settings()
    url = settings.resolved_database_url
    ctx = _claim(task, settings, job_id)
    if ctx is None:
        return
    log.info("job started: kind=%s attempt=%d", ctx.kind, ctx.attempt)
    started = time.perf_counter()
    ctx.start_heartbeat()
    try:
        outcome = body(ctx)
        ctx.stop_heartbeat()
        with session_scope(url) as session:
            done = complete_job(
                session,
                job_id=job_id,
                attempt=ctx.attempt,
                result=outcome.result,
                model_version=outcome.model_version,
                predictions=outcome.predictions,
                artifacts=outcome.artifacts,
                inference_ms_per_image=outcome.inference_ms_per_image,
            )
        if done:
            log.info("job succeeded in %.2fs", time.perf_counter() - started)
            remove_other_attempts(ctx.store, job_id, ctx.attempt)
        else:
            log.warning("job result discarded: this worker no longer owns the job")
            remove_artifacts(ctx.store, job_id, ctx.attempt)
    except DATABASE_OUTAGE_ERRORS as exc:
        # The job row cannot be written now. Its heartbeat goes stale while the database is
        # away, and the reaper requeues it once the database is back.
        log.warning(
            "database unavailable during the job (%s); the reaper will requeue it", exc.orig
        )
    except JobOwnershipLost:
        log.warning("job taken over by another worker; stopping without writing")
    except JobCancelled:
        _finish(ctx, JobStatus.CANCELLED, "cancelled", "cancelled by request")
    except InputError as exc:
        _finish(ctx, JobStatus.FAILED, exc.code, str(exc))
    except StorageUnavailableError as exc:
        if storage_retries < settings.storage_max_retries:
            countdown = min(60.0, 2.0**storage_retries)
            log.warning(
                "object store unavailable (%s); retry %d in %.0fs",
                exc,
                storage_retries + 1,
                countdown,
            )
            ctx.stop_heartbeat()
            with session_scope(url) as session:
                release_for_retry(session, job_id=job_id, attempt=ctx.attempt)
            raise task.retry(
                exc=exc,
                countdown=countdown,
                args=[job_id],
                kwargs={"storage_retries": storage_retries + 1},
            ) from exc
        _finish(
            ctx,
            JobStatus.FAILED,
            exc.code,
            f"{exc} (gave up after {settings.storage_max_retries} retries)",
            retryable=True,
        )
    except SoftTimeLimitExceeded:
        _finish(
            ctx,
            JobStatus.FAILED,
            "time_limit_exceeded",
            f"the {ctx.kind} job exceeded its time limit",
        )
    except BrainMRIError as exc:
        _finish(ctx, JobStatus.FAILED, exc.code, str(exc))
    except Exception as exc:
        log.exception("job crashed")
        _finish(
            ctx,
            JobStatus.FAILED,
            "internal_error",
            f"{type(exc).__name__} in the worker; see its logs for job {job_id}",
        )
    finally:
        ctx.stop_heartbeat()


def _finish(
    ctx: JobContext, status: JobStatus, code: str, message: str, *, retryable: bool = False
) -> None:
    """Record the failure under this attempt's fence, then remove the files it made unused.

    Nothing is removed unless the write succeeded: an attempt that lost the job (another one
    took over, perhaps already succeeded) must leave the job's files alone. A failure that can
    be retried removes only this attempt's folder; a final one removes all of the job's.
    """
    ctx.stop_heartbeat()
    with session_scope(ctx.settings.resolved_database_url) as session:
        recorded = fail_job(
            session,
            job_id=ctx.job_id,
            attempt=ctx.attempt,
            code=code,
            message=message,
            retryable=retryable,
            status=status,
        )
    if not recorded:
        log.warning("job %s (%s) not recorded: this worker no longer owns it", status.value, code)
        return
    remove_artifacts(ctx.store, ctx.job_id, ctx.attempt if retryable else None)
    log.info("job %s: %s", status.value, code)
