"""The Celery application factory (one configuration for every process)."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery
from kombu import Exchange, Queue

from brainmri.config import Settings
from brainmri.jobs.names import ALL_QUEUES, TASK_ROUTES
from brainmri.jobs.spool import TRANSPORT as SPOOL_TRANSPORT
from brainmri.jobs.spool import spool_options


def create_celery(settings: Settings, *, include: Sequence[str] = ()) -> Celery:
    """Celery configured for long, idempotent jobs.

    * ids only travel through the broker (the job row holds everything else);
    * ``acks_late`` + ``reject_on_worker_lost``: a message is acknowledged only after its job
      finished, and requeued if the worker process dies;
    * prefetch 1, because jobs are long and uneven;
    * Redis visibility timeout longer than the longest task, so a running task is never
      handed to a second worker (the database claim guards that case anyway).
    """
    app = Celery("brainmri", broker=settings.resolved_broker_url, include=list(include))
    app.conf.update(
        task_routes=TASK_ROUTES,
        # One direct exchange and routing key per queue. (A bare Queue(name) inherits the
        # default exchange and routing key, which binds every queue to the same key and
        # copies each message into all of them.)
        task_queues=[
            Queue(name, Exchange(name, type="direct"), routing_key=name) for name in ALL_QUEUES
        ],
        task_default_queue="predict",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
    )
    if settings.embedded:
        app.conf.update(
            broker_transport=SPOOL_TRANSPORT,
            broker_transport_options=spool_options(
                settings.broker_spool_dir, settings.broker_poll_interval
            ),
            worker_enable_remote_control=False,
        )
    else:
        app.conf.update(
            broker_transport_options={
                "visibility_timeout": settings.broker_visibility_timeout,
                "socket_timeout": 5,
                "socket_connect_timeout": 5,
            },
        )
    return app
