"""Network profiles: delay and rate on the modem's sockets, both ways, and the attach time.

Only lower bounds are asserted (a loaded machine makes everything slower, never faster): a byte
cannot cross a link before its serialisation time plus the one-way delay.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time

import pytest
from sim_peers import tls_server_context

from nrfprov.names import NETWORKS
from nrfprov.sim.network import PROFILES, NetworkProfile

pytestmark = pytest.mark.integration

SHAPED = NetworkProfile("test", rtt_s=0.2, up_bps=64_000, down_bps=32_000, attach_s=0.4)
N = 8000  # bytes each way: 1.0 s up at 64 kbit/s, 2.0 s down at 32 kbit/s


def _online(p, sim) -> float:
    p.ok("AT+CEREG=1")
    t0 = time.monotonic()
    p.ok("AT+CFUN=1")
    p.wait_line("+CEREG: 1", timeout=10)
    return time.monotonic() - t0


def test_profiles_have_cited_defaults() -> None:
    assert PROFILES["ideal"].ideal
    assert tuple(PROFILES) == NETWORKS  # the CLI choices (sim, demo) and the simulator agree
    lte, nb = PROFILES["lte-m"], PROFILES["nb-iot"]
    assert nb.rtt_s > lte.rtt_s > 0 and nb.attach_s > lte.attach_s > 0
    assert lte.up_bps > nb.up_bps > 0 and lte.down_bps > nb.down_bps > 0
    assert NetworkProfile("x").with_overrides(rtt_ms=150, up_kbps=1).up_bps == 1000


def test_tcp_data_both_ways_is_rate_limited_and_delayed(server_factory, sim_factory, raw_port_factory) -> None:
    got = bytearray()
    all_in = threading.Event()
    arrived: list[float] = []

    def server(conn: socket.socket) -> None:
        while len(got) < N:
            chunk = conn.recv(65536)
            if not chunk:
                return
            got.extend(chunk)
        arrived.append(time.monotonic())
        all_in.set()
        sent.append(time.monotonic())
        conn.sendall(b"d" * N)
        conn.recv(1)  # until the test closes

    sent: list[float] = []
    srv = server_factory(server)
    sim = sim_factory(dialect="sm", baud=0, network=SHAPED)
    p = raw_port_factory(sim)
    assert _online(p, sim) >= SHAPED.attach_s  # +CEREG: 1 only after the attach time
    p.ok("AT#XSOCKET=1,1,0")
    t0 = time.monotonic()
    p.ok(f'AT#XCONNECT=0,"127.0.0.1",{srv.port}')
    assert time.monotonic() - t0 >= SHAPED.rtt_s  # SYN / SYN-ACK over the radio
    t_up = time.monotonic()
    for _ in range(2):
        p.send(f"AT#XSEND=0,2,0,{N // 2}")
        assert p.line() == "OK"
        p.write(b"u" * (N // 2))
        assert p.wait_line("#XDATAMODE:") == "#XDATAMODE: 0"
    assert all_in.wait(30)
    assert arrived[0] - t_up >= N * 8 / SHAPED.up_bps + SHAPED.rtt_s / 2
    received = 0
    while received < N:
        lines, final = p.cmd("AT#XRECV=0,0,0,10", timeout=15)
        assert final == "OK" or final.startswith("#XRECV")
        received += sum(int(x.rsplit(",", 1)[1]) for x in lines if x.startswith("#XRECV:"))
    assert time.monotonic() - sent[0] >= N * 8 / SHAPED.down_bps + SHAPED.rtt_s / 2


def test_modem_tls_handshake_and_data_go_over_the_shaped_link(server_factory, sim_factory, raw_port_factory,
                                                              pki) -> None:
    ctx = tls_server_context(pki)

    def server(conn: socket.socket) -> None:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            data = b""
            while len(data) < 1000:
                chunk = tls.recv(4096)
                if not chunk:
                    return
                data += chunk
            tls.sendall(data)
            try:
                tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    srv = server_factory(server)
    sim = sim_factory(dialect="sm", baud=0, network=SHAPED, resolve={"broker.sim.test": "127.0.0.1"})
    p = raw_port_factory(sim)
    p.ok("AT+CFUN=4")
    p.ok(f'AT%CMNG=0,77,0,"{pki.ca_pem}"')
    _online(p, sim)
    p.ok("AT#XSSOCKET=1,1,0,77")
    p.ok('AT#XSSOCKETOPT=0,1,2,"broker.sim.test"')
    t0 = time.monotonic()
    p.ok(f'AT#XCONNECT=0,"broker.sim.test",{srv.port}', timeout=30)
    # TCP (1 RTT) + TLS 1.2 full handshake (2 RTT) over the radio
    assert time.monotonic() - t0 >= 3 * SHAPED.rtt_s
    t1 = time.monotonic()
    p.send("AT#XSEND=0,2,0,1000")
    assert p.line() == "OK"
    p.write(b"t" * 1000)
    got = 0
    while got < 1000:
        lines, _ = p.cmd("AT#XRECV=0,0,0,10", timeout=15)
        got += sum(int(x.rsplit(",", 1)[1]) for x in lines if x.startswith("#XRECV:"))
    # 1000 B of plaintext up and back (plus record overhead), each way at its rate, plus one RTT
    assert time.monotonic() - t1 >= 1000 * 8 / SHAPED.up_bps + 1000 * 8 / SHAPED.down_bps + SHAPED.rtt_s
