"""Modem-offloaded TLS against an OpenSSL server that sends a ~3 KB and a ~5 KB certificate chain.

The nRF91 holds its handshake to a 4 KB server certificate chain ("Maximum server certificate chain
size has a limit of 4kB", modem release notes as quoted by Nordic on DevZone, thread 114031), not to the
2303-byte limit of received TLS data records. A 3 KB chain arrives in one handshake record over 2303
bytes and must pass; a 5 KB chain must fail the connect with nrfprov's typed error naming the limit.
"""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

from integration.modem.modem_peers import EchoServer
from nrfprov.errors import ConnectError, ModemTlsHandshakeError
from nrfprov.modem import Modem
from nrfprov.sim import SimulatedModem

pytestmark = pytest.mark.integration

HOST = "chain.test"
TAG = 424243
PADDING_OID = ObjectIdentifier("1.3.6.1.4.1.55555.1")  # private arc: a non-critical filler extension


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, issuer_key: ec.EllipticCurvePrivateKey,
          *, ca: bool, pad: int) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
    if pad:
        b = b.add_extension(x509.UnrecognizedExtension(PADDING_OID, b"\x04\x82" + pad.to_bytes(2, "big") + b"P" * pad),
                            critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def make_chain(tmp: Path, target: int) -> tuple[str, Path, int]:
    """Root CA (PEM, for the sec tag), a server chain file (leaf + 2 intermediates) and its DER size."""
    pem = serialization.Encoding.PEM
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chain test root")])
    root = _cert("chain test root", root_key, root_name, root_key, ca=True, pad=0)
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]

    def build(pad_each: int) -> list[x509.Certificate]:
        i1 = _cert("intermediate 1", keys[0], root.subject, root_key, ca=True, pad=pad_each)
        i2 = _cert("intermediate 2", keys[1], i1.subject, keys[0], ca=True, pad=pad_each)
        leaf = _cert(HOST, keys[2], i2.subject, keys[1], ca=False, pad=pad_each)
        return [leaf, i2, i1]

    base = build(0)
    plain = sum(len(c.public_bytes(serialization.Encoding.DER)) for c in base)
    chain = build(max(0, (target - plain) // 3))
    size = sum(len(c.public_bytes(serialization.Encoding.DER)) for c in chain)
    path = tmp / f"chain-{target}.pem"
    path.write_bytes(
        keys[2].private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + b"".join(c.public_bytes(pem) for c in chain)
    )
    path.chmod(0o600)
    return root.public_bytes(pem).decode(), path, size


def server_context(chain_file: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(chain_file)
    return ctx


@pytest.fixture(params=["sm", "slm"])
def modem(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Modem]:
    with SimulatedModem(tmp_path / "sim", dialect=request.param, baud=0, resolve={HOST: "127.0.0.1"}) as sim:
        with Modem.open(sim.port_url) as m:
            m.set_cfun(1)
            m.wait_registered(30)
            yield m


@pytest.mark.parametrize(("target", "passes"), [(3000, True), (5200, False)])
def test_server_chain_over_4kb_fails_the_modem_handshake(modem: Modem, tmp_path: Path, target: int,
                                                         passes: bool) -> None:
    ca_pem, chain_file, size = make_chain(tmp_path, target)
    assert (size <= 4096) is passes and abs(size - target) < 300
    server = EchoServer(server_context(chain_file))
    try:
        modem.write_credential(TAG, 0, ca_pem)
        if passes:
            # The Certificate message alone is > 2303 bytes: handshake records are not held to the data limit.
            with modem.open_tls(HOST, server.port, sec_tag=TAG, hostname=HOST) as s:
                s.send(b"through a 3 KB chain")
                assert s.recv(100, timeout=10) == b"through a 3 KB chain"
        else:
            with pytest.raises(ModemTlsHandshakeError) as info:
                modem.open_tls(HOST, server.port, sec_tag=TAG, hostname=HOST)
            err = info.value
            assert isinstance(err, ConnectError) and err.exit_code == 4
            assert "4 KB" in str(err) and "certificate chain" in str(err) and err.chain_limit == 4096
            assert str(TAG) in str(err)
    finally:
        server.stop()
        for t in (0, 1, 2):
            modem.delete_credential(TAG, t)
