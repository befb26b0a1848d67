"""Gateways: how many records the central rejected, and the last reason (dashboard: Fleet).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

Why counters on the gateway row and not a table of rejected records: rejected records are never
stored (the agent keeps and logs them), and the fleet view needs only "how many, since when, why
the last one" per gateway. The counter counts rejections as answered: a batch whose 200 response
the gateway never received is resent and its rejected records are counted again.
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("gateways", sa.Column("rejected_records", sa.BigInteger, nullable=False,
                                        server_default=sa.text("0")))
    op.add_column("gateways", sa.Column("last_rejected_at", sa.DateTime(timezone=True)))
    op.add_column("gateways", sa.Column("last_rejection_reason", sa.Text))


def downgrade() -> None:
    op.drop_column("gateways", "last_rejection_reason")
    op.drop_column("gateways", "last_rejected_at")
    op.drop_column("gateways", "rejected_records")
