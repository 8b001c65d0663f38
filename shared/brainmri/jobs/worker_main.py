"""Starting a Celery worker (and optionally beat) on the shared application."""

from __future__ import annotations

import os
import socket
import uuid


def run_worker(
    *,
    queues: str | None,
    concurrency: int = 1,
    pool: str = "prefork",
    name: str | None = None,
    beat: bool = False,
) -> None:
    """Consume ``queues`` (default BRAINMRI_WORKER_QUEUES) until stopped."""
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
    app.worker_main(argv)


def run_beat() -> None:
    """The scheduler alone (run exactly one per deployment)."""
    from brainmri.jobs.app import app, settings

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app.start(
        ["beat", "-l", settings.log_level, "-s", str(settings.data_dir / "celerybeat-schedule")]
    )
