"""Gives jobs of dead workers and lost broker messages back to the queue.

Jobs it finishes instead (poison jobs, and jobs that were asked to stop) lose their artifacts
once that is committed: nothing can reference them any more. Now and then it also runs the
sweeps of :mod:`brainmri.jobs.sweep` for the files that every other path missed.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from celery import Celery

from brainmri.config import Settings
from brainmri.db.jobs import ReapResult, reap
from brainmri.db.session import session_scope
from brainmri.jobs.artifacts import remove_artifacts
from brainmri.jobs.enqueue import send_job
from brainmri.jobs.names import QUEUE_FOR_KIND
from brainmri.jobs.queues import queue_depths
from brainmri.jobs.sweep import Sweeper
from brainmri.storage import open_store

log = logging.getLogger(__name__)


def _messages_waiting(settings: Settings) -> dict[str, int] | None:
    """Messages in the broker per job kind, read *before* the database (a message sent in
    between is then counted as missing and re-sent once: harmless); None when unknown."""
    try:
        depths = queue_depths(settings)
    except Exception as exc:
        log.warning("reaper: broker depths unknown (%s); re-sending every overdue job", exc)
        return None
    if not depths:
        return None
    return {kind: depths.get(queue, 0) for kind, queue in QUEUE_FOR_KIND.items()}


def reap_once(settings: Settings, app: Celery) -> ReapResult:
    """One pass: requeue stale or lost jobs, fail poison jobs, finish cancelled ones.

    Messages are sent and artifacts removed only after the transaction commits.
    """
    waiting = _messages_waiting(settings)
    with session_scope(settings.resolved_database_url) as session:
        result = reap(
            session,
            stale_after=timedelta(seconds=settings.job_stale_after_seconds),
            queued_after=timedelta(seconds=settings.requeue_queued_after_seconds),
            max_attempts=settings.job_max_attempts,
            waiting=waiting,
        )
    for job_id, kind in result.requeue:
        try:
            send_job(app, job_id=job_id, kind=kind)
            log.warning(
                "requeued job %s (%s): its worker stopped heartbeating or its message was lost",
                job_id,
                kind,
            )
        except Exception:  # the next pass re-sends it once requeue_queued_after has passed
            log.exception("could not requeue job %s", job_id)
    for job_id in result.failed:
        log.error("job %s failed: it stopped %d workers", job_id, settings.job_max_attempts)
    for job_id in result.cancelled:
        log.warning("job %s cancelled: it was asked to stop and its worker is gone", job_id)
    if result.failed or result.cancelled:
        store = open_store(settings)
        for job_id in result.failed + result.cancelled:
            remove_artifacts(store, job_id)
    return result


class ReaperThread(threading.Thread):
    """Runs :func:`reap_once` every ``reaper_interval_seconds`` until stopped."""

    def __init__(self, settings: Settings, app: Celery) -> None:
        super().__init__(name="job-reaper", daemon=True)
        self.settings = settings
        self.app = app
        self._stop_event = threading.Event()

    def run(self) -> None:
        sweeper = Sweeper(self.settings)
        while not self._stop_event.wait(self.settings.reaper_interval_seconds):
            try:
                reap_once(self.settings, self.app)
            except Exception:
                log.exception("reaper pass failed")
            sweeper.run_if_due()

    def stop(self) -> None:
        self._stop_event.set()
