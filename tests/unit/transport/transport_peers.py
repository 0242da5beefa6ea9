"""Real peers for transport tests: a throwaway PKI and an OpenSSL (Python ``ssl``) TLS server.

The server runs on 127.0.0.1 in a thread, requires (or not) a client certificate, answers with a
scripted behaviour, and records what it saw (ALPN, SNI, client cert, bytes). Everything it starts is
stopped by ``close()``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

KeyType = str  # "rsa" | "ec"


def new_key(kind: KeyType) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    return ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)


def key_pem(key: object, *, pkcs8: bool = True) -> str:
    fmt = serialization.PrivateFormat.PKCS8 if pkcs8 else serialization.PrivateFormat.TraditionalOpenSSL
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()  # type: ignore[attr-defined]


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class Ca:
    name: str
    key: object
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str = "nrfprov test CA", kind: KeyType = "ec") -> Ca:
        key = new_key(kind)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256())  # type: ignore[arg-type]
        )
        return cls(name, key, cert)

    @property
    def pem(self) -> str:
        return cert_pem(self.cert)

    def issue(self, cn: str, *, kind: KeyType = "ec", dns: tuple[str, ...] = (), server: bool = False,
              days: int = 30) -> tuple[str, str]:
        """Return (cert PEM, key PEM) for a leaf signed by this CA."""
        key = new_key(kind)
        now = dt.datetime.now(dt.UTC)
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if dns:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
        eku = x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        cert = b.sign(self.key, hashes.SHA256())  # type: ignore[arg-type]
        return cert_pem(cert), key_pem(key)


@dataclass
class Pki:
    ca: Ca
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str

    @classmethod
    def create(cls, *, server_kind: KeyType = "rsa", client_kind: KeyType = "ec") -> Pki:
        ca = Ca.create()
        sc, sk = ca.issue("localhost", kind=server_kind, dns=("localhost",), server=True)
        cc, ck = ca.issue("dev-1", kind=client_kind)
        return cls(ca, sc, sk, cc, ck)

    def write_server(self, d: Path) -> tuple[Path, Path, Path]:
        d.mkdir(parents=True, exist_ok=True)
        (d / "ca.pem").write_text(self.ca.pem)
        (d / "server.pem").write_text(self.server_cert)
        (d / "server.key").write_text(self.server_key)
        return d / "ca.pem", d / "server.pem", d / "server.key"


Behaviour = Callable[[ssl.SSLSocket, "ServerRecord"], None]


@dataclass
class ServerRecord:
    alpn: str | None = None
    sni: str | None = None
    client_cn: str | None = None
    received: bytearray = field(default_factory=bytearray)
    errors: list[str] = field(default_factory=list)
    handshakes: int = 0


def echo(conn: ssl.SSLSocket, rec: ServerRecord) -> None:
    while True:
        data = conn.recv(65536)
        if not data:
            return
        rec.received += data
        conn.sendall(data)


def send_then_close(payload: bytes, *, close_notify: bool = True) -> Behaviour:
    def run(conn: ssl.SSLSocket, rec: ServerRecord) -> None:
        conn.sendall(payload)
        if close_notify:
            conn.unwrap()

    return run


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class TlsServer:
    """OpenSSL TLS server on 127.0.0.1:<free port>; one connection at a time, in a thread."""

    def __init__(self, tmp: Path, pki: Pki, behaviour: Behaviour = echo, *, require_client_cert: bool = True,
                 alpn: tuple[str, ...] = (), max_tls12: bool = False) -> None:
        ca, crt, key = pki.write_server(tmp)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
        if max_tls12:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        self.record = ServerRecord()

        def sni_cb(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            self.record.sni = name

        ctx.sni_callback = sni_cb  # type: ignore[assignment]
        self._ctx = ctx
        self._behaviour = behaviour
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(4)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self.done = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, name="tls-test-server", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns.append(raw)
            try:
                conn = self._ctx.wrap_socket(raw, server_side=True)
                self.record.handshakes += 1
                self.record.alpn = conn.selected_alpn_protocol()
                peer = conn.getpeercert()
                if peer:
                    for rdn in peer.get("subject", ()):
                        for k, v in rdn:
                            if k == "commonName":
                                self.record.client_cn = v
                self._behaviour(conn, self.record)
                conn.close()
            except (OSError, ssl.SSLError) as exc:
                self.record.errors.append(str(exc))
                raw.close()
            finally:
                self.done.set()

    def close(self) -> None:
        self._stop.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        except OSError:
            pass
        self._listener.close()
        for c in self._conns:
            try:
                c.close()
            except OSError:
                pass
        self._thread.join(5)

    def __enter__(self) -> TlsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
