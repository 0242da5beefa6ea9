"""Fixtures for the modem facade tests against the simulated nRF91 on a real pty, both dialects."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.modem.modem_peers import EchoServer, Pki, Target, make_pki, tls_server_context
from nrfprov.modem import Modem
from nrfprov.sim import SimulatedModem

SCRATCH_TAG = 424242


@pytest.fixture(scope="session")
def modem_pki() -> Pki:
    return make_pki("broker.test")


@pytest.fixture
def echo_servers(modem_pki: Pki, tmp_path: Path) -> Iterator[tuple[EchoServer, EchoServer]]:
    tcp = EchoServer()
    tls = EchoServer(tls_server_context(modem_pki, tmp_path))
    yield tcp, tls
    tcp.stop()
    tls.stop()


@pytest.fixture(params=["sm", "slm"])
def target(
    request: pytest.FixtureRequest, tmp_path: Path, echo_servers: tuple[EchoServer, EchoServer], modem_pki: Pki
) -> Iterator[Target]:
    tcp, tls = echo_servers
    # baud 0 = unthrottled: these tests are about behaviour, not timing.
    with SimulatedModem(
        tmp_path / "sim", dialect=request.param, baud=0, resolve={"broker.test": "127.0.0.1"}
    ) as sim:
        yield Target(sim.port_url, sim, SCRATCH_TAG, ("127.0.0.1", tcp.port), ("broker.test", tls.port), modem_pki)


@pytest.fixture
def modem(target: Target) -> Iterator[Modem]:
    with Modem.open(target.port_url) as m:
        yield m
