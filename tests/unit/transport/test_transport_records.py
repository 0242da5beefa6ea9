"""RecordScanner fed whole, byte by byte, with trailing bytes and with garbage."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from nrfprov.transport.tls_records import CT_ALERT, CT_APPLICATION_DATA, CT_CHANGE_CIPHER_SPEC, RecordScanner


def record(ct: int, body: bytes) -> bytes:
    return bytes([ct, 3, 3]) + len(body).to_bytes(2, "big") + body


def handshake_msg(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def certificate_msg(*ders: bytes) -> bytes:
    certs = b"".join(len(d).to_bytes(3, "big") + d for d in ders)
    return handshake_msg(11, len(certs).to_bytes(3, "big") + certs)


LEAF = os.urandom(700)
STREAM = (
    record(22, handshake_msg(2, b"\x03\x03" + b"r" * 40) + certificate_msg(LEAF, b"intermediate"))
    + record(CT_CHANGE_CIPHER_SPEC, b"\x01")
    + record(22, b"encrypted finished")
    + record(CT_APPLICATION_DATA, b"x" * 3000)
)


def feed_in(pieces: list[bytes]) -> RecordScanner:
    sc = RecordScanner()
    for p in pieces:
        sc.feed(p)
    return sc


def test_whole_and_byte_by_byte_agree() -> None:
    whole = feed_in([STREAM])
    bytewise = feed_in([STREAM[i : i + 1] for i in range(len(STREAM))])
    for sc in (whole, bytewise):
        assert sc.records == 4
        assert sc.max_length == 3000
        assert sc.encrypted
        assert not sc.mid_record
        assert sc.server_certificate() == LEAF


def test_trailing_partial_record_is_mid_record() -> None:
    sc = feed_in([STREAM + record(CT_APPLICATION_DATA, b"y" * 100)[:40]])
    assert sc.mid_record
    sc2 = feed_in([STREAM + b"\x17\x03"])  # a partial header counts too
    assert sc2.mid_record


def test_cleartext_fatal_alert_is_captured_but_not_after_ccs() -> None:
    sc = feed_in([record(CT_ALERT, b"\x02\x74")])
    assert sc.alert_name() == "certificate_required"
    sc2 = feed_in([record(CT_CHANGE_CIPHER_SPEC, b"\x01"), record(CT_ALERT, b"\x02\x28")])
    assert sc2.alert is None  # encrypted alert: opaque


def test_headers_returned_once_when_they_start() -> None:
    sc = RecordScanner()
    first = sc.feed(STREAM[:3])
    rest = sc.feed(STREAM[3:])
    assert first == [] and [h.content_type for h in rest] == [22, 20, 22, 23]


@given(st.binary(max_size=3000), st.lists(st.integers(1, 500), max_size=20))
def test_garbage_in_any_chunking_never_raises(data: bytes, cuts: list[int]) -> None:
    sc = RecordScanner()
    i = 0
    for c in cuts:
        sc.feed(data[i : i + c])
        i += c
    sc.feed(data[i:])
    sc.server_certificate()
    sc.alert_name()
    assert sc.max_length <= 0xFFFF
