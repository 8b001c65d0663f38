"""workers.decode_guards: which guards each worker's job decode children hold

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 13:10:00

The API's own decode children were on ``/metrics`` since they started; the workers', which
decode evaluate and train inputs straight from S3, were only in each worker's log. Existing
rows stay NULL (not reported) until their worker's next report, if it is new enough to send it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("decode_guards", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("decode_guards")
