"""Property: any payload survives any chunking of the transport under the native TLS bridge.

``ChunkingStream`` wraps a real TCP link and hands bytes over in random-sized pieces both ways (what
a modem's #XRECV slices and #XSEND limits do to a TLS stream); the OpenSSL server echoes.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transport_peers import Pki, TlsServer

from nrfprov.transport.credentials import TlsCredentials
from nrfprov.transport.native_tls import NativeTlsStream
from nrfprov.transport.tcp import HostTcpStream


class ChunkingStream:
    """A ByteStream that sends and returns bytes in pieces of random size (seeded)."""

    def __init__(self, inner: HostTcpStream, seed: int, max_piece: int) -> None:
        self.inner = inner
        self._rng = random.Random(seed)
        self._max = max_piece
        self._pending = bytearray()
        self.sends = 0

    @property
    def bytes_sent(self) -> int:
        return self.inner.bytes_sent

    @property
    def bytes_received(self) -> int:
        return self.inner.bytes_received

    def send(self, data: bytes) -> None:
        i = 0
        while i < len(data):
            n = self._rng.randint(1, self._max)
            self.inner.send(data[i : i + n])
            self.sends += 1
            i += n

    def recv(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if not self._pending:
            data = self.inner.recv(16384, timeout)
            if not data:
                return b""
            self._pending += data
        n = min(max_bytes, len(self._pending), self._rng.randint(1, self._max))
        out = bytes(self._pending[:n])
        del self._pending[:n]
        return out

    def close(self) -> None:
        self.inner.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=st.binary(min_size=1, max_size=40000),
    seed=st.integers(0, 2**32 - 1),
    max_piece=st.sampled_from([1, 7, 300, 2048, 5000]),
    read_size=st.integers(1, 20000),
)
def test_random_payloads_through_random_chunkings(
    tls_server: Callable[..., TlsServer], pki: Pki, creds: TlsCredentials,
    payload: bytes, seed: int, max_piece: int, read_size: int,
) -> None:
    if max_piece == 1 and len(payload) > 4000:
        payload = payload[:4000]  # one byte per syscall: keep the example fast
    srv = tls_server(pki)
    link = ChunkingStream(HostTcpStream.connect("127.0.0.1", srv.port), seed, max_piece)
    with NativeTlsStream.open(link, creds, "localhost", timeout=10) as s:
        s.send(payload)
        got = bytearray()
        while len(got) < len(payload):
            chunk = s.recv(read_size, 10)
            assert chunk, "unexpected EOF"
            assert len(chunk) <= read_size
            got += chunk
        assert bytes(got) == payload
    srv.close()
