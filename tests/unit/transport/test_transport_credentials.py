"""Credentials: the certs folder of Nordic's aws_iot_provisioning sample, in-memory PEMs, key-type
detection, the package's CA files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from transport_peers import Pki, key_pem, new_key

from nrfprov.errors import ConfigError, CredentialBundleError
from nrfprov.transport.credentials import TlsCredentials, load_private_key, split_certificates

PACKAGE_CAS = Path(__file__).resolve().parents[3] / "src" / "nrfprov" / "data"


@pytest.mark.parametrize("kind,expected,size", [("ec", "EC", 32), ("rsa", "RSA", 256)])
@pytest.mark.parametrize("pkcs8", [True, False])
def test_key_type_detection(kind: str, expected: str, size: int, pkcs8: bool) -> None:
    pem = key_pem(new_key(kind), pkcs8=pkcs8)
    assert ("BEGIN PRIVATE KEY" in pem) == pkcs8
    loaded = load_private_key(pem)
    assert (loaded.key_type, loaded.size_bytes) == (expected, size)
    assert expected.encode() == bytes(loaded.key.name)


def test_encrypted_and_garbage_keys_are_refused() -> None:
    k = ec.generate_private_key(ec.SECP256R1())
    enc = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.BestAvailableEncryption(b"pw")).decode()
    with pytest.raises(CredentialBundleError, match="encrypted"):
        load_private_key(enc)
    with pytest.raises(CredentialBundleError, match="no PEM private key"):
        load_private_key("hello")
    broken = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    with pytest.raises(CredentialBundleError, match="cannot parse"):
        load_private_key(broken)


def test_folder_layout(tmp_path: Path, pki: Pki) -> None:
    (tmp_path / "ca-cert.pem").write_text(pki.ca.pem)
    (tmp_path / "client-cert.pem").write_text(pki.client_cert)
    (tmp_path / "private-key.pem").write_text(pki.client_key)
    os.chmod(tmp_path / "private-key.pem", 0o600)
    creds = TlsCredentials.from_folder(tmp_path)
    assert creds.has_client_cert and creds.key_type == "EC"
    assert "BEGIN" not in repr(creds)  # key material never in repr
    os.remove(tmp_path / "private-key.pem")
    with pytest.raises(ConfigError, match=r"private-key\.pem is missing"):
        TlsCredentials.from_folder(tmp_path)
    os.remove(tmp_path / "client-cert.pem")
    assert not TlsCredentials.from_folder(tmp_path).has_client_cert  # CA only is allowed
    with pytest.raises(ConfigError, match="no such file"):
        TlsCredentials.from_folder(tmp_path / "nope")


def test_in_memory_pems_validated(pki: Pki) -> None:
    with pytest.raises(CredentialBundleError, match="needs its private key"):
        TlsCredentials.from_pems(pki.ca.pem, pki.client_cert, None)
    with pytest.raises(CredentialBundleError, match="holds no PEM certificate"):
        TlsCredentials.from_pems("not a pem", pki.client_cert, pki.client_key)
    chain = pki.client_cert + pki.ca.pem  # leaf + "intermediate": both parsed, in order
    creds = TlsCredentials.from_pems(pki.ca.pem, chain, pki.client_key)
    got = creds.certificate_chain()
    assert got is not None and len(got[0]) == 2


def test_split_certificates_handles_crlf_and_text() -> None:
    pem = (PACKAGE_CAS / "AmazonRootCA1.pem").read_text() + (PACKAGE_CAS / "AmazonRootCA3.pem").read_text()
    messy = "junk\r\n" + pem.replace("\n", "\r\n") + "trailing"
    assert split_certificates(messy) == split_certificates(pem)
    assert len(split_certificates(pem)) == 2


def test_packaged_cas_are_amazon_root_ca_1_and_3(tmp_path: Path) -> None:
    expected = {
        "AmazonRootCA1.pem": ("CN=Amazon Root CA 1,O=Amazon,C=US",
                              "8ECDE6884F3D87B1125BA31AC3FCB13D7016DE7F57CC904FE1CB97C6AE98196E"),
        "AmazonRootCA3.pem": ("CN=Amazon Root CA 3,O=Amazon,C=US",
                              "18CE6CFE7BF14E60B2E347B8DFE868CB31D02EBB3ADA271569F50343B46DB3A4"),
    }
    for name, (subject, fp) in expected.items():
        cert = x509.load_pem_x509_certificate((PACKAGE_CAS / name).read_bytes())
        assert cert.subject.rfc4514_string() == subject
        assert hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper() == fp
    both = (PACKAGE_CAS / "AmazonRootCA1.pem").read_text() + (PACKAGE_CAS / "AmazonRootCA3.pem").read_text()
    (tmp_path / "ca-cert.pem").write_text(both)  # Nordic's aws_iot_provisioning sample's certs-folder layout, CA 1 + 3
    assert len(TlsCredentials.from_folder(tmp_path).trust_store()) == 2


def test_an_empty_ca_file_is_named_not_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "certs"
    folder.mkdir()
    (folder / "ca-cert.pem").write_text("")
    with pytest.raises(ConfigError) as info:
        TlsCredentials.from_folder(folder)
    assert str(folder / "ca-cert.pem") in str(info.value) and "holds no PEM certificate" in str(info.value)
