"""Whole-request errors: one exception type, one JSON shape, one status per cause.

Why not FastAPI's HTTPException: the contract promises a machine-readable `error` code (the agent
acts on it) next to the human `detail`, plus the limit for 413, and nothing else.
"""

from __future__ import annotations

from typing import Any, Optional

from fastapi import Request
from fastapi.responses import JSONResponse

from central import PROTOCOL_VERSION


class ApiError(Exception):
    """Raised anywhere in request handling; rendered by `api_error_handler`. Changes nothing."""

    def __init__(self, status: int, error: str, detail: str, limit: Optional[int] = None,
                 headers: Optional[dict[str, str]] = None):
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.limit = limit
        self.headers = headers or {}
        self.protocol_version = PROTOCOL_VERSION  # ingest sets the request's once it is known

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"protocol_version": self.protocol_version, "error": self.error,
                               "detail": self.detail}
        if self.limit is not None:
            out["limit"] = self.limit
        return out


async def api_error_handler(_request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)
