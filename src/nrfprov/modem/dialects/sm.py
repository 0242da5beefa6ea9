"""Serial Modem add-on (NCS ≥ 3.1): handle-based sockets [ncs-serial-modem ``doc/app/at_socket.rst``].

Sending uses the length-delimited data mode ``AT#XSEND=<h>,2,0,<len>``: the modem takes exactly
``<len>`` raw bytes and never scans for a terminator, so any binary payload is safe
[ncs-serial-modem at_socket.rst, #XSEND mode 2]. Receiving waits for the ``#XAPOLL`` POLLIN notification without
holding the AT channel, then reads with ``AT#XRECV`` in don't-wait mode (flag 64); each
``#XRECV`` re-arms POLLIN [ncs-serial-modem at_socket.rst, #XAPOLL].
"""

from __future__ import annotations

import time

from nrfprov.at import LengthData, Urc, command, quote
from nrfprov.at.events import RawData
from nrfprov.at.limits import DATAMODE_SEND_MAX, RECV_MAX, TLS_SEND_MAX
from nrfprov.errors import AtProtocolError, CommandError, TransportError
from nrfprov.modem.channel import AtChannel
from nrfprov.modem.dialects.base import POLLERR, POLLHUP, POLLIN, Dialect, TlsParams, connect_failed, ints

_RECV_DONT_WAIT = 64  # MSG_DONTWAIT [ncs-serial-modem at_socket.rst, #XRECV]


class SerialModemDialect(Dialect):
    name = "sm"

    def __init__(self, channel: AtChannel) -> None:
        super().__init__(channel)
        self._revents: dict[int, int] = {}
        # Handles whose last #XRECV found nothing: that read re-armed POLLIN, so new data will be
        # announced by #XAPOLL and idle polling costs no AT traffic (the MQTT tunnel polls often).
        self._drained: set[int] = set()

    def _on_urc(self, ev: Urc | RawData) -> None:
        super()._on_urc(ev)
        if isinstance(ev, Urc) and ev.line.startswith("#XAPOLL:"):
            values = ints(ev.line)
            if len(values) == 2:
                handle, revents = values
                self._revents[handle] = self._revents.get(handle, 0) | revents

    def check_raw_binary_safe(self) -> None:
        return None  # length-delimited send: no terminator to collide with

    def open(self, host: str, port: int, *, tls: TlsParams | None, timeout: float) -> int:
        with self._lock:
            if tls is None:
                reply = self.ch.execute(command("AT#XSOCKET=1,1,0"))
            else:
                reply = self.ch.execute(
                    command(f"AT#XSSOCKET=1,1,0,{int(tls.sec_tag)},{int(tls.peer_verify)}")
                )
            handle = _handle(reply.lines, "socket open")
            self._forget(handle)
            try:
                if tls is not None:
                    with self.ch.condition:
                        self._tls.add(handle)
                    self.ch.execute(command(f"AT#XSSOCKETOPT={handle},1,2,{quote(tls.hostname)}"))
                try:
                    self.ch.execute(
                        command(f"AT#XCONNECT={handle},{quote(host)},{int(port)}", timeout=timeout)
                    )
                except CommandError as exc:
                    # SO_ERROR tells a failed TLS handshake from a refused or unresolved connect.
                    err = self._so_error(handle) if tls is not None else None
                    raise connect_failed(host, port, tls, exc, so_error=err) from exc
                with self.ch.condition:
                    self._revents.pop(handle, None)
                    self._drained.discard(handle)
                self.ch.execute(command(f"AT#XAPOLL={handle},1,{POLLIN}"))
            except BaseException:
                self._close_quietly(handle)
                raise
            return handle

    def send(self, handle: int, data: bytes) -> None:
        limit = TLS_SEND_MAX if handle in self._tls else DATAMODE_SEND_MAX
        with self._lock:
            for i in range(0, len(data), limit):
                chunk = data[i : i + limit]
                cmd = command(f"AT#XSEND={handle},2,0,{len(chunk)}", data_mode=LengthData(len(chunk)))
                try:
                    self.ch.execute_with_data(cmd, chunk)
                except CommandError as exc:
                    raise self._failure(handle, "send") from exc

    def _recv_some(self, handle: int, deadline: float | None) -> None:
        with self.ch.condition:
            # Clear the readiness flag BEFORE reading (lesson from this project's simulator): a POLLIN that arrives
            # during the read is then kept for the next round instead of being lost.
            revents = self._revents.pop(handle, 0)
            idle = not revents and handle in self._drained
        if idle:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            self.ch.wait_for(lambda: self._wake(handle), timeout)
            return
        if revents & POLLERR:
            raise self._failure(handle, "receive")
        with self._lock:
            reply = self.ch.execute(
                command(f"AT#XRECV={handle},0,{_RECV_DONT_WAIT},0,{RECV_MAX}"), check=False
            )
        if reply.data:
            with self.ch.condition:
                self._drained.discard(handle)
            self._store(handle, b"".join(d.data for d in reply.data))  # b"" = peer closed
            return
        if revents & (POLLIN | POLLHUP):
            # Readiness was reported but the read found nothing. Either the socket broke, or the
            # POLLIN was stale: an earlier #XRECV already took the data it announced.
            err = self._so_error(handle)
            if err:
                raise self._socket_failure(handle, err, "receive")
            if revents & POLLHUP:
                self._store(handle, b"")
                return
        # No data yet (EAGAIN): wait for the next #XAPOLL without holding the AT channel.
        with self.ch.condition:
            self._drained.add(handle)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        self.ch.wait_for(lambda: self._wake(handle), timeout)

    def _wake(self, handle: int) -> bool:
        """Something for ``handle`` arrived (condition held): readiness, pushed data or EOF."""
        return handle in self._revents or bool(self._rx.get(handle)) or handle in self._eof

    def _so_error(self, handle: int) -> int:
        """SO_ERROR of the socket (0 = none; -1 when the modem cannot say, e.g. handle gone)."""
        with self._lock:
            try:
                reply = self.ch.execute(command(f"AT#XSOCKETOPT={handle},0,4"))
            except CommandError:
                return -1
        values = ints(reply.lines[0]) if reply.lines else []
        return values[1] if len(values) >= 2 else -1

    def _failure(self, handle: int, what: str) -> TransportError:
        err = self._so_error(handle)
        if err == 0:
            return TransportError(f"modem socket {handle}: {what} failed without a socket error")
        return self._socket_failure(handle, err, what)

    def close(self, handle: int) -> None:
        with self._lock:
            try:
                self.ch.execute(command(f"AT#XCLOSE={handle}"))
            finally:
                self._forget(handle)
                with self.ch.condition:
                    self._revents.pop(handle, None)
                    self._drained.discard(handle)

    def _close_quietly(self, handle: int) -> None:
        try:
            self.close(handle)
        except Exception:  # the original failure matters more
            pass


def _handle(lines: list[str], what: str) -> int:
    for line in lines:
        values = ints(line)
        if values:
            return values[0]
    raise AtProtocolError(f"no socket handle in the reply to {what}: {lines!r}")
