"""Modem sockets mapped to real host TCP on loopback, with modem-offloaded TLS via MemoryBIO.

TLS runs in a Python ``ssl.SSLObject`` over a pair of MemoryBIOs, so every raw byte from the peer
passes through :class:`~nrfprov.sim.tlslimits.RecordScanner` before OpenSSL sees it: that is where the
nRF91's two TLS limits are enforced (2303 bytes per received data record, 4 KB of server certificate
chain in the handshake; see tlslimits.py). Bytes cross the radio of the modem's network profile
(network.py) in both directions.

A failed handshake makes ``#XCONNECT`` answer ERROR with SO_ERROR = EOPNOTSUPP: the errno nRF91 users
report for a failed modem TLS handshake (connect returned -95 EOPNOTSUPP, bifravst/cat-tracker-fw
issue 53; not in Nordic's documentation, so unconfirmed, and the same errno whatever the cause).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping

from nrfprov.sim.network import AirKind, Link, Scheduler
from nrfprov.sim.tlslimits import ChainTooLarge, RecordScanner, RecordTooLarge
from nrfprov.sim.uart import Stats

log = logging.getLogger(__name__)

# errno values as the nRF91 (Zephyr/newlib numbering) reports them through SO_ERROR / #XDATAMODE.
ECONNRESET = 104
ECONNREFUSED = 111
ETIMEDOUT = 116
EMSGSIZE = 122
ENOTCONN = 128
ENETDOWN = 115
EOPNOTSUPP = 95  # a failed modem TLS handshake (see the module docstring)

# Largest plaintext per TLS record the modem sends: NRF_SOCKET_TLS_MAX_MESSAGE_SIZE [nrf_socket.h].
TLS_MAX_MESSAGE = 2048
# Received bytes we buffer per socket before we stop reading TCP (backpressure to the peer). The
# modem's own socket buffer size is undocumented; 16 KiB bounds memory and keeps TCP honest.
RX_BUFFER_LIMIT = 16384

POLLIN, POLLOUT, POLLERR, POLLHUP = 1, 4, 8, 16


class SocketFailure(Exception):
    def __init__(self, errno_: int, reason: str) -> None:
        super().__init__(f"errno {errno_}: {reason}")
        self.errno = errno_
        self.reason = reason


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def lookup_ipv4(host: str, *, resolve: Mapping[str, str], allow_remote: bool, link: Link | None, stats: Stats,
                stop: threading.Event | None) -> str:
    """The IPv4 address the modem connects to for ``host``. A name costs a DNS round trip over the radio
    (network.py; ``resolve`` maps names to the simulator's targets); an address literal costs nothing."""
    if not _is_ip(host):
        stats.add("dns", 1)
        if link is not None:
            link.dns_lookup(host, (stop or threading.Event()).wait)
    target = resolve.get(host, host)
    try:
        # Family 1 = IPv4 [ncs-serial-modem at_socket.rst]: resolve to IPv4 only
        # (our choice; mirrored by the client).
        infos = socket.getaddrinfo(target, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        raise SocketFailure(ETIMEDOUT, f"DNS lookup of {target!r} failed: {exc}") from exc
    ip = str(infos[0][4][0])
    if not allow_remote and not ipaddress.ip_address(ip).is_loopback:
        raise SocketFailure(ECONNREFUSED, f"{host} resolves to {ip}: the simulator only reaches loopback")
    return ip


class SimSocket:
    """One modem socket. The worker thread calls connect/send/recv; a pump thread reads TCP."""

    def __init__(
        self,
        handle: int,
        *,
        tls: bool,
        sec_tag: int | None,
        peer_verify: int,
        stats: Stats,
        on_event: Callable[[SimSocket], None],
        link: Link | None = None,
    ) -> None:
        self.handle = handle
        # The radio between modem and internet (network.py); None = ideal, bytes move at once.
        self._link = link if link is not None and not link.profile.ideal else None
        # Every link, ideal or not, reports what crosses it to its observer (network.AirEvent).
        self._air = link
        self._conn = link.new_connection() if link is not None else 0
        self._handshaking = False
        self.tls = tls
        self.sec_tag = sec_tag
        self.peer_verify = peer_verify
        self.hostname: str | None = None
        self.error = 0  # SO_ERROR
        self.connected = False
        self.eof = False
        self.scanner = RecordScanner()
        self._stats = stats
        self._on_event = on_event
        self._sock: socket.socket | None = None
        self._ssl: ssl.SSLObject | None = None
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._ssl_lock = threading.Lock()
        self._cond = threading.Condition()
        self._rx = bytearray()
        self._closed = False
        self._quiet = False  # failed/closed by the worker, which reports it itself (after its reply)
        self._pump: threading.Thread | None = None

    # --- connect -------------------------------------------------------------------------------

    def connect(
        self,
        host: str,
        port: int,
        *,
        resolve: Mapping[str, str],
        allow_remote: bool,
        context: ssl.SSLContext | None,
        timeout: float = 30.0,
        stop: threading.Event | None = None,
    ) -> None:
        try:
            ip = lookup_ipv4(host, resolve=resolve, allow_remote=allow_remote, link=self._air, stats=self._stats,
                             stop=stop)
        except SocketFailure as exc:
            raise self._fail(exc.errno, exc.reason) from exc
        addr = (ip, port)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(addr)
        except OSError as exc:
            sock.close()
            raise self._fail(ECONNREFUSED, f"connect to {addr} failed: {exc}") from exc
        self._sock = sock
        self._note("connect")
        if self._link is not None:  # SYN out, SYN-ACK back: one round trip over the radio
            self._wait_until(self._link.up.schedule(60, time.monotonic()) + self._link.profile.rtt_s / 2, stop)
        if self.tls:
            assert context is not None
            self._handshaking = True
            try:
                self._handshake(context, time.monotonic() + timeout, stop or threading.Event())
            except SocketFailure:
                self._shutdown()
                raise
            finally:
                self._handshaking = False
        sock.settimeout(None)
        self.connected = True
        self._pump = threading.Thread(target=self._pump_loop, name=f"sim-sock-{self.handle}", daemon=True)
        self._pump.start()

    def _note(self, kind: AirKind, nbytes: int = 0, t: float | None = None) -> None:
        if self._air is not None:
            self._air.note(self._conn, kind, nbytes, t)

    def _fail(self, errno_: int, reason: str) -> SocketFailure:
        log.info("sim socket %d: %s", self.handle, reason)
        self.error = errno_
        return SocketFailure(errno_, reason)

    def _handshake(self, context: ssl.SSLContext, deadline: float, stop: threading.Event) -> None:
        assert self._sock is not None
        server_hostname = self.hostname if context.check_hostname else (self.hostname or None)
        self._ssl = context.wrap_bio(self._in, self._out, server_side=False, server_hostname=server_hostname)
        while True:
            try:
                self._ssl.do_handshake()
                self._flush_out()
                return
            except ssl.SSLWantReadError:
                self._flush_out()
            except ssl.SSLError as exc:
                self._flush_out_quietly()
                raise self._fail(EOPNOTSUPP, f"TLS handshake failed: {exc}") from exc
            data = self._recv_until(deadline, stop)
            if not data:
                raise self._fail(EOPNOTSUPP, "TLS handshake failed: the peer closed the connection")
            if self._link is not None:  # the handshake runs inside AT#XCONNECT: wait for the radio here
                self._wait_until(self._link.down.schedule(len(data), time.monotonic()), stop)
            self._note("down", len(data))
            self._stats.add("air_rx", len(data))
            try:
                self.scanner.feed(data)
            except (RecordTooLarge, ChainTooLarge) as exc:
                raise self._fail(EOPNOTSUPP, f"TLS handshake failed: {exc}") from exc
            self._in.write(data)

    def _recv_until(self, deadline: float, stop: threading.Event) -> bytes:
        """Blocking recv in short slices, so a stopping simulator is not held by a silent server."""
        assert self._sock is not None
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or stop.is_set():
                raise self._fail(ETIMEDOUT, "TLS handshake timed out")
            self._sock.settimeout(min(left, 0.5))
            try:
                return self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError as exc:
                raise self._fail(EOPNOTSUPP, f"TLS handshake failed: {exc}") from exc

    def _flush_out(self) -> None:
        data = self._out.read()
        if data and self._sock is not None:
            self._tx(data)

    def _tx(self, data: bytes) -> None:
        """Bytes onto the radio: at once (ideal), after the uplink's time (handshake, inside the
        connect command), or delivered later by the network scheduler (a send returns when the modem
        has the data, not when the peer does)."""
        sock = self._sock
        if sock is None:
            return
        self._stats.add("air_tx", len(data))
        self._note("up", len(data))
        if self._link is None:
            sock.sendall(data)
            return
        due = self._link.up.schedule(len(data), time.monotonic())
        if self._handshaking:
            self._wait_until(due, None)
            sock.sendall(data)
            return

        def deliver() -> None:
            if self._sock is sock and not self._closed:
                try:
                    sock.sendall(data)
                except OSError as exc:
                    self._set_error(ECONNRESET, f"send failed: {exc}")
                    self._on_event(self)

        Scheduler.shared().at(due, deliver)

    @staticmethod
    def _wait_until(when: float, stop: threading.Event | None) -> None:
        delay = when - time.monotonic()
        if delay > 0:
            (stop or threading.Event()).wait(delay)

    def _flush_out_quietly(self) -> None:
        try:
            self._flush_out()
        except OSError:
            pass

    # --- data ----------------------------------------------------------------------------------

    def send(self, data: bytes) -> int:
        if self.error:
            raise SocketFailure(self.error, "socket has failed")
        if not self.connected or self._sock is None:
            raise SocketFailure(ENOTCONN, "socket is not connected")
        try:
            if self._ssl is not None:
                with self._ssl_lock:
                    # The modem never puts more than 2048 B of plaintext in one record.
                    for off in range(0, len(data), TLS_MAX_MESSAGE):
                        self._ssl.write(data[off : off + TLS_MAX_MESSAGE])
                        self._flush_out()
            else:
                self._tx(data)
        except (OSError, ssl.SSLError) as exc:
            self._set_error(ECONNRESET, f"send failed: {exc}")
            raise SocketFailure(ECONNRESET, str(exc)) from exc
        return len(data)

    def wait_readable(self, *, timeout: float | None, stop: threading.Event) -> bool:
        """Block until data, EOF or an error is there (True), or until ``timeout`` / ``stop`` (False).

        Waiting and taking are separate so the caller can take the bytes and re-arm POLLIN under
        its own poll lock (see ``SocketCommands.check_poll``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self.error or self._rx or self.eof or not self.connected:
                    return True
                if stop.is_set():
                    return False
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is not None and wait <= 0:
                    return False
                # Bounded wait so a stopping simulator is noticed even with timeout 0 = forever.
                self._cond.wait(0.5 if wait is None else min(wait, 0.5))

    def take(self, maxn: int, *, peek: bool) -> bytes | None:
        """Bytes (≤ maxn), b"" at EOF, None when nothing is there. Raises SocketFailure on a failed socket."""
        with self._cond:
            if self.error:
                raise SocketFailure(self.error, "socket has failed")
            if self._rx:
                data = bytes(self._rx[:maxn])
                if not peek:
                    del self._rx[: len(data)]
                    self._cond.notify_all()  # room for the pump again
                return data
            if self.eof or not self.connected:
                return b""
            return None

    def recv(self, maxn: int, *, timeout: float | None, peek: bool, stop: threading.Event) -> bytes | None:
        """Bytes (≤ maxn), b"" at EOF, None on timeout. Raises SocketFailure on a failed socket."""
        self.wait_readable(timeout=timeout, stop=stop)
        return self.take(maxn, peek=peek)

    def readiness(self) -> int:
        with self._cond:
            if self.error:
                return POLLERR  # a failed socket only reports the error (data is lost)
            ev = 0
            if self._rx or self.eof:
                ev |= POLLIN
            if self.connected and not self.error and not self.eof:
                ev |= POLLOUT
            if self.error:
                ev |= POLLERR
            if self.eof:
                ev |= POLLHUP
            return ev

    def recv_pending(self) -> bool:
        with self._cond:
            return bool(self._rx)

    def network_down(self) -> None:
        """The PDN went away (modem offline): the socket fails with ENETDOWN and must be closed.

        nrfxlib ``nrf_modem/doc/sockets/pdn.rst``: operations return ENETDOWN, poll sets POLLERR and
        SO_ERROR reads ENETDOWN (sockets without NRF_SO_KEEPOPEN, which the simulator does not offer).
        """
        if self.connected and not self.error:
            self._quiet = True
            self._set_error(ENETDOWN, "PDN connection lost: the modem went offline")
            self._shutdown()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _set_error(self, errno_: int, reason: str) -> None:
        log.info("sim socket %d failed: %s", self.handle, reason)
        with self._cond:
            if not self.error:
                self.error = errno_
            self._rx.clear()  # the modem loses the data of a failed socket
            self._cond.notify_all()

    # --- pump ----------------------------------------------------------------------------------

    def _pump_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            if self._ssl is not None:
                self._drain_tls()  # app data that arrived together with the last handshake flight
            while not self._closed and not self.error and not self.eof:
                with self._cond:
                    while len(self._rx) >= RX_BUFFER_LIMIT and not self._closed:
                        self._cond.wait(0.5)
                if self._closed:
                    break
                try:
                    data = sock.recv(4096)
                except OSError as exc:
                    if not self._closed:
                        self._set_error(ECONNRESET, f"recv failed: {exc}")
                    break
                if not data and (self.error or self._closed):
                    break  # our own shutdown (failure / close), not the peer
                if self._link is None:
                    if not self._ingest(data):
                        break
                else:  # over the radio: the bytes (or the FIN) reach the modem later, in order
                    due = self._link.down.schedule(len(data), time.monotonic())
                    Scheduler.shared().at(due, functools.partial(self._ingest_later, data))
                    if not data:
                        break
        finally:
            if not self._quiet:
                self._on_event(self)

    def _ingest_later(self, data: bytes) -> None:
        if not self._closed:
            self._ingest(data)
            if not data or self.error:
                self._on_event(self)

    def _ingest(self, data: bytes) -> bool:
        """Bytes from the peer reach the modem (b"" = the peer closed). False when the socket is done."""
        if not data:
            with self._cond:
                self.eof = True
                self._cond.notify_all()
            return False
        if self.error:
            return False
        self._note("down", len(data))
        self._stats.add("air_rx", len(data))
        if self._ssl is None:
            with self._cond:
                self._rx += data
                self._cond.notify_all()
        else:
            try:
                self.scanner.feed(data)
            except RecordTooLarge as exc:
                self._set_error(EMSGSIZE, str(exc))
                self._shutdown()
                return False
            with self._ssl_lock:
                self._in.write(data)
            self._drain_tls()
        self._on_event(self)
        return True

    def _drain_tls(self) -> None:
        assert self._ssl is not None
        chunks = []
        with self._ssl_lock:
            while True:
                try:
                    chunk = self._ssl.read(16384)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    with self._cond:
                        self.eof = True
                    break
                except ssl.SSLError as exc:
                    self._set_error(ECONNRESET, f"TLS error: {exc}")
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            self._flush_out_quietly()
        if chunks:
            with self._cond:
                for c in chunks:
                    self._rx += c
                self._cond.notify_all()

    # --- close ---------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        if self._ssl is not None and self.connected and not self.error and not self._closed:
            with self._ssl_lock:  # send close_notify, as mbedTLS does on close
                try:
                    self._ssl.unwrap()
                except (ssl.SSLError, OSError, ValueError):
                    pass
                self._flush_out_quietly()
        if not self._closed and self._sock is not None:
            self._note("close")
        self._closed = True
        self._quiet = True
        with self._cond:
            self._cond.notify_all()
        self._shutdown()
        pump = self._pump
        if pump is not None and pump is not threading.current_thread():
            pump.join(5)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self.connected = False
