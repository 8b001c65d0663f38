"""ORM tables: jobs, per-image predictions, the model registry, locks and live workers.

Schema changes only through Alembic (``brainmri/db/migrations``); a test checks that the
migrations produce exactly these tables.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from brainmri.db.types import JSONType, UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class JobKind(enum.StrEnum):
    PREDICT = "predict"
    EVALUATE = "evaluate"
    TRAIN = "train"


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}


class ModelStage(enum.StrEnum):
    CANDIDATE = "candidate"
    PRODUCTION = "production"
    ARCHIVED = "archived"


class Job(Base):
    """One unit of asynchronous work and its outcome."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True, default=JobStatus.QUEUED)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    progress_detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(128), nullable=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    input_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    artifacts: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    # ``attempts`` counts every claim and is never reset or lowered: it is the fence every
    # write of an attempt is checked against, so no two claims of a job share a number, not
    # even across a user's retry. ``crashes`` counts the claims that may have killed their
    # worker (a transient release does not count, a user's retry starts it again): it is what
    # BRAINMRI_JOB_MAX_ATTEMPTS bounds.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    crashes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    worker: Mapped[str | None] = mapped_column(String(255), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    inference_ms_per_image: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    predictions: Mapped[list[Prediction]] = relationship(
        back_populates="job", cascade="all, delete-orphan", order_by="Prediction.item_index"
    )

    __table_args__ = (Index("ix_jobs_owner_created", "owner", "created_at"),)


class Prediction(Base):
    """One scored image of a job; ``(job_id, item_index)`` makes re-runs idempotent."""

    __tablename__ = "predictions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    item_index: Mapped[int] = mapped_column(Integer)
    input_uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    class_probs: Mapped[dict[str, float]] = mapped_column(JSONType)
    predicted_class: Mapped[str] = mapped_column(String(32))
    tumor_prob: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    has_tumor: Mapped[bool] = mapped_column(Boolean)
    true_class: Mapped[str | None] = mapped_column(String(32), nullable=True)
    cam_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    model_version: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    job: Mapped[Job] = relationship(back_populates="predictions")

    __table_args__ = (UniqueConstraint("job_id", "item_index", name="uq_predictions_job_item"),)


class ModelVersion(Base):
    """A registered model bundle. At most one ``production`` row per name, enforced by a
    partial unique index (PostgreSQL and SQLite both support it)."""

    __tablename__ = "model_versions"

    version: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    arch: Mapped[str] = mapped_column(String(64))
    stage: Mapped[str] = mapped_column(String(16), default=ModelStage.CANDIDATE)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    data_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    training_job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    artifact_prefix: Mapped[str] = mapped_column(Text)
    artifact_sha256: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    stage_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    promoted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    promoted_by: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        Index(
            "uq_model_versions_one_production",
            "name",
            unique=True,
            postgresql_where=text("stage = 'production'"),
            sqlite_where=text("stage = 'production'"),
        ),
    )


class Lock(Base):
    """A named lease (e.g. "one scheduled retrain at a time") that works on every backend."""

    __tablename__ = "locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Worker(Base):
    """A worker or trainer process and the queues it consumes, as it last reported them.

    Why: nothing else says whether anything consumes a queue. A job whose queue has no live
    worker waits forever, and the reaper that would notice runs inside the workers themselves.
    Each worker's presence thread (:mod:`brainmri.jobs.presence`) refreshes its row every
    reaper interval; the API reads the rows for ``/readyz``, ``/metrics`` and queued jobs.
    """

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)  # host:pid:suffix
    queues: Mapped[str] = mapped_column(String(255))  # comma-separated
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    #: Comma-separated guards its job decode children hold (``brainmri.imaging.confine.GUARDS``,
    #: "" for none); NULL: not reported (a worker older than the column).
    decode_guards: Mapped[str | None] = mapped_column(String(64), nullable=True, default=None)
