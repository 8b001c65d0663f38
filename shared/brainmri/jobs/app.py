"""The process-wide Celery application of worker and trainer processes.

Task modules are contributed by the service packages through the ``brainmri.tasks``
entry-point group (queue name -> module), and only the modules for the queues this process
consumes are loaded: a predict/evaluate worker never imports the trainer, and the embedded
worker, which consumes every queue, loads both. Created on first import, never by the API
(which only sends task names, see :mod:`brainmri.jobs.enqueue`).
"""

from __future__ import annotations

import logging
import threading
from importlib.metadata import entry_points

from celery import signals

from brainmri.config import get_settings
from brainmri.devices import apply_device_tips, resolve_device
from brainmri.jobs.celery_app import create_celery
from brainmri.jobs.presence import PresenceReporter
from brainmri.jobs.reaper import ReaperThread
from brainmri.jobs.runtime import forgive_interrupted_jobs
from brainmri.jobs.schedule import beat_schedule
from brainmri.logs import configure_logging

log = logging.getLogger(__name__)
settings = get_settings()


def task_modules(queues: list[str]) -> list[str]:
    modules: list[str] = []
    for entry in entry_points(group="brainmri.tasks"):
        if entry.name in queues and entry.value not in modules:
            modules.append(entry.value)
    return modules


app = create_celery(settings, include=task_modules(settings.worker_queue_list))
# Every process carries the retrain schedule: beat (standalone, or in a worker with -B) sends
# the check by name, whichever queues its own process consumes.
app.conf.beat_schedule = beat_schedule(settings.retrain_schedule)
_reaper: ReaperThread | None = None
_presence: PresenceReporter | None = None


@signals.setup_logging.connect
def _logging(**_: object) -> None:
    configure_logging(settings.log_level, settings.log_format)


@signals.worker_process_init.connect
def _process_init(**_: object) -> None:
    apply_device_tips(resolve_device(settings.device))


@signals.worker_ready.connect
def _start_reaper(**_: object) -> None:
    global _reaper, _presence
    _presence = PresenceReporter(settings)
    _presence.start()
    _reaper = ReaperThread(settings, app)
    _reaper.start()
    log.info("worker ready on queues %s", ",".join(settings.worker_queue_list))


_forgiven = threading.Event()


@signals.worker_shutting_down.connect
def _spare_running_jobs(sender: str | None = None, **_: object) -> None:
    # Celery signals this on every shutdown signal (Ctrl-C, then SIGTERM from `serve`): the
    # crash each running job counted is given back once, not once per signal.
    if _forgiven.is_set():
        return
    _forgiven.set()
    threading.Thread(
        target=forgive_interrupted_jobs, args=(settings, sender), name="shutdown-forgive"
    ).start()
    if _presence is not None:  # it takes no new jobs from now on
        threading.Thread(target=_presence.leave, name="shutdown-presence").start()


@signals.worker_shutdown.connect
def _stop_reaper(**_: object) -> None:
    if _reaper is not None:
        _reaper.stop()
    if _presence is not None:
        _presence.leave()
