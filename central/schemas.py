"""Pydantic models that *document* the API in OpenAPI (/docs); they are not used to parse.

Why not parse with them: the ingest body needs exact decimal texts, per-record (not per-request)
errors and streaming size limits, which central/ingest_validate.py does by hand. These models
describe the same shapes so /docs and /openapi.json show the contract of docs/PROTOCOL.md.
"""

from __future__ import annotations

from typing import Any, List, Optional

from pydantic import BaseModel, Field


class RawEventIn(BaseModel):
    seq: int = Field(..., ge=1, description="strictly increasing per buffer")
    topic: str
    payload: str = Field(..., description="message bytes, standard base64 with padding")
    qos: int = Field(..., ge=0, le=2)
    retained: bool
    dup: bool
    received_at: str = Field(..., description="canonical timestamp, gateway clock")
    decode_error: Optional[str] = None


class RawRef(BaseModel):
    buffer_id: str
    seq: int = Field(..., ge=1)


class MeasurementIn(BaseModel):
    event_id: str = Field(..., regex="^[0-9a-f]{64}$")
    device_id: str
    metric_type: str = Field(..., description="energy | power")
    timestamp: str = Field(..., description="canonical UTC timestamp YYYY-MM-DDTHH:MM:SS.sssZ")
    value: float = Field(..., description="JSON number whose text is the canonical decimal text")
    unit: str = Field(..., description="kWh for energy, kW for power")
    delta: Optional[float] = Field(..., description="JSON number (canonical text) or null")
    delta_from: Optional[str] = Field(None, description='protocol "2" only: canonical timestamp '
                                      "of the reading the delta is measured from, or null")
    flags: List[str]
    revision: int = Field(..., ge=1)
    raw: RawRef


class Backlog(BaseModel):
    records: int = Field(..., ge=0)
    oldest_received_at: Optional[str] = None


class IngestRequest(BaseModel):
    protocol_version: str = Field(..., description='"1" or "2"; answers carry the same')
    gateway_id: str
    buffer_id: str = Field(..., description="UUID of the gateway's buffer instance")
    sent_at: str
    backlog: Optional[Backlog] = None
    raw_events: List[RawEventIn]
    measurements: List[MeasurementIn]


class RawOutcome(BaseModel):
    index: int
    seq: Optional[int]
    outcome: str = Field(..., description="stored | duplicate | rejected")
    reason: Optional[str] = None
    detail: Optional[str] = None


class MeasurementOutcome(BaseModel):
    index: int
    event_id: Optional[str]
    revision: Optional[int]
    outcome: str = Field(..., description="stored | duplicate | superseded | rejected")
    reason: Optional[str] = None
    detail: Optional[str] = None


class IngestResponse(BaseModel):
    protocol_version: str
    raw_events: List[RawOutcome]
    measurements: List[MeasurementOutcome]


class ErrorResponse(BaseModel):
    protocol_version: str
    error: str
    detail: str
    limit: Optional[int] = None


def _inline(schema: dict) -> dict:
    """Resolve pydantic's local #/definitions refs so the schema stands alone in openapi_extra."""
    definitions = schema.pop("definitions", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(dict(definitions[node["$ref"].split("/")[-1]]))
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": _inline(ErrorResponse.schema())}}}


INGEST_OPENAPI: dict = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _inline(IngestRequest.schema())}},
        "description": "One batch; may be sent with Content-Encoding: gzip.",
    },
    "responses": {
        "200": {"description": "Per-record outcomes, in request order",
                "content": {"application/json": {"schema": _inline(IngestResponse.schema())}}},
        "400": _error("Not JSON, bad gzip/UTF-8, wrong content type or protocol version"),
        "401": _error("Missing, invalid or revoked token"),
        "403": _error("Token of another gateway, or a viewer token"),
        "413": _error("Body (compressed or decompressed) or record count over the limit"),
        "422": _error("Envelope does not match the schema"),
    },
}
