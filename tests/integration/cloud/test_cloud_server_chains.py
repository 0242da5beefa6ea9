"""The server chains the stand-in presents: EC (default), AWS-shaped RSA, and either padded past 4 KB.

AWS IoT presents an RSA-2048 chain to Amazon Root CA 1 on RSA suites and an ECC chain to Amazon Root
CA 3 on ECDSA suites [AWS IoT developer guide, server-authentication]; the nRF91 modem limits the
server certificate chain to 4 KB (Nordic, DevZone thread 114031). The size that matters is the TLS
Certificate message as it crosses the wire, so it is read off the wire here: a TLS 1.2 handshake
driven through memory BIOs, the server's records parsed by hand [RFC 5246 §6.2, §7.4].
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fixtures.cloud import MqttProbe
from nrfprov.cloud import LocalAwsIot

pytestmark = pytest.mark.integration

HANDSHAKE = 22
CERTIFICATE = 11
SERVER_HELLO_DONE = 14
FOUR_KB = 4096


def certificate_message_on_the_wire(cloud: LocalAwsIot) -> tuple[int, list[bytes]]:
    """(size of the Certificate handshake message incl. its 4-byte header, the DER certificates in it)."""
    ctx = ssl.create_default_context(cafile=str(cloud.ca_path))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # 1.3 encrypts the Certificate message
    ctx.load_cert_chain(str(cloud.claim_cert_path), str(cloud.claim_key_path))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=cloud.server_name)
    records = b""
    handshake = b""
    with socket.create_connection((cloud.host, cloud.port), timeout=10) as sock:
        while True:
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                pass
            if out := outgoing.read():
                sock.sendall(out)
            data = sock.recv(65536)
            assert data, "the broker closed the connection during the handshake"
            incoming.write(data)
            records += data
            while len(records) >= 5 and len(records) >= 5 + int.from_bytes(records[3:5], "big"):
                length = int.from_bytes(records[3:5], "big")
                if records[0] == HANDSHAKE:
                    handshake += records[5:5 + length]
                records = records[5 + length:]
            msgs: dict[int, bytes] = {}
            pos = 0
            while pos + 4 <= len(handshake):
                length = int.from_bytes(handshake[pos + 1:pos + 4], "big")
                if pos + 4 + length > len(handshake):
                    break
                msgs[handshake[pos]] = handshake[pos + 4:pos + 4 + length]
                pos += 4 + length
            if SERVER_HELLO_DONE in msgs:
                break
    body = msgs[CERTIFICATE]
    ders, pos = [], 3
    assert int.from_bytes(body[:3], "big") == len(body) - 3
    while pos < len(body):
        n = int.from_bytes(body[pos:pos + 3], "big")
        ders.append(body[pos + 3:pos + 3 + n])
        pos += 3 + n
    return 4 + len(body), ders


@pytest.mark.parametrize(("chain", "keys"), [("ec", [ec.EllipticCurvePublicKey, ec.EllipticCurvePublicKey]),
                                              ("rsa", [rsa.RSAPublicKey, rsa.RSAPublicKey])])
def test_the_chain_on_the_wire_is_the_one_chosen(
    local_aws_factory: Callable[..., LocalAwsIot], chain: str, keys: list[type]
) -> None:
    cloud = local_aws_factory(device_key_type="ec", server_chain=chain)
    assert cloud.server_chain is not None
    size, ders = certificate_message_on_the_wire(cloud)
    print(f"\n{chain} server chain: Certificate message {size} bytes, {len(ders)} certificates "
          f"({', '.join(str(len(d)) for d in ders)} bytes DER)")
    assert size == cloud.server_chain.certificate_message_bytes
    certs = [x509.load_der_x509_certificate(d) for d in ders]
    assert all(isinstance(c.public_key(), k) for c, k in zip(certs, keys, strict=True))
    if chain == "ec":  # the leaf, then the stand-in's root (what OpenSSL sent when given the leaf alone)
        assert certs[1].subject == certs[1].issuer == certs[0].issuer
    else:  # leaf RSA-2048, then an RSA-2048 intermediate; the root is not sent
        leaf, inter = certs
        assert leaf.public_key().key_size == inter.public_key().key_size == 2048  # type: ignore[union-attr]
        assert leaf.issuer == inter.subject and inter.issuer != inter.subject
        assert x509.BasicConstraints(ca=True, path_length=0) == inter.extensions.get_extension_for_class(
            x509.BasicConstraints).value
    assert size < FOUR_KB  # both fit the modem's 4 KB chain limit, as AWS's do
    # Clients that trust ca.pem trust the chain (and, for RSA, ca.pem now holds both roots).
    with MqttProbe.for_claim(cloud, f"chain-{chain}", tls12_only=True) as probe:
        assert probe.connect()


@pytest.mark.parametrize("chain", ["ec", "rsa"])
def test_a_chain_can_be_made_larger_than_the_modems_4_kb(
    local_aws_factory: Callable[..., LocalAwsIot], chain: str
) -> None:
    cloud = local_aws_factory(device_key_type="ec", server_chain=chain, server_chain_min_bytes=5 * 1024)
    size, ders = certificate_message_on_the_wire(cloud)
    print(f"\npadded {chain} server chain: Certificate message {size} bytes")
    assert size >= 5 * 1024 and size == cloud.server_chain.certificate_message_bytes  # type: ignore[union-attr]
    leaf = x509.load_der_x509_certificate(ders[0])
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    with MqttProbe.for_claim(cloud, f"big-{chain}", tls12_only=True) as probe:
        assert probe.connect()  # a host TLS stack takes it; the modem's 4 KB limit is the simulator's to model


def test_switching_chains_keeps_the_state_and_both_roots(local_aws_factory: Callable[..., LocalAwsIot]) -> None:
    first = local_aws_factory(device_key_type="ec", server_chain="rsa")
    state = first.state_dir
    roots = x509.load_pem_x509_certificates(first.ca_path.read_bytes())
    first.stop()
    again = local_aws_factory(state, device_key_type="ec", server_chain="ec")
    assert x509.load_pem_x509_certificates(again.ca_path.read_bytes()) == roots and len(roots) == 2
    assert certificate_message_on_the_wire(again)[0] == again.server_chain.certificate_message_bytes  # type: ignore[union-attr]
