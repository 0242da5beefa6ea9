"""The socketpair tunnel: both pump modes (select and polling), EOF and typed stream errors."""

from __future__ import annotations

import os
import socket

import pytest
from mqtt_wire import ScriptedBroker

from nrfprov.errors import LinkClosed, TransportError
from nrfprov.mqtt.session import MqttSession
from nrfprov.mqtt.tunnel import Tunnel
from nrfprov.transport.base import select_fd
from nrfprov.transport.tcp import HostTcpStream


class Unselectable:
    """A stream with no select_fileno(), like a modem socket: forces the polling pump."""

    def __init__(self, inner: HostTcpStream, fail_after: int | None = None) -> None:
        self.inner = inner
        self._fail_after = fail_after

    @property
    def bytes_sent(self) -> int:
        return self.inner.bytes_sent

    @property
    def bytes_received(self) -> int:
        return self.inner.bytes_received

    def send(self, data: bytes) -> None:
        self.inner.send(data)

    def recv(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._fail_after is not None and self.inner.bytes_received >= self._fail_after:
            raise TransportError("link failed on purpose")
        return self.inner.recv(max_bytes, timeout)

    def close(self) -> None:
        self.inner.close()


def recv_all(sock: socket.socket, n: int) -> bytes:
    sock.settimeout(5)
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        assert chunk
        out += chunk
    return bytes(out)


@pytest.mark.parametrize("selectable", [True, False])
def test_bytes_cross_both_ways_and_eof_propagates(selectable: bool) -> None:
    a, far = socket.socketpair()
    stream = HostTcpStream(a, peer="far")
    s = stream if selectable else Unselectable(stream)
    assert (select_fd(s) is not None) == selectable
    t = Tunnel(s)
    paho_end = t.start()
    try:
        up, down = os.urandom(70000), os.urandom(90000)
        paho_end.sendall(up)
        assert recv_all(far, len(up)) == up
        far.sendall(down)
        assert recv_all(paho_end, len(down)) == down
        far.close()  # the broker side goes away
        paho_end.settimeout(5)
        assert paho_end.recv(10) == b""
        assert t.ended.wait(5)
        assert isinstance(t.error, LinkClosed)
        assert stream.bytes_sent == len(up) and stream.bytes_received == len(down)
    finally:
        t.close()


def test_stream_error_is_kept_and_paho_end_closed() -> None:
    a, far = socket.socketpair()
    t = Tunnel(Unselectable(HostTcpStream(a), fail_after=5))
    paho_end = t.start()
    try:
        far.sendall(b"12345")
        assert recv_all(paho_end, 5) == b"12345"
        paho_end.settimeout(5)
        assert paho_end.recv(10) == b""
        assert t.ended.wait(5)
        assert isinstance(t.error, TransportError) and "on purpose" in str(t.error)
    finally:
        t.close()
        far.close()


def test_close_stops_the_pump_and_closes_the_stream() -> None:
    a, far = socket.socketpair()
    stream = HostTcpStream(a)
    t = Tunnel(Unselectable(stream))
    t.start()
    t.close()
    assert t.ended.is_set() and t.error is None
    far.settimeout(5)
    assert far.recv(10) == b""  # our end of the link was closed by its owner thread
    far.close()


def test_session_over_polling_pump() -> None:
    a, far = socket.socketpair()
    ScriptedBroker(far)
    with MqttSession(lambda: Unselectable(HostTcpStream(a)), "dev-1") as s:
        s.connect(5)
        assert s.subscribe([("x", 1)], 5) == [1]
        s.publish("x", b"p" * 5000, 1, 5)
        assert s.counters()[0]["layer"] == "Unselectable"
    far.close()
