"""Fixtures for the simulator's integration tests; the peers themselves live in sim_peers.py."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
from sim_peers import Pki, Server, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("simpki"))


# Request server_factory BEFORE sim_factory in a test's arguments: fixtures tear down in reverse, so
# the simulator closes its TCP connections first and the handlers' blocking reads return at once.
@pytest.fixture
def server_factory() -> Iterator[Callable[[Callable[[socket.socket], None]], Server]]:
    servers: list[Server] = []

    def make(handler: Callable[[socket.socket], None]) -> Server:
        s = Server(handler)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


