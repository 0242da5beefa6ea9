"""Local PKI: CA, leaves, certificateId, CRL, and CSR parsing incl. the nRF91 NULL-parameter quirk."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from nrfprov.cloud import pki


@pytest.fixture(scope="module")
def ca() -> pki.CertificateAuthority:
    return pki.CertificateAuthority.create("ec")


def _csr_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    b = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "d")]))
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _null_params_pem(csr_pem: bytes) -> bytes:
    """Insert a NULL after ecdsa-with-SHA256 in signatureAlgorithm (what nRF91 firmware emits)."""
    der = x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER)
    old, new = bytes.fromhex("300a06082a8648ce3d040302"), bytes.fromhex("300c06082a8648ce3d0403020500")
    at = der.rindex(old)
    hdr = 2 + (der[1] & 0x7F if der[1] & 0x80 else 0)
    body = der[hdr:at] + new + der[at + len(old):]
    n = len(body)
    length = bytes([n]) if n < 0x80 else bytes([0x81, n]) if n < 0x100 else bytes([0x82]) + n.to_bytes(2, "big")
    out = b"\x30" + length + body
    return b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(out) + b"-----END CERTIFICATE REQUEST-----\n"


def test_ca_roundtrip_and_key_file_mode(ca: pki.CertificateAuthority, tmp_path: Path) -> None:
    ca.save(tmp_path / "ca.pem", tmp_path / "ca-key.pem")
    assert stat.S_IMODE(os.stat(tmp_path / "ca-key.pem").st_mode) == 0o600
    again = pki.CertificateAuthority.load(tmp_path / "ca.pem", tmp_path / "ca-key.pem")
    assert again.cert == ca.cert
    bc = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca is True


def test_leaf_certificates(ca: pki.CertificateAuthority) -> None:
    key = pki.generate_key("ec")
    server = ca.issue(key.public_key(), "localhost", server=True, dns_names=["localhost"], ip_addresses=["127.0.0.1"])
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    client = ca.issue(key.public_key(), "dev-1")
    assert list(client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    assert pki.common_name(client) == "dev-1"
    assert client.not_valid_after_utc.year == 2049 or client.not_valid_after_utc <= ca.cert.not_valid_after_utc
    der = client.public_bytes(serialization.Encoding.DER)
    assert pki.certificate_id(client) == hashlib.sha256(der).hexdigest()
    assert len(pki.certificate_id(client)) == 64
    ca.cert.public_key().verify(client.signature, client.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))


def test_key_pem_headers_match_aws() -> None:
    assert pki.key_to_pem(pki.generate_key("rsa")).startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert pki.key_to_pem(pki.generate_key("ec")).startswith(b"-----BEGIN EC PRIVATE KEY-----")
    with pytest.raises(ValueError, match="unknown key type"):
        pki.generate_key("dsa")


def test_crl_lists_revoked_and_held(ca: pki.CertificateAuthority) -> None:
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    crl = x509.load_pem_x509_crl(ca.crl([(11, now, False), (12, now, True)]))
    assert crl.is_signature_valid(ca.cert.public_key())  # type: ignore[arg-type]
    assert crl.next_update_utc is not None and crl.next_update_utc > now + dt.timedelta(days=365)
    held = crl.get_revoked_certificate_by_serial_number(12)
    assert held is not None
    assert held.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.certificate_hold
    assert crl.get_revoked_certificate_by_serial_number(11) is not None
    assert crl.get_revoked_certificate_by_serial_number(13) is None


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_load_csr_accepts_well_formed(kind: str) -> None:
    key = pki.generate_key(kind)
    csr = pki.load_csr(_csr_pem(key))
    assert pki.public_keys_equal(csr.public_key(), key.public_key())  # type: ignore[arg-type]


def test_load_csr_tolerates_nrf91_null_parameter() -> None:
    key = pki.generate_key("ec")
    pem = _null_params_pem(_csr_pem(key))
    with pytest.raises(ValueError):
        x509.load_pem_x509_csr(pem)  # cryptography alone refuses it
    csr = pki.load_csr(pem)
    assert pki.public_keys_equal(csr.public_key(), key.public_key())  # type: ignore[arg-type]


def test_strip_leaves_normal_csrs_alone() -> None:
    der = x509.load_pem_x509_csr(_csr_pem(pki.generate_key("ec"))).public_bytes(serialization.Encoding.DER)
    assert pki.strip_ecdsa_null_params(der) == der


def test_load_csr_rejects_bad_signature_garbage_and_oversize() -> None:
    der = bytearray(x509.load_pem_x509_csr(_csr_pem(pki.generate_key("ec"))).public_bytes(
        serialization.Encoding.DER))
    der[-3] ^= 1
    pem = b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(der)) + \
        b"-----END CERTIFICATE REQUEST-----\n"
    with pytest.raises(pki.CsrInvalid, match="signature"):
        pki.load_csr(pem)
    with pytest.raises(pki.CsrInvalid):
        pki.load_csr("hello")
    with pytest.raises(pki.CsrInvalid, match="limit"):
        pki.load_csr("A" * (pki.MAX_CSR_PEM + 1))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_load_csr_on_garbage_raises_only_csr_invalid(data: bytes) -> None:
    pem = b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(data) + \
        b"-----END CERTIFICATE REQUEST-----\n"
    for candidate in (pem, data):
        with pytest.raises(pki.CsrInvalid):
            pki.load_csr(candidate)
