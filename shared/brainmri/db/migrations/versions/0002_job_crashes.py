"""jobs.crashes: the poison-job budget, apart from the never-reset attempt fence

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 11:30:00

``attempts`` used to serve both as the write fence and as the crash budget, so a user's retry
reset it and a released attempt lowered it - and a later claim could get an attempt number a
presumed-dead worker still held. Existing rows start with ``crashes = attempts``: the same
budget they had.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("crashes", sa.Integer(), nullable=False, server_default="0"))
    op.execute("UPDATE jobs SET crashes = attempts")


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("crashes")
