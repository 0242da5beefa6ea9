"""The certificate chains the stand-in's broker presents: today's EC one, or one shaped like AWS's RSA chain.

AWS IoT presents a chain to Amazon Root CA 1 (RSA 2048) on RSA suites and to Amazon Root CA 3 (ECC
P-256) on ECDSA suites [AWS IoT developer guide, server-authentication]; the RSA chain is an RSA-2048
leaf below an RSA intermediate below the root. The size of that chain matters on a device: the nRF91
modem firmware limits the server certificate chain to 4 KB (release notes quoted by Nordic on DevZone,
thread 114031). So the stand-in can serve:

- ``ec``: an EC P-256 leaf signed by the stand-in's root CA (``ca.pem``), followed by that root. That is
  what the broker sent before this choice existed: given only the leaf, OpenSSL completes the chain
  from the CA file and sends the root too (measured, mosquitto 2.0.11 / OpenSSL 3.0); the chain file
  now says so explicitly, so the size below is the size on the wire;
- ``rsa``: an RSA-2048 leaf + RSA-2048 intermediate below an RSA-2048 root, made on first use. That root
  is appended to ``ca.pem``, so every client that trusts ``ca.pem`` trusts both chains (AWS likewise
  advises trusting all its roots);
- either one padded with extra DNS names in the leaf until the Certificate message reaches
  ``min_bytes`` (to exercise the 4 KB limit).

``certificate_message_bytes`` is the size of the TLS 1.2 Certificate handshake message carrying the
chain [RFC 5246 §7.4.2]: a 4-byte handshake header, a 3-byte list length and, per certificate, a
3-byte length and the DER of every certificate in the chain file (the broker's certfile), in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nrfprov.cloud import pki

CHAINS = ("ec", "rsa")
SERVER_NAME = "localhost"
SERVER_IP = "127.0.0.1"
# Padding DNS names: a reserved TLD [RFC 2606], never resolvable.
_PAD_NAME = "pad-{:04d}.nrfprov.invalid"
# A padded leaf stops growing here: far above any device limit, and bounds the loop.
MAX_CHAIN_BYTES = 64 * 1024


@dataclass(frozen=True)
class ServerChain:
    kind: str
    cert_path: Path  # leaf first, then intermediates (mosquitto's certfile)
    key_path: Path

    def certificates(self) -> list[x509.Certificate]:
        return x509.load_pem_x509_certificates(self.cert_path.read_bytes())

    @property
    def certificate_message_bytes(self) -> int:
        ders = [c.public_bytes(serialization.Encoding.DER) for c in self.certificates()]
        return certificate_message_bytes(ders)


def certificate_message_bytes(ders: list[bytes]) -> int:
    """Size of a TLS 1.2 Certificate handshake message holding ``ders`` [RFC 5246 §7.4.2]."""
    return 4 + 3 + sum(3 + len(d) for d in ders)


class _Files:
    def __init__(self, state_dir: Path) -> None:
        d = state_dir
        self.ca = d / "ca.pem"
        self.ec_cert, self.ec_key = d / "server-cert.pem", d / "server-key.pem"
        self.ec_chain = d / "server-ec-chain.pem"
        self.rsa_root, self.rsa_root_key = d / "rsa-root-ca.pem", d / "rsa-root-ca-key.pem"
        self.rsa_inter, self.rsa_inter_key = d / "rsa-intermediate-ca.pem", d / "rsa-intermediate-ca-key.pem"
        self.rsa_chain, self.rsa_key = d / "server-rsa-chain.pem", d / "server-rsa-key.pem"

    def padded(self, kind: str) -> Path:
        return self.ec_cert.with_name(f"server-{kind}-padded-chain.pem")


def _leaf(issuer: pki.CertificateAuthority, key: pki.PrivateKey, pad: int) -> x509.Certificate:
    names = [SERVER_NAME, *(_PAD_NAME.format(i) for i in range(pad))]
    return issuer.issue(key.public_key(), SERVER_NAME, server=True, dns_names=names, ip_addresses=[SERVER_IP])


def _load_key(path: Path) -> pki.PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, pki.ec.EllipticCurvePrivateKey | pki.rsa.RSAPrivateKey)
    return key


def _rsa_cas(f: _Files) -> tuple[pki.CertificateAuthority, pki.CertificateAuthority]:
    """The RSA root and intermediate, made once per state directory; the root joins ca.pem."""
    if f.rsa_root.exists() and f.rsa_root_key.exists() and f.rsa_inter.exists() and f.rsa_inter_key.exists():
        root = pki.CertificateAuthority.load(f.rsa_root, f.rsa_root_key)
        inter = pki.CertificateAuthority.load(f.rsa_inter, f.rsa_inter_key)
    else:
        root = pki.CertificateAuthority.create("rsa", common_name="nrfprov local RSA root CA", path_length=None)
        inter = root.issue_intermediate("rsa", "nrfprov local RSA intermediate CA")
        root.save(f.rsa_root, f.rsa_root_key)
        inter.save(f.rsa_inter, f.rsa_inter_key)
        for stale in (f.rsa_chain, f.rsa_key):
            stale.unlink(missing_ok=True)
    trusted = x509.load_pem_x509_certificates(f.ca.read_bytes())
    if root.cert not in trusted:
        pki.write_public(f.ca, f.ca.read_bytes() + pki.cert_to_pem(root.cert))
    return root, inter


def ensure(state_dir: Path, ca: pki.CertificateAuthority, kind: str, *, min_bytes: int = 0) -> ServerChain:
    """The chain files for ``kind`` (made or reused), padded to at least ``min_bytes`` if asked."""
    if kind not in CHAINS:
        raise ValueError(f"server chain must be one of {', '.join(CHAINS)}, not {kind!r}")
    if not 0 <= min_bytes <= MAX_CHAIN_BYTES:
        raise ValueError(f"min_bytes must be 0..{MAX_CHAIN_BYTES}")
    f = _Files(state_dir)
    if kind == "ec":
        # Leaf made with the CA (local.py); the root follows it, as OpenSSL would add it anyway.
        issuer, key_path, chain_path = ca, f.ec_key, f.ec_chain
        intermediates = [ca.cert]
        _write_chain(chain_path, x509.load_pem_x509_certificate(f.ec_cert.read_bytes()), intermediates)
    else:
        _root, issuer = _rsa_cas(f)
        intermediates = [issuer.cert]
        key_path, chain_path = f.rsa_key, f.rsa_chain
        if not (key_path.exists() and chain_path.exists()):
            key = pki.generate_key("rsa")
            pki.write_private(key_path, pki.key_to_pem(key))
            _write_chain(chain_path, _leaf(issuer, key, 0), intermediates)
    chain = ServerChain(kind, chain_path, key_path)
    if min_bytes <= chain.certificate_message_bytes:
        return chain
    key = _load_key(key_path)
    padded = f.padded(kind)
    # Each padding name adds ~26 bytes to the leaf; under-estimate with 40 and close in.
    size = chain.certificate_message_bytes
    pad = 0
    while size < min_bytes:
        pad += max(1, (min_bytes - size) // 40)
        leaf = _leaf(issuer, key, pad)
        size = certificate_message_bytes([c.public_bytes(serialization.Encoding.DER) for c in (leaf, *intermediates)])
    _write_chain(padded, leaf, intermediates)
    return ServerChain(kind, padded, key_path)


def _write_chain(path: Path, leaf: x509.Certificate, intermediates: list[x509.Certificate]) -> None:
    pki.write_public(path, b"".join(pki.cert_to_pem(c) for c in (leaf, *intermediates)))
