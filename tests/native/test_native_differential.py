"""Differential property tests: the native extractor against json.loads / cbor2.loads + field pick.

Every generated reply is fed whole, byte by byte and in random chunk sizes; the fields must equal what
the Python reference extracts. Garbage and mutated replies must give the same outcome for every
chunking, and when the extractor accepts one, the reference must accept it too with the same fields.
"""

from __future__ import annotations

import json
import os
import random
import sys
from collections.abc import Iterator
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from native_docs import (
    cbor_dumps_random,
    cbor_reference,
    cbor_value,
    chunkings,
    json_dumps_random,
    json_reference,
    reply_docs,
    split,
)

from nrfprov.errors import PayloadError
from nrfprov.extractor import CombinedExtractor, ExtractedMessage, extract_message

# NRFPROV_NATIVE_EXAMPLES=5000 for a long soak; the default keeps the suite fast.
FAST = settings(
    max_examples=int(os.environ.get("NRFPROV_NATIVE_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(autouse=True, scope="module")
def _no_int_digit_limit() -> Iterator[None]:
    # Python refuses to parse ints over 4300 digits; the extractor skips numbers of any length.
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    yield
    sys.set_int_max_str_digits(old)


def run(payload: bytes, fmt: str, sizes: list[int] | None) -> ExtractedMessage:
    ex = CombinedExtractor(fmt)  # type: ignore[arg-type]
    for chunk in split(payload, sizes):
        ex.feed(chunk)
    return ex.finish()


def outcome(payload: bytes, fmt: str, sizes: list[int] | None) -> Any:
    """ExtractedMessage, or (error class, reason, offset) - comparable across chunkings."""
    try:
        return run(payload, fmt, sizes)
    except PayloadError as exc:
        return (type(exc).__name__, getattr(exc, "reason", None), exc.offset)


@FAST
@given(doc=reply_docs(), seed=st.integers(0, 2**32), sizes=chunkings())
def test_json_matches_json_loads(doc: dict[str, Any], seed: int, sizes: list[int] | None) -> None:
    payload = json_dumps_random(doc, random.Random(seed)).encode()
    assert run(payload, "json", sizes) == json_reference(payload)


@FAST
@given(doc=reply_docs(), sizes=chunkings())
def test_json_dumps_output_matches(doc: dict[str, Any], sizes: list[int] | None) -> None:
    for payload in (json.dumps(doc).encode(), json.dumps(doc, ensure_ascii=False, indent=2).encode()):
        assert run(payload, "json", sizes) == json_reference(payload)


@FAST
@given(doc=reply_docs(extra_values=cbor_value), seed=st.integers(0, 2**32), sizes=chunkings())
def test_cbor_matches_cbor2(doc: dict[str, Any], seed: int, sizes: list[int] | None) -> None:
    payload = cbor_dumps_random(doc, random.Random(seed))
    assert run(payload, "cbor", sizes) == cbor_reference(payload)


@FAST
@given(doc=reply_docs(extra_values=cbor_value), sizes=chunkings())
def test_cbor2_dumps_output_matches(doc: dict[str, Any], sizes: list[int] | None) -> None:
    payload = cbor2.dumps(doc)
    assert run(payload, "cbor", sizes) == cbor_reference(payload)


def _reference_or_none(payload: bytes, fmt: str) -> ExtractedMessage | None:
    try:
        return json_reference(payload) if fmt == "json" else cbor_reference(payload)
    except Exception:
        return None


def _check_consistent(payload: bytes, fmt: str, sizes: list[int] | None) -> None:
    whole = outcome(payload, fmt, None)
    assert outcome(payload, fmt, [1]) == whole
    if sizes is not None:
        assert outcome(payload, fmt, sizes) == whole
    if isinstance(whole, ExtractedMessage):
        # Soundness: never accept what the reference refuses, never disagree on a field.
        assert _reference_or_none(payload, fmt) == whole


@FAST
@given(payload=st.binary(max_size=200), fmt=st.sampled_from(["json", "cbor"]), sizes=chunkings())
@example(payload=b"", fmt="json", sizes=None)
@example(payload=b"\xbf\xff", fmt="cbor", sizes=None)
def test_garbage_gives_typed_error_or_sound_result(payload: bytes, fmt: str, sizes: list[int] | None) -> None:
    _check_consistent(payload, fmt, sizes)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, str]:
    fmt = draw(st.sampled_from(["json", "cbor"]))
    rnd = draw(st.randoms(use_true_random=False))
    if fmt == "json":
        data = bytearray(json_dumps_random(draw(reply_docs()), rnd).encode())
    else:
        data = bytearray(cbor_dumps_random(draw(reply_docs(extra_values=cbor_value)), rnd))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        i = rnd.randrange(len(data))
        op = rnd.randrange(4)
        if op == 0:
            data[i] ^= 1 << rnd.randrange(8)
        elif op == 1:
            del data[i]
        elif op == 2:
            data.insert(i, rnd.randrange(256))
        else:
            data[i] = rnd.choice(b'{}[]",:\\\xff\x7f\x9f\xbf\x00\x1c')
    return bytes(data), fmt


@FAST
@given(case=mutated(), sizes=chunkings())
def test_mutated_replies_give_typed_error_or_sound_result(case: tuple[bytes, str], sizes: list[int] | None) -> None:
    payload, fmt = case
    _check_consistent(payload, fmt, sizes)


@FAST
@given(doc=reply_docs(), seed=st.integers(0, 2**32), data=st.data())
def test_every_proper_prefix_is_truncated(doc: dict[str, Any], seed: int, data: st.DataObject) -> None:
    payload = json_dumps_random(doc, random.Random(seed)).rstrip().encode()
    cut = data.draw(st.integers(0, len(payload) - 1))
    with pytest.raises(PayloadError) as info:
        extract_message(payload[:cut], "json")
    assert getattr(info.value, "reason", None) == "NRFPROV_E_TRUNCATED"
    assert info.value.offset == cut


@FAST
@given(doc=reply_docs(extra_values=cbor_value), seed=st.integers(0, 2**32), data=st.data())
def test_every_proper_cbor_prefix_is_truncated(doc: dict[str, Any], seed: int, data: st.DataObject) -> None:
    payload = cbor_dumps_random(doc, random.Random(seed))
    cut = data.draw(st.integers(0, len(payload) - 1))
    with pytest.raises(PayloadError) as info:
        extract_message(payload[:cut], "cbor")
    assert getattr(info.value, "reason", None) == "NRFPROV_E_TRUNCATED"
    assert info.value.offset == cut
