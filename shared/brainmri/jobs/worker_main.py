"""Starting a Celery worker (and optionally beat) on the shared application."""

from __future__ import annotations

import os
import socket
import uuid

from celery import Celery
from click.exceptions import ClickException, Exit


def run_worker(
    *,
    queues: str | None,
    concurrency: int = 1,
    pool: str = "prefork",
    name: str | None = None,
    beat: bool = False,
) -> int:
    """Consume ``queues`` (default BRAINMRI_WORKER_QUEUES) until stopped; the worker's exit
    status (non-zero after an unrecoverable error, which a supervisor must see)."""
    if queues:
        os.environ["BRAINMRI_WORKER_QUEUES"] = queues
    from brainmri.config import get_settings

    get_settings.cache_clear()
    from brainmri.jobs.app import app, settings

    node = name or f"worker-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    argv = [
        "worker",
        "-Q",
        ",".join(settings.worker_queue_list),
        "-c",
        str(concurrency),
        "-P",
        pool,
        "-n",
        node,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-l",
        settings.log_level,
    ]
    if beat:
        argv += ["-B", "-s", str(settings.data_dir / "celerybeat-schedule")]
    return run_celery(app, argv)


def run_celery(app: Celery, argv: list[str]) -> int:
    """``celery <argv>`` on ``app``, returning its exit status.

    ``app.worker_main``/``app.start`` drop the status that click hands back, so a worker that
    stopped on an unrecoverable error exited 0 and looked like a clean shutdown to embedded
    mode's watchdog and to process supervisors. This is ``app.start`` keeping it.
    """
    from celery.bin.celery import celery as celery_command

    celery_command.params[0].default = app  # the --app option, as app.start sets it
    try:
        status = celery_command.main(args=argv, standalone_mode=False)
    except Exit as exc:
        status = exc.exit_code
    except ClickException as exc:  # a bad option or a failed command: say so, as celery does
        exc.show()
        status = exc.exit_code
    finally:
        celery_command.params[0].default = None
    return status if isinstance(status, int) else 0


def run_beat() -> int:
    """The scheduler alone (run exactly one per deployment); its exit status."""
    from brainmri.jobs.app import app, settings

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return run_celery(
        app,
        ["beat", "-l", settings.log_level, "-s", str(settings.data_dir / "celerybeat-schedule")],
    )
