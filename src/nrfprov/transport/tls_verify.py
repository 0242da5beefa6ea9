"""Explain why Mbed TLS rejected a server certificate (it only says 0x2700, "verify failed").

The server's leaf certificate is taken from the cleartext handshake (TLS 1.2) by the record scanner
and checked here with ``cryptography`` for the two causes a user can fix: a host name the certificate
does not carry, and an issuer the configured CA file does not contain.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:
    from nrfprov.transport.credentials import TlsCredentials


def names_of(cert: x509.Certificate) -> list[str]:
    """DNS names a TLS client may match: the SAN DNS entries, else the subject CN (RFC 6125 §6.4.4)."""
    try:
        dns = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName)
    except x509.ExtensionNotFound:  # no SAN at all: the CN is the name
        dns = []
    if dns:
        return list(dns)
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def name_matches(pattern: str, host: str) -> bool:
    """RFC 6125 §6.4.3 matching with a single left-most ``*`` label."""
    p, h = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if p.startswith("*."):
        return "." in h and h.split(".", 1)[1] == p[2:]
    return p == h


def explain_verify_failure(der: bytes | None, server_name: str, credentials: TlsCredentials) -> str:
    if der is None:
        return "verification failed (the certificate was not seen in the handshake)"
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return "verification failed (the server's certificate does not parse)"
    names = names_of(cert)
    if not any(name_matches(n, server_name) for n in names):
        return f"host name {server_name!r} is not among the certificate's names {names}"
    now = dt.datetime.now(dt.UTC)
    if cert.not_valid_after_utc < now or cert.not_valid_before_utc > now:
        return (f"the certificate is outside its validity period "
                f"({cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})")
    subjects = set()
    for pem in _cert_blocks(credentials.ca_pem):
        try:
            subjects.add(x509.load_pem_x509_certificate(pem.encode()).subject.rfc4514_string())
        except ValueError:
            continue
    issuer = cert.issuer.rfc4514_string()
    if issuer not in subjects:
        return f"it was issued by {issuer!r}, which is not in the trusted CA file ({credentials.source})"
    return "the signature or chain did not verify against the trusted CA"


def _cert_blocks(pem: str) -> list[str]:
    from nrfprov.transport.credentials import split_certificates

    return split_certificates(pem)
