"""The SQLAlchemy engine (psycopg2), one per app/process."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from central.settings import Settings


def make_engine(settings: Settings) -> Engine:
    """READ COMMITTED (PostgreSQL's default) is what the ingest upserts are designed for."""
    return sa.create_engine(settings.sqlalchemy_url(), pool_size=settings.db_pool_size,
                            max_overflow=settings.db_max_overflow, pool_pre_ping=True, future=True)
