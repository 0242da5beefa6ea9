"""Pure parts of the simulator: throttle arithmetic, TLS record scanner, Luhn, CSR quirk, content checks."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from nrfprov.sim.keygen import ECDSA_SHA256_OID_TLV, NULL_TLV, add_null_parameter, make_csr, parse_attributes
from nrfprov.sim.store import ContentError, luhn_digit, luhn_valid, validate
from nrfprov.sim.tlslimits import TLS_RECORD_LIMIT, RecordScanner, RecordTooLarge
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


def _hs_record(body: bytes) -> bytes:
    return bytes([22, 3, 3]) + len(body).to_bytes(2, "big") + body


def _certificate_message(*sizes: int) -> bytes:
    certs = b"".join(n.to_bytes(3, "big") + b"c" * n for n in sizes)
    body = len(certs).to_bytes(3, "big") + certs
    return bytes([11]) + len(body).to_bytes(3, "big") + body


def test_record_scanner_measures_the_server_chain_not_handshake_record_sizes() -> None:
    from nrfprov.sim.tlslimits import SERVER_CHAIN_LIMIT, ChainTooLarge

    hello = bytes([2]) + (40).to_bytes(3, "big") + b"h" * 40
    ok = hello + _certificate_message(1500, 1500, 1096)  # 4096 bytes of DER: at the limit
    # one handshake record far over 2303 bytes, then the same split over three records, byte by byte
    s = RecordScanner()
    s.feed(_hs_record(ok))
    assert s.chain_sizes == [1500, 1500, 1096] and s.chain_size == SERVER_CHAIN_LIMIT
    s = RecordScanner()
    stream = _hs_record(ok[:1000]) + _hs_record(ok[1000:3000]) + _hs_record(ok[3000:])
    for i in range(len(stream)):
        s.feed(stream[i : i + 1])
    assert s.chain_size == SERVER_CHAIN_LIMIT
    with pytest.raises(ChainTooLarge) as err:
        RecordScanner().feed(_hs_record(hello + _certificate_message(1500, 1500, 1097)))
    assert err.value.size == 4097 and err.value.count == 3 and "4096-byte limit" in str(err.value)
    # after the server's ChangeCipherSpec the handshake is encrypted: not parsed; data records still limited
    s = RecordScanner()
    s.feed(bytes([20, 3, 3, 0, 1, 1]) + _hs_record(b"\x0b" + b"\xff" * 3000))
    with pytest.raises(RecordTooLarge):
        s.feed(_record(TLS_RECORD_LIMIT + 1)[:5])
