"""Local PKI for the AWS IoT stand-in: a root CA standing in for Amazon's, leaf certificates, a CRL.

Only ``cryptography`` is used (no nrfprov client code): the stand-in is an independent witness.
Key types: EC P-256 (fast; the modem's ``%KEYGEN`` makes these) and RSA-2048 (what AWS's
CreateKeysAndCertificate always returns [API_CreateKeysAndCertificate]).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeyType = Literal["ec", "rsa"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

KEY_TYPES: tuple[str, ...] = ("ec", "rsa")
# AWS-issued client certificates expire 2049-12-31 [AWS IoT developer guide, x509-client-certs].
DEVICE_NOT_AFTER = dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
CA_LIFETIME = dt.timedelta(days=3650)  # 10 years (our choice for the local CA)
# A missing or expired CRL makes mosquitto refuse *every* client [measured with mosquitto 2.0.11], so the CRL is
# long-lived and re-signed on every revocation.
CRL_LIFETIME = dt.timedelta(days=3650)
# A CSR is a few hundred bytes (P-256) to ~1 KB (RSA-4096); 16 KB leaves room and bounds parsing.
MAX_CSR_PEM = 16 * 1024
_BACKDATE = dt.timedelta(minutes=5)  # tolerate small clock skew between host tools


class CsrInvalid(ValueError):
    """A certificate signing request does not parse or its self-signature does not verify."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def generate_key(key_type: str) -> PrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        # RSA-2048 is what AWS issues; e=65537 is the only exponent anyone uses.
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unknown key type {key_type!r}: use one of {', '.join(KEY_TYPES)}")


def key_to_pem(key: PrivateKey) -> bytes:
    """Traditional PEM (``BEGIN RSA PRIVATE KEY`` / ``BEGIN EC PRIVATE KEY``), the form AWS returns."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def cert_to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def certificate_id(cert: x509.Certificate) -> str:
    """AWS's certificateId: 64 hex chars, the SHA-256 of the certificate's DER
    [AWS API reference, CreateKeysAndCertificate]."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def write_private(path: Path, data: bytes) -> None:
    """Write key material 0600 from the first byte on (no window with wider permissions)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def public_keys_equal(a: PublicKey, b: PublicKey) -> bool:
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_bytes(serialization.Encoding.DER, fmt) == b.public_bytes(serialization.Encoding.DER, fmt)


def _sign_hash(key: PrivateKey) -> hashes.SHA256:
    return hashes.SHA256()


@dataclass
class CertificateAuthority:
    """The stand-in's root CA (EC P-256 by default). Loaded from / saved to a state directory."""

    key: PrivateKey
    cert: x509.Certificate

    @classmethod
    def create(
        cls,
        key_type: str = "ec",
        *,
        now: dt.datetime | None = None,
        common_name: str = "nrfprov local root CA",
        path_length: int | None = 0,
    ) -> CertificateAuthority:
        """A self-signed root. ``path_length`` 0: it signs leaves only; None: intermediates too."""
        now = now or dt.datetime.now(dt.UTC)
        key = generate_key(key_type)
        name = _ca_name(common_name)
        cert = (
            _ca_builder(name, name, key.public_key(), key.public_key(), path_length, now)
            .sign(key, _sign_hash(key))
        )
        return cls(key=key, cert=cert)

    def issue_intermediate(
        self, key_type: str, common_name: str, *, now: dt.datetime | None = None
    ) -> CertificateAuthority:
        """A CA below this one that signs leaves only (how AWS's server chains are built)."""
        now = now or dt.datetime.now(dt.UTC)
        key = generate_key(key_type)
        cert = _ca_builder(
            _ca_name(common_name), self.cert.subject, key.public_key(), self.key.public_key(), 0, now
        ).sign(self.key, _sign_hash(self.key))
        return CertificateAuthority(key=key, cert=cert)

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> CertificateAuthority:
        """Load a CA; ``cert_path`` may hold a bundle, the certificate matching the key is taken."""
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValueError(f"{key_path}: CA key must be EC or RSA")
        for cert in x509.load_pem_x509_certificates(cert_path.read_bytes()):
            pub = cert.public_key()
            if isinstance(pub, ec.EllipticCurvePublicKey | rsa.RSAPublicKey) and public_keys_equal(
                pub, key.public_key()
            ):
                return cls(key=key, cert=cert)
        raise ValueError(f"{cert_path}: no certificate for the key in {key_path}")

    def save(self, cert_path: Path, key_path: Path) -> None:
        write_private(key_path, key_to_pem(self.key))
        write_public(cert_path, cert_to_pem(self.cert))

    def issue(
        self,
        public_key: PublicKey,
        cn: str,
        *,
        server: bool = False,
        dns_names: Iterable[str] = (),
        ip_addresses: Iterable[str] = (),
        now: dt.datetime | None = None,
    ) -> x509.Certificate:
        """A leaf certificate for ``public_key``: EKU clientAuth, or serverAuth with SANs."""
        now = now or dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(min(DEVICE_NOT_AFTER, self.cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ip_addresses]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, _sign_hash(self.key))

    def crl(
        self, revoked: Iterable[tuple[int, dt.datetime, bool]], *, now: dt.datetime | None = None
    ) -> bytes:
        """A PEM CRL listing ``(serial, revoked_at, on_hold)``, valid for CRL_LIFETIME.

        ``on_hold`` entries carry reason certificateHold (RFC 5280 §5.3.1): the stand-in holds
        PENDING_ACTIVATION certificates so that, as on AWS, they cannot connect until RegisterThing.
        """
        now = now or dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - _BACKDATE)
            .next_update(now + CRL_LIFETIME)
        )
        for serial, when, on_hold in revoked:
            entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
            if on_hold:
                entry = entry.add_extension(x509.CRLReason(x509.ReasonFlags.certificate_hold), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        crl = builder.sign(self.key, _sign_hash(self.key))
        return crl.public_bytes(serialization.Encoding.PEM)


def _ca_name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nrfprov local AWS IoT stand-in"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_builder(
    subject: x509.Name, issuer: x509.Name, public_key: PublicKey, issuer_key: PublicKey, path_length: int | None,
    now: dt.datetime,
) -> x509.CertificateBuilder:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if subject != issuer:  # an intermediate names its issuer's key; a root stays as it always was
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), critical=False)
    return builder


def new_token() -> str:
    """An opaque certificate ownership token, sized like AWS's (~450 chars; our inference, no primary source).

    The size matters to anyone measuring whether a reply fits a device buffer.
    """
    return secrets.token_urlsafe(330)


# --- CSR parsing, tolerant of the nRF91 quirk ------------------------------------------------------

# ecdsa-with-SHA256/384/512 (RFC 5758 §3.2): the parameters field MUST be absent. nRF91 modem firmware
# encodes an explicit NULL there; OpenSSL (and AWS, which accepts modem CSRs) tolerate it, but
# cryptography refuses to parse it. We drop the NULL and verify the signature as usual.
_ECDSA_OIDS = {
    bytes.fromhex("2a8648ce3d040302"),
    bytes.fromhex("2a8648ce3d040303"),
    bytes.fromhex("2a8648ce3d040304"),
}


def _read_tlv(buf: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, value_start, value_end) of the DER element at ``pos``; raises CsrInvalid on bad DER."""
    if pos + 2 > len(buf):
        raise CsrInvalid("truncated DER")
    tag, first = buf[pos], buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 3 or pos + n > len(buf):  # > 16 MB cannot be a CSR
            raise CsrInvalid("bad DER length")
        length = int.from_bytes(buf[pos : pos + n], "big")
        pos += n
    if pos + length > len(buf):
        raise CsrInvalid("truncated DER")
    return tag, pos, pos + length


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def strip_ecdsa_null_params(der: bytes) -> bytes:
    """Return ``der`` with a spurious NULL removed from an ECDSA signatureAlgorithm, else unchanged."""
    tag, start, end = _read_tlv(der, 0)
    if tag != 0x30:
        raise CsrInvalid("not a DER SEQUENCE")
    _, _, info_end = _read_tlv(der, start)  # certificationRequestInfo
    alg_tag, alg_start, alg_end = _read_tlv(der, info_end)
    if alg_tag != 0x30:
        raise CsrInvalid("signatureAlgorithm is not a SEQUENCE")
    oid_tag, oid_start, oid_end = _read_tlv(der, alg_start)
    if oid_tag != 0x06 or der[oid_start:oid_end] not in _ECDSA_OIDS:
        return der
    if der[oid_end:alg_end] != b"\x05\x00":
        return der
    new_alg = b"\x30" + _der_len(oid_end - alg_start) + der[alg_start:oid_end]
    body = der[start:info_end] + new_alg + der[alg_end:end]
    return b"\x30" + _der_len(len(body)) + body


def load_csr(pem: str | bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM CSR and verify its self-signature (tolerating the nRF91 NULL-parameter quirk)."""
    data = pem.encode() if isinstance(pem, str) else pem
    if len(data) > MAX_CSR_PEM:
        raise CsrInvalid(f"CSR is {len(data)} bytes, over the {MAX_CSR_PEM}-byte limit")
    try:
        der = x509.load_pem_x509_csr(data).public_bytes(serialization.Encoding.DER)
    except ValueError:
        der = _pem_body(data)
    der = strip_ecdsa_null_params(der)
    try:
        csr = x509.load_der_x509_csr(der)
    except ValueError as exc:
        raise CsrInvalid(f"CSR does not parse: {exc}") from exc
    try:
        pub = csr.public_key()
    except (ValueError, TypeError) as exc:
        raise CsrInvalid(f"CSR public key unsupported: {exc}") from exc
    if not isinstance(pub, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise CsrInvalid("CSR key must be EC or RSA")
    try:
        valid = csr.is_signature_valid
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise CsrInvalid(f"CSR signature cannot be checked: {exc}") from exc
    if not valid:
        raise CsrInvalid("CSR signature does not verify with the CSR's public key")
    return csr


def _pem_body(data: bytes) -> bytes:
    import base64
    import binascii

    text = data.decode("ascii", "replace")
    begin, end = "-----BEGIN CERTIFICATE REQUEST-----", "-----END CERTIFICATE REQUEST-----"
    if begin not in text or end not in text:
        raise CsrInvalid("no PEM CERTIFICATE REQUEST block")
    b64 = text.split(begin, 1)[1].split(end, 1)[0]
    try:
        return base64.b64decode("".join(b64.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CsrInvalid("PEM body is not base64") from exc
