"""A loopback TCP relay that counts the bytes a client and a broker exchange, and reads TLS record headers.

Any client (awsiotsdk, paho, the simulated modem's sockets, our host transport) is pointed at the relay
instead of the broker; the relay forwards both ways and counts TCP payload bytes ("bytes on the air":
TLS headers, handshakes and MQTT all included, TCP/IP headers not). Both hops set ``TCP_NODELAY`` so the
relay itself adds no Nagle / delayed-ACK stall (~40 ms per small exchange otherwise, measured on this
project's loopback).

Session tickets: OpenSSL servers (mosquitto) send tickets that no client here uses and that AWS IoT does
not send ("AWS IoT does not support the SessionTicket TLS extension" [AWS IoT developer guide,
transport-security]). ``ConnectionCount.ticket_bytes`` reports them so a comparison can exclude them:
- TLS 1.3: two encrypted NewSessionTicket records (~3.45 KB together, they embed the client
  certificate), recognised by position: the run of large server application-data records that follows
  the client's second flight and precedes the first small record (CONNACK);
- TLS 1.2: one NewSessionTicket in clear before the server's ChangeCipherSpec, for clients that offer
  the extension (Mbed TLS and OpenSSL clients do), recognised by its handshake type.
The benchmarks' stand-in is started with tickets off (standin_process.py), so both read 0 there; the
relay still reports them, so a change that brings them back shows.

Only 127.0.0.1 is ever bound or dialled.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

LOOPBACK = "127.0.0.1"
# One recv per readiness event; 64 KiB is the loopback socket's usual receive window, so larger reads
# would not return more.
_CHUNK = 65536
# RFC 8446 §5.2: a TLSCiphertext fragment is at most 2^14 + 256 bytes (RFC 5246 §6.2.3 allows 2^14 + 2048
# in TLS 1.2); anything larger means we lost framing, and parsing stops (counting does not).
_MAX_RECORD = 2**14 + 2048
# A NewSessionTicket carrying a client certificate is hundreds of bytes; the broker's CONNACK record is
# 4 + 1 + 16 = 21 bytes (MQTT 3.1.1) and a few more with MQTT 5 properties. 200 bytes separates them.
_TICKET_MIN = 200

_CT_CHANGE_CIPHER_SPEC = 20
_CT_HANDSHAKE = 22
_CT_APPLICATION_DATA = 23
_EXT_SUPPORTED_VERSIONS = 43
_HS_NEW_SESSION_TICKET = 4


def _selected_version(server_hello: bytes) -> int | None:
    """Return the TLS version a ServerHello record selects (0x0304 via supported_versions), or None."""
    # Record header (5) + handshake header (4) + legacy_version (2) + random (32).
    body = server_hello[5:]
    if len(body) < 4 + 2 + 32 + 1 or body[0] != 2:  # 2 = server_hello
        return None
    pos = 4
    legacy = int.from_bytes(body[pos : pos + 2], "big")
    pos += 2 + 32
    sid_len = body[pos]
    pos += 1 + sid_len + 2 + 1  # session id, cipher suite, compression method
    if pos + 2 > len(body):
        return legacy
    ext_end = pos + 2 + int.from_bytes(body[pos : pos + 2], "big")
    pos += 2
    while pos + 4 <= min(ext_end, len(body)):
        ext_type = int.from_bytes(body[pos : pos + 2], "big")
        ext_len = int.from_bytes(body[pos + 2 : pos + 4], "big")
        if ext_type == _EXT_SUPPORTED_VERSIONS and ext_len == 2:
            return int.from_bytes(body[pos + 4 : pos + 6], "big")
        pos += 4 + ext_len
    return legacy


@dataclass
class _RecordReader:
    """Splits one direction's byte stream into (content type, length) records; keeps only the header."""

    pending: bytearray = field(default_factory=bytearray)
    broken: bool = False

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """Return complete records as (type, payload length, first bytes); the first bytes feed ServerHello."""
        if self.broken:
            return []
        self.pending += data
        out: list[tuple[int, int, bytes]] = []
        while len(self.pending) >= 5:
            ctype = self.pending[0]
            length = int.from_bytes(self.pending[3:5], "big")
            if ctype not in (20, 21, 22, 23) or length > _MAX_RECORD:
                self.broken = True  # not TLS (or framing lost): stop parsing, keep counting
                self.pending.clear()
                break
            if len(self.pending) < 5 + length:
                # Keep only what a ServerHello parse can need; drop the bulk of large records as it streams.
                break
            out.append((ctype, length, bytes(self.pending[: min(5 + length, 512)])))
            del self.pending[: 5 + length]
        return out


@dataclass
class ConnectionCount:
    """Bytes one relayed connection carried, and what its TLS record headers showed."""

    up: int = 0  # client -> broker
    down: int = 0  # broker -> client
    tls_version: int | None = None  # 0x0303 = TLS 1.2, 0x0304 = TLS 1.3
    ticket_bytes: int = 0  # TLS 1.3 NewSessionTicket records (with headers), see module docstring
    ticket_records: int = 0
    _up_reader: _RecordReader = field(default_factory=_RecordReader, repr=False)
    _down_reader: _RecordReader = field(default_factory=_RecordReader, repr=False)
    _client_second_flight: bool = field(default=False, repr=False)
    _tickets_done: bool = field(default=False, repr=False)
    _server_ccs: bool = field(default=False, repr=False)
    # (monotonic seconds, "up"/"down", bytes) per forwarded chunk, when the relay was made with trace=True;
    # used to find stalls (e.g. a Nagle / delayed-ACK 40 ms gap) in a client's exchange.
    trace: list[tuple[float, str, int]] | None = field(default=None, repr=False)

    def observe_up(self, data: bytes) -> None:
        self.up += len(data)
        if self.trace is not None:
            self.trace.append((time.monotonic(), "up", len(data)))
        for ctype, _length, _head in self._up_reader.feed(data):
            if ctype == _CT_APPLICATION_DATA and self.tls_version is not None:
                self._client_second_flight = True

    def observe_down(self, data: bytes) -> None:
        self.down += len(data)
        if self.trace is not None:
            self.trace.append((time.monotonic(), "down", len(data)))
        for ctype, length, head in self._down_reader.feed(data):
            if ctype == _CT_HANDSHAKE and self.tls_version is None:
                self.tls_version = _selected_version(head)
            elif (
                ctype == _CT_HANDSHAKE
                and self.tls_version == 0x0303
                and not self._server_ccs
                and head[5:6] == bytes([_HS_NEW_SESSION_TICKET])
            ):
                # TLS 1.2 sends its NewSessionTicket in clear, just before the server's
                # ChangeCipherSpec [RFC 5077 §3.3]: recognised by its handshake type.
                self.ticket_bytes += 5 + length
                self.ticket_records += 1
            elif ctype == _CT_CHANGE_CIPHER_SPEC:
                self._server_ccs = True
            elif (
                ctype == _CT_APPLICATION_DATA
                and self.tls_version == 0x0304
                and self._client_second_flight
                and not self._tickets_done
            ):
                if length >= _TICKET_MIN:
                    self.ticket_bytes += 5 + length
                    self.ticket_records += 1
                else:
                    self._tickets_done = True


class CountingRelay:
    """Forward 127.0.0.1:<port> to a target, counting bytes per connection; a context manager.

    ``counts()`` lists every connection accepted since the last ``reset()``; the totals are their sums.
    One thread accepts, one thread per connection shuttles both directions, so the order in which the
    relay sees records respects causality (needed to spot TLS 1.3 tickets).
    """

    def __init__(self, target_host: str, target_port: int, *, trace: bool = False) -> None:
        if target_host not in (LOOPBACK, "localhost"):
            raise ValueError(f"the relay only dials loopback, not {target_host!r}")
        self._target = (LOOPBACK, target_port)
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._counts: list[ConnectionCount] = []
        self._threads: list[threading.Thread] = []
        self._socks: set[socket.socket] = set()
        self._stopping = threading.Event()
        self.port = 0
        self._trace = trace

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> CountingRelay:
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((LOOPBACK, 0))
        lsock.listen(16)
        self._listener = lsock
        self.port = lsock.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, name=f"relay-accept-{self.port}", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            # shutdown() wakes the blocked accept(); close() alone does not on Linux.
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> CountingRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- counting ----------------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self._counts = []

    def set_trace(self, on: bool) -> None:
        """Record every forwarded chunk (``ConnectionCount.trace``) of connections accepted from now on."""
        self._trace = on

    def counts(self) -> list[ConnectionCount]:
        with self._lock:
            return list(self._counts)

    def totals(self) -> dict[str, int]:
        """Sum over connections: up, down, TLS 1.3 ticket bytes, and the number of connections."""
        cs = self.counts()
        return {
            "up": sum(c.up for c in cs),
            "down": sum(c.down for c in cs),
            "ticket_bytes": sum(c.ticket_bytes for c in cs),
            "connections": len(cs),
            "tls13_connections": sum(1 for c in cs if c.tls_version == 0x0304),
        }

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until every relayed connection has closed (both directions done); True if they did."""
        for t in list(self._threads[1:]):
            t.join(timeout=timeout)
            if t.is_alive():
                return False
        return True

    # -- plumbing ----------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            count = ConnectionCount(trace=[] if self._trace else None)
            with self._lock:
                self._counts.append(count)
                self._socks.update((client, upstream))
            self._accepted(count)
            t = threading.Thread(
                target=self._shuttle, args=(client, upstream, count), name=f"relay-{self.port}", daemon=True
            )
            t.start()
            self._threads.append(t)

    def _shuttle(self, client: socket.socket, upstream: socket.socket, count: ConnectionCount) -> None:
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, (upstream, count.observe_up, True))
        sel.register(upstream, selectors.EVENT_READ, (client, count.observe_down, False))
        open_dirs = 2
        try:
            while open_dirs:
                for key, _ in sel.select():
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    dst, observe, up = key.data
                    try:
                        data = src.recv(_CHUNK)
                    except OSError:
                        data = b""
                    if data:
                        observe(data)
                        if not self._forward(dst, data, up, count):
                            open_dirs = 0
                            break
                    else:
                        # Half-close: pass the EOF on so TLS close_notify / MQTT DISCONNECT semantics hold.
                        sel.unregister(src)
                        open_dirs -= 1
                        self._forward_eof(dst, up, count)
        finally:
            sel.close()
            self._finish(client, upstream, count)

    # -- what a shaped relay (shaped_relay.py) changes: when bytes and EOFs reach the other side -----

    def _accepted(self, count: ConnectionCount) -> None:
        """A connection was accepted (its TCP handshake with the client is done)."""

    def _forward(self, dst: socket.socket, data: bytes, up: bool, count: ConnectionCount) -> bool:
        """Pass ``data`` on at once; False when the other side is gone."""
        try:
            dst.sendall(data)
        except OSError:
            return False
        return True

    def _forward_eof(self, dst: socket.socket, up: bool, count: ConnectionCount) -> None:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _finish(self, client: socket.socket, upstream: socket.socket, count: ConnectionCount) -> None:
        with self._lock:
            self._socks.discard(client)
            self._socks.discard(upstream)
        client.close()
        upstream.close()
