"""Credential helpers: types, %CMNG list parsing, PEM normalisation, the %KEYGEN CSR quirk."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nrfprov.errors import AtProtocolError, PayloadError
from nrfprov.modem import CredentialInfo, CredentialType
from nrfprov.modem.credentials import (
    _der_len,
    content_sha256,
    normalise_content,
    normalise_csr_der,
    normalise_pem,
    parse_cmng_list,
    parse_keygen,
)

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", CredentialType.ROOT_CA_CERT),
        ("ca", CredentialType.ROOT_CA_CERT),
        ("key", CredentialType.CLIENT_KEY),
        ("CLIENT_CERT", CredentialType.CLIENT_CERT),
        ("client-key", CredentialType.CLIENT_KEY),
        (4, CredentialType.PSK_IDENTITY),
    ],
)
def test_type_parse(text: str | int, expected: CredentialType) -> None:
    assert CredentialType.parse(text) is expected


@pytest.mark.parametrize("text", ["12", "cert2", ""])
def test_type_parse_rejects(text: str) -> None:
    with pytest.raises(PayloadError):
        CredentialType.parse(text)


def test_cmng_list() -> None:
    sha = "A" * 64
    lines = [f'%CMNG: 16842753,0,"{sha}"', "%CMNG: 4294967292,7", f'%CMNG: 1,2,"{sha.lower()}"']
    assert parse_cmng_list(lines) == [
        CredentialInfo(16842753, CredentialType.ROOT_CA_CERT, sha),
        CredentialInfo(4294967292, CredentialType.RESERVED, None),
        CredentialInfo(1, CredentialType.CLIENT_KEY, sha),
    ]
    with pytest.raises(AtProtocolError):
        parse_cmng_list(["%CMNG: x"])


@pytest.mark.parametrize("raw", [PEM, PEM.replace("\n", "\r\n"), PEM + "\n\n  ", PEM.rstrip("\n")])
def test_pem_normalised_to_lf_with_one_final_newline(raw: str) -> None:
    assert normalise_pem(raw) == PEM
    assert content_sha256(normalise_pem(raw)) == hashlib.sha256(PEM.encode()).hexdigest().upper()


@pytest.mark.parametrize("raw", ["", "  \n", PEM.replace("\n", "\\n"), PEM.replace("MIIB", "MIIBé")])
def test_pem_rejects(raw: str) -> None:
    with pytest.raises(PayloadError):
        normalise_pem(raw)


def test_psk_and_identity_are_not_pem() -> None:
    assert normalise_content(3, " 0a0B1c\n") == "0a0B1c"
    assert normalise_content(4, "device-1\n") == "device-1"
    assert normalise_content(0, PEM.rstrip()) == PEM
    for ctype, bad in [(3, "abc"), (3, "xyz0"), (4, ""), (4, "a\nb")]:
        with pytest.raises(PayloadError):
            normalise_content(ctype, bad)


def _csr() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


def _inject_null(der: bytes) -> bytes:
    """Re-encode a CSR the way mfw 1.3.7 does: ecdsa-with-SHA256 followed by a NULL parameter."""
    oid = bytes.fromhex("06082a8648ce3d040302")
    alg = b"\x30\x0a" + oid
    i = der.rindex(alg)
    header = 2 + (der[1] & 0x7F if der[1] & 0x80 else 0)
    body = der[header:i] + b"\x30\x0c" + oid + b"\x05\x00" + der[i + len(alg) :]
    return b"\x30" + _der_len(len(body)) + body


def test_csr_null_quirk_removed() -> None:
    good = _csr()
    quirky = _inject_null(good)
    assert quirky != good and len(quirky) == len(good) + 2
    fixed = normalise_csr_der(quirky)
    assert fixed == good
    assert x509.load_der_x509_csr(fixed).is_signature_valid
    assert normalise_csr_der(good) == good


def test_csr_garbage_is_payload_error() -> None:
    for bad in (b"", b"\x30", b"\x30\x05\x01", b"\x04\x00"):
        with pytest.raises(PayloadError):
            normalise_csr_der(bad)


def test_keygen_line() -> None:
    der = _csr()
    b64 = base64.urlsafe_b64encode(der).rstrip(b"=").decode()
    assert parse_keygen(f'%KEYGEN: "{b64}.eyJhbGciOiJFUzI1NiJ9"') == der
    assert parse_keygen(f'%KEYGEN: "{b64}"') == der
    with pytest.raises(AtProtocolError):
        parse_keygen("%KEYGEN: nope")
