"""JSON output that keeps exact decimals as JSON numbers.

Python's json module can only write a number from an int or a float, and a float would round
values with up to 40 significant digits. The read API and the protocol promise numbers whose
text is the canonical decimal text, so this tiny encoder writes `RawNumber` text verbatim.
"""

from __future__ import annotations

import json
from typing import Any

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class RawJson(str):
    """Text that is already valid JSON, written verbatim: a part of a response rendered by a
    faster path than this encoder (the buckets of a year's consumption, the devices listing)."""

    __slots__ = ()


class RawNumber(RawJson):
    """Text that is already a valid JSON number (canonical decimal text)."""

    __slots__ = ()


# The spelling this encoder gives a string, for code that renders JSON text itself.
json_string = json.encoder.encode_basestring


def dumps(value: Any) -> str:
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts)


def _write(value: Any, out: list[str]) -> None:
    if isinstance(value, RawJson):
        out.append(value)
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for key, item in value.items():
            if not first:
                out.append(",")
            first = False
            out.append(_dumps(key))
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        out.append(_dumps(value))
