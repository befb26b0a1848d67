"""Bearer tokens: generation, hashing, and checking a request's credential.

Why this design: a token is 256 random bits, so a plain SHA-256 of it is as good as a slow
password hash (nothing to brute-force) and lets the lookup be one indexed equality. Only the hash
is stored; the token is printed once when created. The stored and computed hashes are compared
with hmac.compare_digest as well, so no timing difference depends on how much of it matched.
Gateway and viewer tokens carry different prefixes and live under different owners, so an upload
token cannot read and a viewer token cannot upload.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from central.errors import ApiError

GATEWAY_PREFIX = "mgw_"
VIEWER_PREFIX = "mvw_"
_MAX_TOKEN_CHARS = 200


@dataclass(frozen=True)
class Principal:
    """Who a valid token belongs to: exactly one of gateway or viewer."""

    kind: str  # "gateway" | "viewer"
    name: str
    gateway_pk: Optional[int] = None
    viewer_pk: Optional[int] = None


def new_token(kind: str) -> str:
    """A fresh token: type prefix + 43 url-safe characters (256 bits of entropy)."""
    return (GATEWAY_PREFIX if kind == "gateway" else VIEWER_PREFIX) + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def token_prefix(token: str) -> str:
    """A non-secret handle for listings and logs (type prefix + 4 characters)."""
    return token[:8]


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def bearer_token(authorization: Optional[str]) -> str:
    """The token of an `Authorization: Bearer <token>` header, or 401."""
    if not authorization:
        raise _unauthorized("missing Authorization: Bearer <token>")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > _MAX_TOKEN_CHARS:
        raise _unauthorized("Authorization must be 'Bearer <token>'")
    return token


_LOOKUP = sa.text("""
    SELECT t.token_hash, t.gateway_id, g.name AS gateway_name, g.revoked_at AS gateway_revoked,
           t.viewer_id, v.name AS viewer_name, v.revoked_at AS viewer_revoked
      FROM api_tokens t
      LEFT JOIN gateways g ON g.id = t.gateway_id
      LEFT JOIN viewers v ON v.id = t.viewer_id
     WHERE t.token_hash = :h AND t.revoked_at IS NULL
""")


def authenticate(conn: Connection, token: str) -> Principal:
    """The principal of a live token, or 401 (unknown, revoked token, or revoked owner)."""
    digest = hash_token(token)
    row = conn.execute(_LOOKUP, {"h": digest}).mappings().first()
    if row is None or not hmac.compare_digest(bytes(row["token_hash"]), digest):
        raise _unauthorized("invalid or revoked token")
    if row["gateway_id"] is not None:
        if row["gateway_revoked"] is not None:
            raise _unauthorized("invalid or revoked token")
        return Principal("gateway", row["gateway_name"], gateway_pk=row["gateway_id"])
    if row["viewer_revoked"] is not None:
        raise _unauthorized("invalid or revoked token")
    return Principal("viewer", row["viewer_name"], viewer_pk=row["viewer_id"])


def require(engine: Engine, authorization: Optional[str], kind: str) -> Principal:
    """401 without a live token; 403 when the token is of the other kind."""
    bearer_token(authorization)  # a malformed header is answered without the database
    with engine.connect() as conn:
        return require_in(conn, authorization, kind)


def require_in(conn: Connection, authorization: Optional[str], kind: str) -> Principal:
    """require() on a connection the request goes on using: the reads that must be fast check
    the token in their own transaction instead of checking out a second connection (each
    checkout is a round trip more: the pool pings the server)."""
    principal = authenticate(conn, bearer_token(authorization))
    if principal.kind != kind:
        raise ApiError(403, "wrong_token_kind",
                       f"this endpoint needs a {kind} token, not a {principal.kind} token")
    return principal
