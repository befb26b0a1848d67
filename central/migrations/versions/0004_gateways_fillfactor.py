"""gateways: fillfactor 10, so the status row's old versions are pruned while they are few.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

Why (perf on the backend, 2 batches of one gateway in flight, docs/BENCHMARKS.md): every ingest
batch updates its gateway's status row, and every raw event and measurement it inserts checks
its foreign key by looking that row up (2,000 lookups per batch of 1,000 events). Each update
leaves a HOT version behind on the same page, and PostgreSQL prunes a page only when its free
space falls below max(fillfactor's reserve, 10%): with the default fillfactor of 100 about 60
versions of the row piled up first (seen with pageinspect), and each lookup walked that chain,
testing each version's visibility (for versions locked by both in-flight batches, through
their MultiXact: 8.5% of the backend's CPU on its own). With fillfactor 10 a page is pruned
once it is 10% full, so the chain stays at a handful of versions. The table stays tiny (a few
gateways per page); updates are still HOT (fillfactor only limits inserts).
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE gateways SET (fillfactor = 10)")


def downgrade() -> None:
    op.execute("ALTER TABLE gateways RESET (fillfactor)")
