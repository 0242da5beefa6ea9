"""What crosses the simulated radio: DNS lookups, the events a watcher sees, and #XAPOLL for later sockets.

Only lower bounds on time are asserted (a loaded machine makes things slower, never faster).
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from fixtures.sim import RawPort
from nrfprov.sim.network import AirEvent, NetworkProfile

pytestmark = pytest.mark.integration

RADIO = NetworkProfile("test", rtt_s=0.3)  # delay only: every round trip shows as one RTT


def _online(p: RawPort) -> None:
    p.ok("AT+CEREG=5")
    p.send("AT+CFUN=1")
    assert p.line() == "OK"
    p.wait_line("+CEREG: 1")


def _echo(conn: socket.socket) -> None:
    while data := conn.recv(4096):
        conn.sendall(data)


def test_a_name_costs_one_dns_round_trip_an_address_none(server_factory, sim_factory, raw_port_factory) -> None:
    srv = server_factory(_echo)
    sim = sim_factory(dialect="sm", baud=0, network=RADIO, attach_delay=0, resolve={"broker.test": "127.0.0.1"})
    p = raw_port_factory(sim)
    _online(p)
    t0 = time.monotonic()
    assert p.ok('AT#XGETADDRINFO="broker.test",1') == ['#XGETADDRINFO: "127.0.0.1"']
    assert time.monotonic() - t0 >= RADIO.rtt_s
    assert sim.stats.dns == 1
    assert p.cmd('AT#XGETADDRINFO="broker.test",2')[1] == "ERROR"  # IPv6 is not simulated
    p.ok("AT#XSOCKET=1,1,0")
    p.ok(f'AT#XCONNECT=0,"127.0.0.1",{srv.port}')
    assert sim.stats.dns == 1  # an address: no lookup
    p.ok("AT#XCLOSE=0")
    p.ok("AT#XSOCKET=1,1,0")
    t0 = time.monotonic()
    p.ok(f'AT#XCONNECT=0,"broker.test",{srv.port}')
    assert time.monotonic() - t0 >= 2 * RADIO.rtt_s  # DNS, then SYN / SYN-ACK
    assert sim.stats.dns == 2  # no cache in the modem: every name costs a lookup
    p.ok("AT#XCLOSE=0")


def test_the_link_reports_what_crossed_it_at_the_modem_end(server_factory, sim_factory, raw_port_factory) -> None:
    srv = server_factory(_echo)
    sim = sim_factory(dialect="sm", baud=0, network=RADIO, attach_delay=0, resolve={"broker.test": "127.0.0.1"})
    events: list[AirEvent] = []
    lock = threading.Lock()

    def watch(e: AirEvent) -> None:
        with lock:
            events.append(e)

    sim.link.observer = watch
    p = raw_port_factory(sim)
    _online(p)
    p.ok("AT#XSOCKET=1,1,0")
    p.ok(f'AT#XCONNECT=0,"broker.test",{srv.port}')
    p.send("AT#XSEND=0,2,0,5")
    assert p.line() == "OK"
    p.write(b"hello")
    assert p.wait_line("#XDATAMODE:") == "#XDATAMODE: 0"
    assert p.ok("AT#XRECV=0,0,0,5", timeout=10) == ["#XRECV: 0,0,5", "hello"]
    p.ok("AT#XCLOSE=0")
    with lock:
        kinds = [(e.kind, e.nbytes) for e in events]
        by_kind = {e.kind: e for e in events}
    assert kinds == [("dns", 0), ("connect", 0), ("up", 5), ("down", 5), ("close", 0)]
    # Timed at the modem's end: the echo arrives one round trip after the send left.
    assert by_kind["down"].t - by_kind["up"].t >= RADIO.rtt_s
    assert by_kind["up"].conn == by_kind["down"].conn == by_kind["connect"].conn > 0


def test_sm_xapoll_without_a_handle_applies_to_sockets_opened_later(
    server_factory, sim_factory, raw_port_factory
) -> None:
    srv = server_factory(_echo)
    sim = sim_factory(dialect="sm", baud=0)
    p = raw_port_factory(sim)
    _online(p)
    assert p.ok("AT#XAPOLL=,1,1") == []  # no socket yet
    p.ok("AT#XSOCKET=1,1,0")
    p.ok(f'AT#XCONNECT=0,"127.0.0.1",{srv.port}')
    p.send("AT#XSEND=0,2,0,3")
    assert p.line() == "OK"
    p.write(b"abc")
    assert p.wait_line("#XAPOLL:") == "#XAPOLL: 0,1"  # armed by the context, no per-socket #XAPOLL
    p.ok("AT#XCLOSE=0")
    assert p.ok("AT#XAPOLL=,0") == []  # stop: later sockets get nothing
    p.ok("AT#XSOCKET=1,1,0")
    p.ok(f'AT#XCONNECT=0,"127.0.0.1",{srv.port}')
    p.send("AT#XSEND=0,2,0,3")
    assert p.line() == "OK"
    p.write(b"abc")
    assert p.wait_line("#XDATAMODE:") == "#XDATAMODE: 0"
    # The data is there, announced by nothing: no #XAPOLL line came before this read's reply.
    assert p.ok("AT#XRECV=0,0,0,5", timeout=10) == ["#XRECV: 0,0,3", "abc"]
    p.ok("AT#XCLOSE=0")
