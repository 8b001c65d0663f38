"""Named leases in the database (portable: a primary-key insert is the lock)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from brainmri.db.models import Lock
from brainmri.db.types import utcnow


def try_lock(session: Session, *, name: str, holder: str, ttl_seconds: float) -> bool:
    """Take the lease ``name`` unless someone holds an unexpired one."""
    session.execute(delete(Lock).where(Lock.name == name, Lock.expires_at < utcnow()))
    try:
        with session.begin_nested():
            session.add(
                Lock(name=name, holder=holder, expires_at=utcnow() + timedelta(seconds=ttl_seconds))
            )
    except IntegrityError:
        return False
    return True


def release_lock(session: Session, *, name: str, holder: str) -> None:
    session.execute(delete(Lock).where(Lock.name == name, Lock.holder == holder))
