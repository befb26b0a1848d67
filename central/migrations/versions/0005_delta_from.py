"""normalized_measurements.delta_from: where a protocol "2" delta starts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

Why: a `gap` delta covers the whole silent interval from the last good reading to this one; the
consumption API spreads it over the buckets of (delta_from, timestamp]. Readings uploaded with
protocol "1" (and every row stored before this migration) have no delta_from (NULL): their
delta stays in its own reading's bucket, as before. A nullable column without a default is a
catalog change only, so the migration does not rewrite the table.
"""
from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("normalized_measurements",
                  sa.Column("delta_from", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("normalized_measurements", "delta_from")
