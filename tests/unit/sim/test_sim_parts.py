"""Pure parts of the simulator: throttle arithmetic, TLS record scanner, Luhn, CSR quirk, content checks."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from nrfprov.sim.keygen import ECDSA_SHA256_OID_TLV, NULL_TLV, add_null_parameter, make_csr, parse_attributes
from nrfprov.sim.netsock import TLS_RECORD_LIMIT, RecordScanner, RecordTooLarge
from nrfprov.sim.store import ContentError, luhn_digit, luhn_valid, validate
from nrfprov.sim.uart import Throttle


def test_throttle_schedules_ten_bits_per_byte_back_to_back() -> None:
    t = Throttle(9600)
    assert t.schedule(96, now=100.0) == pytest.approx(100.1)  # 96 bytes * 10 bit / 9600 bit/s
    assert t.schedule(96, now=100.05) == pytest.approx(100.2)  # queued behind the first chunk
    assert t.schedule(48, now=200.0) == pytest.approx(200.05)  # idle line: starts at once
    assert t.seconds(96 + 96 + 48) == pytest.approx(0.25)
    assert Throttle(0).schedule(10**6, now=5.0) == 5.0  # 0 = unthrottled


def _record(n: int) -> bytes:
    return bytes([23, 3, 3]) + n.to_bytes(2, "big") + b"\0" * n


def test_record_scanner_limit_and_split_headers() -> None:
    s = RecordScanner()
    stream = _record(10) + _record(TLS_RECORD_LIMIT) + _record(0)
    for i in range(len(stream)):  # byte by byte: headers split anywhere
        s.feed(stream[i : i + 1])
    assert s.records == [10, TLS_RECORD_LIMIT, 0]
    with pytest.raises(RecordTooLarge) as err:
        RecordScanner().feed(_record(10) + _record(TLS_RECORD_LIMIT + 1)[:7])
    assert err.value.length == TLS_RECORD_LIMIT + 1


def test_luhn() -> None:
    assert luhn_valid("490154203237518")  # the classic IMEI example
    assert not luhn_valid("490154203237519")
    assert luhn_digit("49015420323751") == "8"


def test_csr_null_quirk_keeps_signature_over_info() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    clean = make_csr(key, parse_attributes("", "uuid-1"), null_quirk=False)
    quirky = add_null_parameter(clean)
    assert len(quirky) == len(clean) + 2
    assert b"\x30\x0c" + ECDSA_SHA256_OID_TLV + NULL_TLV in quirky
    csr = x509.load_der_x509_csr(clean)
    assert csr.is_signature_valid and csr.subject.rfc4514_string() == "CN=uuid-1"
    with pytest.raises(ValueError):
        add_null_parameter(quirky)  # already quirky: refuse rather than double it


def test_validate_content() -> None:
    with pytest.raises(ContentError) as e:
        validate(0, "", None)
    assert e.value.cme is None  # empty → plain ERROR
    for ctype, content in ((0, "hello"), (1, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
                           (2, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"), (3, "abc")):
        with pytest.raises(ContentError) as e:
            validate(ctype, content, None)
        assert e.value.cme == 527
    validate(3, "00ff", None)
    validate(4, "identity", None)
