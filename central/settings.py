"""Configuration from the environment (pydantic BaseSettings).

Why a settings object: every limit the contract promises (docs/PROTOCOL.md, "Limits") lives in one
place, tests can build an app with smaller limits, and the database URL, which usually contains a
password, is a SecretStr so it never shows up in a repr, a log line or an error page.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

from pydantic import BaseSettings, Field, SecretStr


class Settings(BaseSettings):
    """All knobs. Environment names: DATABASE_URL, and CENTRAL_<FIELD> for the rest."""

    database_url: SecretStr = Field(..., env="DATABASE_URL")
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "info"
    # Worker processes of `serve` (central/workers.py); `serve --workers` overrides it. How
    # many to run: docs/SCALING.md.
    workers: int = 1
    db_pool_size: int = 5
    # Connections a worker may open beyond the pool under load (then released). With several
    # workers the total, workers x (pool + overflow), is what PostgreSQL sees at once.
    db_max_overflow: int = 10
    # The dashboard's built files (central/web/dist when unset); see central/web_static.py.
    web_dist: Optional[str] = None
    # Answer consumption and the devices listing from the rollups (migration 0009). Off only to
    # compare: the answers are the same either way, the rollups are what keeps them fast.
    read_rollups: bool = True

    # Request limits (413 when exceeded). The compressed limit applies to the bytes on the wire,
    # the decompressed one to what gzip expands to, so a small gzip bomb is refused too. Both are
    # the largest batch an agent can be configured to send (uplink.batch_max_bytes <= 16 MiB of
    # JSON); a batch over them gets 413 and the agent halves it. The decompressed limit bounds
    # a request's memory: at most 4x it + 20 MiB (docs/BENCHMARKS.md, central memory).
    max_body_bytes: int = 16 * 1024 * 1024
    max_decompressed_bytes: int = 16 * 1024 * 1024
    max_records: int = 10_000  # per array (raw_events, measurements)

    # Per-record limits (rejected with reason too_long when exceeded).
    max_payload_bytes: int = 256 * 1024
    max_topic_chars: int = 1024
    max_device_id_chars: int = 256
    max_decode_error_chars: int = 4096
    max_gateway_id_chars: int = 128

    class Config:
        env_prefix = "CENTRAL_"

    def sqlalchemy_url(self) -> str:
        """The URL with the psycopg2 driver, accepting the common `postgresql://` spelling."""
        url = self.database_url.get_secret_value()
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://"):]
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg2://" + url[len("postgresql://"):]
        return url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once from the environment."""
    return Settings()
