"""The Serial Modem's socket settings for every socket (``AT#XRECVCFG=,1``, ``AT#XAPOLL=,1,1``): sent once
per modem start instead of twice per socket, and again after the modem restarted (its ``Ready`` banner).

Without a handle both commands apply to every socket, "whether already open or opened in the future"
[ncs-serial-modem at_socket.rst]; the simulator keeps them as the modem's poll context does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.modem.modem_peers import EchoServer
from nrfprov.modem import Modem
from nrfprov.sim import SimulatedModem

pytestmark = pytest.mark.integration


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimulatedModem]:
    with SimulatedModem(tmp_path / "sim", dialect="sm", baud=0) as s:
        yield s


def _count(sim: SimulatedModem, prefix: str) -> int:
    return sum(1 for c in sim.command_log if c.startswith(prefix))


def _echo_twice(m: Modem, port: int) -> None:
    for _ in range(2):
        with m.open_tcp("127.0.0.1", port) as s:
            s.send(b"hello")
            got = b""
            while len(got) < 5:
                got += s.recv(16, timeout=10)
            assert got == b"hello"


def test_socket_settings_once_per_modem_start(sim: SimulatedModem) -> None:
    server = EchoServer()
    try:
        with Modem.open(sim.port_url, dialect="sm") as m:
            m.set_cfun(1)
            m.wait_registered(30)
            _echo_twice(m, server.port)
            # Two sockets, one of each: the data was pushed (auto-receive) without a single AT#XRECV.
            assert (_count(sim, "AT#XRECVCFG"), _count(sim, "AT#XAPOLL"), _count(sim, "AT#XRECV=")) == (1, 1, 0)
            m.at("AT#XRESET")  # the modem restarts and forgets them; its "Ready" tells the host
            m.set_cfun(1)
            m.wait_registered(30)
            _echo_twice(m, server.port)
            assert (_count(sim, "AT#XRECVCFG"), _count(sim, "AT#XAPOLL"), _count(sim, "AT#XRECV=")) == (2, 2, 0)
    finally:
        server.stop()
