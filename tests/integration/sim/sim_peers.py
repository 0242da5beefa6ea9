"""Peers for the simulator's tests: a throwaway EC PKI, real TCP / OpenSSL servers on 127.0.0.1, DER helper."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


@dataclass
class Pki:
    ca_pem: str
    server_cert_pem: str
    server_key_pem: str
    client_cert_pem: str
    client_key_pem: str
    other_ca_pem: str
    dir: Path

    @property
    def server_chain_file(self) -> Path:
        return self.dir / "server.pem"

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.pem"


class Server:
    """Accepts connections on 127.0.0.1 and runs ``handler(conn)`` for each in a thread."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.handler = handler
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self.errors: list[BaseException] = []
        self.conns: list[socket.socket] = []
        self.done = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.lsock.accept()
            except OSError:
                return
            self.conns.append(conn)
            t = threading.Thread(target=self._run, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self.handler(conn)
        except BaseException as exc:  # surfaced by the test via .errors
            self.errors.append(exc)
        finally:
            self.done.set()

    def stop(self) -> None:
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)  # wakes a handler blocked in recv; close() alone does not
            except OSError:
                pass
            c.close()
        self._acceptor.join(5)
        for t in self._threads:
            t.join(5)


def tls_server_context(pki: Pki, *, require_client_cert: bool = False) -> ssl.SSLContext:
    """OpenSSL TLS 1.2 server with one AEAD suite, so record overhead is exactly 24 bytes."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    ctx.load_cert_chain(pki.server_chain_file)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(pki.ca_file)
    return ctx


GCM_OVERHEAD = 8 + 16  # TLS 1.2 AES-GCM record: explicit nonce + tag


def make_pki(d: Path) -> Pki:
    """CA, server cert (localhost, broker.sim.test, 127.0.0.1), client cert, an unrelated CA."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("sim test CA", ca_key, None, ca_key, ca=True)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _cert("unrelated CA", other_key, None, other_key, ca=True)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName("broker.sim.test"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    srv = _cert("localhost", srv_key, ca, ca_key, ca=False, sans=sans)
    cli_key = ec.generate_private_key(ec.SECP256R1())
    cli = _cert("sim-device", cli_key, ca, ca_key, ca=False)
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM).decode()  # noqa: E731
    p = Pki(pem(ca), pem(srv), _pem_key(srv_key), pem(cli), _pem_key(cli_key), pem(other), d)
    (d / "server.pem").write_text(p.server_key_pem + p.server_cert_pem)
    (d / "ca.pem").write_text(p.ca_pem)
    return p


def normalise_csr(der: bytes) -> bytes:
    """Test-side: drop the NULL from the signatureAlgorithm and fix the outer SEQUENCE length."""
    ecdsa = bytes.fromhex("06082a8648ce3d040302")
    assert der[0] == 0x30
    n = der[1] & 0x7F if der[1] & 0x80 else 0
    body = der[2 + n :].replace(b"\x30\x0c" + ecdsa + b"\x05\x00", b"\x30\x0a" + ecdsa)
    size = len(body)
    if size < 0x80:
        return bytes([0x30, size]) + body
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x30, 0x80 | len(raw)]) + raw + body
