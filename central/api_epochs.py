"""Read side of operator events: a device's epochs (meter replacements) and the operator events
that could not be applied (viewer tokens)."""

from __future__ import annotations

from typing import Optional

import sqlalchemy as sa
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response

from central.api_read import _json, _num, _ts, _viewer

router = APIRouter()


@router.get("/api/v1/epochs", tags=["read"],
            summary="A device's epochs: meter replacements recorded by an operator")
def list_epochs(request: Request, authorization: Optional[str] = Header(None),
                device_id: str = Query(...),
                metric_type: Optional[str] = Query(None)) -> Response:
    """One item per replacement identity (device, metric, at), ordered by `at`: the latest
    record of it by (received_at, seq). A withdrawn replacement is listed with
    `withdrawn: true` (nothing is deleted); it starts no epoch."""
    _viewer(request, authorization)
    params = {"device_id": device_id, "metric_type": metric_type}
    with request.app.state.engine.connect() as conn:
        rows = conn.execute(sa.text("""
            SELECT e.identity, e.device_id, e.metric_type, e."at", e.old_final, e.new_initial,
                   e.withdrawn, e.recorded_at, g.name AS gateway, e.raw_buffer_id::text AS buf,
                   e.raw_seq, e.received_at, e.updated_at
              FROM epochs e JOIN gateways g ON g.id = e.gateway_id
             WHERE e.device_id = :device_id
               AND (CAST(:metric_type AS text) IS NULL OR e.metric_type = :metric_type)
             ORDER BY e.metric_type, e."at", e.identity"""), params).mappings().all()
    return _json({"items": [{
        "identity": r["identity"], "device_id": r["device_id"], "metric_type": r["metric_type"],
        "at": _ts(r["at"]), "old_final": _num(r["old_final"]),
        "new_initial": _num(r["new_initial"]), "withdrawn": r["withdrawn"],
        "recorded_at": _ts(r["recorded_at"]), "gateway_id": r["gateway"],
        "raw": {"buffer_id": r["buf"], "seq": r["raw_seq"]}, "received_at": _ts(r["received_at"]),
        "updated_at": _ts(r["updated_at"]),
    } for r in rows]})


@router.get("/api/v1/operator_event_problems", tags=["read"],
            summary="Operator events stored as raw but not applied, with the reason")
def list_problems(request: Request, authorization: Optional[str] = Header(None),
                  limit: int = Query(100, ge=1, le=1000)) -> Response:
    """Newest first. Each names its raw event (`GET /api/v1/raw_event`)."""
    _viewer(request, authorization)
    with request.app.state.engine.connect() as conn:
        rows = conn.execute(sa.text("""
            SELECT g.name AS gateway, p.buffer_id::text AS buf, p.seq, p.problem, p.found_at
              FROM operator_event_problems p JOIN gateways g ON g.id = p.gateway_id
             ORDER BY p.found_at DESC, g.name, p.buffer_id, p.seq
             LIMIT :limit"""), {"limit": limit}).mappings().all()
    return _json({"items": [{
        "gateway_id": r["gateway"], "buffer_id": r["buf"], "seq": r["seq"],
        "problem": r["problem"], "found_at": _ts(r["found_at"]),
    } for r in rows]})
