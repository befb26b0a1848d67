"""Validation of an ingest batch: the envelope (whole-request errors) and each record.

Two levels, as the contract requires: a bad envelope raises ApiError (400/403/422) and the batch
changes nothing; a bad record becomes a `rejected` outcome with a reason code while the rest of
the batch proceeds. Every check a client could get wrong is here, before any SQL runs, so the
database only ever sees values it can store (no NUL in text, no lone surrogates, sizes bounded,
exact decimals) and a malformed record can never turn into a 500 that blocks its batch.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

from central import PROTOCOL_VERSION
from central.canonical import (CANONICAL_UNITS, FLAGS, NULL_DELTA_FLAGS, NotCanonical,
                               check_decimal, check_timestamp, event_id, is_event_id_syntax,
                               parse_timestamp)
from central.errors import ApiError
from central.ingest_body import IntNum, Num
from central.settings import Settings

_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_BAD_CHARS_RE = re.compile("[\x00\ud800-\udfff]")  # PostgreSQL text cannot hold NUL; lone surrogates are not UTF-8
_SURROGATE_ESCAPE_RE = re.compile(r"\\u[dD][89a-fA-F]")
MAX_SEQ = 2**63 - 1
MAX_REVISION = 2**31 - 1
# Numbers in a payload PostgreSQL's jsonb could not hold; such payloads are kept as bytes only.
_JSONB_MAX_NUMBER_CHARS = 1000


class RecordError(ValueError):
    """One record is invalid. `.reason` goes into the outcome; `.detail` explains it."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class RawRecord:
    index: int
    seq: int
    topic: str
    payload: bytes
    payload_json: Optional[str]  # the payload text when it is JSON that jsonb can store
    qos: int
    retained: bool
    dup: bool
    received_at: str  # canonical text; PostgreSQL parses it
    decode_error: Optional[str]


@dataclass
class MeasurementRecord:
    index: int
    event_id: str
    device_id: str
    metric_type: str
    timestamp: str  # canonical text; PostgreSQL parses it
    value: decimal.Decimal
    unit: str
    delta: Optional[decimal.Decimal]
    flags: list[str]
    revision: int
    raw_buffer_id: str
    raw_seq: int
    value_text: str = ""
    delta_text: Optional[str] = None


@dataclass
class Backlog:
    records: int
    oldest_received_at: Optional[dt.datetime]


@dataclass
class Batch:
    """A validated envelope plus its records; `rejected_*` hold (index, echo, reason, detail)."""

    gateway_id: str
    buffer_id: str
    sent_at: dt.datetime
    backlog: Optional[Backlog]
    raw_events: list[RawRecord] = field(default_factory=list)
    measurements: list[MeasurementRecord] = field(default_factory=list)
    rejected_raw: list[tuple[int, Any, str, str]] = field(default_factory=list)
    rejected_measurements: list[tuple[int, Any, Any, str, str]] = field(default_factory=list)
    raw_count: int = 0
    measurement_count: int = 0


# ---------------------------------------------------------------------------------------------
# field helpers (each raises RecordError; envelope code turns that into a 422)
# ---------------------------------------------------------------------------------------------

def _get(obj: dict, name: str) -> Any:
    if name not in obj:
        raise RecordError("missing_field", f"{name} is required")
    return obj[name]


def _string(obj: dict, name: str, max_chars: int, *, allow_empty: bool = False) -> str:
    value = _get(obj, name)
    if not isinstance(value, str) or isinstance(value, Num):
        raise RecordError("wrong_type", f"{name} must be a string")
    if not value and not allow_empty:
        raise RecordError("invalid_string", f"{name} must not be empty")
    if len(value) > max_chars:
        raise RecordError("too_long", f"{name} is longer than {max_chars} characters")
    if _BAD_CHARS_RE.search(value):
        raise RecordError("invalid_string", f"{name} contains NUL or an unpaired UTF-16 surrogate")
    return value


def _integer(obj: dict, name: str, low: int, high: int) -> int:
    value = _get(obj, name)
    if not isinstance(value, IntNum):  # 1.0, 1e0, "1", true are not integers
        raise RecordError("wrong_type", f"{name} must be a JSON integer")
    if len(value) > 20 or not low <= int(value) <= high:
        raise RecordError("out_of_range", f"{name} must be between {low} and {high}")
    return int(value)


def _boolean(obj: dict, name: str) -> bool:
    value = _get(obj, name)
    if value is not True and value is not False:
        raise RecordError("wrong_type", f"{name} must be true or false")
    return value


def _timestamp(obj: dict, name: str) -> dt.datetime:
    value = _get(obj, name)
    if not isinstance(value, str) or isinstance(value, Num):
        raise RecordError("wrong_type", f"{name} must be a string")
    try:
        return parse_timestamp(value, name)
    except NotCanonical as exc:
        raise RecordError(exc.reason, exc.detail) from None


def _timestamp_text(obj: dict, name: str) -> str:
    """Like _timestamp, for record fields the database parses itself (no datetime built)."""
    value = _get(obj, name)
    if not isinstance(value, str) or isinstance(value, Num):
        raise RecordError("wrong_type", f"{name} must be a string")
    try:
        return check_timestamp(value, name)
    except NotCanonical as exc:
        raise RecordError(exc.reason, exc.detail) from None


_UUIDS: dict[str, str] = {}  # text -> normalized; a batch names the same buffer over and over


def _uuid(value: Any, name: str) -> str:
    if not isinstance(value, str) or isinstance(value, Num):
        raise RecordError("wrong_type", f"{name} must be a string")
    known = _UUIDS.get(value)
    if known is not None:
        return known
    if not _UUID_RE.fullmatch(value):
        raise RecordError("invalid_uuid", f"{name} must be a UUID (8-4-4-4-12 hex)")
    if len(_UUIDS) > 10_000:
        _UUIDS.clear()
    known = _UUIDS[value] = str(uuid.UUID(value))
    return known


def _decimal(value: Any, name: str) -> decimal.Decimal:
    if not isinstance(value, Num):
        raise RecordError("wrong_type", f"{name} must be a JSON number")
    try:
        return check_decimal(value, name)
    except NotCanonical as exc:
        raise RecordError(exc.reason, exc.detail) from None


# ---------------------------------------------------------------------------------------------
# envelope
# ---------------------------------------------------------------------------------------------

def check_protocol_version(body: Any) -> None:
    """400 unless the body is an object with protocol_version "1" (checked before anything else)."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    version = body.get("protocol_version")
    if version != PROTOCOL_VERSION or isinstance(version, Num):
        raise ApiError(400, "unsupported_protocol_version",
                       f'protocol_version must be the string "{PROTOCOL_VERSION}"')


def parse_envelope(body: dict, settings: Settings, token_gateway: str) -> Batch:
    """Envelope -> Batch with every record validated (bad ones listed as rejected).

    Raises ApiError 403/413/422 for whole-request errors.
    """
    try:
        gateway_id = _string(body, "gateway_id", settings.max_gateway_id_chars)
    except RecordError as exc:
        raise ApiError(422, "invalid_envelope", f"gateway_id: {exc.detail}") from None
    if gateway_id != token_gateway:
        raise ApiError(403, "gateway_mismatch",
                       "the token does not belong to the gateway_id of this batch")
    try:
        buffer_id = _uuid(_get(body, "buffer_id"), "buffer_id")
        sent_at = _timestamp(body, "sent_at")
        backlog = None
        if body.get("backlog") is not None:
            raw_backlog = body["backlog"]
            if not isinstance(raw_backlog, dict):
                raise RecordError("wrong_type", "backlog must be an object or null")
            records = _integer(raw_backlog, "records", 0, MAX_SEQ)
            oldest = None
            if raw_backlog.get("oldest_received_at") is not None:
                oldest = _timestamp(raw_backlog, "oldest_received_at")
            backlog = Backlog(records, oldest)
        arrays = {}
        for name in ("raw_events", "measurements"):
            value = _get(body, name)
            if not isinstance(value, list):
                raise RecordError("wrong_type", f"{name} must be an array")
            arrays[name] = value
    except RecordError as exc:
        raise ApiError(422, "invalid_envelope", exc.detail) from None
    for name, value in arrays.items():
        if len(value) > settings.max_records:
            raise ApiError(413, "too_many_records",
                           f"{name} has {len(value)} records; the limit is {settings.max_records}",
                           limit=settings.max_records)
    batch = Batch(gateway_id=gateway_id, buffer_id=buffer_id, sent_at=sent_at, backlog=backlog)
    batch.raw_count = len(arrays["raw_events"])
    batch.measurement_count = len(arrays["measurements"])
    _validate_raw_events(batch, arrays["raw_events"], settings)
    _validate_measurements(batch, arrays["measurements"], settings)
    return batch


# ---------------------------------------------------------------------------------------------
# records
# ---------------------------------------------------------------------------------------------

def _jsonb_number(text: str) -> None:
    """Refuse numbers PostgreSQL's numeric could not hold (the value itself is not needed)."""
    if len(text) > _JSONB_MAX_NUMBER_CHARS:
        raise ValueError("number too long for jsonb")
    mantissa, e, exponent = text.lower().partition("e")
    if e and abs(int(exponent)) > 10000:
        raise ValueError("exponent too large for jsonb")


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def jsonb_text(payload: bytes) -> Optional[str]:
    """The payload as text for a jsonb column, or None when it is not JSON jsonb accepts.

    Stricter than jsonb itself so that a payload can never make the batch's INSERT fail:
    valid UTF-8, strict JSON, no NUL escapes or unpaired surrogates, no absurd numbers.
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\x00" in text or "\\u0000" in text:
        return None

    try:
        value = json.loads(text, parse_float=_jsonb_number, parse_int=_jsonb_number,
                           parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None
    if _SURROGATE_ESCAPE_RE.search(text) and _has_surrogates(value):
        return None
    return text


def _has_surrogates(value: Any) -> bool:
    if isinstance(value, str):
        return _BAD_CHARS_RE.search(value) is not None
    if isinstance(value, list):
        return any(_has_surrogates(v) for v in value)
    if isinstance(value, dict):
        return any(_has_surrogates(k) or _has_surrogates(v) for k, v in value.items())
    return False


def _raw_record(index: int, obj: Any, settings: Settings) -> RawRecord:
    if not isinstance(obj, dict):
        raise RecordError("wrong_type", "a raw event must be a JSON object")
    seq = _integer(obj, "seq", 1, MAX_SEQ)
    topic = _string(obj, "topic", settings.max_topic_chars)
    payload_text = _get(obj, "payload")
    if not isinstance(payload_text, str) or isinstance(payload_text, Num):
        raise RecordError("wrong_type", "payload must be a base64 string")
    if len(payload_text) > (settings.max_payload_bytes + 2) // 3 * 4:
        raise RecordError("too_long", f"payload is larger than {settings.max_payload_bytes} bytes")
    try:
        payload = base64.b64decode(payload_text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise RecordError("invalid_base64",
                          "payload is not standard base64 with padding (RFC 4648 section 4)") from None
    qos = _integer(obj, "qos", 0, 2)
    retained = _boolean(obj, "retained")
    dup = _boolean(obj, "dup")
    received_at = _timestamp_text(obj, "received_at")
    decode_error = obj.get("decode_error")
    if decode_error is not None:
        decode_error = _string(obj, "decode_error", settings.max_decode_error_chars,
                               allow_empty=True)
    return RawRecord(index, seq, topic, payload, jsonb_text(payload), qos, retained, dup,
                     received_at, decode_error)


def _validate_raw_events(batch: Batch, items: list, settings: Settings) -> None:
    for index, obj in enumerate(items):
        try:
            batch.raw_events.append(_raw_record(index, obj, settings))
        except RecordError as exc:
            echo = obj.get("seq") if isinstance(obj, dict) else None
            echo = int(echo) if isinstance(echo, IntNum) and len(echo) < 21 else None
            batch.rejected_raw.append((index, echo, exc.reason, exc.detail))


def _measurement(index: int, obj: Any, settings: Settings) -> MeasurementRecord:
    if not isinstance(obj, dict):
        raise RecordError("wrong_type", "a measurement must be a JSON object")
    claimed = _get(obj, "event_id")
    if not isinstance(claimed, str) or isinstance(claimed, Num):
        raise RecordError("wrong_type", "event_id must be a string")
    if not is_event_id_syntax(claimed):
        raise RecordError("invalid_event_id", "event_id must be 64 lowercase hex characters")
    device_id = _string(obj, "device_id", settings.max_device_id_chars)
    metric_type = _string(obj, "metric_type", 64)
    if metric_type not in CANONICAL_UNITS:
        raise RecordError("unknown_metric_type",
                          f"metric_type must be one of {sorted(CANONICAL_UNITS)}")
    timestamp = _timestamp_text(obj, "timestamp")
    value_text = _get(obj, "value")
    value = _decimal(value_text, "value")
    unit = _string(obj, "unit", 16)
    if unit != CANONICAL_UNITS[metric_type]:
        raise RecordError("wrong_unit",
                          f"unit must be the canonical unit {CANONICAL_UNITS[metric_type]!r} "
                          f"for {metric_type}")
    flags = _get(obj, "flags")
    if not isinstance(flags, list) or not all(isinstance(f, str) and not isinstance(f, Num)
                                              for f in flags):
        raise RecordError("wrong_type", "flags must be an array of strings")
    unknown = [f for f in flags if f not in FLAGS]
    if unknown:
        raise RecordError("unknown_flag", f"unknown flag {unknown[0][:64]!r}")
    if any(a >= b for a, b in zip(flags, flags[1:])):
        raise RecordError("flags_not_sorted", "flags must be sorted and without duplicates")
    delta_text = _get(obj, "delta")
    delta = None if delta_text is None else _decimal(delta_text, "delta")
    if delta is not None and NULL_DELTA_FLAGS.intersection(flags):
        raise RecordError("delta_not_null",
                          "delta must be null with first_reading, counter_reset or beyond_retention")
    revision = _integer(obj, "revision", 1, MAX_REVISION)
    raw = _get(obj, "raw")
    if not isinstance(raw, dict):
        raise RecordError("wrong_type", "raw must be an object {buffer_id, seq}")
    raw_buffer_id = _uuid(_get(raw, "buffer_id"), "raw.buffer_id")
    raw_seq = _integer(raw, "seq", 1, MAX_SEQ)
    expected = event_id(device_id, timestamp, metric_type, value_text)
    if expected != claimed:
        raise RecordError("event_id_mismatch",
                          f"event_id does not match the canonical fields (expected {expected})")
    return MeasurementRecord(index, claimed, device_id, metric_type, timestamp, value, unit,
                             delta, list(flags), revision, raw_buffer_id, raw_seq,
                             str(value_text),
                             None if delta_text is None else str(delta_text))


def _validate_measurements(batch: Batch, items: list, settings: Settings) -> None:
    for index, obj in enumerate(items):
        try:
            batch.measurements.append(_measurement(index, obj, settings))
        except RecordError as exc:
            eid = obj.get("event_id") if isinstance(obj, dict) else None
            eid = eid if isinstance(eid, str) and is_event_id_syntax(eid) else None
            rev = obj.get("revision") if isinstance(obj, dict) else None
            rev = int(rev) if isinstance(rev, IntNum) and len(rev) < 12 else None
            batch.rejected_measurements.append((index, eid, rev, exc.reason, exc.detail))
