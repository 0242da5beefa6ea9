"""The Serial Modem dialect with #XRECVCFG auto-receive: data pushed by the modem, nothing lost.

With ``AT#XRECVCFG=<h>,1`` the modem pushes what it receives as ``#XRECV`` URCs (CR LF after the
data) instead of waiting for ``AT#XRECV``; end of stream pushes only a CR LF, so the dialect asks once
when a POLLIN is not followed by a push [ncs-serial-modem at_socket.rst, sm_at_socket.c].
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.modem.modem_peers import EchoServer, make_pki, tls_server_context
from nrfprov.modem import Modem
from nrfprov.sim import SimulatedModem

pytestmark = pytest.mark.integration


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimulatedModem]:
    with SimulatedModem(tmp_path / "sim", dialect="sm", baud=0, resolve={"broker.test": "127.0.0.1"}) as s:
        yield s


def _commands(sim: SimulatedModem, name: str) -> int:
    return sum(1 for c in sim.command_log if c.startswith(name))


@pytest.mark.parametrize("auto", [False, True], ids=["xrecv", "recvcfg"])
def test_tcp_echo_and_eof_with_and_without_auto_receive(sim: SimulatedModem, auto: bool) -> None:
    server = EchoServer()
    payload = os.urandom(20000)
    try:
        with Modem.open(sim.port_url, dialect="sm", sm_auto_receive=auto) as m:
            m.set_cfun(1)
            m.wait_registered(30)
            with m.open_tcp("127.0.0.1", server.port) as s:
                got = b""
                for i in range(0, len(payload), 3000):
                    s.send(payload[i : i + 3000])
                    while len(got) < min(len(payload), i + 3000):
                        got += s.recv(4096, timeout=10)
                assert got == payload
                s.send(b"CLOSE")  # the server closes: end of stream
                assert s.recv(10, timeout=10) == b""
        assert (_commands(sim, "AT#XRECVCFG") > 0) is auto
    finally:
        server.stop()


def test_modem_tls_with_auto_receive(sim: SimulatedModem, tmp_path: Path) -> None:
    pki = make_pki("broker.test")
    server = EchoServer(tls_server_context(pki, tmp_path))
    try:
        with Modem.open(sim.port_url, dialect="sm", sm_auto_receive=True) as m:
            m.set_cfun(4)
            m.write_credential(7, 0, pki.ca_pem)
            m.set_cfun(1)
            m.wait_registered(30)
            with m.open_tls("broker.test", server.port, sec_tag=7, hostname="broker.test") as s:
                for n in (1, 100, 2000):
                    s.send(b"x" * n)
                    got = b""
                    while len(got) < n:
                        got += s.recv(4096, timeout=10)
                    assert got == b"x" * n
    finally:
        server.stop()
