"""Document generators and the pure-Python reference for the native extractor tests.

The reference is json.loads / cbor2.loads plus a field pick; the generators produce replies with the
seven Fleet Provisioning fields (any subset) and random extra fields, serialised with random
whitespace, random escape spellings (JSON) and random definite/indefinite lengths (CBOR).
"""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

import cbor2
from hypothesis import strategies as st

from nrfprov.extractor import ExtractedMessage

STRING_FIELDS = {
    "certificateId": "certificate_id",
    "certificatePem": "certificate_pem",
    "privateKey": "private_key",
    "certificateOwnershipToken": "ownership_token",
    "errorCode": "error_code",
    "errorMessage": "error_message",
}
KNOWN = {*STRING_FIELDS, "statusCode"}
LIMITS = {
    "certificateId": 64,
    "certificatePem": 4096,
    "privateKey": 4096,
    "certificateOwnershipToken": 2048,
    "errorCode": 128,
    "errorMessage": 1024,
}
INT64 = (-(2**63), 2**63 - 1)


def reference_pick(obj: Any) -> ExtractedMessage:
    """What the extractor must return for a decoded document (the reference semantics)."""
    assert isinstance(obj, dict)
    values: dict[str, Any] = {}
    for name, attr in STRING_FIELDS.items():
        if name in obj:
            assert isinstance(obj[name], str)
            values[attr] = obj[name]
    if "statusCode" in obj:
        assert isinstance(obj["statusCode"], int) and not isinstance(obj["statusCode"], bool)
        values["status_code"] = obj["statusCode"]
    return ExtractedMessage(**values)


def json_reference(payload: bytes) -> ExtractedMessage:
    return reference_pick(json.loads(payload))


def cbor_loads_plain(payload: bytes) -> Any:
    """cbor2.loads without tag semantics: the extractor skips tags, it does not interpret them, so the
    reference must not refuse a bignum tag around a text string (cbor2 would)."""
    return cbor2.loads(payload, semantic_decoders=_PLAIN_TAGS)


def cbor_reference(payload: bytes) -> ExtractedMessage:
    return reference_pick(cbor_loads_plain(payload))


# ---- strategies -----------------------------------------------------------------------------------

# No lone surrogates: Python str allows them, UTF-8 and the extractor do not.
_chars = st.characters(blacklist_categories=("Cs",))


def field_text(limit: int) -> st.SearchStrategy[str]:
    # Limit in UTF-8 bytes: cap characters at limit // 4 (worst case) or draw ASCII up to the limit.
    return st.one_of(
        st.text(_chars, max_size=min(limit // 4, 40)),
        st.text(st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=min(limit, 300)),
    )


pem_like = st.builds(
    lambda body, kind: f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n",
    st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n"), max_size=400),
    st.sampled_from(["CERTIFICATE", "RSA PRIVATE KEY"]),
)

extra_key = st.text(_chars, max_size=30).filter(lambda k: k not in KNOWN)

json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(_chars, max_size=30),
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(_chars, max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def reply_docs(draw: st.DrawFn, extra_values: st.SearchStrategy[Any] = json_value) -> dict[str, Any]:
    """A reply with any subset of the known fields plus random extra fields, in random order."""
    doc: dict[str, Any] = {}
    for name, limit in LIMITS.items():
        if draw(st.booleans()):
            if name in ("certificatePem", "privateKey"):
                doc[name] = draw(st.one_of(pem_like, field_text(limit)))
            else:
                doc[name] = draw(field_text(limit))
    if draw(st.booleans()):
        doc["statusCode"] = draw(st.integers(*INT64))
    extras = draw(st.dictionaries(extra_key, extra_values, max_size=5))
    doc.update(extras)
    items = list(doc.items())
    draw(st.randoms(use_true_random=False)).shuffle(items)
    return dict(items)


@st.composite
def chunkings(draw: st.DrawFn) -> list[int] | None:
    """None = whole; [1] = byte by byte; otherwise a cycle of chunk sizes."""
    return draw(
        st.one_of(
            st.none(),
            st.just([1]),
            st.lists(st.integers(min_value=1, max_value=97), min_size=1, max_size=8),
        )
    )


def split(payload: bytes, sizes: list[int] | None) -> list[bytes]:
    if sizes is None:
        return [payload]
    out, i, k = [], 0, 0
    while i < len(payload):
        n = sizes[k % len(sizes)]
        out.append(payload[i : i + n])
        i += n
        k += 1
    return out


# ---- JSON serialiser with random whitespace and escapes -------------------------------------------

_WS = [" ", "\t", "\n", "\r"]
_SHORT = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _ws(rnd: random.Random) -> str:
    return "".join(rnd.choice(_WS) for _ in range(rnd.choice([0, 0, 0, 1, 2])))


def _u(cp: int, upper: bool = False) -> str:
    if cp >= 0x10000:  # UTF-16 surrogate pair
        return _u(0xD800 + ((cp - 0x10000) >> 10), upper) + _u(0xDC00 + ((cp - 0x10000) & 0x3FF), upper)
    return f"\\u{cp:04X}" if upper else f"\\u{cp:04x}"


def json_string(s: str, rnd: random.Random) -> str:
    out = ['"']
    for ch in s:
        cp = ord(ch)
        style = rnd.random()
        if ch in '"\\' or cp < 0x20:
            out.append(_SHORT[ch] if ch in _SHORT and style < 0.5 else _u(cp, upper=True) if style < 0.7 else _u(cp))
        elif style < 0.08:
            out.append(_u(cp, upper=style < 0.04))
        elif style < 0.1 and ch in _SHORT:
            out.append(_SHORT[ch])
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def json_dumps_random(obj: Any, rnd: random.Random) -> str:
    w = _ws(rnd)
    if isinstance(obj, dict):
        if not obj:
            return w + "{" + _ws(rnd) + "}" + _ws(rnd)
        parts = [_ws(rnd) + json_string(k, rnd) + _ws(rnd) + ":" + json_dumps_random(v, rnd) for k, v in obj.items()]
        return w + "{" + ",".join(parts) + "}" + _ws(rnd)
    if isinstance(obj, list):
        if not obj:
            return w + "[" + _ws(rnd) + "]" + _ws(rnd)
        return w + "[" + ",".join(json_dumps_random(v, rnd) for v in obj) + "]" + _ws(rnd)
    if isinstance(obj, str):
        return w + json_string(obj, rnd) + _ws(rnd)
    return w + json.dumps(obj) + _ws(rnd)


# ---- CBOR serialiser with random definite/indefinite lengths --------------------------------------


def _head(major: int, arg: int, rnd: random.Random, minimal: bool = False) -> bytes:
    # Non-minimal argument encodings are well-formed (RFC 8949 3): use them sometimes.
    sizes = [n for n in (0, 1, 2, 4, 8) if (arg < 24 if n == 0 else arg < 256**n)]
    n = sizes[0] if minimal or rnd.random() < 0.8 else rnd.choice(sizes)
    if n == 0:
        return bytes([(major << 5) | arg])
    ai = {1: 24, 2: 25, 4: 26, 8: 27}[n]
    return bytes([(major << 5) | ai]) + arg.to_bytes(n, "big")


def _chunks_at_chars(s: str, rnd: random.Random) -> list[bytes]:
    out, cur = [], ""
    for ch in s:
        cur += ch
        if rnd.random() < 0.2:
            out.append(cur.encode())
            cur = ""
    if cur or not out:
        out.append(cur.encode())
    return out


def cbor_dumps_random(obj: Any, rnd: random.Random) -> bytes:
    indef = rnd.random() < 0.25
    if obj is None:
        return b"\xf6"
    if obj is True:
        return b"\xf5"
    if obj is False:
        return b"\xf4"
    if isinstance(obj, int):
        if obj >= 0:
            return _head(0, obj, rnd) if obj < 2**64 else cbor2.dumps(obj)
        return _head(1, -1 - obj, rnd) if -1 - obj < 2**64 else cbor2.dumps(obj)
    if isinstance(obj, float):
        if math.isnan(obj) or rnd.random() < 0.5:
            return b"\xfb" + struct.pack(">d", obj)
        return cbor2.dumps(obj)  # cbor2 picks half/single where exact
    if isinstance(obj, bytes):
        return _head(2, len(obj), rnd) + obj
    if isinstance(obj, str):
        if indef:
            return b"\x7f" + b"".join(_head(3, len(c), rnd) + c for c in _chunks_at_chars(obj, rnd)) + b"\xff"
        raw = obj.encode()
        return _head(3, len(raw), rnd) + raw
    if isinstance(obj, list):
        body = b"".join(cbor_dumps_random(v, rnd) for v in obj)
        return (b"\x9f" + body + b"\xff") if indef else _head(4, len(obj), rnd) + body
    if isinstance(obj, dict):
        body = b"".join(cbor_dumps_random(k, rnd) + cbor_dumps_random(v, rnd) for k, v in obj.items())
        return (b"\xbf" + body + b"\xff") if indef else _head(5, len(obj), rnd) + body
    if isinstance(obj, cbor2.CBORTag):
        return _head(6, obj.tag, rnd) + cbor_dumps_random(obj.value, rnd)
    raise TypeError(type(obj))


cbor_scalar = st.one_of(
    json_scalar,
    st.binary(max_size=20),
    st.integers(min_value=-(2**64), max_value=2**64 - 1),
    st.floats(allow_nan=False),
)
cbor_value = st.recursive(
    cbor_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(_chars, max_size=10), st.integers(-100, 100)), inner, max_size=4),
        st.builds(
            cbor2.CBORTag, st.integers(min_value=6, max_value=2**32).filter(lambda t: t not in _DECODED_TAGS), inner
        ),
    ),
    max_leaves=12,
)

# Tags cbor2 interprets (found by probing cbor2 6.3 with every tag below 70000): their content has
# rules cbor2 enforces and the extractor, which skips tags, does not need to.
SEMANTIC_TAGS = {
    0,
    1,
    2,
    3,
    4,
    5,
    21,
    22,
    23,
    24,
    25,
    28,
    29,
    30,
    32,
    33,
    34,
    35,
    36,
    37,
    52,
    54,
    100,
    256,
    258,
    260,
    261,
    1004,
    43000,
    55799,
}
_DECODED_TAGS = SEMANTIC_TAGS


def _plain_tag(tag: int) -> Any:
    return lambda value, _immutable: cbor2.CBORTag(tag, value)


_PLAIN_TAGS = {tag: _plain_tag(tag) for tag in SEMANTIC_TAGS}
