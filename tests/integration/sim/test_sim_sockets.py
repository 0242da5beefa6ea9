"""Socket dialects against real TCP peers on 127.0.0.1, driven by raw pyserial bytes."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable

import pytest

from fixtures.sim import RawPort
from nrfprov.sim import SimulatedModem

pytestmark = pytest.mark.integration

RawFactory = Callable[[SimulatedModem], RawPort]
# Binary payload that contains every hazard: CR LF, "OK", "+++", a fake URC, all byte values.
NASTY = b"\r\nOK\r\n+++#XRECV: 0,0,9\r\n" + bytes(range(256)) + b"+++"


def _echo(conn: socket.socket) -> None:
    while data := conn.recv(4096):
        conn.sendall(data)


def _online(p: RawPort) -> None:
    p.ok("AT+CMEE=1")
    p.ok("AT+CEREG=5")
    p.send("AT+CFUN=1")
    assert p.line() == "OK"
    p.wait_line("+CEREG: 1")


def _recv_sm(p: RawPort, h: int, want: int, timeout: int = 5) -> bytes:
    got = b""
    while len(got) < want:
        p.send(f"AT#XRECV={h},0,0,{timeout}")
        head = p.line()
        assert head.startswith(f"#XRECV: {h},0,"), head
        n = int(head.rsplit(",", 1)[1])
        assert 0 < n <= 2048
        got += p.read_exact(n)
        assert p.read_exact(6) == b"\r\nOK\r\n"
    return got


def test_sm_binary_roundtrip_apoll_and_eof(server_factory, sim_factory, raw_port_factory) -> None:
    sim = sim_factory(dialect="sm", baud=0)
    srv = server_factory(_echo)
    p = raw_port_factory(sim)
    _online(p)
    assert p.ok("AT#XSOCKET=1,1,0") == ["#XSOCKET: 0,1,6"]
    # Connect is refused before registration would be checked elsewhere; here we are online.
    assert p.ok(f'AT#XCONNECT=0,"127.0.0.1",{srv.port}') == ["#XCONNECT: 0,1"]
    p.ok("AT#XAPOLL=0,1,1")
    p.send(f"AT#XSEND=0,2,0,{len(NASTY)}")
    assert p.line() == "OK"
    p.write(NASTY)  # exactly len bytes, no terminator scan: "+++" is data
    assert p.wait_line("#XDATAMODE:") == "#XDATAMODE: 0"
    assert p.wait_line("#XAPOLL:") == "#XAPOLL: 0,1"
    assert _recv_sm(p, 0, len(NASTY)) == NASTY
    assert sim.stats.air_tx == len(NASTY) and sim.stats.air_rx == len(NASTY)
    # Nothing buffered: non-blocking receive answers ERROR; a timed one times out with ERROR.
    assert p.cmd("AT#XRECV=0,0,64,0")[1] == "ERROR"
    assert p.cmd("AT#XRECV=0,0,0,1")[1] == "ERROR"
    assert p.ok("AT#XSOCKETOPT=0,0,4") == ["#XSOCKETOPT: 0,0"]
    # Peer closes: #XAPOLL carries only the requested POLLIN (never HUP), and #XRECV answers a bare
    # OK (recv() returned 0: no #XRECV line) [ncs-serial-modem sm_at_socket.c].
    srv.conns[0].shutdown(socket.SHUT_RDWR)
    assert p.wait_line("#XAPOLL:") == "#XAPOLL: 0,1"
    p.send("AT#XRECV=0,0,0,1")
    assert p.read_until(b"\r\nOK\r\n") == b"\r\nOK\r\n"
    assert p.cmd("AT") == ([], "OK")  # end of stream does not re-arm POLLIN: no second #XAPOLL
    assert p.ok("AT#XCLOSE=0") == ["#XCLOSE: 0,0"]
    assert p.cmd("AT#XCLOSE=0")[1] == "ERROR"


def test_sm_socket_limit_and_errors(server_factory, sim_factory, raw_port_factory) -> None:
    sim = sim_factory(dialect="sm", baud=0)
    p = raw_port_factory(sim)
    p.ok("AT+CMEE=1")
    for h in range(8):
        assert p.ok("AT#XSOCKET=1,1,0") == [f"#XSOCKET: {h},1,6"]
    assert p.cmd("AT#XSOCKET=1,1,0")[1] == "ERROR"  # a 9th socket
    # Offline: connect fails. Online: a closed port is refused; a non-loopback host is refused.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    closed_port = lsock.getsockname()[1]
    lsock.close()
    assert p.cmd(f'AT#XCONNECT=0,"127.0.0.1",{closed_port}')[1] == "ERROR"
    _online(p)
    assert p.cmd(f'AT#XCONNECT=0,"127.0.0.1",{closed_port}')[1] == "ERROR"
    assert p.ok("AT#XSOCKETOPT=0,0,4") == ["#XSOCKETOPT: 0,111"]
    assert p.cmd('AT#XCONNECT=1,"192.0.2.1",80')[1] == "ERROR"
    assert p.cmd("AT#XSEND=2,2,0,5")[1] == "ERROR"  # not connected
    assert p.cmd("AT#XSEND=2,2,0,5000")[1] == "ERROR"  # over the 4096-byte data-mode buffer
    assert p.ok("AT#XCLOSE") == [f"#XCLOSE: {h},0" for h in range(8)]


def test_slm_datamode_terminator_hazard(server_factory, sim_factory, raw_port_factory) -> None:
    sim = sim_factory(dialect="slm", baud=0)
    received = bytearray()
    got = threading.Event()

    def collect(conn: socket.socket) -> None:
        while data := conn.recv(4096):
            received.extend(data)
            got.set()

    srv = server_factory(collect)
    p = raw_port_factory(sim)
    _online(p)
    assert p.ok("AT#XSOCKET=1,1,0") == ["#XSOCKET: 0,1,6"]
    assert p.ok(f'AT#XCONNECT="127.0.0.1",{srv.port}') == ["#XCONNECT: 1"]
    p.send("AT#XSEND")
    assert p.line() == "OK"
    # The terminator is matched anywhere, across writes: the payload is cut at the first "+++".
    p.write(b"abc\r\nOK+")
    p.write(b"+")
    p.write(b"+tail-that-becomes-a-command\r\n")
    assert p.wait_line("#XDATAMODE:") == "#XDATAMODE: 0"
    assert p.final()[1] == "ERROR"  # "tail-that-becomes-a-command" was parsed as a command
    assert got.wait(5)
    assert bytes(received) == b"abc\r\nOK"
    assert p.ok("AT") == []


def test_slm_partial_terminator_flushed_after_idle(server_factory, sim_factory, raw_port_factory) -> None:
    sim = sim_factory(dialect="slm", baud=0, datamode_idle=0.1)
    received = bytearray()
    cond = threading.Condition()

    def collect(conn: socket.socket) -> None:
        while data := conn.recv(4096):
            with cond:
                received.extend(data)
                cond.notify_all()

    srv = server_factory(collect)
    p = raw_port_factory(sim)
    _online(p)
    p.ok("AT#XSOCKET=1,1,0")
    p.ok(f'AT#XCONNECT="127.0.0.1",{srv.port}')
    p.send("AT#XSEND")
    assert p.line() == "OK"
    # "x++" then a pause longer than the send timer: the held "++" is data (SLM raw_send_scheduled).
    p.write(b"x++")
    with cond:
        assert cond.wait_for(lambda: bytes(received) == b"x++", 5)
    p.write(b"+y+++")
    assert p.wait_line("#XDATAMODE:") == "#XDATAMODE: 0"
    with cond:
        assert cond.wait_for(lambda: bytes(received) == b"x+++y", 5)


def test_slm_recv_poll_select_close(server_factory, sim_factory, raw_port_factory) -> None:
    sim = sim_factory(dialect="slm", baud=0)
    payload = os.urandom(3000)

    def push(conn: socket.socket) -> None:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)

    srv = server_factory(push)
    quiet = server_factory(lambda c: c.recv(1))
    p = raw_port_factory(sim)
    _online(p)
    p.ok("AT#XSOCKET=1,1,0")
    p.ok(f'AT#XCONNECT="127.0.0.1",{quiet.port}')
    p.ok("AT#XSOCKET=1,1,0")  # opening selects socket 1
    p.ok(f'AT#XCONNECT="127.0.0.1",{srv.port}')
    # Socket 1 becomes readable (POLLIN, plus POLLHUP once the peer's FIN is in too); 0 stays quiet.
    assert p.ok("AT#XPOLL=2000,0,1") in (['#XPOLL: 1,"0x0001"'], ['#XPOLL: 1,"0x0011"'])
    got = b""
    while len(got) < len(payload):
        p.send("AT#XRECV=5")
        head = p.line()
        assert head.startswith("#XRECV: ")
        n = int(head.split(": ")[1])
        assert 0 < n <= 2048
        got += p.read_exact(n)
        assert p.read_exact(6) == b"\r\nOK\r\n"
    assert got == payload
    assert p.ok("AT#XRECV=1") == []  # peer closed: OK with no #XRECV line
    assert p.ok("AT#XPOLL=100,0") == []  # the quiet socket has nothing
    assert p.ok("AT#XSOCKETSELECT=0") == ["#XSOCKETSELECT: 0"]
    assert p.cmd("AT#XRECV=1")[1] == "ERROR"  # timeout, nothing received
    assert p.ok("AT#XSOCKETOPT=0,4") == ["#XSOCKETOPT: 0"]
    assert p.ok("AT#XSOCKET=0") == ['#XSOCKET: 0,"closed"']
    assert p.cmd("AT#XSOCKETSELECT=0")[1] == "ERROR"


@pytest.mark.parametrize("dialect", ["sm", "slm"])
def test_urcs_in_data_mode_held_by_sm_dropped_by_slm(server_factory, sim_factory, raw_port_factory, dialect) -> None:
    sim = sim_factory(dialect=dialect, baud=0)
    srv = server_factory(_echo)
    p = raw_port_factory(sim)
    _online(p)
    p.ok("AT#XSOCKET=1,1,0")
    p.ok(f'AT#XCONNECT=0,"127.0.0.1",{srv.port}' if dialect == "sm" else f'AT#XCONNECT="127.0.0.1",{srv.port}')
    p.send("AT#XSEND=0,2,0,4" if dialect == "sm" else "AT#XSEND")
    assert p.line() == "OK"  # from here on the simulator is in data mode
    sim.urc("+CEREG: 5")  # a notification raised while the host is streaming data
    p.write(b"data" if dialect == "sm" else b"data+++")
    assert p.line() == "#XDATAMODE: 0"
    if dialect == "sm":
        assert p.line() == "+CEREG: 5"  # SM flushes held URCs after data mode
    assert p.cmd("AT") == ([], "OK")  # SLM dropped it: nothing between #XDATAMODE and OK


def test_ready_banner_reaches_a_host_that_listens_first(tmp_path) -> None:
    from nrfprov.sim import SimulatedModem

    sim = SimulatedModem(tmp_path / "s", baud=9600)
    p = RawPort(sim.port_url)
    try:
        sim.start()
        assert p.line() == "Ready"
    finally:
        p.close()
        sim.stop()


def test_sm_apoll_pollout_rearmed_by_send(server_factory, sim_factory, raw_port_factory) -> None:
    sim = sim_factory(dialect="sm", baud=0)
    srv = server_factory(_echo)
    p = raw_port_factory(sim)
    _online(p)
    p.ok("AT#XSOCKET=1,1,0")
    p.ok(f'AT#XCONNECT=0,"127.0.0.1",{srv.port}')
    assert p.ok("AT#XAPOLL=0,1,4") == []  # the URC comes after the OK
    assert p.line() == "#XAPOLL: 0,4"  # writable, reported once ...
    assert p.ok('AT#XSEND=0,0,0,"hi"') == ["#XSEND: 0,0,2"]
    assert p.line() == "#XAPOLL: 0,4"  # ... and again after #XSEND re-armed it
    p.ok("AT#XAPOLL=0,0")
    assert p.ok('AT#XSEND=0,0,0,"hi"') == ["#XSEND: 0,0,2"]
    assert p.cmd("AT") == ([], "OK")  # stopped: no more URCs


def test_going_offline_kills_connected_sockets_with_enetdown(server_factory, sim_factory, raw_port_factory) -> None:
    sim = sim_factory(dialect="sm", baud=0)
    srv = server_factory(_echo)
    p = raw_port_factory(sim)
    _online(p)
    p.ok("AT#XSOCKET=1,1,0")
    p.ok(f'AT#XCONNECT=0,"127.0.0.1",{srv.port}')
    p.ok("AT#XAPOLL=0,1,1")
    # nrfxlib pdn.rst: without NRF_SO_KEEPOPEN the socket fails with ENETDOWN (115), poll sets POLLERR;
    # #XAPOLL passes on only the requested POLLIN (a read fails at once) [sm_at_socket.c].
    p.send("AT+CFUN=4")
    assert p.line() == "OK"
    assert {p.line(), p.line()} == {"+CEREG: 0", "#XAPOLL: 0,1"}
    assert p.ok("AT#XSOCKETOPT=0,0,4") == ["#XSOCKETOPT: 0,115"]
    p.send("AT+CFUN=1")
    p.wait_line("+CEREG: 1")
    assert p.cmd('AT#XSEND=0,0,0,"x"')[1] == "ERROR"  # back online, but this socket stays dead
    assert p.cmd("AT#XRECV=0,0,64,0")[1] == "ERROR"
    p.ok("AT#XCLOSE=0")


def test_sm_crlf_host_on_a_cr_terminated_serial_modem_leaks_the_lf_into_data(
    server_factory, sim_factory, raw_port_factory
) -> None:
    """Serial Modem ends commands at CR (CONFIG_SM_CR_TERMINATION default): a host that sends CR LF
    gets its LF skipped in command mode, but after AT#XSEND=<h>,2,0,<len> the LF is the first data byte."""
    sim = sim_factory(dialect="sm", baud=0)
    assert sim.at_termination == "cr"
    got = bytearray()
    done = threading.Event()

    def collect(conn: socket.socket) -> None:
        while len(got) < 5:
            chunk = conn.recv(64)
            if not chunk:
                break
            got.extend(chunk)
        done.set()

    srv = server_factory(collect)
    p = raw_port_factory(sim)
    p.term = b"\r\n"  # a host written for legacy SLM
    _online(p)
    assert p.ok("AT#XSOCKET=1,1,0") == ["#XSOCKET: 0,1,6"]  # command mode: the LF is skipped
    p.ok(f'AT#XCONNECT=0,"127.0.0.1",{srv.port}')
    p.send("AT#XSEND=0,2,0,5")
    assert p.line() == "OK"
    p.write(b"hello")
    assert p.wait_line("#XDATAMODE:") == "#XDATAMODE: 0"
    assert done.wait(10)
    assert bytes(got) == b"\nhell"  # shifted by one; the "o" fell back into command mode
    p.term = b"\r"
    assert p.ok("AT") == []


def test_sm_xrecvcfg_pushes_data_with_crlf_after_it_and_a_lone_crlf_at_eof(
    server_factory, sim_factory, raw_port_factory
) -> None:
    sim = sim_factory(dialect="sm", baud=0)
    srv = server_factory(_echo)
    p = raw_port_factory(sim)
    _online(p)
    p.ok("AT#XSOCKET=1,1,0")
    assert p.ok("AT#XRECVCFG=0,1") == []
    assert p.ok("AT#XRECVCFG?") == ["#XRECVCFG: 0,1,0"]
    assert p.cmd("AT#XRECVCFG=0,2")[1] == "ERROR"  # data-mode reception is not simulated
    p.ok(f'AT#XCONNECT=0,"127.0.0.1",{srv.port}')
    assert p.cmd("AT#XAPOLL=0,1,9")[1] == "ERROR"  # only POLLIN / POLLOUT can be requested
    p.ok("AT#XAPOLL=0,1,1")
    payload = bytes(range(256)) * 12  # 3072 bytes: more than one 2048-byte push
    p.send(f"AT#XSEND=0,2,0,{len(payload)}")
    assert p.line() == "OK"
    p.write(payload)
    got = b""
    pushes = 0
    while len(got) < len(payload):
        line = p.line()
        if line.startswith(("#XDATAMODE:", "#XAPOLL:")):
            continue
        assert line.startswith("#XRECV: 0,0,"), line
        n = int(line.rsplit(",", 1)[1])
        assert 0 < n <= 2048
        got += p.read_exact(n)
        assert p.read_exact(2) == b"\r\n"  # CR LF after the data (no OK: it is a URC)
        pushes += 1
    assert got == payload and pushes >= 2
    assert p.cmd("AT#XRECV=0,0,64,0")[1] == "ERROR"  # nothing left for a manual read
    srv.conns[0].shutdown(socket.SHUT_RDWR)
    assert p.read_until(b"#XAPOLL: 0,1\r\n")
    assert p.read_exact(2) == b"\r\n"  # end of stream: a lone CR LF, no #XRECV line
    assert p.ok("AT#XCLOSE=0") == ["#XCLOSE: 0,0"]
