"""The native TLS bridge against a real OpenSSL server (Python ``ssl``) on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Callable

import pytest
from transport_peers import Ca, Pki, ServerRecord, TlsServer, send_then_close, sha256

from nrfprov.errors import (
    CertificateVerifyError,
    DeviceLimitError,
    LinkClosed,
    ResponseTimeout,
    TlsError,
    UsageError,
)
from nrfprov.transport.credentials import TlsCredentials
from nrfprov.transport.native_tls import NATIVE_TLS_CIPHERS, NativeTlsStream, alpn_for_port
from nrfprov.transport.tcp import HostTcpStream

ServerFactory = Callable[..., TlsServer]


def connect(srv: TlsServer, creds: TlsCredentials, name: str = "localhost", **kw: object) -> NativeTlsStream:
    return NativeTlsStream.open(HostTcpStream.connect("127.0.0.1", srv.port), creds, name, timeout=5, **kw)


def recv_exactly(s: NativeTlsStream, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(65536, 5)
        assert chunk, f"EOF after {len(out)} of {n} bytes"
        out += chunk
    return bytes(out)


@pytest.mark.parametrize("server_kind,client_kind", [("rsa", "ec"), ("rsa", "rsa"), ("ec", "ec")])
def test_round_trip_sizes_and_key_types(tls_server: ServerFactory, server_kind: str, client_kind: str) -> None:
    pki = Pki.create(server_kind=server_kind, client_kind=client_kind)
    srv = tls_server(pki)
    creds = TlsCredentials.from_pems(pki.ca.pem, pki.client_cert, pki.client_key)
    with connect(srv, creds) as s:
        assert s.cipher in NATIVE_TLS_CIPHERS
        assert ("ECDSA" in (s.cipher or "")) == (server_kind == "ec")
        for size in (1, 4500, 65536, 131072):
            payload = os.urandom(size)
            s.send(payload)
            assert sha256(recv_exactly(s, size)) == sha256(payload)
        assert s.bytes_sent == s.bytes_received == 1 + 4500 + 65536 + 131072
        # ciphertext counters sit one layer down and include record overhead
        assert s.inner.bytes_sent > s.bytes_sent
    assert srv.record.client_cn == "dev-1"
    assert srv.record.sni == "localhost"


def test_handshake_is_two_coalesced_writes_tls12_only(tls_server: ServerFactory, pki: Pki,
                                                       creds: TlsCredentials) -> None:
    srv = tls_server(pki)  # the server would accept TLS 1.3; the bridge must hold to 1.2
    with connect(srv, creds) as s:
        assert s.handshake_writes == 2  # ClientHello, then the whole client flight
        up, down = s.handshake_bytes
        assert 500 < up < 2000 and 1000 < down < 6000
        assert s.negotiated_alpn is None


def test_alpn_only_on_port_443(tls_server: ServerFactory, pki: Pki, creds: TlsCredentials) -> None:
    assert alpn_for_port(443) == ("x-amzn-mqtt-ca",)
    assert alpn_for_port(8883) == ()
    srv = tls_server(pki, alpn=("x-amzn-mqtt-ca",))
    with connect(srv, creds, port=443) as s:  # port is the broker port the bridge was told about
        assert s.negotiated_alpn == "x-amzn-mqtt-ca"
    srv.done.wait(5)
    assert srv.record.alpn == "x-amzn-mqtt-ca"
    srv2 = tls_server(pki, alpn=("x-amzn-mqtt-ca",))
    with connect(srv2, creds, port=8883) as s:
        assert s.negotiated_alpn is None


def test_wrong_hostname_is_certificate_verify_error(tls_server: ServerFactory, pki: Pki,
                                                     creds: TlsCredentials) -> None:
    srv = tls_server(pki)
    with pytest.raises(CertificateVerifyError) as ei:
        connect(srv, creds, name="wrong.example")
    assert "'wrong.example' is not among the certificate's names ['localhost']" in str(ei.value)
    assert ei.value.err == 0x2700


def test_untrusted_server_certificate_is_certificate_verify_error(tls_server: ServerFactory, pki: Pki) -> None:
    srv = tls_server(pki)
    other = Ca.create("some other CA")
    creds = TlsCredentials.from_pems(other.pem, pki.client_cert, pki.client_key, source="test-ca")
    with pytest.raises(CertificateVerifyError) as ei:
        connect(srv, creds)
    assert "not in the trusted CA file (test-ca)" in str(ei.value)


def test_missing_client_certificate_is_refused_clearly(tls_server: ServerFactory, pki: Pki) -> None:
    srv = tls_server(pki)
    with pytest.raises((TlsError, LinkClosed)) as ei:
        connect(srv, TlsCredentials.from_pems(pki.ca.pem))
    assert "no client certificate was configured" in str(ei.value)
    srv.done.wait(5)
    assert any("did not return a certificate" in e for e in srv.record.errors)


def test_foreign_client_certificate_is_refused_with_the_alert(tls_server: ServerFactory, pki: Pki) -> None:
    srv = tls_server(pki)
    cert, key = Ca.create("rogue").issue("dev-1")
    with pytest.raises(TlsError) as ei:
        connect(srv, TlsCredentials.from_pems(pki.ca.pem, cert, key))
    assert "unknown_ca" in str(ei.value)
    assert not isinstance(ei.value, CertificateVerifyError)


def test_ip_address_as_server_name_is_refused_up_front(pki: Pki, creds: TlsCredentials) -> None:
    s1, s2 = socket.socketpair()  # never used: the check comes before any byte
    try:
        with pytest.raises(UsageError, match="IP address"):
            NativeTlsStream(HostTcpStream(s1), creds, "127.0.0.1")
    finally:
        s1.close()
        s2.close()


def test_close_notify_is_end_of_stream(tls_server: ServerFactory, pki: Pki, creds: TlsCredentials) -> None:
    payload = os.urandom(20000)
    srv = tls_server(pki, send_then_close(payload, close_notify=True))
    with connect(srv, creds) as s:
        assert recv_exactly(s, len(payload)) == payload
        assert s.recv(10, 5) == b""
        assert s.recv(10, 5) == b""


def _mid_record_then_close(conn: ssl.SSLSocket, rec: ServerRecord) -> None:
    conn.sendall(b"hello")
    # a record header announcing 4096 bytes, then only 50 of them, then the TCP connection ends
    os.write(conn.fileno(), b"\x17\x03\x03\x10\x00" + b"z" * 50)


def test_peer_gone_mid_record_is_link_closed(tls_server: ServerFactory, pki: Pki, creds: TlsCredentials) -> None:
    srv = tls_server(pki, _mid_record_then_close)
    with connect(srv, creds) as s:
        assert recv_exactly(s, 5) == b"hello"
        with pytest.raises(LinkClosed, match="middle of a TLS record"):
            s.recv(10, 5)
        with pytest.raises(LinkClosed):  # the failure sticks
            s.recv(10, 5)


def test_recv_timeout_keeps_the_session(tls_server: ServerFactory, pki: Pki, creds: TlsCredentials) -> None:
    srv = tls_server(pki)
    with connect(srv, creds) as s:
        with pytest.raises(ResponseTimeout):
            s.recv(10, 0.05)
        s.send(b"still here")
        assert recv_exactly(s, 10) == b"still here"


def test_mirror_in_content_limit(tls_server: ServerFactory, pki: Pki, creds: TlsCredentials) -> None:
    srv = tls_server(pki)
    with connect(srv, creds, in_content_limit=5120) as s:
        small = os.urandom(4500)
        s.send(small)
        assert recv_exactly(s, 4500) == small  # one 4500-byte record: fits 5120
        s.send(os.urandom(16384))
        with pytest.raises(DeviceLimitError) as ei:
            recv_exactly(s, 16384)
    e = ei.value
    assert (e.symbol, e.limit, e.needed) == ("CONFIG_MBEDTLS_SSL_IN_CONTENT_LEN", 5120, 16384)
    assert "short by 11264 bytes" in str(e)


def test_mirror_limit_applies_to_handshake_records(tls_server: ServerFactory, pki: Pki,
                                                   creds: TlsCredentials) -> None:
    srv = tls_server(pki)  # the server's Certificate record (RSA-2048 leaf) is ~1 KB
    with pytest.raises(DeviceLimitError) as ei:
        connect(srv, creds, in_content_limit=512)
    assert ei.value.limit == 512 and ei.value.needed > 512


def test_out_content_len_slices_records(tls_server: ServerFactory, pki: Pki, creds: TlsCredentials) -> None:
    srv = tls_server(pki)
    with connect(srv, creds, out_content_len=1024) as s:
        payload = os.urandom(10000)
        s.send(payload)
        assert recv_exactly(s, 10000) == payload
        # 10 records of ≤1024 B plaintext, each with ~29 B of GCM overhead
        assert s.inner.bytes_sent - s.handshake_bytes[0] >= 10000 + 10 * 29
