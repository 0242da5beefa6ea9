"""The credentials a provisioning run obtains, and the checks they pass before the modem is touched.

Once the modem is offline and its sec tag deleted, a bad credential costs a device its identity, so
everything that can be checked on the host is checked first: every PEM parses, the key belongs to the
certificate, the certificate is valid now, and each ``AT%CMNG`` write fits the modem's 4096-byte
command buffer [sdk-nrf slm_defines.h; sdk-nrfxlib nrf_modem_limits.h].

Sans-IO: ``now`` is a parameter; nothing here reads a clock or a file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass, field, replace

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nrfprov.errors import CredentialBundleError

#: The modem's AT command buffer [sdk-nrf slm_defines.h; sdk-nrfxlib nrf_modem_limits.h]. We count the CR LF
#: terminator too, so a bundle that passes here cannot be refused by the AT layer's own check.
AT_COMMAND_LIMIT = 4096

#: %CMNG credential types [Nordic AT reference, %CMNG].
TYPE_CA = 0
TYPE_CERT = 1
TYPE_KEY = 2


def cmng_write_command(sec_tag: int, cred_type: int, content: str) -> str:
    """``AT%CMNG=0,<tag>,<type>,"<content>"`` exactly as it is sent (without CR LF)."""
    return f'AT%CMNG=0,{sec_tag},{cred_type},"{content}"'


def normalize_pem(text: str) -> str:
    """LF line breaks, no trailing whitespace, one final LF (the modem needs a real line break after
    each PEM line) [Nordic AT reference, %CMNG; DevZone 127054].

    The modem hashes the content exactly as stored, so one normal form makes the ``%CMNG`` SHA-256
    comparable across a write, a journal and a resumed write. It is the form the modem layer
    (``nrfprov.modem.credentials.normalise_pem``) stores, so normalising again changes nothing.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").strip().split("\n")
    return "\n".join(line.rstrip() for line in lines) + "\n"


def sha256_hex(content: str) -> str:
    """The form ``%CMNG`` list reports: 64 uppercase hex characters of the stored bytes."""
    return hashlib.sha256(content.encode("utf-8")).hexdigest().upper()


@dataclass(frozen=True)
class CredentialBundle:
    """What the cloud issued for one device, plus the CA that goes into the same sec tag.

    ``private_key_pem`` is None in the CSR flow: that key was generated inside the modem and never
    leaves it. ``repr`` hides the key so a log line or traceback cannot leak it.
    """

    certificate_pem: str
    ca_pem: str
    private_key_pem: str | None = field(default=None, repr=False)
    certificate_id: str = ""
    ownership_token: str = field(default="", repr=False)
    thing_name: str = ""

    def normalized(self) -> CredentialBundle:
        key = normalize_pem(self.private_key_pem) if self.private_key_pem is not None else None
        return replace(
            self,
            certificate_pem=normalize_pem(self.certificate_pem),
            ca_pem=normalize_pem(self.ca_pem),
            private_key_pem=key,
        )

    def writes(self) -> list[tuple[int, str]]:
        """(type, content) in the order Nordic's aws_iot_provisioning sample writes a sec tag: CA, client cert, key."""
        out = [(TYPE_CA, self.ca_pem), (TYPE_CERT, self.certificate_pem)]
        if self.private_key_pem is not None:
            out.append((TYPE_KEY, self.private_key_pem))
        return out

    def fingerprint(self) -> str:
        """SHA-256 of the certificate DER, the form AWS uses for ``certificateId``."""
        cert = x509.load_pem_x509_certificate(self.certificate_pem.encode())
        return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _load_certs(pem: str, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem.encode("utf-8"))
    except ValueError as exc:
        raise CredentialBundleError(f"{what} is not a PEM certificate: {exc}") from exc
    if not certs:
        raise CredentialBundleError(f"{what} holds no certificate")
    return certs


#: SHA-256 of a private key's PEM → DER SubjectPublicKeyInfo of that key, for keys that passed the
#: full load (``_load_key``, including cryptography's RSA consistency check). A bundle is checked on
#: receipt and again before the write (a resume may have aged it), and the combined flow copies it
#: (``replace(..., thing_name=...)``) in between; the full RSA-2048 check costs ~42-165 ms holding
#: the GIL (benchmarks/notes.md finding 4), so a byte-identical key is loaded once and the second
#: check compares the remembered public key with the certificate. Only digests and public keys are
#: kept (the digest is what ``%CMNG`` list reports for a stored key anyway), never key material.
#: One run checks one key; 8 entries bound the memo for a process that runs many provisionings.
_KEY_MEMO_LIMIT = 8
_verified_keys: dict[bytes, bytes] = {}


def key_public_der(pem: str) -> bytes:
    """The public key of ``pem`` after one full, validating load; later calls reuse the result."""
    digest = hashlib.sha256(pem.encode("utf-8")).digest()
    known = _verified_keys.get(digest)
    if known is not None:
        return known
    public = _public_der(_load_key(pem))  # raises CredentialBundleError: nothing is remembered
    while len(_verified_keys) >= _KEY_MEMO_LIMIT:
        _verified_keys.pop(next(iter(_verified_keys)), None)  # oldest first (dicts keep order)
    _verified_keys[digest] = public
    return public


def _load_key(pem: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError) as exc:
        # The exception text from cryptography names the format problem, never the key bytes.
        raise CredentialBundleError(f"private key is not an unencrypted PEM key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CredentialBundleError(
            f"private key type {type(key).__name__} is not supported by the nRF91 modem TLS (RSA or EC only)"
        )
    return key


def _public_der(obj: x509.Certificate | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return obj.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _check_validity(cert: x509.Certificate, what: str, now: _dt.datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise CredentialBundleError(
            f"{what} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (now {now:%Y-%m-%d %H:%M})",
            hint="check the host clock, or wait until the certificate becomes valid",
        )
    if now > cert.not_valid_after_utc:
        raise CredentialBundleError(
            f"{what} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
            hint="request new credentials (run again without --resume)",
        )


def check_bundle(
    bundle: CredentialBundle,
    *,
    sec_tag: int,
    now: _dt.datetime,
    csr_public_key_der: bytes | None = None,
) -> None:
    """Raise ``CredentialBundleError`` naming the first reason this bundle must not be written.

    In the CSR flow there is no private key; pass the public key from the modem's CSR instead, and
    the certificate must carry exactly that key.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    certs = _load_certs(bundle.certificate_pem, "client certificate")
    cert = certs[0]
    _check_validity(cert, "client certificate", now)
    for i, ca in enumerate(_load_certs(bundle.ca_pem, "CA certificate")):
        _check_validity(ca, f"CA certificate #{i + 1}", now)
    if bundle.private_key_pem is not None:
        if key_public_der(bundle.private_key_pem) != _public_der(cert):
            raise CredentialBundleError(
                "private key does not match the client certificate",
                hint="the two parts came from different requests; run again without --resume",
            )
    elif csr_public_key_der is not None and csr_public_key_der != _public_der(cert):
        raise CredentialBundleError("certificate does not carry the public key of the modem's CSR")
    for cred_type, content in bundle.writes():
        if '"' in content:
            raise CredentialBundleError(
                f"credential type {cred_type} contains a double quote, which AT%CMNG cannot carry"
            )
        size = len(cmng_write_command(sec_tag, cred_type, content).encode("utf-8")) + 2  # + CR LF
        if size > AT_COMMAND_LIMIT:
            raise CredentialBundleError(
                f"AT%CMNG write of type {cred_type} would be {size} bytes, over the modem's "
                f"{AT_COMMAND_LIMIT}-byte command limit",
                hint="use a shorter CA file (one root instead of a bundle) or a smaller key (EC P-256)",
            )
