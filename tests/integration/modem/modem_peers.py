"""Real peers for modem socket tests: a TCP echo server and a TLS 1.2 echo server on 127.0.0.1.

Commands a client can send (each on its own in one write): ``BIG`` makes the server answer with
one 3000-byte write (one TLS record over the modem's 2303-byte limit), ``CLOSE`` makes it close.
Everything else is echoed.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

BIG_RECORD = 3000


@dataclass(frozen=True)
class Pki:
    ca_pem: str
    server_cert_pem: str
    server_key_pem: str
    hostname: str


def make_pki(hostname: str = "broker.test") -> Pki:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nrfprov test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return Pki(
        ca.public_bytes(pem).decode(),
        cert.public_bytes(pem).decode(),
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(),
        hostname,
    )


def make_client_identity(pki_ca_pem: str) -> tuple[str, str]:
    """A throwaway self-signed client cert + key (PEM) for credential round trips."""
    del pki_ca_pem
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nrfprov test device")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return (
        cert.public_bytes(pem).decode(),
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(),
    )


class EchoServer:
    """Echo server on 127.0.0.1 (optionally TLS 1.2). ``stop()`` closes everything it opened."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopped = False
        self.accepted = 0
        t = threading.Thread(target=self._accept, name="echo-accept", daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._stopped:
                    conn.close()
                    return
                self._conns.append(conn)
                self.accepted += 1
                t = threading.Thread(target=self._serve, args=(conn,), name="echo-conn", daemon=True)
                self._threads.append(t)
            t.start()

    def _serve(self, raw: socket.socket) -> None:
        conn: Any = raw
        try:
            if self._tls is not None:
                conn = self._tls.wrap_socket(raw, server_side=True)
                with self._lock:
                    self._conns.append(conn)
            while True:
                data = conn.recv(65536)
                if not data or data == b"CLOSE":
                    break
                if data == b"BIG":
                    conn.sendall(b"B" * BIG_RECORD)
                    continue
                conn.sendall(data)
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            conns = list(self._conns)
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close alone does not)
        except OSError:
            pass
        self._listener.close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        for t in self._threads:
            t.join(timeout=5)


def tls_server_context(pki: Pki, tmp: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    path = tmp / "server.pem"
    path.write_text(pki.server_key_pem + pki.server_cert_pem)
    path.chmod(0o600)
    ctx.load_cert_chain(path)
    return ctx


@dataclass
class Target:
    """Where the modem tests run: the simulator (``sim`` set) or a real modem on ``--port``."""

    port_url: str
    sim: Any  # SimulatedModem | None
    scratch_tag: int
    tcp: tuple[str, int] | None = None  # echo server reachable from the modem
    tls: tuple[str, int] | None = None  # TLS echo server (host, port)
    pki: Pki | None = None
