"""normalized_measurements.event_id: byte-order collation, and a CHECK that costs ~1 µs, not ~14.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

Why (measured with perf on the backend during 1,000-event ingest batches, docs/BENCHMARKS.md):
* The CHECK `event_id ~ '^[0-9a-f]{64}$'` was ~13% of PostgreSQL's CPU per batch. PostgreSQL's
  regex engine caches the compiled pattern but builds its DFA states afresh on every call, and
  the bounded repetition {64} expands to 64 of them: ~14 µs per row. `octet_length = 64` plus
  `^[0-9a-f]*$` accepts exactly the same strings (every character one of 16 ASCII bytes, 64 of
  them) with a one-state DFA, ~1 µs.
* An event_id is 64 lowercase hex digits: it has no linguistic order, yet as a plain text column
  every comparison in its primary-key index (an upsert descends it twice per row) and every
  ORDER BY went through the database locale's strcoll. COLLATE "C" compares bytes. For strings
  of [0-9a-f] the order is the same in every locale (digits before letters), so the read API's
  `ORDER BY "timestamp", event_id` pages exactly as before.

The type change rewrites the table and its indexes under an exclusive lock: stop the service
while migrating (the documented upgrade procedure does).
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("ck_measurements_event_id", "normalized_measurements", type_="check")
    op.execute('ALTER TABLE normalized_measurements ALTER COLUMN event_id TYPE text COLLATE "C"')
    op.create_check_constraint("ck_measurements_event_id", "normalized_measurements",
                               "octet_length(event_id) = 64 AND event_id ~ '^[0-9a-f]*$'")


def downgrade() -> None:
    op.drop_constraint("ck_measurements_event_id", "normalized_measurements", type_="check")
    op.execute('ALTER TABLE normalized_measurements ALTER COLUMN event_id TYPE text '
                'COLLATE "default"')
    op.create_check_constraint("ck_measurements_event_id", "normalized_measurements",
                               "event_id ~ '^[0-9a-f]{64}$'")
