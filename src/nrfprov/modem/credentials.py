"""Credential types, ``%CMNG`` list parsing, PEM normalisation and the ``%KEYGEN`` CSR quirk."""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import re
from dataclasses import dataclass

from nrfprov.errors import AtProtocolError, PayloadError


class CredentialType(enum.IntEnum):
    """``%CMNG`` credential types [Nordic AT reference, %CMNG; 8..11 as named by nrfcredstore]."""

    ROOT_CA_CERT = 0
    CLIENT_CERT = 1
    CLIENT_KEY = 2
    PSK = 3
    PSK_IDENTITY = 4
    PUBLIC_KEY = 5
    DEVICE_IDENTITY_PUBLIC_KEY = 6
    RESERVED = 7
    ENDORSEMENT_KEY = 8
    OWNERSHIP_KEY = 9
    NORDIC_ID_ROOT_CA = 10
    NORDIC_PUBLIC_KEY = 11

    @classmethod
    def parse(cls, text: str | int) -> CredentialType:
        """A number, a member name (``CLIENT_KEY``) or a short alias (``ca``, ``cert``, ``key``)."""
        if isinstance(text, int) or str(text).isdigit():
            try:
                return cls(int(text))
            except ValueError as exc:
                raise PayloadError(f"credential type {text} outside 0..11") from exc
        key = str(text).strip().upper().replace("-", "_")
        key = _ALIASES.get(key, key)
        try:
            return cls[key]
        except KeyError as exc:
            names = ", ".join(m.name for m in cls)
            raise PayloadError(f"unknown credential type {text!r}", hint=f"use 0..11 or one of {names}") from exc


_ALIASES = {"CA": "ROOT_CA_CERT", "ROOT_CA": "ROOT_CA_CERT", "CERT": "CLIENT_CERT", "KEY": "CLIENT_KEY",
            "IDENTITY": "PSK_IDENTITY"}

#: Tags the modem reserves for itself; they appear in lists and must not be touched
#: [Nordic AT reference, %CMNG; nrfcredstore ``deleteall`` skips them].
RESERVED_TAGS = frozenset({4294967292, 4294967293, 4294967294})


@dataclass(frozen=True)
class CredentialInfo:
    """One ``%CMNG`` list entry. ``sha256`` is 64 uppercase hex chars, or None if not reported."""

    sec_tag: int
    type: CredentialType | int
    sha256: str | None


_CMNG_RE = re.compile(r'%CMNG: *(\d+) *, *(\d+)(?: *, *"([0-9A-Fa-f]{64})")?')


def parse_cmng_list(lines: list[str]) -> list[CredentialInfo]:
    out: list[CredentialInfo] = []
    for line in lines:
        m = _CMNG_RE.match(line)
        if m is None:
            raise AtProtocolError(f"unexpected %CMNG list line {line[:80]!r}", data=line.encode()[:64])
        raw_type = int(m.group(2))
        ctype: CredentialType | int
        try:
            ctype = CredentialType(raw_type)
        except ValueError:
            ctype = raw_type
        out.append(CredentialInfo(int(m.group(1)), ctype, m.group(3).upper() if m.group(3) else None))
    return out


def normalise_pem(text: str) -> str:
    """The exact content we store: LF line breaks, no trailing blank lines, one final LF.

    Every PEM line must end with a real line break [Nordic AT reference, %CMNG; DevZone 127054];
    LF is what nrfcredstore sends.
    The modem hashes exactly what it stored, so the verification hash is computed on this string.
    """
    body = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not body:
        raise PayloadError("credential file is empty")
    if "\\n" in body and "\n" not in body:
        raise PayloadError(
            "credential has '\\n' as two characters instead of line breaks",
            hint="the modem rejects that (CME 527); write the PEM with real newlines",
        )
    try:
        body.encode("ascii")
    except UnicodeEncodeError as exc:
        raise PayloadError("credential contains non-ASCII characters", offset=exc.start) from exc
    return body + "\n"


_HEX_RE = re.compile(r"[0-9A-Fa-f]+")


def normalise_content(cred_type: int, text: str) -> str:
    """What to store for ``cred_type``: PEM types via :func:`normalise_pem`; a PSK (3) is a hex
    string and a PSK identity (4) plain text, both without line breaks [Nordic AT reference, %CMNG]."""
    if cred_type == CredentialType.PSK:
        value = text.strip()
        if not _HEX_RE.fullmatch(value) or len(value) % 2:
            raise PayloadError("a PSK must be an even number of hex digits", hint="e.g. 000102030405")
        return value
    if cred_type == CredentialType.PSK_IDENTITY:
        value = text.strip()
        if not value or "\n" in value or "\r" in value:
            raise PayloadError("a PSK identity must be one non-empty line of text")
        try:
            value.encode("ascii")
        except UnicodeEncodeError as exc:
            raise PayloadError("PSK identity contains non-ASCII characters", offset=exc.start) from exc
        return value
    return normalise_pem(text)


def content_sha256(content: str) -> str:
    return hashlib.sha256(content.encode("ascii")).hexdigest().upper()


def is_private_key(content: str) -> bool:
    return "PRIVATE KEY-----" in content


# --- %KEYGEN ------------------------------------------------------------------------------------

_KEYGEN_RE = re.compile(r'%KEYGEN: *"([A-Za-z0-9_\-]+)(?:\.([A-Za-z0-9_\-]*))?"')


def parse_keygen(line: str) -> bytes:
    """``%KEYGEN: "<b64url CSR DER>.<b64url COSE>"`` → CSR DER (URL-safe base64, padding added)."""
    m = _KEYGEN_RE.match(line)
    if m is None:
        raise AtProtocolError(f"unexpected %KEYGEN line {line[:80]!r}", data=line.encode()[:64])
    b64 = m.group(1)
    try:
        return base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
    except (binascii.Error, ValueError) as exc:
        raise AtProtocolError("%KEYGEN CSR is not valid base64url", data=b64.encode()[:64]) from exc


# ecdsa-with-SHA256 1.2.840.10045.4.3.2, DER-encoded OID
_ECDSA_SHA256_OID = bytes.fromhex("06082a8648ce3d040302")
_NULL = b"\x05\x00"


def _tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the DER element at ``pos``."""
    if pos + 2 > len(der):
        raise PayloadError("truncated DER", offset=pos)
    tag, first = der[pos], der[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 3 or pos + n > len(der):
            raise PayloadError("unsupported DER length", offset=pos)
        length = int.from_bytes(der[pos : pos + n], "big")
        pos += n
    if pos + length > len(der):
        raise PayloadError("DER element runs past the end", offset=pos)
    return tag, pos, pos + length


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def normalise_csr_der(der: bytes) -> bytes:
    """Drop the spurious NULL parameter mfw 1.3.7 / 2.0.2 put in the CSR's ecdsa-with-SHA256
    ``signatureAlgorithm`` (RFC 5758 §3.2 says the parameters MUST be absent); strict parsers reject
    it [nrfcloud-utils commit 040fdaa, ``_normalize_ecdsa_csr_der``]. Other CSRs pass unchanged."""
    tag, start, end = _tlv(der, 0)
    if tag != 0x30 or end != len(der):
        raise PayloadError("CSR is not one DER SEQUENCE")
    _, _, info_end = _tlv(der, start)  # certificationRequestInfo
    alg_tag, alg_start, alg_end = _tlv(der, info_end)
    alg = der[alg_start:alg_end]
    if alg_tag != 0x30 or alg != _ECDSA_SHA256_OID + _NULL:
        return der
    new_alg = b"\x30" + _der_len(len(_ECDSA_SHA256_OID)) + _ECDSA_SHA256_OID
    body = der[start:info_end] + new_alg + der[alg_end:end]
    return b"\x30" + _der_len(len(body)) + body
