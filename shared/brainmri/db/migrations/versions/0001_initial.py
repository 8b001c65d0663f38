"""initial schema: jobs, predictions, model_versions

Revision ID: 0001
Revises:
Create Date: 2026-11-28 02:03:52.595150
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import brainmri.db.types
from brainmri.db.types import JSONType

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("progress_detail", JSONType, nullable=True),
        sa.Column("params", JSONType, nullable=False),
        sa.Column("result", JSONType, nullable=True),
        sa.Column("error", JSONType, nullable=True),
        sa.Column("model_version", sa.String(length=128), nullable=True),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("input_uri", sa.Text(), nullable=True),
        sa.Column("artifacts", JSONType, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("inference_ms_per_image", sa.Float(), nullable=True),
        sa.Column("created_at", brainmri.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("enqueued_at", brainmri.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("started_at", brainmri.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", brainmri.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", brainmri.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_kind"), ["kind"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_owner"), ["owner"], unique=False)
        batch_op.create_index("ix_jobs_owner_created", ["owner", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_status"), ["status"], unique=False)

    op.create_table(
        "model_versions",
        sa.Column("version", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("arch", sa.String(length=64), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("metrics", JSONType, nullable=False),
        sa.Column("data_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("training_job_id", sa.String(length=36), nullable=True),
        sa.Column("artifact_prefix", sa.Text(), nullable=False),
        sa.Column("artifact_sha256", JSONType, nullable=False),
        sa.Column("stage_reason", sa.Text(), nullable=True),
        sa.Column("created_at", brainmri.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("promoted_at", brainmri.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("promoted_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_model_versions")),
    )
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_versions_name"), ["name"], unique=False)
        batch_op.create_index(
            "uq_model_versions_one_production",
            ["name"],
            unique=True,
            postgresql_where=sa.text("stage = 'production'"),
            sqlite_where=sa.text("stage = 'production'"),
        )

    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("item_index", sa.Integer(), nullable=False),
        sa.Column("input_uri", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("class_probs", JSONType, nullable=False),
        sa.Column("predicted_class", sa.String(length=32), nullable=False),
        sa.Column("tumor_prob", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("has_tumor", sa.Boolean(), nullable=False),
        sa.Column("true_class", sa.String(length=32), nullable=True),
        sa.Column("cam_uri", sa.Text(), nullable=True),
        sa.Column("model_version", sa.String(length=128), nullable=False),
        sa.Column("created_at", brainmri.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_predictions_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_predictions")),
        sa.UniqueConstraint("job_id", "item_index", name="uq_predictions_job_item"),
    )
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_predictions_job_id"), ["job_id"], unique=False)

    op.create_table(
        "locks",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("expires_at", brainmri.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_locks")),
    )


def downgrade() -> None:
    op.drop_table("locks")
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_predictions_job_id"))

    op.drop_table("predictions")
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_model_versions_one_production",
            postgresql_where=sa.text("stage = 'production'"),
            sqlite_where=sa.text("stage = 'production'"),
        )
        batch_op.drop_index(batch_op.f("ix_model_versions_name"))

    op.drop_table("model_versions")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_status"))
        batch_op.drop_index("ix_jobs_owner_created")
        batch_op.drop_index(batch_op.f("ix_jobs_owner"))
        batch_op.drop_index(batch_op.f("ix_jobs_kind"))
        batch_op.drop_index(batch_op.f("ix_jobs_created_at"))

    op.drop_table("jobs")
