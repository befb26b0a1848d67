"""Creating gateways and viewers and managing their tokens (used by the CLI and tests).

Each function runs in one transaction and returns the new plaintext token, which the caller shows
once; only its hash is stored.
"""

from __future__ import annotations

import re
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from central.auth import hash_token, new_token, token_prefix

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")


class AccountError(ValueError):
    """A CLI-level error (unknown name, duplicate, bad name)."""


def _table(kind: str) -> str:
    if kind not in ("gateway", "viewer"):
        raise AccountError(f"kind must be gateway or viewer, not {kind!r}")
    return "gateways" if kind == "gateway" else "viewers"


def _owner_column(kind: str) -> str:
    return "gateway_id" if kind == "gateway" else "viewer_id"


def _insert_token(conn, kind: str, owner_pk: int) -> str:
    token = new_token(kind)
    conn.execute(sa.text(f"INSERT INTO api_tokens (token_hash, token_prefix, {_owner_column(kind)}) "
                         "VALUES (:h, :p, :o)"),
                 {"h": hash_token(token), "p": token_prefix(token), "o": owner_pk})
    return token


def _owner_pk(conn, kind: str, name: str, *, live: bool = True) -> int:
    row = conn.execute(sa.text(f"SELECT id, revoked_at FROM {_table(kind)} WHERE name = :n"),
                       {"n": name}).first()
    if row is None:
        raise AccountError(f"no {kind} named {name!r}")
    if live and row.revoked_at is not None:
        raise AccountError(f"{kind} {name!r} is revoked")
    return row.id


def create(engine: Engine, kind: str, name: str) -> str:
    """New gateway (name = the protocol's gateway_id) or viewer, with its first token."""
    if not _NAME_RE.fullmatch(name):
        raise AccountError("name must be 1-128 characters: letters, digits, . _ : @ - "
                           "(starting with a letter or digit)")
    with engine.begin() as conn:
        exists = conn.execute(sa.text(f"SELECT 1 FROM {_table(kind)} WHERE name = :n"),
                              {"n": name}).first()
        if exists:
            raise AccountError(f"{kind} {name!r} already exists")
        pk = conn.execute(sa.text(f"INSERT INTO {_table(kind)} (name) VALUES (:n) RETURNING id"),
                          {"n": name}).scalar_one()
        return _insert_token(conn, kind, pk)


def rotate(engine: Engine, kind: str, name: str, keep_old: bool = False) -> str:
    """A new token; the old ones are revoked in the same transaction unless keep_old."""
    with engine.begin() as conn:
        pk = _owner_pk(conn, kind, name)
        if not keep_old:
            conn.execute(sa.text(f"UPDATE api_tokens SET revoked_at = now() "
                                 f"WHERE {_owner_column(kind)} = :o AND revoked_at IS NULL"),
                         {"o": pk})
        return _insert_token(conn, kind, pk)


def revoke(engine: Engine, kind: str, name: str, old_tokens_only: bool = False) -> int:
    """Revoke the owner and all its tokens, or (old_tokens_only) every token but the newest.

    Returns the number of tokens revoked. A revoked owner's data stays; it can no longer
    authenticate.
    """
    with engine.begin() as conn:
        pk = _owner_pk(conn, kind, name, live=False)
        col = _owner_column(kind)
        if old_tokens_only:
            result = conn.execute(sa.text(
                f"UPDATE api_tokens SET revoked_at = now() WHERE {col} = :o AND revoked_at IS NULL "
                f"AND id <> (SELECT max(id) FROM api_tokens WHERE {col} = :o AND revoked_at IS NULL)"),
                {"o": pk})
            return result.rowcount
        conn.execute(sa.text(f"UPDATE {_table(kind)} SET revoked_at = coalesce(revoked_at, now()) "
                             "WHERE id = :o"), {"o": pk})
        result = conn.execute(sa.text(f"UPDATE api_tokens SET revoked_at = now() "
                                      f"WHERE {col} = :o AND revoked_at IS NULL"), {"o": pk})
        return result.rowcount


def listing(engine: Engine, kind: str) -> list[dict]:
    """Names, state and live token prefixes (never hashes)."""
    col = _owner_column(kind)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            f"SELECT o.name, o.created_at, o.revoked_at, "
            f"array_remove(array_agg(t.token_prefix ORDER BY t.id) "
            f"FILTER (WHERE t.revoked_at IS NULL), NULL) AS live_tokens "
            f"FROM {_table(kind)} o LEFT JOIN api_tokens t ON t.{col} = o.id "
            f"GROUP BY o.id ORDER BY o.name")).mappings().all()
    return [dict(r) for r in rows]


def optional_str(value: Optional[str]) -> str:
    return "-" if value is None else str(value)
