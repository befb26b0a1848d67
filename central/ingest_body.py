"""Turning an ingest request body into a JSON value, safely.

Why this is hand-rolled instead of FastAPI's body parsing:
* the size limits must hold before anything is buffered (Content-Length, then a counted stream),
  and again after gzip decompression, which streams with an output cap so a gzip bomb never
  expands in memory beyond the limit plus one chunk;
* numbers must never pass through binary floating point: every JSON number comes back as `Num`,
  a str subclass holding the number's exact text, so the canonical-form check sees what was sent;
* NaN/Infinity (which Python's json accepts) and invalid UTF-8 are refused.
"""

from __future__ import annotations

import json
import zlib
from typing import Any, AsyncIterator

from central.errors import ApiError

_CHUNK = 64 * 1024


class Num(str):
    """The exact text of a JSON number (int or float syntax), e.g. Num('10172.887')."""

    __slots__ = ()


class IntNum(Num):
    """A JSON number written in integer syntax (`-?(0|[1-9][0-9]*)`, guaranteed by the parser)."""

    __slots__ = ()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_float=Num, parse_int=IntNum, parse_constant=_reject_constant)


def too_large(what: str, limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"{what} exceeds the limit of {limit} bytes",
                    limit=limit)


async def read_limited(stream: AsyncIterator[bytes], content_length: str | None,
                       limit: int) -> bytes:
    """The body as sent (possibly gzip), refusing more than `limit` bytes without buffering them."""
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise ApiError(400, "bad_request", "Content-Length is not an integer") from None
        if declared > limit:
            raise too_large("request body", limit)
    parts: list[bytes] = []
    total = 0
    async for chunk in stream:
        total += len(chunk)
        if total > limit:
            raise too_large("request body", limit)
        parts.append(chunk)
    return b"".join(parts)


def gunzip_limited(data: bytes, limit: int) -> bytes:
    """Decompress one gzip member, streaming, stopping as soon as the output passes `limit`."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out: list[bytes] = []
    total = 0
    pending = data
    try:
        while pending:
            piece = inflater.decompress(pending, _CHUNK)
            total += len(piece)
            if total > limit:
                raise too_large("decompressed request body", limit)
            out.append(piece)
            pending = inflater.unconsumed_tail
            if inflater.eof:
                break
        if not inflater.eof:
            raise ApiError(400, "bad_gzip", "gzip stream is truncated")
        if inflater.unused_data:
            raise ApiError(400, "bad_gzip", "data after the end of the gzip stream")
    except zlib.error as exc:
        raise ApiError(400, "bad_gzip", f"request body is not valid gzip: {exc}") from None
    return b"".join(out)


def decode_body(raw: bytes, content_encoding: str | None, decompressed_limit: int) -> Any:
    """Bytes as sent -> JSON value (numbers as Num). Raises ApiError 400/413."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "gzip":
        raw = gunzip_limited(raw, decompressed_limit)
    elif encoding != "identity":
        raise ApiError(400, "unsupported_content_encoding",
                       f"Content-Encoding {encoding[:40]!r} is not supported (use gzip or none)")
    elif len(raw) > decompressed_limit:
        raise too_large("request body", decompressed_limit)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_utf8", f"request body is not valid UTF-8: {exc}") from None
    try:
        return _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {str(exc)[:200]}") from None
