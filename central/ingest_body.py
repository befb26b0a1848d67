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

import codecs
import io
import json
import re
import zlib
from typing import Any, AsyncIterator, Optional

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
    """Decompress one gzip member, streaming, stopping as soon as the output passes `limit`.

    The pieces go into one BytesIO, whose getvalue() hands over its buffer: the output exists
    once, not also as a list of pieces joined into a copy."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out = io.BytesIO()
    total = 0
    pending = data
    try:
        while pending:
            piece = inflater.decompress(pending, _CHUNK)
            total += len(piece)
            if total > limit:
                raise too_large("decompressed request body", limit)
            out.write(piece)
            del piece
            pending = inflater.unconsumed_tail
            if inflater.eof:
                break
        if not inflater.eof:
            raise ApiError(400, "bad_gzip", "gzip stream is truncated")
        if inflater.unused_data:
            raise ApiError(400, "bad_gzip", "data after the end of the gzip stream")
    except zlib.error as exc:
        raise ApiError(400, "bad_gzip", f"request body is not valid gzip: {exc}") from None
    return out.getvalue()


def decode_body(raw: bytes, content_encoding: str | None, decompressed_limit: int,
                bounded: Optional[tuple[int, int]] = None) -> Any:
    """Bytes as sent -> JSON value (numbers as Num). Raises ApiError 400/413.

    With `bounded` = (max_records, max_payload_bytes) the body is an ingest envelope, and one
    whose full parse would cost more memory than PARSE_BUDGET allows is read by
    central.ingest_json instead, which builds only what the envelope's checks look at."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "gzip":
        raw = gunzip_limited(raw, decompressed_limit)
    elif encoding != "identity":
        raise ApiError(400, "unsupported_content_encoding",
                       f"Content-Encoding {encoding[:40]!r} is not supported (use gzip or none)")
    elif len(raw) > decompressed_limit:
        raise too_large("request body", decompressed_limit)
    if bounded is not None and not full_parse_is_cheap(raw):
        from central.ingest_json import read_envelope  # imports this module's Num types
        check_utf8(raw)
        return read_envelope(raw, *bounded)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_utf8", f"request body is not valid UTF-8: {exc}") from None
    try:
        return _DECODER.decode(text)
    except RecursionError:
        if bounded is None:
            raise ApiError(400, "invalid_json", "request body is nested too deeply") from None
    except ValueError as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {str(exc)[:200]}") from None
    # Deeper than Python's decoder goes: the bounded reader skips deep values inside records
    # (each such record rejected alone) and refuses nesting deeper than it allows.
    del text
    from central.ingest_json import read_envelope
    return read_envelope(raw, *bounded)


# What a full parse by Python's json module costs, at most: the text (a str as wide as its widest
# character) and the strings built from it, each up to `width` bytes per byte of body, plus per
# JSON value up to ~120 bytes (measured: ~115 for each number of `[0,0,...]`, ~55 for an
# object's member); values are counted from above by the commas, colons and opening brackets.
# Cheap enough means within 3x the body + 16 MiB, which with the body itself (and the bytes as
# sent) keeps the request within 4x + 20 MiB. Agents' batches (a few values per 100 bytes) are
# cheap up to about a megabyte of JSON values; larger ones and hostile ones take the bounded
# reader.
BYTES_PER_VALUE = 120
PARSE_BUDGET_FIXED = 16 * 1024 * 1024
_NON_BMP_LEAD = re.compile(rb"[\xf0-\xf4]")


def full_parse_is_cheap(data: bytes) -> bool:
    size = len(data)
    values = data.count(b",") + data.count(b":") + data.count(b"[") + data.count(b"{") + 1
    width = 1 if data.isascii() else 4 if _NON_BMP_LEAD.search(data) else 2
    return 2 * width * size + BYTES_PER_VALUE * values <= 3 * size + PARSE_BUDGET_FIXED


def check_utf8(data: bytes, chunk: int = 1 << 20) -> None:
    """400 invalid_utf8 unless the bytes are UTF-8, decoded a megabyte at a time (discarded)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for start in range(0, len(data), chunk):
            decoder.decode(data[start:start + chunk])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_utf8", f"request body is not valid UTF-8: {exc}") from None
