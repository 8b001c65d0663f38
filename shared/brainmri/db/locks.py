"""Named leases in the database (portable: a primary-key insert is the lock), and a lock
that serialises one job owner's submissions for the length of a transaction."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from brainmri.db.models import Lock
from brainmri.db.types import database_now


def try_lock(session: Session, *, name: str, holder: str, ttl_seconds: float) -> bool:
    """Take the lease ``name`` unless someone holds an unexpired one."""
    now = database_now(session)  # leases of several hosts: one clock judges them
    session.execute(delete(Lock).where(Lock.name == name, Lock.expires_at < now))
    try:
        with session.begin_nested():
            session.add(
                Lock(name=name, holder=holder, expires_at=now + timedelta(seconds=ttl_seconds))
            )
    except IntegrityError:
        return False
    return True


def release_lock(session: Session, *, name: str, holder: str) -> None:
    session.execute(delete(Lock).where(Lock.name == name, Lock.holder == holder))


def hold_owner_lock(session: Session, owner: str) -> None:
    """Until this transaction ends, other transactions calling this for ``owner`` wait.

    Counting an owner's jobs and inserting one more must not interleave with another of the
    owner's submissions, or two could both see room for one. PostgreSQL: a transaction-level
    advisory lock on a hash of the owner, so other owners' submissions run on. SQLite takes
    one writer at a time anyway; an empty ``DELETE`` takes the write lock now rather than at
    the insert, so the count read after it cannot be stale.
    """
    if session.get_bind().dialect.name == "postgresql":
        key = func.hashtextextended(f"brainmri-owner:{owner}", 0)
        session.execute(select(func.pg_advisory_xact_lock(key)))
    else:
        take_write_lock(session)


def take_write_lock(session: Session) -> None:
    """SQLite: take the database's write lock now, for the rest of this transaction.

    A transaction that reads and only later writes fails that write at once with "database is
    locked" when another connection committed in between (SQLITE_BUSY_SNAPSHOT: the busy
    timeout does not apply). Taking the lock first makes later writers wait their turn
    instead, and what this transaction reads stays current. An empty ``DELETE`` does it.
    PostgreSQL needs nothing of the kind: a no-op there.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("DELETE FROM locks WHERE 1 = 0"))
