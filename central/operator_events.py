"""Operator events: raw events on `$meter-agent/operator`, parsed into the epochs table.

An operator's `meter-agent meter replace DEVICE --metric M --at TIME ...` is recorded by the
agent as a raw message with this reserved topic (MQTT never delivers `$` topics to wildcard
subscriptions, so no meter can publish one) and uploaded like any raw event. Ingest stores it in
raw_events first, as every message (the audit trail); this module then reads what it means.

The payload is hostile input like any other: `parse` is pure and turns anything unexpected
into an OperatorEventProblem, never an exception the request would turn into a 5xx. A
malformed event stays stored as raw, is logged, is listed in operator_event_problems, and is
not applied. A valid one is upserted into epochs by its identity; of several records of one
identity the latest by (received_at, seq) wins, whatever order they arrive in (the buffer id
breaks a tie, so the result never depends on arrival), and a withdrawal is kept as a row with
`withdrawn` true.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from central.canonical import (CANONICAL_UNITS, NotCanonical, check_decimal_text,
                               check_timestamp)
from central.ingest_body import IntNum, Num

log = logging.getLogger("central.operator_events")

TOPIC = "$meter-agent/operator"
EVENT = "meter_replaced"
MAX_DEVICE_ID_CHARS = 256
_BAD_CHARS_RE = re.compile("[\x00\ud800-\udfff]")  # text PostgreSQL cannot store
_FIELDS = ("at", "device_id", "event", "identity", "metric_type", "new_initial", "old_final",
           "recorded_at", "withdrawn")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Numbers keep their exact text (Num), as in the ingest body: no value goes through a float.
_DECODER = json.JSONDecoder(parse_float=Num, parse_int=IntNum, parse_constant=_reject_constant)


class OperatorEventProblem(ValueError):
    """Why a payload is not a valid operator event (stored in operator_event_problems)."""


@dataclass(frozen=True)
class Epoch:
    identity: str
    device_id: str
    metric_type: str
    at: str  # canonical timestamp text
    old_final: Optional[str]  # canonical decimal text
    new_initial: Optional[str]
    withdrawn: bool
    recorded_at: str


def identity(device_id: str, metric_type: str, at: str) -> str:
    """lowercase hex SHA-256 of `meter_replaced\\0<device_id>\\0<metric_type>\\0<at>`."""
    return hashlib.sha256(
        f"{EVENT}\0{device_id}\0{metric_type}\0{at}".encode("utf-8")).hexdigest()


def _text(obj: dict, name: str) -> str:
    value = obj[name]
    if type(value) is not str:
        raise OperatorEventProblem(f"{name} must be a string")
    return value


def _timestamp(obj: dict, name: str) -> str:
    try:
        return check_timestamp(_text(obj, name), name)
    except NotCanonical as exc:
        raise OperatorEventProblem(exc.detail) from None


def _decimal(obj: dict, name: str) -> Optional[str]:
    value = obj[name]
    if value is None:
        return None
    if not isinstance(value, str):  # a JSON string or number (Num) with canonical text
        raise OperatorEventProblem(f"{name} must be a canonical decimal or null")
    try:
        return check_decimal_text(str(value), name)
    except NotCanonical as exc:
        raise OperatorEventProblem(exc.detail) from None


def parse(payload: bytes) -> Epoch:
    """The operator event in `payload`, or OperatorEventProblem saying what is wrong."""
    try:
        obj = _DECODER.decode(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise OperatorEventProblem("payload is not UTF-8 JSON") from None
    if type(obj) is not dict:
        raise OperatorEventProblem("payload must be a JSON object")
    missing = [name for name in _FIELDS if name not in obj]
    if missing:
        raise OperatorEventProblem(f"{missing[0]} is required")
    event = obj["event"]
    if event != EVENT or type(event) is not str:
        raise OperatorEventProblem(f"event must be {EVENT!r}")
    device_id = _text(obj, "device_id")
    if not device_id or len(device_id) > MAX_DEVICE_ID_CHARS or _BAD_CHARS_RE.search(device_id):
        raise OperatorEventProblem("device_id must be 1-256 characters, without NUL or an "
                                   "unpaired surrogate")
    metric_type = _text(obj, "metric_type")
    if metric_type not in CANONICAL_UNITS:
        raise OperatorEventProblem(f"metric_type must be one of {sorted(CANONICAL_UNITS)}")
    at = _timestamp(obj, "at")
    recorded_at = _timestamp(obj, "recorded_at")
    withdrawn = obj["withdrawn"]
    if withdrawn is not True and withdrawn is not False:
        raise OperatorEventProblem("withdrawn must be true or false")
    old_final, new_initial = _decimal(obj, "old_final"), _decimal(obj, "new_initial")
    claimed = obj["identity"]
    expected = identity(device_id, metric_type, at)
    if claimed != expected:
        raise OperatorEventProblem(f"identity does not match (device_id, metric_type, at): "
                                   f"expected {expected}")
    return Epoch(expected, device_id, metric_type, at, old_final, new_initial, withdrawn,
                 recorded_at)


# Latest by (received_at, seq) wins; raw_buffer_id breaks a tie between buffers so that the
# outcome is the same in any arrival order. An equal key is the same record again: no change.
_UPSERT_EPOCH = """
INSERT INTO epochs AS e (identity, device_id, metric_type, "at", old_final, new_initial,
                         withdrawn, recorded_at, gateway_id, raw_buffer_id, raw_seq, received_at)
VALUES (%(identity)s, %(device_id)s, %(metric_type)s, %(at)s, %(old_final)s, %(new_initial)s,
        %(withdrawn)s, %(recorded_at)s, %(gw)s, %(buffer_id)s::uuid, %(seq)s, %(received_at)s)
ON CONFLICT (identity) DO UPDATE
   SET old_final = EXCLUDED.old_final, new_initial = EXCLUDED.new_initial,
       withdrawn = EXCLUDED.withdrawn, recorded_at = EXCLUDED.recorded_at,
       gateway_id = EXCLUDED.gateway_id, raw_buffer_id = EXCLUDED.raw_buffer_id,
       raw_seq = EXCLUDED.raw_seq, received_at = EXCLUDED.received_at, updated_at = now()
 WHERE (e.received_at, e.raw_seq, e.raw_buffer_id)
     < (EXCLUDED.received_at, EXCLUDED.raw_seq, EXCLUDED.raw_buffer_id)
"""

_PROBLEM = """
INSERT INTO operator_event_problems (gateway_id, buffer_id, seq, problem)
VALUES (%(gw)s, %(buffer_id)s::uuid, %(seq)s, %(problem)s)
ON CONFLICT (gateway_id, buffer_id, seq) DO NOTHING
"""


def apply(cur, gateway_id: str, gateway_pk: int, buffer_id: str, raws: Iterable) -> None:
    """Parse the batch's operator events (raw records on TOPIC) and store what they say.

    Runs inside the batch's transaction, after its raw events are inserted. Every operator
    record of the batch is applied, new or resent: the upsert is idempotent, so a resend after
    a lost answer changes nothing, and one that follows a fix of this code heals the row.
    """
    seen: set[int] = set()
    for raw in raws:
        if raw.topic != TOPIC or raw.seq in seen:
            continue  # a seq repeated in the batch is a duplicate of its first (not stored)
        seen.add(raw.seq)
        where = dict(gw=gateway_pk, buffer_id=buffer_id, seq=raw.seq)
        try:
            epoch = parse(raw.payload)
        except OperatorEventProblem as exc:
            log.warning("gateway %s sent an operator event (buffer %s, seq %d) that is not "
                        "applied: %s", gateway_id, buffer_id, raw.seq, exc)
            cur.execute(_PROBLEM, {**where, "problem": str(exc)})
            continue
        cur.execute(_UPSERT_EPOCH, {
            **where, "identity": epoch.identity, "device_id": epoch.device_id,
            "metric_type": epoch.metric_type, "at": epoch.at, "old_final": epoch.old_final,
            "new_initial": epoch.new_initial, "withdrawn": epoch.withdrawn,
            "recorded_at": epoch.recorded_at, "received_at": raw.received_at})
