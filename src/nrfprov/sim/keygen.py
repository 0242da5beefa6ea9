"""``AT%KEYGEN`` and ``AT%ATTESTTOKEN`` output in the modem's layouts, signed with the device's own key.

``%KEYGEN: "<b64url(CSR or public key DER)>.<b64url(COSE_Sign1)>"`` [Nordic AT reference, %KEYGEN],
base64url without padding. The COSE_Sign1 (RFC 9052 §4.2, CBOR tag 18) is laid out as the modem's
(field meanings as parsed by nrfcloud-utils ``modem_credentials_parser.py``):

* protected header ``{1: -7}`` (alg ES256), as a CBOR-encoded byte string;
* unprotected header: a map whose values are CBOR-encoded key types: -2 identity key, -4 Nordic base
  production key, -5 Nordic base R&D key. Which label carries it is not published; we use 4 (``kid``,
  RFC 9052 §3.1), whose value is a byte string as a CBOR-encoded integer is;
* payload: a CBOR-encoded array ``[payload_id, device_uuid (16 bytes), sec_tag (a CBOR-encoded integer
  in a byte string), SHA-256 of the DER that precedes the dot (32 bytes), nonce (16 bytes)]`` with payload
  id 9 ``CSR_msg_v1`` or 8 ``pubkey_msg_v2``;
* signature: 64 bytes raw r||s, ES256 over the Sig_structure ``["Signature1", protected, h'', payload]``
  (RFC 9052 §4.4).

``%ATTESTTOKEN: "<b64url(CBOR [1, device_uuid, device_type, firmware_uuid])>.<b64url(COSE_Sign1)>"``
with a nil COSE payload: the signed content is detached, and we sign the first part (the attestation
CBOR) in its place (RFC 9052 §4.1, detached content; the modem's choice here is not published).

The simulator has no Nordic key: it signs with a per-device P-256 key of its own (``attest_key.pem``),
so only the layout, never the trust chain, matches a real device.

The CSR quirk: mfw 1.3.7 / 2.0.2 encode the CSR's signatureAlgorithm (ecdsa-with-SHA256) with a
spurious NULL parameter (nrfcloud-utils commit 040fdaa ``_normalize_ecdsa_csr_der``). The
signature covers only certificationRequestInfo, so adding the NULL keeps the CSR verifiable by a
lenient parser while strict X.509 parsers refuse it — exactly what clients must cope with. The COSE
digest covers the DER as emitted, quirk included (nrfcloud-utils hashes the undecoded body).
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


# COSE key-type values of the unprotected header (nrfcloud-utils modem_credentials_parser.py).
KEY_TYPES = {"identity": -2, "production": -4, "rd": -5}
_KID = 4  # COSE header label 'kid' (RFC 9052 §3.1); the modem's label is not published
PAYLOAD_CSR = 9  # CSR_msg_v1
PAYLOAD_PUBKEY = 8  # pubkey_msg_v2
MSG_DEVICE_IDENTITY = 1  # "Device identity message v1"
# Device types of %ATTESTTOKEN (nrfcloud-utils modem_credentials_parser.py): 1 nRF9160 SIAA, 2 nRF9160 SIBA,
# 3 NRF9160 SIAA, 4 nRF9161 LACA, 5 nRF9131 LACA, 6 nRF9151 LACA.
DEVICE_TYPES = {"nRF9160-SIAA": 1, "nRF9160-SIBA": 2, "nRF9161-LACA": 4, "nRF9131-LACA": 5, "nRF9151-LACA": 6}


def cose_sign1(
    payload: bytes | None, key: ec.EllipticCurvePrivateKey, *, key_type: int, detached: bytes | None = None
) -> bytes:
    """COSE_Sign1 with alg ES256 (-7) and a raw r||s signature. ``payload=None`` → nil payload, and the
    Sig_structure carries ``detached`` instead (RFC 9052 §4.4)."""
    protected = cbor2.dumps({1: -7})
    content = payload if payload is not None else (detached or b"")
    to_sign = cbor2.dumps(["Signature1", protected, b"", content])
    r, s = decode_dss_signature(key.sign(to_sign, ec.ECDSA(hashes.SHA256())))
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    unprotected = {_KID: cbor2.dumps(key_type)}
    return cbor2.dumps(cbor2.CBORTag(18, [protected, unprotected, payload, sig]))


def keygen_reply(
    body_der: bytes,
    *,
    device_uuid: str,
    sec_tag: int,
    attest_key: ec.EllipticCurvePrivateKey,
    csr: bool = True,
    key_type: int = KEY_TYPES["production"],
) -> str:
    """The quoted value of ``%KEYGEN:``: the DER (a CSR, or the public key) and its COSE_Sign1."""
    import uuid

    payload = cbor2.dumps(
        [
            PAYLOAD_CSR if csr else PAYLOAD_PUBKEY,
            uuid.UUID(device_uuid).bytes,
            cbor2.dumps(sec_tag),
            hashlib.sha256(body_der).digest(),
            secrets.token_bytes(16),
        ]
    )
    return f"{b64url(body_der)}.{b64url(cose_sign1(payload, attest_key, key_type=key_type))}"


def attest_token(
    *,
    device_uuid: str,
    device_type: int,
    firmware_uuid: str,
    attest_key: ec.EllipticCurvePrivateKey,
    key_type: int = KEY_TYPES["production"],
) -> str:
    """``%ATTESTTOKEN`` value: b64url(CBOR device identity).b64url(COSE_Sign1 with a nil payload)."""
    import uuid

    body = cbor2.dumps(
        [MSG_DEVICE_IDENTITY, uuid.UUID(device_uuid).bytes, device_type, uuid.UUID(firmware_uuid).bytes]
    )
    return f"{b64url(body)}.{b64url(cose_sign1(None, attest_key, key_type=key_type, detached=body))}"
