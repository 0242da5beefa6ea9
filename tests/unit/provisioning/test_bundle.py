"""CredentialBundle checks: everything that can be wrong is caught before the modem is touched."""

from __future__ import annotations

import datetime as dt

import pytest
from provpki import NOW, Pki

from nrfprov.errors import CredentialBundleError
from nrfprov.provisioning.bundle import (
    AT_COMMAND_LIMIT,
    TYPE_CA,
    TYPE_CERT,
    TYPE_KEY,
    CredentialBundle,
    check_bundle,
    cmng_write_command,
    normalize_pem,
    sha256_hex,
)


def _bundle(pki: Pki, **kw: object) -> CredentialBundle:
    cert, key = pki.issue()
    return CredentialBundle(certificate_pem=cert, ca_pem=pki.ca_pem, private_key_pem=key, **kw)  # type: ignore[arg-type]


def test_good_bundle_passes_and_writes_in_sample_order(pki: Pki) -> None:
    b = _bundle(pki)
    check_bundle(b, sec_tag=50, now=NOW)
    assert [t for t, _ in b.writes()] == [TYPE_CA, TYPE_CERT, TYPE_KEY]


def test_rsa_2048_bundle_fits_the_command_limit(pki: Pki) -> None:
    cert, key = pki.issue(rsa_key=True)
    check_bundle(CredentialBundle(cert, pki.ca_pem, key), sec_tag=2147483647, now=NOW)


def test_key_from_another_request_is_refused(pki: Pki) -> None:
    cert, _ = pki.issue()
    _, other_key = pki.issue()
    with pytest.raises(CredentialBundleError, match="does not match"):
        check_bundle(CredentialBundle(cert, pki.ca_pem, other_key), sec_tag=50, now=NOW)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("certificate_pem", "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n", "client certificate"),
        ("certificate_pem", "", "client certificate"),
        ("ca_pem", "garbage", "CA certificate"),
        ("private_key_pem", "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n", "private key"),
    ],
)
def test_unparseable_parts_are_named(pki: Pki, field: str, value: str, match: str) -> None:
    b = _bundle(pki)
    bad = CredentialBundle(**{**b.__dict__, field: value})
    with pytest.raises(CredentialBundleError, match=match):
        check_bundle(bad, sec_tag=50, now=NOW)


def test_expired_and_not_yet_valid_certificates(pki: Pki) -> None:
    cert, key = pki.issue(not_after=NOW - dt.timedelta(seconds=1))
    with pytest.raises(CredentialBundleError, match="expired"):
        check_bundle(CredentialBundle(cert, pki.ca_pem, key), sec_tag=50, now=NOW)
    cert, key = pki.issue(not_before=NOW + dt.timedelta(hours=1))
    with pytest.raises(CredentialBundleError, match="not valid before") as info:
        check_bundle(CredentialBundle(cert, pki.ca_pem, key), sec_tag=50, now=NOW)
    assert "clock" in str(info.value)


def test_oversized_ca_is_refused_before_the_modem(pki: Pki) -> None:
    b = _bundle(pki)
    big_ca = pki.ca_pem * 12  # a concatenated bundle of roots: each parses, the whole is too long
    with pytest.raises(CredentialBundleError, match=f"{AT_COMMAND_LIMIT}-byte command limit") as info:
        check_bundle(CredentialBundle(b.certificate_pem, big_ca, b.private_key_pem), sec_tag=50, now=NOW)
    assert "type 0" in str(info.value)


def test_command_limit_boundary_counts_crlf(pki: Pki) -> None:
    # Pad the CA with comment-free PEM lines is impossible, so test the arithmetic directly.
    content = "x" * (AT_COMMAND_LIMIT - len(cmng_write_command(50, 0, "")) - 2)
    assert len(cmng_write_command(50, 0, content)) + 2 == AT_COMMAND_LIMIT


def test_csr_bundle_checks_the_modem_key(pki: Pki) -> None:
    der, key = pki.csr()
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    cert, _ = pki.issue(public_key=x509.load_der_x509_csr(der).public_key())
    b = CredentialBundle(cert, pki.ca_pem, None)
    check_bundle(b, sec_tag=50, now=NOW, csr_public_key_der=spki)
    assert [t for t, _ in b.writes()] == [TYPE_CA, TYPE_CERT]
    other, _ = pki.issue()
    with pytest.raises(CredentialBundleError, match="CSR"):
        check_bundle(CredentialBundle(other, pki.ca_pem, None), sec_tag=50, now=NOW, csr_public_key_der=spki)


def test_repr_never_shows_the_key(pki: Pki) -> None:
    b = _bundle(pki, ownership_token="secret-token")
    assert "PRIVATE" not in repr(b) and "secret-token" not in repr(b)


def test_normalize_and_hash_are_stable() -> None:
    crlf = "-----BEGIN X-----\r\nAAAA  \r\n-----END X-----\r\n\r\n"
    assert normalize_pem(crlf) == "-----BEGIN X-----\nAAAA\n-----END X-----\n"
    assert normalize_pem(normalize_pem(crlf)) == normalize_pem(crlf)
    assert sha256_hex("abc") == "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"


def test_naive_datetime_is_a_programming_error(pki: Pki) -> None:
    with pytest.raises(ValueError):
        check_bundle(_bundle(pki), sec_tag=50, now=dt.datetime(2026, 1, 1))
