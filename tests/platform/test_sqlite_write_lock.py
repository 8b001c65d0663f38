"""Embedded mode's SQLite: a transaction that reads and later writes, while other processes
commit, must wait its turn instead of failing with "database is locked".

That is what happened on a first start: the API and both workers found no production model,
each began registering the shipped one, and whichever had read before another's commit failed
its insert at once (SQLITE_BUSY_SNAPSHOT; the busy timeout does not apply) - in the workers,
as a failed first job. :func:`brainmri.db.locks.take_write_lock` takes the lock before the
reads; these tests pin down both the failure and the cure on a real SQLite file.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from brainmri.db.jobs import create_job
from brainmri.db.locks import take_write_lock
from brainmri.db.models import Job
from brainmri.db.session import get_sessionmaker, session_scope
from tests.infra import _sqlite_database


def _commit_a_job(url: str) -> None:
    with session_scope(url) as session:
        create_job(session, job_id=str(uuid.uuid4()), kind="predict", owner="other", params={})


def _jobs(url: str) -> int:
    with session_scope(url) as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


def test_a_read_gone_stale_fails_the_later_write_at_once(tmp_path: Path) -> None:
    """The failure mode itself, so the cure below is known to cure something."""
    url = _sqlite_database(tmp_path)
    session = get_sessionmaker(url)()
    try:
        with session.begin_nested():  # SAVEPOINT: the transaction and its snapshot begin
            session.scalar(select(func.count()).select_from(Job))
            _commit_a_job(url)  # another connection commits meanwhile
            with pytest.raises(OperationalError, match="database is locked"):
                create_job(session, job_id=str(uuid.uuid4()), kind="predict", owner="me", params={})
    finally:
        session.rollback()
        session.close()


def test_after_take_write_lock_others_wait_and_both_writes_land(tmp_path: Path) -> None:
    url = _sqlite_database(tmp_path)
    session = get_sessionmaker(url)()
    other = threading.Thread(target=_commit_a_job, args=(url,))
    try:
        take_write_lock(session)
        with session.begin_nested():
            before = session.scalar(select(func.count()).select_from(Job))
            other.start()  # its commit now waits for this transaction
            other.join(timeout=1.0)
            assert other.is_alive()
            create_job(session, job_id=str(uuid.uuid4()), kind="predict", owner="me", params={})
        session.commit()
    finally:
        session.close()
    other.join(timeout=30)
    assert not other.is_alive()
    assert before == 0 and _jobs(url) == 2
