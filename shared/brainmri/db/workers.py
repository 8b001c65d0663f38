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


def report_alive(
    session: Session,
    name: str,
    queues: Iterable[str],
    decode_guards: Iterable[str] | None = None,
) -> None:
    """Record that worker ``name`` is alive now, consumes ``queues`` and (when known) that its
    job decode children hold ``decode_guards``; prune old rows."""
    now = database_now(session)
    listed = ",".join(sorted(set(queues)))
    guards = None if decode_guards is None else ",".join(decode_guards)
    refreshed = cast(  # an UPDATE's result is a CursorResult, which has rowcount
        CursorResult[Any],
        session.execute(
            update(Worker)
            .where(Worker.name == name)
            .values(queues=listed, seen_at=now, decode_guards=guards)
            .execution_options(synchronize_session=False)
        ),
    )
    if refreshed.rowcount == 0:
        # Only this process writes its own row, so nothing can insert it in between.
        session.add(
            Worker(name=name, queues=listed, started_at=now, seen_at=now, decode_guards=guards)
        )
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


def live_workers_lacking_guards(
    session: Session, guards: Iterable[str], within: timedelta
) -> dict[str, int]:
    """How many workers seen within ``within`` have job decode children without each of
    ``guards`` (0 where every one holds it). A worker that never said counts as lacking all:
    an alert should fire on what nobody has confirmed, not stay quiet."""
    counts = dict.fromkeys(guards, 0)
    since = database_now(session) - within
    for reported in session.scalars(select(Worker.decode_guards).where(Worker.seen_at >= since)):
        held = set(reported.split(",")) if reported else set()
        for guard in counts:
            if guard not in held:
                counts[guard] += 1
    return counts
