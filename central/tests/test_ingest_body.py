"""central/ingest_body.py: exact number texts, strict JSON, capped streaming gunzip."""

from __future__ import annotations

import gzip

import pytest

from central.errors import ApiError
from central.ingest_body import Num, decode_body, gunzip_limited


def test_numbers_keep_their_text():
    body = decode_body(b'{"a": 10172.887, "b": 1e3, "c": 007.50, "d": 12345678901234567890123456789012345678901}'
                       .replace(b"007.50", b"7.50"), None, 10_000)
    assert body == {"a": "10172.887", "b": "1e3", "c": "7.50", "d": "12345678901234567890123456789012345678901"}
    assert all(isinstance(v, Num) for v in body.values())


@pytest.mark.parametrize("text", [b"NaN", b"[Infinity]", b"[-Infinity]", b'{"a":1,}', b"\xef\xbb\xbf{}"])
def test_strict_json(text):
    with pytest.raises(ApiError) as exc:
        decode_body(text, None, 10_000)
    assert exc.value.status == 400


def test_gunzip_cap_is_exact_and_streaming():
    data = b"x" * 100_000
    assert gunzip_limited(gzip.compress(data), 100_000) == data
    with pytest.raises(ApiError) as exc:
        gunzip_limited(gzip.compress(data), 99_999)
    assert exc.value.status == 413 and exc.value.limit == 99_999


def test_bomb_stops_early():
    bomb = gzip.compress(b"\0" * 64_000_000)  # ~62 KB compressed, 64 MB expanded
    with pytest.raises(ApiError) as exc:
        gunzip_limited(bomb, 1_000_000)
    assert exc.value.status == 413


def test_identity_body_also_capped():
    with pytest.raises(ApiError) as exc:
        decode_body(b"[" + b" " * 100 + b"]", "identity", 50)
    assert exc.value.status == 413
