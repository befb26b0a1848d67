"""Decoding an ingest body into the envelope within bounded memory (issue #16, item 2).

Why: Python's json module builds every value of a document, ~60-120 bytes per number, list or
object. A 4 MiB body of `[0,0,0,...]` (4 KiB gzipped) took ~230 MiB, and a 64 MiB one ~3.5 GiB,
from anyone holding a gateway token. The contract bounds what the central must keep: the
envelope's fields, at most `max_records` records per array, each with a fixed set of fields of
bounded length. So this reader knows the envelope's shape and builds only that:

* fields of the envelope, of each record and of `backlog` and `raw` it knows; any other member is
  checked as JSON and skipped, nothing built;
* where a record, a field or a flag should be and an array or object stands, `SKIPPED` (a value
  no check accepts: the record is rejected `wrong_type`, or the envelope 422, as before);
* strings longer than any field allows are cut to one character over the longest limit
  (`STRING_CAP`, or the payload's limit), which the checks still see as too long: a 16 MiB topic
  is never a 16 MiB (or, with one emoji, 64 MiB) Python string; an absurdly long one is not even
  decoded;
* past `max_records` records an array is only checked, not kept (`Records.over`: 413);
* flags: the first FLAGS_KEPT entries; what follows can only add an unknown name or a non-string,
  which one extra entry stands for;
* nesting deeper than MAX_DEPTH is a 400 `invalid_json` ("nested too deeply"), as Python's
  decoder's recursion limit made it, but nothing here recurses: containers are walked with an
  explicit stack, runs of simple values jumped by one regular expression each.

Numbers keep their exact text (`Num`/`IntNum`), strings are decoded exactly as the json module
does (`json.decoder.scanstring`: escapes, lone surrogates kept for the checks to refuse), and
what is not JSON is refused as the json module refuses it. Python's decoder stays the fast path
for bodies whose full parse is cheap (ingest_body.decode_body decides); this reader is for the
rest, and gives the same batch for any body both accept within the limits (a test compares them
on fuzzed bodies).

Why not Debian's python3-ijson (3.2.0, yajl2_c backend, works with /usr/bin/python3): it streams
in constant memory, but what it hands back is not what was sent: numbers as int/Decimal
(`1.5e0` and `15e-1` both become Decimal('1.5'), `-0` becomes 0, so the canonical-text checks
and the event_id would see other texts), an escaped lone surrogate silently becomes "?", and an
integer of more than 4,300 digits stops it with a SystemError.
"""

from __future__ import annotations

import json.decoder
import re
from typing import Any, Optional

from central.canonical import FLAGS
from central.errors import ApiError
from central.ingest_body import _DECODER, IntNum, Num

MAX_DEPTH = 1000
STRING_CAP = 4096  # the longest string limit of any field but the payload (decode_error)
FLAGS_KEPT = 64  # more than there are flags: the rest cannot make a valid list

# How the regular expressions stay small: Python's engine keeps ~70 bytes of state for each
# repetition of a group (a plain "(x|y)*" over 2M array elements took 150 MiB), and 3.11.2's
# possessive quantifiers, which would not, are wrong in places ("(?:(?:1|2)[ ]*+,)*+" matches
# "1,2" in "1,2]"). So every repeated group is bounded ({0,RUN}) and the caller loops; only
# single-character classes repeat without bound (those keep no state per repetition).
RUN = 512
_WS = re.compile(rb"[ \t\n\r]*")
_PLAIN_STRING = rb'"[^"\\\x00-\x1f]*"'  # no escapes: the common case, one match
_CHARS = rb'[^"\\\x00-\x1f]*'
_ESCAPE = rb'\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})'
_STRING_START = re.compile(rb'"' + _CHARS)
_STRING_PART = re.compile(rb"(?:" + _ESCAPE + _CHARS + rb"){0,%d}" % RUN)
_NUMBER_BODY = rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_NUMBER = re.compile(_NUMBER_BODY)
_SIMPLE = (rb"(?:" + _PLAIN_STRING + rb"|" + _NUMBER_BODY
           + rb"|true|false|null|\[[ \t\n\r]*\]|\{[ \t\n\r]*\})")
# Runs of simple values (scalars, empty containers) inside an array or object, each followed by a
# comma: one match jumps up to RUN of them.
_ARRAY_RUN = re.compile(rb"(?:" + _SIMPLE + rb"[ \t\n\r]*,[ \t\n\r]*){0,%d}" % RUN)
_OBJECT_RUN = re.compile(rb"(?:" + _SIMPLE + rb"[ \t\n\r]*,[ \t\n\r]*" + _PLAIN_STRING
                         + rb"[ \t\n\r]*:[ \t\n\r]*){0,%d}" % RUN)
# A record as agents send it, in one match: members whose values are simple, arrays of simple
# values, or objects of simple values (strings without escapes). Bounded repeats; a record that
# does not match is walked by skip() instead.
_W = rb"[ \t\n\r]*"
_ARRAY_OF_SIMPLE = rb"\[" + _W + rb"(?:" + _SIMPLE + rb"(?:" + _W + rb"," + _W + _SIMPLE + rb"){0,63})?" + _W + rb"\]"
_PAIR = _PLAIN_STRING + _W + rb":" + _W + _SIMPLE
_OBJECT_OF_SIMPLE = (rb"\{" + _W + rb"(?:" + _PAIR + rb"(?:" + _W + rb"," + _W + _PAIR + rb"){0,15})?"
                     + _W + rb"\}")
_MEMBER = (_PLAIN_STRING + _W + rb":" + _W
           + rb"(?:" + _SIMPLE + rb"|" + _ARRAY_OF_SIMPLE + rb"|" + _OBJECT_OF_SIMPLE + rb")")
_FLAT_RECORD = re.compile(rb"\{" + _W + rb"(?:" + _MEMBER + rb"(?:" + _W + rb"," + _W + _MEMBER
                          + rb"){0,63})?" + _W + rb"\}")

ENVELOPE_SCALARS = frozenset({"protocol_version", "gateway_id", "buffer_id", "sent_at"})
RECORD_FIELDS = frozenset({
    "seq", "topic", "payload", "qos", "retained", "dup", "received_at", "decode_error",  # raw
    "event_id", "device_id", "metric_type", "timestamp", "value", "unit", "delta", "flags",
    "revision", "raw",  # measurement
    "delta_from",  # measurement, protocol "2" (issue #14)
})
BACKLOG_FIELDS = frozenset({"records", "oldest_received_at"})
RAW_REF_FIELDS = frozenset({"buffer_id", "seq"})
_KEY_BYTES_MAX = 64  # longer keys are not ones this reader keeps
# Records at most this large, with at most this many values, are decoded by Python's json module
# (the values counted from above by commas, colons and opening brackets, as in ingest_body).
RECORD_DECODE_BYTES = 64 * 1024
RECORD_DECODE_VALUES = 48


class Skipped:
    """A JSON array or object that was checked but not built, where none is accepted."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SKIPPED"


SKIPPED = Skipped()


class Records(list):
    """A record array as kept; `over` is True when it held more than the limit (not kept)."""

    __slots__ = ("over",)

    def __init__(self) -> None:
        super().__init__()
        self.over = False


def _invalid(pos: int, what: str) -> ApiError:
    return ApiError(400, "invalid_json", f"request body is not valid JSON: {what} at byte {pos}")


_KEYS = {k: k for k in ENVELOPE_SCALARS | RECORD_FIELDS | BACKLOG_FIELDS | RAW_REF_FIELDS
         | {"backlog", "raw_events", "measurements"}}
_SHARED_MAX_CHARS = 64  # values this short are shared within a body (ids, units, flags, qos...)
_SHARED_MAX_COUNT = 65536


class _Reader:
    __slots__ = ("data", "max_records", "payload_cap", "shared")

    def __init__(self, data: bytes, max_records: int, payload_chars: int):
        self.data = data
        self.max_records = max_records
        self.payload_cap = payload_chars
        # Batches repeat short values (metric, unit, buffer ids, flag names, qos 1, revision 1,
        # device ids): one object each instead of one per record.
        # One table per type: Num("1") == "1", and must not come back as the other.
        self.shared: dict[type, dict[str, str]] = {str: {}, Num: {}, IntNum: {}}

    def share(self, value):
        if len(value) > _SHARED_MAX_CHARS:
            return value
        table = self.shared[type(value)]
        known = table.get(value)
        if known is not None:
            return known
        if len(table) < _SHARED_MAX_COUNT:
            table[value] = value
        return value

    # --- scalars ---------------------------------------------------------------------------

    def ws(self, pos: int) -> int:
        return _WS.match(self.data, pos).end()  # type: ignore[union-attr]

    def string_end(self, pos: int) -> int:
        data = self.data
        m = _STRING_START.match(data, pos)
        if m is None:
            raise _invalid(pos, "expected a string")
        end = m.end()
        while data[end:end + 1] == b"\\":
            m = _STRING_PART.match(data, end)
            if m.end() == end:  # type: ignore[union-attr]
                raise _invalid(end, "bad escape in string")
            end = m.end()  # type: ignore[union-attr]
        if data[end:end + 1] != b'"':
            raise _invalid(end, "bad character in string" if end < len(data) else "unexpected end")
        return end + 1

    def string(self, pos: int, cap: int) -> tuple[str, int]:
        """The string token at pos as the json module decodes it, cut to cap + 1 characters."""
        end = self.string_end(pos)
        if end - pos - 2 > 12 * (cap + 1):  # >= (bytes / 12) characters: certainly too long
            return "\x7f" * (cap + 1), end
        raw = self.data[pos + 1:end - 1]
        if b"\\" in raw:
            text = json.decoder.scanstring('"' + raw.decode("utf-8") + '"', 1)[0]
        else:
            text = raw.decode("utf-8")
        return (text if len(text) <= cap + 1 else text[:cap + 1]), end

    def scalar_end(self, pos: int) -> int:
        c = self.data[pos:pos + 1]
        if c == b'"':
            return self.string_end(pos)
        for word in (b"true", b"false", b"null"):
            if self.data.startswith(word, pos):
                return pos + len(word)
        m = _NUMBER.match(self.data, pos)
        if m is None:
            raise _invalid(pos, "unexpected character" if c else "unexpected end")
        return m.end()

    def value(self, pos: int, depth: int, cap: int = STRING_CAP) -> tuple[Any, int]:
        """A scalar as its Python value (strings cut to cap + 1), or SKIPPED for a container."""
        c = self.data[pos:pos + 1]
        if c == b'"':
            text, end = self.string(pos, cap)
            return self.share(text), end
        if c == b"[" or c == b"{":
            return SKIPPED, self.skip(pos, depth)
        for word, result in ((b"true", True), (b"false", False), (b"null", None)):
            if self.data.startswith(word, pos):
                return result, pos + len(word)
        m = _NUMBER.match(self.data, pos)
        if m is None:
            raise _invalid(pos, "unexpected character" if c else "unexpected end")
        text = m.group().decode("ascii")
        number = Num(text) if any(ch in text for ch in ".eE") else IntNum(text)
        return self.share(number), m.end()

    # --- skipping --------------------------------------------------------------------------

    def skip(self, pos: int, depth: int, closers: Optional[list[bytes]] = None) -> int:
        """Check the JSON value at pos (a container at `depth`) and return its end, building
        nothing. With `closers`, continue inside already opened containers instead: pos is just
        after a value of the innermost one."""
        data = self.data
        stack = closers if closers is not None else []
        at_value = closers is None
        while True:
            if at_value:
                c = data[pos:pos + 1]
                if c == b"[" or c == b"{":
                    if depth + len(stack) >= MAX_DEPTH:
                        raise ApiError(400, "invalid_json",
                                       f"request body is nested deeper than {MAX_DEPTH} levels")
                    closer = b"]" if c == b"[" else b"}"
                    pos = self.ws(pos + 1)
                    if data[pos:pos + 1] == closer:
                        pos += 1
                    else:
                        stack.append(closer)
                        pos = self.run_to_value(pos, closer)
                        continue
                else:
                    pos = self.scalar_end(pos)
            # after a value: a comma, or the innermost container's end
            if not stack:
                return pos
            pos = self.ws(pos)
            c = data[pos:pos + 1]
            if c == b",":
                pos = self.run_to_value(self.ws(pos + 1), stack[-1])
                at_value = True
            elif c == stack[-1]:
                stack.pop()
                pos += 1
                at_value = False
            else:
                raise _invalid(pos, "expected ',' or the end of an array or object")

    def run_to_value(self, pos: int, closer: bytes) -> int:
        """At an element (array) or member (object) start: jump the run of simple ones and any
        key, to the start of the next value."""
        if closer == b"}":
            pos = self.key_colon(pos)
        run = _OBJECT_RUN if closer == b"}" else _ARRAY_RUN
        while True:
            end = run.match(self.data, pos).end()  # type: ignore[union-attr]
            if end == pos:
                return pos
            pos = end

    def key_colon(self, pos: int) -> int:
        end = self.string_end(pos)
        pos = self.ws(end)
        if self.data[pos:pos + 1] != b":":
            raise _invalid(pos, "expected ':'")
        return self.ws(pos + 1)

    # --- the envelope's shape --------------------------------------------------------------

    def members(self, pos: int):
        """Iterate an object at pos: yields (key or None if not one we could keep, value pos);
        the caller sends back the end of each value. Returns via StopIteration(end)."""
        data = self.data
        pos = self.ws(pos + 1)
        if data[pos:pos + 1] == b"}":
            return pos + 1
        while True:
            end = self.string_end(pos)
            key = None
            if end - pos <= _KEY_BYTES_MAX:
                key = self.string(pos, _KEY_BYTES_MAX)[0]
                key = _KEYS.get(key, key)  # one str per field name, not one per record
            pos = self.ws(end)
            if data[pos:pos + 1] != b":":
                raise _invalid(pos, "expected ':'")
            pos = yield key, self.ws(pos + 1)
            pos = self.ws(pos)
            c = data[pos:pos + 1]
            if c == b"}":
                return pos + 1
            if c != b",":
                raise _invalid(pos, "expected ',' or '}'")
            pos = self.ws(pos + 1)

    def object_of(self, pos: int, depth: int, known: frozenset, build) -> tuple[dict, int]:
        """An object whose `known` members are built by build(key, pos, depth) -> (value, end);
        the others are checked and skipped."""
        out: dict[str, Any] = {}
        walk = self.members(pos)
        try:
            key, at = next(walk)
            while True:
                if key in known:
                    out[key], end = build(key, at, depth + 1)
                else:
                    end = self.skip(at, depth + 1)
                key, at = walk.send(end)
        except StopIteration as stop:
            return out, stop.value

    def flat_value(self, key: str, pos: int, depth: int) -> tuple[Any, int]:
        return self.value(pos, depth)

    def record_field(self, key: str, pos: int, depth: int) -> tuple[Any, int]:
        c = self.data[pos:pos + 1]
        if key == "flags" and c == b"[":
            return self.flags(pos, depth)
        if key == "raw" and c == b"{":
            return self.object_of(pos, depth, RAW_REF_FIELDS, self.flat_value)
        return self.value(pos, depth, self.payload_cap if key == "payload" else STRING_CAP)

    def flags(self, pos: int, depth: int) -> tuple[list, int]:
        data = self.data
        out: list[Any] = []
        pos = self.ws(pos + 1)
        if data[pos:pos + 1] == b"]":
            return out, pos + 1
        odd_string = odd_other = False
        while True:
            if len(out) < FLAGS_KEPT:
                item, pos = self.value(pos, depth + 1, _KEY_BYTES_MAX)
                out.append(item)
            else:  # only whether a non-string or a string that is not a flag name follows
                if data[pos:pos + 1] == b'"':
                    item, pos = self.string(pos, _KEY_BYTES_MAX)
                    odd_string = odd_string or item not in FLAGS
                else:
                    odd_other = True
                    pos = self.skip(pos, depth + 1)
            pos = self.ws(pos)
            c = data[pos:pos + 1]
            if c == b"]":
                break
            if c != b",":
                raise _invalid(pos, "expected ',' or ']'")
            pos = self.ws(pos + 1)
        if odd_string:
            out.append("\x7f not a flag")
        if odd_other:
            out.append(SKIPPED)
        return out, pos + 1

    def records(self, pos: int, depth: int) -> tuple[Records, int]:
        data = self.data
        out = Records()
        pos = self.ws(pos + 1)
        if data[pos:pos + 1] == b"]":
            return out, pos + 1
        while True:
            if len(out) >= self.max_records:  # one more: over the limit; check the rest only
                out.over = True
                return out, self._skip_rest(pos, depth)
            if data[pos:pos + 1] == b"{":
                record, pos = self.record(pos, depth + 1)
            else:
                record, pos = self.value(pos, depth + 1)
            out.append(record)
            pos = self.ws(pos)
            c = data[pos:pos + 1]
            if c == b"]":
                return out, pos + 1
            if c != b",":
                raise _invalid(pos, "expected ',' or ']'")
            pos = self.ws(pos + 1)

    def record(self, pos: int, depth: int) -> tuple[dict, int]:
        """One record object. A small one (the usual kind) is decoded by Python's json module,
        which is ~10x faster than walking it here, and then trimmed to what the walk would have
        kept; its few values bound what that decode can cost."""
        data = self.data
        flat = _FLAT_RECORD.match(data, pos)
        end = flat.end() if flat is not None else self.skip(pos, depth)
        if end - pos > RECORD_DECODE_BYTES or (
                data.count(b",", pos, end) + data.count(b":", pos, end)
                + data.count(b"[", pos, end) + data.count(b"{", pos, end) > RECORD_DECODE_VALUES):
            return self.object_of(pos, depth, RECORD_FIELDS, self.record_field)
        decoded = _DECODER.decode(data[pos:end].decode("utf-8"))
        out: dict[str, Any] = {}
        for key, item in decoded.items():
            key = _KEYS.get(key)
            if key not in RECORD_FIELDS:
                continue
            kind = type(item)
            if kind is str or kind is Num or kind is IntNum:
                out[key] = self.scalar(item, self.payload_cap if key == "payload" else STRING_CAP)
            elif kind is list or kind is dict:
                out[key] = self.trimmed(key, item)
            else:  # True, False, None
                out[key] = item
        return out, end

    def trimmed(self, key: str, item: Any) -> Any:
        """What record_field would have built for this decoded value."""
        if type(item) is list:
            if key != "flags":
                return SKIPPED
            return [SKIPPED if type(f) in (list, dict) else self.scalar(f, _KEY_BYTES_MAX)
                    for f in item]  # at most RECORD_DECODE_VALUES: fewer than FLAGS_KEPT
        if type(item) is dict:
            if key != "raw":
                return SKIPPED
            return {k: (SKIPPED if type(v) in (list, dict) else self.scalar(v, STRING_CAP))
                    for k, v in item.items() if k in RAW_REF_FIELDS}
        return self.scalar(item, self.payload_cap if key == "payload" else STRING_CAP)

    def scalar(self, item: Any, cap: int) -> Any:
        if isinstance(item, str):  # str or Num
            if len(item) > cap + 1:
                item = item[:cap + 1] if type(item) is str else item
            return self.share(item)
        return item

    def _skip_rest(self, pos: int, depth: int) -> int:
        """pos is at an element of an open array at `depth`: check the rest of it, and end."""
        end = self.skip(pos, depth + 1)
        return self.skip(end, depth, [b"]"])

    def envelope_field(self, key: str, pos: int, depth: int) -> tuple[Any, int]:
        c = self.data[pos:pos + 1]
        if key in ("raw_events", "measurements") and c == b"[":
            return self.records(pos, depth)
        if key == "backlog" and c == b"{":
            return self.object_of(pos, depth, BACKLOG_FIELDS, self.flat_value)
        return self.value(pos, depth)

    def document(self) -> Any:
        pos = self.ws(0)
        if self.data[pos:pos + 1] == b"{":
            result, pos = self.object_of(
                pos, 0, ENVELOPE_SCALARS | {"backlog", "raw_events", "measurements"},
                self.envelope_field)
        else:  # not an object: checked, then refused by check_protocol_version
            pos = self.skip(pos, 0)
            result = SKIPPED
        pos = self.ws(pos)
        if pos != len(self.data):
            raise _invalid(pos, "extra data after the JSON value")
        return result


def read_envelope(data: bytes, max_records: int, max_payload_bytes: int) -> Any:
    """UTF-8 JSON bytes -> the envelope as dicts/lists/Num/str, bounded as described above.

    The bytes must be valid UTF-8 already (ingest_body checks that first). Raises ApiError 400.
    """
    payload_chars = (max_payload_bytes + 2) // 3 * 4  # base64 text of the largest payload
    return _Reader(data, max_records, payload_chars).document()
