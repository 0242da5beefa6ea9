"""The tunnel between paho and a ``ByteStream``: a socketpair plus ONE pump thread that owns the stream.

paho only talks to socket-like objects; our streams (native TLS over a modem socket, ...) are not
sockets and are not thread-safe (one owner thread per TLS object and per serial port [python-mbedtls:
TLSWrappedBuffer; measured on this project's loopback]). So paho gets one end of a ``socketpair()``
and this thread moves bytes between the other end and the stream. The thread is the only user of the
stream after the handshake.

Waiting on both directions at once:
- a selectable stream (host TCP, native TLS over host TCP; see ``transport.base``) is drained with
  ``recv(timeout=0)`` and then ``select()``-ed together with the socketpair: no polling, no latency;
- any other stream (modem sockets: readiness is an AT URC) is read with a short ``recv`` timeout that
  grows from 10 ms to 200 ms while idle, checking paho's side in between; traffic resets it. When paho
  has written a packet, ``kick()`` wakes that ``recv`` (``transport.base``, ``wake``), so the packet
  leaves at once instead of after the rest of the timeout (a stream without ``wake()``, e.g. legacy
  SLM polling with ``#XPOLL``, keeps outbound latency below the current timeout).

When the stream fails, the typed error is kept in ``error`` and paho's end is closed at once, so paho
notices immediately instead of after a missed PINGRESP [paho-mqtt client.py, keepalive handling].
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import threading

from nrfprov.errors import LinkClosed, NrfprovError, ResponseTimeout, TransportError
from nrfprov.transport.base import ByteStream, select_fd, wake_stream

log = logging.getLogger(__name__)

#: Bytes per read from paho's end. paho writes whole packets; 16 KiB matches the TLS record size the
#: bridge writes per slice [python-mbedtls: 32 KiB rings, _tls.pyx], so one read never spans more than one TLS write.
PUMP_CHUNK = 16384
#: Bytes per read from the stream: a full TLS record's plaintext (RFC 5246 §6.2.1).
STREAM_CHUNK = 16384
POLL_MIN_S = 0.01
POLL_MAX_S = 0.2


class Tunnel:
    """Owns ``stream`` from ``start()`` until the pump thread ends (then the stream is closed)."""

    def __init__(self, stream: ByteStream, *, name: str = "nrfprov-tunnel") -> None:
        self.stream = stream
        self._paho_end, self._net = socket.socketpair()
        self.error: NrfprovError | None = None
        self.ended = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> socket.socket:
        """Start pumping; return paho's end of the socketpair."""
        self._thread.start()
        return self._paho_end

    def kick(self) -> None:
        """Any thread: paho has written to its end; have the pump thread send it now."""
        wake_stream(self.stream)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the pump (the stream gets closed by its owner thread) and wait for it."""
        self._stopping = True
        _shutdown(self._net)  # wakes select()/recv() in the pump thread
        wake_stream(self.stream)  # and a modem socket's recv (its readiness is no descriptor)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        if not self._thread.is_alive() and not self._thread.ident:
            # never started: nothing owns the stream, close it here
            self.stream.close()
            self._net.close()
            self.ended.set()
        self._paho_end.close()  # idempotent: paho may have closed this socket object already

    # -- pump thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            fd = select_fd(self.stream)
            if fd is not None:
                self._pump_selectable(fd)
            else:
                self._pump_polling()
        except NrfprovError as exc:
            if not self._stopping:
                self.error = exc
                log.info("tunnel ended: %s", exc)
        except Exception as exc:  # a bug or an untyped library error must still reach the caller
            self.error = TransportError(f"tunnel failed: {type(exc).__name__}: {exc}")
            self.error.__cause__ = exc
            log.exception("tunnel failed")
        finally:
            _shutdown(self._net)
            self._net.close()
            try:
                self.stream.close()
            except NrfprovError as exc:
                log.debug("closing the stream: %s", exc)
            self.ended.set()

    def _pump_selectable(self, fd: int) -> None:
        while True:
            if not self._pull_available():
                return
            readable, _, _ = select.select([self._net.fileno(), fd], [], [])
            if self._net.fileno() in readable and not self._push():
                return

    def _pump_polling(self) -> None:
        wait = POLL_MIN_S
        while True:
            readable, _, _ = select.select([self._net], [], [], 0)
            if readable:
                if not self._push():
                    return
                wait = POLL_MIN_S
                continue
            try:
                data = self.stream.recv(STREAM_CHUNK, wait)
            except ResponseTimeout:
                wait = min(wait * 2, POLL_MAX_S)
                continue
            if not data:
                self._eof()
                return
            self._deliver(data)
            wait = POLL_MIN_S

    def _pull_available(self) -> bool:
        """Hand paho everything the stream has without waiting; False at end of stream."""
        while True:
            try:
                data = self.stream.recv(STREAM_CHUNK, 0)
            except ResponseTimeout:
                return True
            if not data:
                self._eof()
                return False
            self._deliver(data)

    def _push(self) -> bool:
        """paho → stream; False when paho closed its end (or close() was called)."""
        try:
            data = self._net.recv(PUMP_CHUNK)
        except OSError:
            return False
        if not data:
            return False
        self.stream.send(data)
        return True

    def _deliver(self, data: bytes) -> None:
        try:
            self._net.sendall(data)
        except OSError as exc:
            if not self._stopping:
                raise LinkClosed("the MQTT client closed its end of the tunnel") from exc

    def _eof(self) -> None:
        if not self._stopping:
            self.error = LinkClosed("the broker closed the connection")


def _shutdown(sock: socket.socket) -> None:
    """Shut a socketpair end down both ways. On Linux that fails only once the pump thread has closed
    it (EBADF): the wake-up it was meant for is then moot."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError as exc:
        if exc.errno != errno.EBADF:
            raise
