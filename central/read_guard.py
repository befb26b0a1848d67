"""What keeps hostile or edge input to the read side a 4xx, never a 500 (issue #16, item 3).

* NUL: PostgreSQL text cannot hold it (psycopg2 refuses such a parameter) and a file path cannot
  either (os.stat raises), so a request whose path or query holds NUL is answered before any
  route runs: 404 for a path, 422 `invalid_query` for a query.
* Cursors: opaque to clients, made of the last row's key. They were the parts joined with a
  newline, which a device_id may contain (the protocol allows any text but NUL): the listing
  then stopped at such a device and hid every one after it. Now a cursor is a JSON array of
  strings in URL-safe base64, so every allowed id round-trips, and a forged or truncated one is
  a 422 `invalid_cursor` before it reaches SQL.
* Time windows of the bucketed endpoints: bucket edges are computed in the requested zone, and
  near the ends of the supported years (0001-9999) they can fall outside what Python's datetime
  (and the API's timestamps) can express; such a window is a 422 `invalid_query` naming the
  range, decided in SQL before the buckets are fetched.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Any

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import JSONResponse

from central import PROTOCOL_VERSION
from central.errors import ApiError

UTC = dt.timezone.utc
# The instants the API can show: datetime's range, which is also the canonical timestamps' range.
FIRST_INSTANT = dt.datetime(1, 1, 1, tzinfo=UTC)
LAST_INSTANT = dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
_BAD_CURSOR = "cursor is not one this API returned"


def encode_cursor(*parts: str) -> str:
    return base64.urlsafe_b64encode(
        json.dumps(list(parts), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    ).decode("ascii")


def decode_cursor(cursor: str, count: int) -> list[str]:
    """The `count` strings of a cursor made by encode_cursor, or 422 invalid_cursor."""
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")).decode("utf-8"))
    except (ValueError, UnicodeError, binascii.Error, RecursionError):
        raise ApiError(422, "invalid_cursor", _BAD_CURSOR) from None
    if (type(parts) is not list or len(parts) != count
            or not all(type(p) is str and "\x00" not in p for p in parts)):
        raise ApiError(422, "invalid_cursor", _BAD_CURSOR)
    return parts


def cursor_time(text: str) -> dt.datetime:
    """The timestamp part of a cursor (an isoformat with offset), or 422 invalid_cursor."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(422, "invalid_cursor", _BAD_CURSOR) from None
    if value.tzinfo is None:
        raise ApiError(422, "invalid_cursor", _BAD_CURSOR)
    return value


# The rows come back as datetimes in the session's zone, so the edges must fit there too.
_BUCKETS_INSIDE = sa.text("""
SELECT e.first_start >= CAST(:first AS timestamptz) AND e.last_end <= CAST(:last AS timestamptz)
   AND e.first_start AT TIME ZONE current_setting('TimeZone') >= CAST(:first_local AS timestamp)
   AND e.last_end AT TIME ZONE current_setting('TimeZone') <= CAST(:last_local AS timestamp)
  FROM (SELECT date_trunc(:bucket, CAST(:start AS timestamptz)) AS first_start,
               date_trunc(:bucket, CAST(:end AS timestamptz) - interval '1 microsecond')
               + CAST(:step AS interval) AS last_end) AS e
""")


def check_bucket_edges(conn, params: dict[str, Any]) -> None:
    """422 unless the first bucket's start and the last one's end (in the session's zone, as the
    bucket query makes them) lie within FIRST_INSTANT .. LAST_INSTANT, in UTC and in that zone
    (the rows come back in it). So the last hour of the
    year 9999 cannot be a bucket: its end, 10000-01-01, has no timestamp in the API."""
    # No savepoint: a window outside the range ends the request, and with it the transaction.
    try:
        inside = conn.execute(_BUCKETS_INSIDE, {
            **params, "first": FIRST_INSTANT, "last": LAST_INSTANT,
            "first_local": FIRST_INSTANT.replace(tzinfo=None),
            "last_local": LAST_INSTANT.replace(tzinfo=None)}).scalar()
    except sa.exc.DataError:  # e.g. "timestamp out of range" in the database itself
        inside = False
    if not inside:
        raise ApiError(422, "invalid_query",
                       "the buckets of this window reach outside the supported range "
                       f"({FIRST_INSTANT.isoformat()} to {LAST_INSTANT.isoformat()}) in this "
                       "time zone; ask for a shorter window")


class RejectNul:
    """ASGI middleware: NUL in the path (404) or in a query parameter (422), before routing."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            response = None
            if "\x00" in scope.get("path", ""):
                response = _error(404, "not_found", "no such path")
            else:
                query = Request(scope).query_params
                if any("\x00" in k or "\x00" in v for k, v in query.multi_items()):
                    response = _error(422, "invalid_query", "a query parameter contains NUL")
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"protocol_version": PROTOCOL_VERSION, "error": error, "detail": detail},
                        status_code=status)
