"""The broker's address, looked up once by the modem (``AT#XGETADDRINFO``) and reused for the reconnect.

The simulator charges a DNS round trip on the air for every name it resolves and counts them
(``SimulatedModem.stats.dns``); the modem's own DNS cache is undocumented, so the simulator has none.
Both dialects have the command [ncs-serial-modem at_socket.rst; sdk-nrf SOCKET_AT_commands.rst].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.modem.modem_peers import EchoServer, Pki, make_pki, tls_server_context
from nrfprov.config import Settings
from nrfprov.modem import Modem
from nrfprov.sim import SimulatedModem
from nrfprov.transport import open_stream

pytestmark = pytest.mark.integration

TAG = 7


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki("broker.test")


@pytest.fixture(params=["sm", "slm"])
def online(request: pytest.FixtureRequest, tmp_path: Path, pki: Pki) -> Iterator[tuple[SimulatedModem, Modem]]:
    with SimulatedModem(tmp_path / "sim", dialect=request.param, baud=0, resolve={"broker.test": "127.0.0.1"}) as sim:
        with Modem.open(sim.port_url, dialect=request.param) as m:
            m.set_cfun(4)
            m.write_credential(TAG, 0, pki.ca_pem)
            m.set_cfun(1)
            m.wait_registered(30)
            yield sim, m


def _lookups(sim: SimulatedModem) -> int:
    return sum(1 for c in sim.command_log if c.startswith("AT#XGETADDRINFO"))


def test_resolve_reuses_the_address_within_its_age(online: tuple[SimulatedModem, Modem]) -> None:
    sim, m = online
    assert m.resolve("broker.test", max_age=60) == "127.0.0.1"
    assert m.resolve("broker.test", max_age=60) == "127.0.0.1"
    assert (sim.stats.dns, _lookups(sim)) == (1, 1)
    assert m.resolve("broker.test", max_age=0) == "127.0.0.1"  # too old: looked up again
    assert (sim.stats.dns, _lookups(sim)) == (2, 2)
    assert m.resolve("127.0.0.1", max_age=60) == "127.0.0.1"  # an address is not looked up
    assert (sim.stats.dns, _lookups(sim)) == (2, 2)


def _settings(port: int, reuse: int) -> Settings:
    return dataclasses.replace(Settings(), broker_host="broker.test", broker_port=port, claim_sec_tag=TAG,
                               dns_reuse_s=reuse)


@pytest.mark.parametrize("reuse", [0, 60])
def test_two_connections_cost_one_lookup_and_keep_the_tls_name(online: tuple[SimulatedModem, Modem], pki: Pki,
                                                                tmp_path: Path, reuse: int) -> None:
    sim, m = online
    server = EchoServer(tls_server_context(pki, tmp_path))
    try:
        for _ in range(2):
            stream = open_stream(_settings(server.port, reuse), modem=m, backend="offload", timeout=30)
            try:  # the modem verified the server as "broker.test" though it dialled the address
                stream.send(b"ping")
                assert stream.recv(10, timeout=10) == b"ping"
            finally:
                stream.close()
    finally:
        server.stop()
    assert sim.stats.dns == (1 if reuse else 2)


def test_a_stale_address_is_looked_up_again(online: tuple[SimulatedModem, Modem], pki: Pki, tmp_path: Path) -> None:
    sim, m = online
    server = EchoServer(tls_server_context(pki, tmp_path))
    try:
        sim.resolve["broker.test"] = "127.0.0.2"  # nothing listens there: the address went stale
        assert m.resolve("broker.test", max_age=60) == "127.0.0.2"
        sim.resolve["broker.test"] = "127.0.0.1"
        stream = open_stream(_settings(server.port, 60), modem=m, backend="offload", timeout=30)
        try:
            stream.send(b"ping")
            assert stream.recv(10, timeout=10) == b"ping"
        finally:
            stream.close()
    finally:
        server.stop()
    assert sim.stats.dns == 2  # the refused connect forgot the address; a new lookup found the server
