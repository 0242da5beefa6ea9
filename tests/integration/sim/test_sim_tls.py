"""Modem-offloaded TLS against a real OpenSSL server (Python ssl): credentials, verification, record limit."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import pytest
from sim_peers import GCM_OVERHEAD, Pki, tls_server_context

from fixtures.sim import RawPort
from nrfprov.sim.tlslimits import TLS_RECORD_LIMIT

pytestmark = pytest.mark.integration

TAG = 16842753


def _provision(p: RawPort, pki: Pki, *, ca: str | None = None, client: bool = True) -> None:
    p.ok("AT+CMEE=1")
    p.ok("AT+CFUN=4")
    p.ok(f'AT%CMNG=0,{TAG},0,"{ca or pki.ca_pem}"')
    if client:
        p.ok(f'AT%CMNG=0,{TAG},1,"{pki.client_cert_pem}"')
        p.ok(f'AT%CMNG=0,{TAG},2,"{pki.client_key_pem}"')
    p.ok("AT+CEREG=5")
    p.send("AT+CFUN=1")
    assert p.line() == "OK"
    p.wait_line("+CEREG: 1")


def _tls_server(pki: Pki, writes: list[int], seen: dict[str, object]) -> Callable[[socket.socket], None]:
    """Handshake (client cert required), read one request, answer with one record per size in writes."""

    def handler(conn: socket.socket) -> None:
        ctx = tls_server_context(pki, require_client_cert=True)
        with ctx.wrap_socket(conn, server_side=True) as tls:
            seen["peer"] = tls.getpeercert()
            seen["request"] = tls.recv(100)
            for n in writes:
                tls.sendall(b"A" * n)  # one SSL_write → one record
            seen["wrote"] = True
            try:
                tls.recv(1)  # hold the connection until the test closes
            except OSError:
                pass

    return handler


def _sm_recv_all(p: RawPort, want: int) -> bytes:
    got = b""
    while len(got) < want:
        p.send("AT#XRECV=0,0,0,5")
        head = p.line()
        assert head.startswith("#XRECV: 0,0,"), head
        n = int(head.rsplit(",", 1)[1])
        got += p.read_exact(n)
        assert p.read_exact(6) == b"\r\nOK\r\n"
    return got


def _sm_open_tls(p: RawPort, port: int, host: str = "localhost", verify: int = 2) -> list[str]:
    assert p.ok(f"AT#XSSOCKET=1,1,0,{TAG},{verify}") == ["#XSSOCKET: 0,1,258"]
    p.ok(f'AT#XSSOCKETOPT=0,1,2,"{host}"')
    lines, final = p.cmd(f'AT#XCONNECT=0,"{host}",{port}', timeout=15)
    return [*lines, final]


@pytest.mark.parametrize("sizes", [[2048, 2048], [TLS_RECORD_LIMIT - GCM_OVERHEAD]], ids=["2x2048", "exact-2303"])
def test_sm_tls_records_within_limit_pass(server_factory, sim_factory, raw_port_factory, pki, sizes) -> None:
    sim = sim_factory(dialect="sm", baud=0)
    seen: dict[str, object] = {}
    srv = server_factory(_tls_server(pki, sizes, seen))
    p = raw_port_factory(sim)
    _provision(p, pki)
    assert _sm_open_tls(p, srv.port) == ["#XCONNECT: 0,1", "OK"]
    p.send("AT#XSEND=0,2,0,4")
    assert p.line() == "OK"
    p.write(b"ping")
    assert p.wait_line("#XDATAMODE:") == "#XDATAMODE: 0"
    assert _sm_recv_all(p, sum(sizes)) == b"A" * sum(sizes)
    assert seen["request"] == b"ping"
    subject = dict(x[0] for x in seen["peer"]["subject"])  # type: ignore[index]
    assert subject["commonName"] == "sim-device"  # the sec tag's client cert was used
    sock = sim.sockets.socks[0]
    assert max(sock.scanner.records) == sizes[0] + GCM_OVERHEAD  # the record really had that size
    assert p.ok("AT#XSOCKETOPT=0,0,4") == ["#XSOCKETOPT: 0,0"]
    assert sim.stats.air_rx > sum(sizes) and sim.stats.air_tx > 4  # TLS bytes counted on the air


@pytest.mark.parametrize("size", [4096, TLS_RECORD_LIMIT - GCM_OVERHEAD + 1], ids=["4096", "2304"])
def test_sm_tls_record_over_limit_fails(server_factory, sim_factory, raw_port_factory, pki, size) -> None:
    sim = sim_factory(dialect="sm", baud=0)
    seen: dict[str, object] = {}
    srv = server_factory(_tls_server(pki, [size], seen))
    p = raw_port_factory(sim)
    _provision(p, pki)
    assert _sm_open_tls(p, srv.port) == ["#XCONNECT: 0,1", "OK"]
    p.ok("AT#XAPOLL=0,1,1")
    p.send("AT#XSEND=0,2,0,4")
    assert p.line() == "OK"
    p.write(b"ping")
    # The oversized record kills the socket: the armed POLLIN fires (#XAPOLL never carries ERR),
    # the read fails, the data is lost, errno EMSGSIZE.
    assert p.wait_line("#XAPOLL:") == "#XAPOLL: 0,1"
    assert p.cmd("AT#XRECV=0,0,0,1")[1] == "ERROR"
    assert p.ok("AT#XSOCKETOPT=0,0,4") == ["#XSOCKETOPT: 0,122"]
    assert p.cmd("AT#XSEND=0,2,0,4")[1] == "ERROR"
    assert sim.sockets.socks[0].scanner.records[-1] == size + GCM_OVERHEAD
    assert p.ok("AT#XCLOSE=0") == ["#XCLOSE: 0,0"]


def test_tls_verification(server_factory, sim_factory, raw_port_factory, pki) -> None:
    sim = sim_factory(dialect="sm", baud=0, resolve={"broker.sim.test": "127.0.0.1", "evil.sim.test": "127.0.0.1"})
    srv = server_factory(_tls_server(pki, [10], {}))
    p = raw_port_factory(sim)
    _provision(p, pki, client=True)
    # Host name not in the server certificate → handshake fails → ERROR, like the modem.
    assert _sm_open_tls(p, srv.port, host="evil.sim.test")[-1] == "ERROR"
    p.ok("AT#XCLOSE=0")
    assert _sm_open_tls(p, srv.port, host="broker.sim.test") == ["#XCONNECT: 0,1", "OK"]
    p.ok("AT#XCLOSE=0")
    # A CA that did not sign the server: verification fails; peer_verify 0 skips it.
    p.ok("AT+CFUN=4")
    p.ok(f'AT%CMNG=0,{TAG},0,"{pki.other_ca_pem}"')
    p.send("AT+CFUN=1")
    p.wait_line("+CEREG: 1")
    assert _sm_open_tls(p, srv.port)[-1] == "ERROR"
    p.ok("AT#XCLOSE=0")
    assert _sm_open_tls(p, srv.port, verify=0) == ["#XCONNECT: 0,1", "OK"]


def test_slm_tls_datamode_and_oversized_record(server_factory, sim_factory, raw_port_factory, pki) -> None:
    sim = sim_factory(dialect="slm", baud=0)
    go_big = threading.Event()
    seen: dict[str, object] = {}

    def handler(conn: socket.socket) -> None:
        ctx = tls_server_context(pki, require_client_cert=True)
        with ctx.wrap_socket(conn, server_side=True) as tls:
            seen["request"] = tls.recv(100)
            tls.sendall(b"B" * 1000)
            go_big.wait(10)
            tls.sendall(b"C" * 4096)
            try:
                tls.recv(1)
            except OSError:
                pass

    srv = server_factory(handler)
    p = raw_port_factory(sim)
    _provision(p, pki)
    assert p.ok(f"AT#XSSOCKET=1,1,0,{TAG}") == ["#XSSOCKET: 0,1,258"]
    p.ok('AT#XSSOCKETOPT=1,2,"localhost"')
    assert p.ok(f'AT#XCONNECT="localhost",{srv.port}', timeout=15) == ["#XCONNECT: 1"]
    p.send("AT#XSEND")
    assert p.line() == "OK"
    p.write(b"hello+++")
    assert p.wait_line("#XDATAMODE:") == "#XDATAMODE: 0"
    p.send("AT#XRECV=5")
    assert p.line() == "#XRECV: 1000"
    assert p.read_exact(1000) == b"B" * 1000
    assert p.read_exact(6) == b"\r\nOK\r\n"
    assert seen["request"] == b"hello"
    go_big.set()
    assert p.ok("AT#XPOLL=3000") == ['#XPOLL: 0,"0x0008"']
    assert p.cmd("AT#XRECV=2")[1] == "ERROR"
    assert p.ok("AT#XSOCKETOPT=0,4") == ["#XSOCKETOPT: 122"]
