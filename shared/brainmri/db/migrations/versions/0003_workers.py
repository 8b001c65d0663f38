"""workers: which processes consume which queues, and when each last said so

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 02:10:00

Before it, a queue with no live worker could only be seen as a growing queue age: a job sent
there waited without any sign of why.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import brainmri.db.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("queues", sa.String(length=255), nullable=False),
        sa.Column("started_at", brainmri.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("seen_at", brainmri.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_workers")),
    )
    with op.batch_alter_table("workers") as batch:
        batch.create_index(batch.f("ix_workers_seen_at"), ["seen_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_index(batch.f("ix_workers_seen_at"))
    op.drop_table("workers")
