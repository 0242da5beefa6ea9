"""Host TCP: a ``ByteStream`` over the host's own network stack.

Used by a factory station that reaches AWS over its own network (the ``host`` backend, with the native
TLS bridge on top) and as the baseline in comparisons. ``TCP_NODELAY`` is always set: without it each
small TLS flight or MQTT request/response pays a ~40 ms Nagle + delayed-ACK stall
(measured on this project's loopback).
"""

from __future__ import annotations

import socket

from nrfprov.errors import ConnectError, LinkClosed, ResponseTimeout, TransportError


class HostTcpStream:
    """A connected TCP socket with typed errors and byte counters (implements ``SelectableStream``)."""

    def __init__(self, sock: socket.socket, *, peer: str = "") -> None:
        self._sock = sock
        self._peer = peer or _peer_name(sock)
        self._closed = False
        self._eof = False
        self._sent = 0
        self._received = 0
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @classmethod
    def connect(cls, host: str, port: int, *, timeout: float = 30.0) -> HostTcpStream:
        """Resolve ``host`` and connect; ``ConnectError`` names host, port and the OS reason."""
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise ConnectError(host, port, reason, hint="check the host name, port and network") from exc
        return cls(sock, peer=f"{host}:{port}")

    @property
    def bytes_sent(self) -> int:
        return self._sent

    @property
    def bytes_received(self) -> int:
        return self._received

    @property
    def peer(self) -> str:
        return self._peer

    def select_fileno(self) -> int:
        return self._sock.fileno()

    def send(self, data: bytes) -> None:
        if self._closed:
            raise LinkClosed(f"TCP connection to {self._peer} is closed")
        if not data:
            return
        try:
            self._sock.settimeout(None)
            self._sock.sendall(data)
        except OSError as exc:
            raise LinkClosed(f"TCP send to {self._peer} failed: {exc.strerror or exc}") from exc
        self._sent += len(data)

    def recv(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._closed:
            raise LinkClosed(f"TCP connection to {self._peer} is closed")
        if self._eof:
            return b""
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        try:
            self._sock.settimeout(timeout)
            data = self._sock.recv(max_bytes)
        except (TimeoutError, BlockingIOError) as exc:
            raise ResponseTimeout(f"data from {self._peer}", timeout or 0.0) from exc
        except ConnectionResetError as exc:
            raise LinkClosed(f"TCP connection to {self._peer} was reset by the peer") from exc
        except OSError as exc:
            raise TransportError(f"TCP receive from {self._peer} failed: {exc.strerror or exc}") from exc
        if not data:
            self._eof = True
        self._received += len(data)
        return data

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._sock.close()
        except OSError:
            pass  # closing is best effort; the descriptor is gone either way

    def __enter__(self) -> HostTcpStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _peer_name(sock: socket.socket) -> str:
    try:
        addr = sock.getpeername()
    except OSError:
        return "peer"
    if isinstance(addr, tuple):
        return f"{addr[0]}:{addr[1]}"
    return str(addr) or "peer"
