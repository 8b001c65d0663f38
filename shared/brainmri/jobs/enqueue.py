"""Sending job ids to the broker."""

from __future__ import annotations

from celery import Celery

from brainmri.jobs.names import QUEUE_FOR_KIND, TASK_FOR_KIND

SEND_RETRY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}


def send_job(app: Celery, *, job_id: str, kind: str) -> None:
    """Enqueue ``job_id`` on its kind's queue; raises if the broker stays unreachable."""
    app.send_task(
        TASK_FOR_KIND[kind],
        args=[job_id],
        queue=QUEUE_FOR_KIND[kind],
        retry=True,
        retry_policy=SEND_RETRY,
    )
