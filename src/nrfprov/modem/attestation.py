"""Readers of the modem's ``%KEYGEN`` and ``%ATTESTTOKEN`` output, with the COSE digest check.

``%KEYGEN: "<b64url(DER)>.<b64url(COSE_Sign1)>"`` [Nordic AT reference, %KEYGEN]. The COSE_Sign1 (RFC 9052
§4.2, CBOR tag 18) carries a protected header ``{1: -7}`` (ES256), an unprotected header whose values
are CBOR-encoded key types (-2 identity key, -4 Nordic base production key, -5 Nordic base R&D key), a
payload ``[payload_id (9 CSR_msg_v1, 8 pubkey_msg_v2), device UUID (16 bytes), sec_tag (a CBOR integer
inside a byte string), SHA-256 of the DER before the dot, nonce (16 bytes)]`` and a 64-byte r||s
signature (field meanings as parsed by nrfcloud-utils ``modem_credentials_parser.py``).

We check what a host can check: that the digest covers exactly the DER we received (a UART bit flip
or a reply mixed up with another would change it) and that the sec tag is the one we asked for. The
signature needs Nordic's public keys, which a host does not have; the raw signature is kept for a
service that does (nRF Cloud's identity service).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import cbor2

from nrfprov.errors import AtProtocolError, AttestationError

#: COSE key types in the unprotected header [nrfcloud-utils modem_credentials_parser.py].
KEY_TYPE_NAMES = {-2: "identity key", -4: "Nordic base production key", -5: "Nordic base R&D key"}
PAYLOAD_CSR = 9  # CSR_msg_v1
PAYLOAD_PUBKEY = 8  # pubkey_msg_v2
COSE_SIGN1_TAG = 18  # RFC 9052 §2
ES256 = -7  # RFC 9053 §2.1
_SEC_TAG_MODULUS = 1 << 32  # sec tags are uint32; the modem may encode the top half as negative int32

_LINE_RE = re.compile(r'%(KEYGEN|ATTESTTOKEN): *"([A-Za-z0-9_\-]+)(?:\.([A-Za-z0-9_\-]*))?"')


@dataclass(frozen=True)
class CoseSign1:
    """The parts of a modem COSE_Sign1 that a host can read."""

    key_type: int | None  # -2 / -4 / -5 (see KEY_TYPE_NAMES), None if the header carries none
    payload: bytes | None
    signature: bytes  # 64 bytes r||s, over the RFC 9052 Sig_structure

    @property
    def key_name(self) -> str:
        if self.key_type is None:
            return "no key type"
        return KEY_TYPE_NAMES.get(self.key_type, f"unknown key type {self.key_type}")


@dataclass(frozen=True)
class KeygenOutput:
    """``%KEYGEN`` output. ``der`` is exactly what the modem sent (mfw CSR quirk included)."""

    der: bytes
    is_csr: bool
    device_uuid: str | None = None  # None: the modem sent no COSE part
    sec_tag: int | None = None
    digest: bytes | None = None
    nonce: bytes | None = None
    cose: CoseSign1 | None = None


@dataclass(frozen=True)
class AttestationToken:
    """``%ATTESTTOKEN`` output: the device identity message and its COSE_Sign1 (nil payload)."""

    msg_type: int
    device_uuid: str
    device_type: int
    firmware_uuid: str
    cose: CoseSign1 | None


def _b64url(text: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise AtProtocolError(f"{what} is not valid base64url", data=text.encode()[:64]) from exc


def _split(line: str, kind: str) -> tuple[str, str | None]:
    m = _LINE_RE.match(line)
    if m is None or m.group(1) != kind:
        raise AtProtocolError(f"unexpected %{kind} line {line[:80]!r}", data=line.encode()[:64])
    return m.group(2), (m.group(3) or None)


def parse_cose_sign1(raw: bytes, what: str) -> CoseSign1:
    """Decode a modem COSE_Sign1; AtProtocolError when it is not one."""
    try:
        obj = cbor2.loads(raw)
    except (cbor2.CBORDecodeError, ValueError, TypeError) as exc:
        raise AtProtocolError(f"{what}: the COSE part is not CBOR", data=raw[:64]) from exc
    if not isinstance(obj, cbor2.CBORTag) or obj.tag != COSE_SIGN1_TAG:
        raise AtProtocolError(f"{what}: the COSE part is not a COSE_Sign1 (CBOR tag 18)", data=raw[:64])
    parts = obj.value
    if not isinstance(parts, (list, tuple)) or len(parts) != 4:
        raise AtProtocolError(f"{what}: a COSE_Sign1 has four parts", data=raw[:64])
    protected, unprotected, payload, signature = parts
    try:
        header = cbor2.loads(protected) if isinstance(protected, bytes) else None
        alg = header.get(1) if isinstance(header, Mapping) else None
    except (cbor2.CBORDecodeError, ValueError, TypeError, AttributeError):
        alg = None
    if alg != ES256:
        raise AtProtocolError(f"{what}: COSE algorithm is not ES256 ({{1: -7}})", data=raw[:64])
    if not isinstance(signature, bytes) or len(signature) != 64:
        raise AtProtocolError(f"{what}: the COSE signature is not 64 bytes r||s", data=raw[:64])
    if payload is not None and not isinstance(payload, bytes):
        raise AtProtocolError(f"{what}: the COSE payload is not a byte string", data=raw[:64])
    key_type = None
    if isinstance(unprotected, Mapping):  # cbor2 ≥ 6 decodes maps inside tags as frozendict
        for value in unprotected.values():
            try:
                decoded = cbor2.loads(value) if isinstance(value, bytes) else value
            except (cbor2.CBORDecodeError, ValueError, TypeError):
                continue
            if isinstance(decoded, int):
                key_type = decoded
                break
    return CoseSign1(key_type, payload, signature)


def _uuid(raw: object, what: str) -> str:
    if not isinstance(raw, bytes) or len(raw) != 16:
        raise AtProtocolError(f"{what}: the device UUID is not 16 bytes")
    return str(uuid.UUID(bytes=raw))


def parse_keygen_output(line: str, *, sec_tag: int | None = None) -> KeygenOutput:
    """Read a ``%KEYGEN:`` line and check its COSE part against the DER it came with.

    Raises :class:`AttestationError` when the COSE digest is not the SHA-256 of the DER received, or
    when it names another sec tag than ``sec_tag``; :class:`AtProtocolError` when the line is malformed.
    """
    der_b64, cose_b64 = _split(line, "KEYGEN")
    der = _b64url(der_b64, "%KEYGEN DER")
    is_csr = True
    if cose_b64 is None:
        return KeygenOutput(der, is_csr)
    cose = parse_cose_sign1(_b64url(cose_b64, "%KEYGEN COSE"), "%KEYGEN")
    try:
        body = cbor2.loads(cose.payload) if cose.payload is not None else None
    except (cbor2.CBORDecodeError, ValueError, TypeError) as exc:
        raise AtProtocolError("%KEYGEN: the COSE payload is not CBOR") from exc
    if not isinstance(body, (list, tuple)) or len(body) != 5:
        raise AtProtocolError("%KEYGEN: the COSE payload is not [id, uuid, sec_tag, digest, nonce]")
    payload_id, raw_uuid, raw_tag, digest, nonce = body
    if payload_id not in (PAYLOAD_CSR, PAYLOAD_PUBKEY):
        raise AtProtocolError(f"%KEYGEN: unknown COSE payload id {payload_id!r} (9 CSR, 8 public key)")
    is_csr = payload_id == PAYLOAD_CSR
    device_uuid = _uuid(raw_uuid, "%KEYGEN")
    try:
        tag = cbor2.loads(raw_tag) if isinstance(raw_tag, bytes) else None
    except (cbor2.CBORDecodeError, ValueError, TypeError):
        tag = None
    if not isinstance(tag, int):
        raise AtProtocolError("%KEYGEN: the COSE sec tag is not a CBOR-encoded integer")
    tag %= _SEC_TAG_MODULUS  # a negative int32 stands for a tag ≥ 2^31 (nrfcloud-utils does the same)
    if not isinstance(digest, bytes) or len(digest) != 32:
        raise AtProtocolError("%KEYGEN: the COSE digest is not 32 bytes")
    if not isinstance(nonce, bytes) or len(nonce) != 16:
        raise AtProtocolError("%KEYGEN: the COSE nonce is not 16 bytes")
    actual = hashlib.sha256(der).digest()
    what = "CSR" if is_csr else "public key"
    if digest != actual:
        raise AttestationError(
            f"%KEYGEN: the modem's COSE signature covers a {what} with SHA-256 {digest.hex()}, but the "
            f"{what} received hashes to {actual.hex()}: the reply was corrupted or is not this key's",
            expected=digest.hex(),
            actual=actual.hex(),
        )
    if sec_tag is not None and tag != sec_tag:
        raise AttestationError(
            f"%KEYGEN: the COSE payload names sec tag {tag}, but the key was generated in sec tag {sec_tag}",
            expected=str(sec_tag),
            actual=str(tag),
        )
    return KeygenOutput(der, is_csr, device_uuid, tag, digest, nonce, cose)


def parse_attest_token(line: str) -> AttestationToken:
    """Read an ``%ATTESTTOKEN:`` line: ``[1, device UUID, device type, firmware UUID]`` + COSE_Sign1."""
    body_b64, cose_b64 = _split(line, "ATTESTTOKEN")
    raw = _b64url(body_b64, "%ATTESTTOKEN body")
    try:
        body = cbor2.loads(raw)
    except (cbor2.CBORDecodeError, ValueError, TypeError) as exc:
        raise AtProtocolError("%ATTESTTOKEN: the body is not CBOR", data=raw[:64]) from exc
    if not isinstance(body, (list, tuple)) or len(body) != 4 or not isinstance(body[2], int):
        raise AtProtocolError("%ATTESTTOKEN: the body is not [msg_type, uuid, device_type, fw_uuid]")
    cose = parse_cose_sign1(_b64url(cose_b64, "%ATTESTTOKEN COSE"), "%ATTESTTOKEN") if cose_b64 else None
    return AttestationToken(
        int(body[0]), _uuid(body[1], "%ATTESTTOKEN"), body[2], _uuid(body[3], "%ATTESTTOKEN firmware"), cose
    )
