"""``AT%KEYGEN`` output: a real PKCS#10 CSR (optionally with the mfw NULL quirk) + a COSE_Sign1.

Reply shape [Nordic AT reference, %KEYGEN]: ``%KEYGEN: "<b64url(CSR DER)>.<b64url(COSE_Sign1)>"``, no padding.

The quirk: mfw 1.3.7 / 2.0.2 encode the CSR's signatureAlgorithm (ecdsa-with-SHA256) with a
spurious NULL parameter (nrfcloud-utils commit 040fdaa ``_normalize_ecdsa_csr_der``). The
signature covers only certificationRequestInfo, so adding the NULL keeps the CSR verifiable by a
lenient parser while strict X.509 parsers refuse it — exactly what clients must cope with.

The COSE part is shaped like the modem's (CBOR tag 18, ES256 over a Sig_structure) and signed with
the device's attestation key; its payload layout is our own, not Nordic's.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

ECDSA_SHA256_OID_TLV = bytes.fromhex("06082a8648ce3d040302")
NULL_TLV = b"\x05\x00"

_ATTR_OIDS = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
}


class BadAttributes(ValueError):
    """The ``%KEYGEN`` attribute string is malformed."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parse_attributes(attrs: str, default_cn: str) -> x509.Name:
    """``"O=Nordic,CN=dev1"`` → Name. Without attributes the CN is the device UUID."""
    parts = []
    if attrs.strip():
        for item in attrs.split(","):
            key, sep, value = item.partition("=")
            key = key.strip().upper()
            if not sep or key not in _ATTR_OIDS or not value:
                raise BadAttributes(f"bad attribute {item!r}")
            parts.append(x509.NameAttribute(_ATTR_OIDS[key], value))
    else:
        parts.append(x509.NameAttribute(NameOID.COMMON_NAME, default_cn))
    return x509.Name(parts)


def _read_tlv(buf: bytes, off: int) -> tuple[int, int, int]:
    """Return (tag, content_start, end) of the DER TLV at ``off``."""
    tag = buf[off]
    first = buf[off + 1]
    if first < 0x80:
        return tag, off + 2, off + 2 + first
    n = first & 0x7F
    length = int.from_bytes(buf[off + 2 : off + 2 + n], "big")
    start = off + 2 + n
    return tag, start, start + length


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def add_null_parameter(csr_der: bytes) -> bytes:
    """Re-encode the CSR with ``AlgorithmIdentifier { ecdsa-with-SHA256, NULL }`` (the mfw quirk)."""
    tag, start, end = _read_tlv(csr_der, 0)
    assert tag == 0x30 and end == len(csr_der)
    _, _, info_end = _read_tlv(csr_der, start)
    _, alg_start, alg_end = _read_tlv(csr_der, info_end)
    if csr_der[alg_start:alg_end] != ECDSA_SHA256_OID_TLV:
        raise ValueError("CSR signature algorithm is not plain ecdsa-with-SHA256")
    new_alg = _tlv(0x30, ECDSA_SHA256_OID_TLV + NULL_TLV)
    body = csr_der[start:info_end] + new_alg + csr_der[alg_end:]
    return _tlv(0x30, body)


def make_csr(key: ec.EllipticCurvePrivateKey, name: x509.Name, *, null_quirk: bool) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    der = csr.public_bytes(Encoding.DER)
    return add_null_parameter(der) if null_quirk else der


def cose_sign1(payload: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """COSE_Sign1 (RFC 8152 §4.2) with alg ES256 (-7); signature is raw r||s."""
    protected = cbor2.dumps({1: -7})
    to_sign = cbor2.dumps(["Signature1", protected, b"", payload])
    r, s = decode_dss_signature(key.sign(to_sign, ec.ECDSA(hashes.SHA256())))
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, sig]))


def keygen_reply(
    csr_der: bytes, *, device_uuid: str, sec_tag: int, attest_key: ec.EllipticCurvePrivateKey
) -> str:
    """The quoted value of ``%KEYGEN:``: CSR and COSE_Sign1 over [type, uuid, tag, SHA-256(CSR), nonce]."""
    import uuid

    payload = cbor2.dumps(
        [3, uuid.UUID(device_uuid).bytes, sec_tag, hashlib.sha256(csr_der).digest(), secrets.token_bytes(16)]
    )
    return f"{b64url(csr_der)}.{b64url(cose_sign1(payload, attest_key))}"


def attest_token(*, device_uuid: str, imei: str, attest_key: ec.EllipticCurvePrivateKey) -> str:
    """``%ATTESTTOKEN`` value: b64url(CBOR claims).b64url(COSE_Sign1 over them). Our own layout."""
    import uuid

    claims = cbor2.dumps([1, uuid.UUID(device_uuid).bytes, imei, secrets.token_bytes(16)])
    return f"{b64url(claims)}.{b64url(cose_sign1(claims, attest_key))}"
