"""nrfprov's reader of %KEYGEN / %ATTESTTOKEN: the COSE digest must match the DER received.

The vectors are built here from the published layout (Nordic AT reference %KEYGEN; RFC 9052), not with
the simulator's code, so the reader and the simulator are checked against the same facts separately.
"""

from __future__ import annotations

import base64
import hashlib
import uuid

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from nrfprov.errors import AtProtocolError, AttestationError, ModemError
from nrfprov.modem.attestation import parse_attest_token, parse_keygen_output

DEV = uuid.UUID("50363154-3931-44f0-8022-121b6401627d")
KEY = ec.generate_private_key(ec.SECP256R1())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sign1(payload: bytes | None, key_type: int, label: int = 4, detached: bytes = b"") -> bytes:
    protected = cbor2.dumps({1: -7})
    content = payload if payload is not None else detached
    to_sign = cbor2.dumps(["Signature1", protected, b"", content])
    r, s = decode_dss_signature(KEY.sign(to_sign, ec.ECDSA(hashes.SHA256())))
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return cbor2.dumps(cbor2.CBORTag(18, [protected, {label: cbor2.dumps(key_type)}, payload, sig]))


def keygen_line(der: bytes, *, tag: int = 16842753, key_type: int = -4, payload_id: int = 9,
                digest: bytes | None = None, tag_cbor: bytes | None = None) -> str:
    payload = cbor2.dumps([payload_id, DEV.bytes, tag_cbor if tag_cbor is not None else cbor2.dumps(tag),
                           digest if digest is not None else hashlib.sha256(der).digest(), b"n" * 16])
    return f'%KEYGEN: "{_b64(der)}.{_b64(_sign1(payload, key_type))}"'


DER = bytes.fromhex("3081") + b"\x30" * 40  # the reader does not parse the DER itself


@pytest.mark.parametrize("key_type", [-4, -5, -2])
def test_keygen_reader_accepts_each_key_type_the_modem_signs_with(key_type: int) -> None:
    out = parse_keygen_output(keygen_line(DER, key_type=key_type), sec_tag=16842753)
    assert out.der == DER and out.is_csr
    assert out.device_uuid == str(DEV) and out.sec_tag == 16842753
    assert out.digest == hashlib.sha256(DER).digest() and out.nonce == b"n" * 16
    assert out.cose is not None and out.cose.key_type == key_type
    assert "Nordic" in out.cose.key_name or key_type == -2


def test_keygen_reader_rejects_a_digest_that_is_not_the_ders() -> None:
    line = keygen_line(DER, digest=hashlib.sha256(DER + b"x").digest())
    with pytest.raises(AttestationError) as err:
        parse_keygen_output(line)
    assert isinstance(err.value, ModemError) and err.value.exit_code == 3
    assert err.value.expected == hashlib.sha256(DER + b"x").hexdigest()
    assert err.value.actual == hashlib.sha256(DER).hexdigest()
    assert "corrupted" in str(err.value)
    # a flipped bit in the DER (UART noise) is caught the same way
    _der_b64, cose_b64 = keygen_line(DER)[len('%KEYGEN: "') : -1].split(".")
    flipped = _b64(bytes([DER[0] ^ 1]) + DER[1:])
    with pytest.raises(AttestationError):
        parse_keygen_output(f'%KEYGEN: "{flipped}.{cose_b64}"')


def test_keygen_reader_sec_tag_public_key_and_high_tags() -> None:
    with pytest.raises(AttestationError, match="sec tag 5"):
        parse_keygen_output(keygen_line(DER, tag=5), sec_tag=6)
    out = parse_keygen_output(keygen_line(DER, payload_id=8))
    assert not out.is_csr
    # a tag ≥ 2^31 encoded as a negative int32
    out = parse_keygen_output(keygen_line(DER, tag_cbor=cbor2.dumps(-4)))
    assert out.sec_tag == 4294967292
    # no COSE part (the reader cannot check, and says so by leaving the fields empty)
    out = parse_keygen_output(f'%KEYGEN: "{_b64(DER)}"')
    assert out.der == DER and out.cose is None and out.digest is None


@pytest.mark.parametrize("bad", [
    '%KEYGEN: nope',
    f'%KEYGEN: "{_b64(DER)}.{_b64(b"not cbor at all")}"',
    f'%KEYGEN: "{_b64(DER)}.{_b64(cbor2.dumps([1, 2, 3, 4]))}"',
    f'%KEYGEN: "{_b64(DER)}.{_b64(cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -35}), {}, b"", b"s" * 64])))}"',
])
def test_keygen_reader_malformed_is_a_protocol_error(bad: str) -> None:
    with pytest.raises(AtProtocolError):
        parse_keygen_output(bad)


def test_attest_token_reader() -> None:
    fw = uuid.uuid4()
    body = cbor2.dumps([1, DEV.bytes, 6, fw.bytes])
    tok = parse_attest_token(f'%ATTESTTOKEN: "{_b64(body)}.{_b64(_sign1(None, -4, detached=body))}"')
    assert (tok.msg_type, tok.device_uuid, tok.device_type, tok.firmware_uuid) == (1, str(DEV), 6, str(fw))
    assert tok.cose is not None and tok.cose.payload is None and tok.cose.key_type == -4
