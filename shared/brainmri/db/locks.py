"""Named leases in the database (portable: a primary-key insert is the lock)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
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
