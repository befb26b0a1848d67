"""POST /api/v1/ingest: the upload endpoint of docs/PROTOCOL.md.

The order of checks is part of the contract: credential (401/403) before the body is read, size
(413) while it is read and while it is decompressed, then JSON (400), protocol version (400), the
batch's gateway (403), envelope (422), record count (413). Any of these leaves the database
untouched. After that, every record gets an outcome in a 200 response.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from central.auth import Principal, require
from central.errors import ApiError
from central.ingest_body import decode_body, read_limited
from central.ingest_store import store_batch
from central.ingest_validate import check_protocol_version, parse_envelope
from central.schemas import INGEST_OPENAPI

router = APIRouter()


def _process(request_state, sent: list[bytes], content_encoding: str | None,
             principal: Principal) -> bytes:
    settings, engine = request_state.settings, request_state.engine
    # The bytes as sent are let go as soon as they are decoded (sent holds the only reference).
    body = decode_body(sent.pop(), content_encoding, settings.max_decompressed_bytes,
                       bounded=(settings.max_records, settings.max_payload_bytes))
    version = check_protocol_version(body)
    try:
        batch = parse_envelope(body, settings, principal.name)
        del body  # the decoded records: the batch keeps what it stores (and frees them for storing)
        return store_batch(engine, batch, principal.gateway_pk).response_json()
    except ApiError as exc:  # answered in the version the request was sent with
        exc.protocol_version = version
        raise


@router.post("/api/v1/ingest", tags=["ingest"], summary="Upload one batch (gateway token)",
             openapi_extra=INGEST_OPENAPI)
async def ingest(request: Request) -> Response:
    state = request.app.state
    principal = await run_in_threadpool(require, state.engine,
                                        request.headers.get("authorization"), "gateway")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(400, "unsupported_content_type", "Content-Type must be application/json")
    sent = [await read_limited(request.stream(), request.headers.get("content-length"),
                               state.settings.max_body_bytes)]
    payload = await run_in_threadpool(_process, state, sent,
                                      request.headers.get("content-encoding"), principal)
    return Response(payload, media_type="application/json")
