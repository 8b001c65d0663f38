"""Which worker processes are alive, and which queues they consume.

Each worker's presence thread (:mod:`brainmri.jobs.presence`) calls :func:`report_alive`
once per reaper interval; a worker not seen for ``within`` (the job staleness window: the
same silence after which its jobs are handed to another worker) no longer counts. Times come
from the database clock, like job heartbeats, so hosts with skewed clocks agree on who is
alive.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session

from brainmri.db.models import Worker
from brainmri.db.types import database_now

#: A row not refreshed for this long belongs to a process that is gone for good (a pod that
#: was replaced); every report deletes such rows, so the table holds only recent processes.
FORGET_AFTER = timedelta(days=1)


def report_alive(session: Session, name: str, queues: Iterable[str]) -> None:
    """Record that worker ``name`` is alive now and consumes ``queues``; prune old rows."""
    now = database_now(session)
    listed = ",".join(sorted(set(queues)))
    refreshed = cast(  # an UPDATE's result is a CursorResult, which has rowcount
        CursorResult[Any],
        session.execute(
            update(Worker)
            .where(Worker.name == name)
            .values(queues=listed, seen_at=now)
            .execution_options(synchronize_session=False)
        ),
    )
    if refreshed.rowcount == 0:
        # Only this process writes its own row, so nothing can insert it in between.
        session.add(Worker(name=name, queues=listed, started_at=now, seen_at=now))
    session.execute(delete(Worker).where(Worker.seen_at < now - FORGET_AFTER))


def forget_worker(session: Session, name: str) -> None:
    """A worker shutting down cleanly stops counting at once, not a staleness window later."""
    session.execute(delete(Worker).where(Worker.name == name))


def live_workers_by_queue(
    session: Session, queues: Iterable[str], within: timedelta
) -> dict[str, int]:
    """How many workers seen within ``within`` consume each of ``queues`` (0 where none)."""
    counts = dict.fromkeys(queues, 0)
    since = database_now(session) - within
    for listed in session.scalars(select(Worker.queues).where(Worker.seen_at >= since)):
        for queue in listed.split(","):
            if queue in counts:
                counts[queue] += 1
    return counts
