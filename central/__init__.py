"""meter-agent central ingest API: the reference receiver of the upload contract in docs/PROTOCOL.md.

FastAPI + PostgreSQL (SQLAlchemy for connections and table definitions, SQL written as text,
Alembic migrations). Gateways POST batches of raw MQTT
events and canonical measurements to /api/v1/ingest; viewers read them back through /api/v1/*.
"""

PROTOCOL_VERSION = "1"  # the version of answers whose request's version is not known
# Every version /api/v1/ingest accepts; answers carry the version the request was sent with.
PROTOCOL_VERSIONS = ("1", "2")
