"""Fixtures for transport unit tests: a throwaway PKI and OpenSSL TLS servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from transport_peers import Behaviour, Pki, TlsServer, echo

from nrfprov.transport.credentials import TlsCredentials


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki.create(server_kind="rsa", client_kind="ec")


@pytest.fixture()
def creds(pki: Pki) -> TlsCredentials:
    return TlsCredentials.from_pems(pki.ca.pem, pki.client_cert, pki.client_key)


@pytest.fixture()
def tls_server(tmp_path: Path) -> Iterator[Callable[..., TlsServer]]:
    """Factory: ``tls_server(pki, behaviour=echo, **kw)``; every server is closed after the test."""
    started: list[TlsServer] = []

    def make(pki: Pki, behaviour: Behaviour = echo, **kw: object) -> TlsServer:
        srv = TlsServer(tmp_path / f"srv{len(started)}", pki, behaviour, **kw)  # type: ignore[arg-type]
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.close()
