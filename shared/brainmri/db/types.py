"""Column types that behave the same on PostgreSQL and SQLite."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator

#: JSONB on PostgreSQL (indexable, compact), plain JSON text elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes everywhere (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """This host's clock: for what only this host compares (timings, local logs)."""
    return datetime.now(UTC)


def database_now(session: Session) -> datetime:
    """The database server's clock, for every time that another host compares.

    Why: a heartbeat written by a worker is judged stale by the reaper of another host, and a
    claim compares it with the claiming worker's time. With each host's own clock, a worker
    whose clock ran a minute behind looked dead while it worked, and its job was handed to a
    second worker. PostgreSQL's ``clock_timestamp()`` is one clock for all of them (``now()``
    would be the start of the transaction). SQLite is embedded mode: one host, one clock.
    """
    if session.get_bind().dialect.name == "postgresql":
        return session.execute(select(func.clock_timestamp())).scalar_one()
    return utcnow()


def database_now_value(session: Session) -> Any:
    """:func:`database_now` as a value to write in an UPDATE: on PostgreSQL the SQL expression
    itself, evaluated by the server in the same statement, so a write saves the round trip of
    reading the clock first (a heartbeat runs every few seconds per job)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.clock_timestamp()
    return utcnow()
