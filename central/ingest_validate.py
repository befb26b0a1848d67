"""Validation of an ingest batch: the envelope (whole-request errors) and each record.
(Over 600 lines: every record rule, its whole-batch fast path and the payload's jsonb check
belong side by side, and a test compares the two paths.)

(Over 600 lines: the record rules and the whole-batch fast path that must agree with them belong
side by side.)

Two levels, as the contract requires: a bad envelope raises ApiError (400/403/422) and the batch
changes nothing; a bad record becomes a `rejected` outcome with a reason code while the rest of
the batch proceeds. Every check a client could get wrong is here, before any SQL runs, so the
database only ever sees values it can store (no NUL in text, no lone surrogates, sizes bounded,
exact decimals) and a malformed record can never turn into a 500 that blocks its batch.

This runs for every record of every batch (two per event), so each check is written to cost
little in the common case without checking less: a JSON value's exact type instead of two
isinstance calls (the decoder yields exactly str for strings, Num/IntNum for numbers), ASCII
text searched for NUL with one `in` (no surrogate is ASCII), canonical timestamps proven by one
regex with the field ranges in it, values kept as their checked text (PostgreSQL parses the
NUMERIC), UUIDs and device/topic strings remembered once seen valid. The first failing check
still decides the reason, in the order the contract's examples and the tests expect.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

from central import PROTOCOL_VERSIONS
from central.canonical import (CANONICAL_UNITS, DECIMAL_PATTERN, FLAGS, FLAGS_BY_VERSION,
                               FLAGS_V1, MAX_SIGNIFICANT_DIGITS, NULL_DELTA_FLAGS,
                               TIMESTAMP_PATTERN, NotCanonical,
                               check_decimal_text, check_timestamp, event_id, is_event_id_syntax,
                               parse_timestamp, real_date)
from central.errors import ApiError
from central.ingest_body import IntNum, Num
from central.settings import Settings

_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_BAD_CHARS_RE = re.compile("[\x00\ud800-\udfff]")  # PostgreSQL text cannot hold NUL; lone surrogates are not UTF-8
_SURROGATE_ESCAPE_RE = re.compile(r"\\u[dD][89a-fA-F]")
log = logging.getLogger("central.ingest")
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


@dataclass(slots=True)
class RawRecord:
    index: int
    seq: int
    topic: str
    payload_base64: str  # as sent (strictly validated), for the database to decode
    payload_is_json: bool  # UTF-8 JSON that jsonb accepts: the database keeps a parsed copy
    qos: int
    retained: bool
    dup: bool
    received_at: str  # canonical text; PostgreSQL parses it
    decode_error: Optional[str]

    @property
    def payload(self) -> bytes:
        """The payload's bytes, decoded again on demand: a batch keeps only the base64 text (a
        batch of large payloads held them twice otherwise)."""
        return base64.b64decode(self.payload_base64)


@dataclass(slots=True)
class MeasurementRecord:
    index: int
    event_id: str
    device_id: str
    metric_type: str
    timestamp: str  # canonical text; PostgreSQL parses it
    value_text: str  # canonical decimal text; PostgreSQL parses it into NUMERIC
    unit: str
    delta_text: Optional[str]
    flags: list[str]
    revision: int
    raw_buffer_id: str
    raw_seq: int
    delta_from: Optional[str] = None  # protocol "2": canonical text of the delta's start, or None


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
    protocol_version: str = "1"
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
    try:
        return obj[name]
    except KeyError:
        raise RecordError("missing_field", f"{name} is required") from None


def _missing(exc: KeyError) -> RecordError:
    """The record functions read required fields as obj[name], in the order they check them,
    inside one try: the first absent field raises KeyError(name), reported as missing_field."""
    return RecordError("missing_field", f"{exc.args[0]} is required")


def _string(obj: dict, name: str, max_chars: int, *, allow_empty: bool = False) -> str:
    return _string_value(_get(obj, name), name, max_chars, allow_empty)


def _string_value(value: Any, name: str, max_chars: int, allow_empty: bool = False) -> str:
    if type(value) is not str:  # a JSON string; Num (a number's text) is a str subclass
        raise RecordError("wrong_type", f"{name} must be a string")
    if not value and not allow_empty:
        raise RecordError("invalid_string", f"{name} must not be empty")
    if len(value) > max_chars:
        raise RecordError("too_long", f"{name} is longer than {max_chars} characters")
    if ("\x00" in value) if value.isascii() else (_BAD_CHARS_RE.search(value) is not None):
        raise RecordError("invalid_string", f"{name} contains NUL or an unpaired UTF-16 surrogate")
    return value


class _Seen:
    """Strings of one batch already found valid for a field (a batch repeats device ids and
    topics); bounded, since a batch may also be all different ones."""

    __slots__ = ("values",)
    LIMIT = 4096

    def __init__(self) -> None:
        self.values: set[str] = set()

    def string(self, value: Any, name: str, max_chars: int) -> str:
        if type(value) is str and value in self.values:
            return value
        value = _string_value(value, name, max_chars)
        if len(self.values) < self.LIMIT:
            self.values.add(value)
        return value


def _integer(obj: dict, name: str, low: int, high: int) -> int:
    return _integer_value(_get(obj, name), name, low, high)


def _integer_value(value: Any, name: str, low: int, high: int) -> int:
    if type(value) is not IntNum:  # 1.0, 1e0, "1", true are not integers
        raise RecordError("wrong_type", f"{name} must be a JSON integer")
    if len(value) <= 20:
        number = int(value)
        if low <= number <= high:
            return number
    raise RecordError("out_of_range", f"{name} must be between {low} and {high}")


def _boolean_value(value: Any, name: str) -> bool:
    if value is not True and value is not False:
        raise RecordError("wrong_type", f"{name} must be true or false")
    return value


def _timestamp(obj: dict, name: str) -> dt.datetime:
    value = _get(obj, name)
    if type(value) is not str:
        raise RecordError("wrong_type", f"{name} must be a string")
    try:
        return parse_timestamp(value, name)
    except NotCanonical as exc:
        raise RecordError(exc.reason, exc.detail) from None


def _timestamp_text(value: Any, name: str) -> str:
    """Like _timestamp, for record fields the database parses itself (no datetime built)."""
    if type(value) is not str:
        raise RecordError("wrong_type", f"{name} must be a string")
    try:
        return check_timestamp(value, name)
    except NotCanonical as exc:
        raise RecordError(exc.reason, exc.detail) from None


_UUIDS: dict[str, str] = {}  # text -> normalized; a batch names the same buffer over and over


def _uuid(value: Any, name: str) -> str:
    if type(value) is not str:
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


def _decimal_text(value: Any, name: str) -> str:
    if not isinstance(value, Num):
        raise RecordError("wrong_type", f"{name} must be a JSON number")
    try:
        return check_decimal_text(value, name)
    except NotCanonical as exc:
        raise RecordError(exc.reason, exc.detail) from None


# ---------------------------------------------------------------------------------------------
# envelope
# ---------------------------------------------------------------------------------------------

def check_protocol_version(body: Any) -> str:
    """The request's protocol_version ("1" or "2"); 400 unless the body is an object with one of
    them (checked before anything else)."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    version = body.get("protocol_version")
    if version not in PROTOCOL_VERSIONS or type(version) is not str:
        raise ApiError(400, "unsupported_protocol_version",
                       "protocol_version must be one of the strings "
                       + " or ".join(f'"{v}"' for v in PROTOCOL_VERSIONS))
    return version


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
        if len(value) > settings.max_records or getattr(value, "over", False):
            count = "more than" if getattr(value, "over", False) else len(value)
            raise ApiError(413, "too_many_records",
                           f"{name} has {count} records; the limit is {settings.max_records}",
                           limit=settings.max_records)
    batch = Batch(gateway_id=gateway_id, buffer_id=buffer_id, sent_at=sent_at, backlog=backlog,
                  protocol_version=check_protocol_version(body))
    batch.raw_count = len(arrays["raw_events"])
    batch.measurement_count = len(arrays["measurements"])
    _validate_raw_events(batch, arrays["raw_events"], settings)
    _validate_measurements(batch, arrays["measurements"], settings, batch.protocol_version)
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


# One decoder for every payload: json.loads with hooks would build a new one (and its scanner)
# per call, which cost as much as parsing a small payload.
_PAYLOAD_DECODER = json.JSONDecoder(parse_float=_jsonb_number, parse_int=_jsonb_number,
                                    parse_constant=_no_constant)


def jsonb_text(payload: bytes) -> Optional[str]:
    """The payload as text for a jsonb column, or None when it is not JSON jsonb accepts.

    Stricter than jsonb itself so that a payload can never make the batch's INSERT fail:
    valid UTF-8, strict JSON nested at most MAX_PAYLOAD_DEPTH deep, no NUL escapes or unpaired
    surrogates, no absurd numbers. Nothing here recurses in Python: the depth is counted over
    the brackets and the surrogates are found in the text, so no payload can raise
    RecursionError (one did, deep in a request, and answered 500 for its whole batch).
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\x00" in text or "\\u0000" in text:
        return None
    try:
        if json_deeper_than(text, MAX_PAYLOAD_DEPTH):
            return None
        _PAYLOAD_DECODER.decode(text)
    except (ValueError, RecursionError):
        return None
    except Exception:  # noqa: BLE001 - whatever else: not JSON we dare store as jsonb
        return None
    if has_lone_surrogate_escape(text):
        return None
    return text


# A payload's JSON deeper than this is kept as bytes only (no jsonb copy): the decoders (Python's
# and PostgreSQL's) recurse per level, and no meter nests this deep. Python's decoder counts its
# levels against the recursion limit (1,000 frames): 900 leaves room for the request's own
# frames, and should it not, its RecursionError means "bytes only" too.
MAX_PAYLOAD_DEPTH = 900
_JSON_STRING_RE = re.compile(r'"(?>[^"\\]*)(?:(?>\\.[^"\\]*))*"', re.S)  # atomic: no
# backtracking entry kept per escape
_NOT_BRACKETS_RE = re.compile(r"[^\[\]{}]+")
_SURROGATE_PAIR_RE = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}")


def json_deeper_than(text: str, limit: int) -> bool:
    """Do arrays and objects in JSON text nest deeper than `limit` (strings skipped)? Counted
    over the brackets; for text that is not JSON the answer means little (the decoder refuses
    such text anyway)."""
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _NOT_BRACKETS_RE.sub("", _JSON_STRING_RE.sub("", text))
    depth = deepest = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest > limit


def has_lone_surrogate_escape(text: str) -> bool:
    """Does JSON text hold a \\uD800-\\uDFFF escape that is not half of a surrogate pair?

    Escaped backslashes go first (so `\\\\ud800` is text, not an escape), then the pairs; any
    surrogate escape left is unpaired. Regular expressions only: no parse tree, no recursion."""
    if _SURROGATE_ESCAPE_RE.search(text) is None:
        return False
    text = _SURROGATE_PAIR_RE.sub("", text.replace("\\\\", ""))
    return _SURROGATE_ESCAPE_RE.search(text) is not None


def _raw_record(index: int, obj: Any, settings: Settings, topics: _Seen) -> RawRecord:
    if type(obj) is not dict:
        raise RecordError("wrong_type", "a raw event must be a JSON object")
    try:
        seq = _integer_value(obj["seq"], "seq", 1, MAX_SEQ)
        topic = topics.string(obj["topic"], "topic", settings.max_topic_chars)
        payload_text = obj["payload"]
        if type(payload_text) is not str:
            raise RecordError("wrong_type", "payload must be a base64 string")
        if len(payload_text) > (settings.max_payload_bytes + 2) // 3 * 4:
            raise RecordError("too_long",
                              f"payload is larger than {settings.max_payload_bytes} bytes")
        try:
            payload = base64.b64decode(payload_text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise RecordError("invalid_base64", "payload is not standard base64 with padding "
                              "(RFC 4648 section 4)") from None
        if len(payload) > settings.max_payload_bytes:  # the text's length allows 2 bytes more
            raise RecordError("too_long",
                              f"payload is larger than {settings.max_payload_bytes} bytes")
        qos = _integer_value(obj["qos"], "qos", 0, 2)
        retained = _boolean_value(obj["retained"], "retained")
        dup = _boolean_value(obj["dup"], "dup")
        received_at = _timestamp_text(obj["received_at"], "received_at")
    except KeyError as exc:
        raise _missing(exc) from None
    decode_error = obj.get("decode_error")
    if decode_error is not None:
        decode_error = _string_value(decode_error, "decode_error",
                                     settings.max_decode_error_chars, allow_empty=True)
    return RawRecord(index, seq, topic, payload_text, jsonb_text(payload) is not None,
                     qos, retained, dup, received_at, decode_error)


def _validate_raw_events(batch: Batch, items: list, settings: Settings) -> None:
    valid = _unless_failed(_raw_events_if_all_valid, items, settings)
    if valid is not None:
        batch.raw_events = valid
        return
    topics = _Seen()
    append = batch.raw_events.append
    for index, obj in enumerate(items):
        try:
            append(_raw_record(index, obj, settings, topics))
        except Exception as exc:  # noqa: BLE001 - RecordError, or a per-record failure (below)
            reason, detail = _rejection(exc)
            echo = obj.get("seq") if isinstance(obj, dict) else None
            echo = int(echo) if type(echo) is IntNum and len(echo) < 21 else None
            batch.rejected_raw.append((index, echo, reason, detail))


# Why a broad catch per record: whatever a record holds, it must not turn into a 500 for its
# whole batch (the agent would resend that batch forever and nothing behind it would flow).
# A check that fails in a way nobody foresaw rejects that record alone, as `internal_error`
# with the exception named, and is logged with its traceback so it can be fixed.
INTERNAL_ERROR = "internal_error"


def _rejection(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, RecordError):
        return exc.reason, exc.detail
    log.exception("unexpected failure while checking one record (rejected as %s)",
                  INTERNAL_ERROR)
    return INTERNAL_ERROR, f"the central failed on this record: {type(exc).__name__}"


def _unless_failed(fast_path, items: list, settings: Settings, *more):
    """The whole-batch fast path, or None (record by record) should it fail unexpectedly."""
    try:
        return fast_path(items, settings, *more)
    except Exception:  # noqa: BLE001 - the record path gives each record its own outcome
        log.exception("whole-batch check failed; checking record by record")
        return None


# flags tuple -> known, sorted, unique; the value tells whether protocol "1" knows every flag of
# it. Only valid lists are kept (sorted subsets of FLAGS, so at most 2^20 of them).
_SORTED_FLAG_LISTS: dict[tuple, bool] = {}


def _flags(flags: Any, version: str = "1") -> list[str]:
    if type(flags) is not list:
        raise RecordError("wrong_type", "flags must be an array of strings")
    if not flags:
        return flags
    try:
        in_v1 = _SORTED_FLAG_LISTS.get(tuple(flags))
        if in_v1 or (in_v1 is not None and version != "1"):
            return flags  # equal to a list of flag names, so strings (no number reads "dst_gap")
    except TypeError:  # an unhashable element (object or array): refused just below
        pass
    if not all(type(f) is str for f in flags):
        raise RecordError("wrong_type", "flags must be an array of strings")
    known = FLAGS_BY_VERSION[version]
    unknown = [f for f in flags if f not in known]
    if unknown:
        raise RecordError("unknown_flag", f"unknown flag {unknown[0][:64]!r}"
                          + (" in protocol version 1 (it came with version 2)"
                             if unknown[0] in FLAGS else ""))
    if any(a >= b for a, b in zip(flags, flags[1:])):
        raise RecordError("flags_not_sorted", "flags must be sorted and without duplicates")
    _SORTED_FLAG_LISTS[tuple(flags)] = FLAGS_V1.issuperset(flags)
    return flags


def _delta_from(obj: dict, timestamp: str, delta_text: Optional[str]) -> Optional[str]:
    """Protocol "2": the optional start of the delta's interval, the timestamp of the reading the
    delta is measured from. Null when the delta is null; never after the reading itself."""
    value = obj.get("delta_from")
    if value is None:
        return None
    value = _timestamp_text(value, "delta_from")
    if delta_text is None:
        raise RecordError("delta_from_without_delta", "delta_from must be null when delta is null")
    if value > timestamp:  # canonical timestamps order as text
        raise RecordError("delta_from_after_timestamp",
                          "delta_from must not be later than the reading's timestamp")
    return value


def _measurement(index: int, obj: Any, settings: Settings, devices: _Seen,
                 version: str = "1") -> MeasurementRecord:
    if type(obj) is not dict:
        raise RecordError("wrong_type", "a measurement must be a JSON object")
    try:
        claimed = obj["event_id"]
        if type(claimed) is not str:
            raise RecordError("wrong_type", "event_id must be a string")
        if not is_event_id_syntax(claimed):
            raise RecordError("invalid_event_id", "event_id must be 64 lowercase hex characters")
        device_id = devices.string(obj["device_id"], "device_id", settings.max_device_id_chars)
        metric_type = obj["metric_type"]
        unit_wanted = CANONICAL_UNITS.get(metric_type) if type(metric_type) is str else None
        if unit_wanted is None:
            _string_value(metric_type, "metric_type", 64)
            raise RecordError("unknown_metric_type",
                              f"metric_type must be one of {sorted(CANONICAL_UNITS)}")
        timestamp = _timestamp_text(obj["timestamp"], "timestamp")
        value_text = _decimal_text(obj["value"], "value")
        unit = obj["unit"]
        if unit != unit_wanted or type(unit) is not str:
            _string_value(unit, "unit", 16)
            raise RecordError("wrong_unit", f"unit must be the canonical unit {unit_wanted!r} "
                              f"for {metric_type}")
        flags = _flags(obj["flags"], version)
        delta_text = obj["delta"]
        if delta_text is not None:
            delta_text = _decimal_text(delta_text, "delta")
            if NULL_DELTA_FLAGS.intersection(flags):
                raise RecordError("delta_not_null", "delta must be null with first_reading, "
                                  "counter_reset, beyond_retention, glitch or rollback")
        delta_from = _delta_from(obj, timestamp, delta_text) if version != "1" else None
        revision = _integer_value(obj["revision"], "revision", 1, MAX_REVISION)
        raw = obj["raw"]
        if type(raw) is not dict:
            raise RecordError("wrong_type", "raw must be an object {buffer_id, seq}")
        raw_buffer_id = _uuid(raw["buffer_id"], "raw.buffer_id")
        raw_seq = _integer_value(raw["seq"], "seq", 1, MAX_SEQ)
    except KeyError as exc:
        raise _missing(exc) from None
    # Required by the contract for every record: the id must be the hash of these exact texts.
    expected = event_id(device_id, timestamp, metric_type, value_text)
    if expected != claimed:
        raise RecordError("event_id_mismatch",
                          f"event_id does not match the canonical fields (expected {expected})")
    return MeasurementRecord(index, claimed, device_id, metric_type, timestamp, value_text, unit,
                             delta_text, flags, revision, raw_buffer_id, raw_seq, delta_from)


def _validate_measurements(batch: Batch, items: list, settings: Settings,
                           version: str = "1") -> None:
    valid = _unless_failed(_measurements_if_all_valid, items, settings, version)
    if valid is not None:
        batch.measurements = valid
        return
    devices = _Seen()
    append = batch.measurements.append
    for index, obj in enumerate(items):
        try:
            append(_measurement(index, obj, settings, devices, version))
        except Exception as exc:  # noqa: BLE001 - see _rejection
            reason, detail = _rejection(exc)
            eid = obj.get("event_id") if isinstance(obj, dict) else None
            eid = eid if type(eid) is str and is_event_id_syntax(eid) else None  # not a Num
            rev = obj.get("revision") if isinstance(obj, dict) else None
            rev = int(rev) if type(rev) is IntNum and len(rev) < 12 else None
            batch.rejected_measurements.append((index, eid, rev, reason, detail))


# ---------------------------------------------------------------------------------------------
# the whole-batch fast path
# ---------------------------------------------------------------------------------------------
# Almost every batch is valid throughout. Checked a column at a time (the types of all values
# as one set, all timestamps joined and matched by one regex, lengths by one map, ...) it costs
# about a third less than record by record, because the per-record Python overhead goes. The
# record functions above remain the definition of every rule: these only accept a batch all of
# whose records those would accept, produce the same records, and otherwise return None so the
# batch goes through them and each bad record gets its reason. A test compares the two paths
# on fuzzed batches (central/tests/test_ingest_validate.py). Where a column check could be
# fooled by joining (a value holding the separator), the separator count is checked too.

_TIMESTAMPS_RE = re.compile(f"{TIMESTAMP_PATTERN}(?:,{TIMESTAMP_PATTERN})*")
_DECIMALS_RE = re.compile(f"{DECIMAL_PATTERN}(?:,{DECIMAL_PATTERN})*")
_LOWER_HEX_RE = re.compile(r"[0-9a-f]*")
_METRIC_UNITS = frozenset(CANONICAL_UNITS.items())
_NUMBER_TYPES = frozenset({Num, IntNum})


def _all_strings(column: list, max_chars: int, allow_empty: bool = False) -> bool:
    """Every value a JSON string within the length limits, without NUL or lone surrogates."""
    if set(map(type, column)) != {str}:
        return False
    lengths = set(map(len, column))
    if max(lengths) > max_chars or (not allow_empty and 0 in lengths):
        return False
    joined = "".join(column)
    return ("\x00" not in joined) if joined.isascii() else not _BAD_CHARS_RE.search(joined)


def _all_integers(column: list, low: int, high: int) -> Optional[list[int]]:
    if set(map(type, column)) != {IntNum} or max(map(len, column)) > 20:
        return None
    numbers = list(map(int, column))
    return numbers if low <= min(numbers) and max(numbers) <= high else None


def _all_timestamps(column: list) -> bool:
    if set(map(type, column)) != {str}:
        return False
    joined = ",".join(column)
    if joined.count(",") != len(column) - 1 or _TIMESTAMPS_RE.fullmatch(joined) is None:
        return False
    return all(real_date(t[:10]) for t in column if t[8:10] > "28")


def _all_decimals(column: list) -> bool:
    """Canonical decimal texts short enough (40 characters) to be within the limits."""
    if not column:
        return True
    if not set(map(type, column)) <= _NUMBER_TYPES or "-0" in column \
            or max(map(len, column)) > MAX_SIGNIFICANT_DIGITS:
        return False
    joined = ",".join(column)
    return joined.count(",") == len(column) - 1 and _DECIMALS_RE.fullmatch(joined) is not None


def _raw_events_if_all_valid(items: list, settings: Settings) -> Optional[list[RawRecord]]:
    if not items:
        return []
    if set(map(type, items)) != {dict}:
        return None
    try:
        seqs = _all_integers([r["seq"] for r in items], 1, MAX_SEQ)
        topics = [r["topic"] for r in items]
        payloads = [r["payload"] for r in items]
        qos = _all_integers([r["qos"] for r in items], 0, 2)
        retained = [r["retained"] for r in items]
        dup = [r["dup"] for r in items]
        received_at = [r["received_at"] for r in items]
        decode_errors = [r.get("decode_error") for r in items]
        present_errors = [e for e in decode_errors if e is not None]
        if (seqs is None or qos is None or not _all_strings(topics, settings.max_topic_chars)
                or set(map(type, payloads)) != {str}
                or max(map(len, payloads)) > (settings.max_payload_bytes + 2) // 3 * 4
                or not set(map(type, retained)) == set(map(type, dup)) == {bool}
                or not _all_timestamps(received_at)
                or (present_errors and not _all_strings(
                    present_errors, settings.max_decode_error_chars, allow_empty=True))):
            return None
        # What b64decode(validate=True) does for an ASCII str; ValueError for anything else.
        # One payload's bytes at a time: only the base64 text is kept (the database decodes it).
        is_json = []
        for text in payloads:
            decoded = binascii.a2b_base64(text, strict_mode=True)
            if len(decoded) > settings.max_payload_bytes:
                return None
            is_json.append(jsonb_text(decoded) is not None)
    except (KeyError, ValueError):  # binascii.Error is a ValueError
        return None
    return [RawRecord(i, *fields) for i, fields in enumerate(zip(
        seqs, topics, payloads, is_json, qos, retained, dup, received_at, decode_errors))]


def _measurements_if_all_valid(items: list, settings: Settings,
                               version: str = "1") -> Optional[list[MeasurementRecord]]:
    if not items:
        return []
    if set(map(type, items)) != {dict}:
        return None
    try:
        event_ids = [m["event_id"] for m in items]
        devices = [m["device_id"] for m in items]
        metrics = [m["metric_type"] for m in items]
        timestamps = [m["timestamp"] for m in items]
        values = [m["value"] for m in items]
        units = [m["unit"] for m in items]
        flags = [m["flags"] for m in items]
        deltas = [m["delta"] for m in items]
        revisions = _all_integers([m["revision"] for m in items], 1, MAX_REVISION)
        raws = [m["raw"] for m in items]
        if set(map(type, raws)) != {dict}:
            return None
        buffers = [r["buffer_id"] for r in raws]
        raw_seqs = _all_integers([r["seq"] for r in raws], 1, MAX_SEQ)
        if (revisions is None or raw_seqs is None
                or set(map(type, event_ids)) != {str} or set(map(len, event_ids)) != {64}
                or _LOWER_HEX_RE.fullmatch("".join(event_ids)) is None
                or not _all_strings(devices, settings.max_device_id_chars)
                or not set(zip(metrics, units)) <= _METRIC_UNITS  # TypeError if unhashable
                or not _all_timestamps(timestamps) or not _all_decimals(values)
                or not _all_decimals([d for d in deltas if d is not None])):
            return None
        for record_flags, delta in zip(flags, deltas):
            if type(record_flags) is not list:
                return None
            if record_flags:
                _flags(record_flags, version)
                if delta is not None and NULL_DELTA_FLAGS.intersection(record_flags):
                    return None
        delta_froms = [None] * len(items)
        if version != "1":
            delta_froms = [m.get("delta_from") for m in items]
            present = [(f, d, t) for f, d, t in zip(delta_froms, deltas, timestamps)
                       if f is not None]
            if present and (not _all_timestamps([f for f, _, _ in present])
                            or any(d is None or f > t for f, d, t in present)):
                return None
        normalized = {b: _uuid(b, "raw.buffer_id") for b in set(buffers)}
        if event_ids != list(map(event_id, devices, timestamps, metrics, values)):
            return None
    except (KeyError, TypeError, RecordError):
        return None
    return [MeasurementRecord(i, *fields) for i, fields in enumerate(zip(
        event_ids, devices, metrics, timestamps, values, units, deltas, flags, revisions,
        [normalized[b] for b in buffers], raw_seqs, delta_froms))]
