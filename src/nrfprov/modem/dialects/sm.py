"""Serial Modem add-on (NCS ≥ 3.1): handle-based sockets [ncs-serial-modem ``doc/app/at_socket.rst``].

Sending uses the length-delimited data mode ``AT#XSEND=<h>,2,0,<len>``: the modem takes exactly
``<len>`` raw bytes and never scans for a terminator, so any binary payload is safe
[ncs-serial-modem at_socket.rst, #XSEND mode 2]. Receiving waits for the ``#XAPOLL`` POLLIN notification without
holding the AT channel, then reads with ``AT#XRECV`` in don't-wait mode (flag 64); each
``#XRECV`` re-arms POLLIN [ncs-serial-modem at_socket.rst, #XAPOLL].

Facts of the Serial Modem that differ from legacy SLM and matter here:

* commands end with CR: ``CONFIG_SM_CR_TERMINATION`` is the default (it was CR LF in SLM;
  ``migration_notes_ncs_slm_v3.1.x.rst``). The modem skips a stray LF in command mode, but after a
  command that enters data mode the LF of a CR LF would be the first data byte and shift the whole
  payload (``sm_at_host.c`` ``cmd_rx_handler``). So this dialect ends its commands with ``line_end``;
* a peer that closed answers ``#XRECV`` with a bare ``OK``: ``recv()`` returned 0 and no ``#XRECV:``
  line is sent (``sm_at_socket.c`` ``do_recv``); with don't-wait and nothing there the answer is ERROR;
* ``#XAPOLL`` reports only the requested POLLIN/POLLOUT bits, never ERR or HUP (``revents &
  xapoll_events`` in ``sm_at_socket.c``): a closed or failed socket shows up as POLLIN;
* ``AT#XRECVCFG=<h>,1`` (auto-receive in AT-command mode) makes the modem push received data as
  ``#XRECV: <h>,0,<n>`` CR LF ``<data>`` CR LF after the ``#XAPOLL`` that announces it, which saves the
  ``AT#XRECV`` round trip; at end of stream it pushes only a CR LF [at_socket.rst, #XRECVCFG;
  ``sm_at_socket.c`` ``auto_reception``];
* without a handle, ``AT#XRECVCFG=,1`` and ``AT#XAPOLL=,1,1`` apply to every socket, "whether already
  open or opened in the future" [at_socket.rst]: the modem keeps them in its poll context and copies
  them into each new socket (``sm_at_socket.c``, socket open). So they are sent once per modem start,
  not twice per socket (two UART round trips saved per connection); the boot banner ``Ready`` means the
  modem restarted and lost them, and they are sent again before the next socket.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from nrfprov.at import LengthData, Ok, Urc, command, quote
from nrfprov.at.commands import Command
from nrfprov.at.events import RawData
from nrfprov.at.limits import DATAMODE_SEND_MAX, RECV_MAX, TLS_SEND_MAX
from nrfprov.errors import AtProtocolError, CommandError, TransportError
from nrfprov.modem.channel import AtChannel
from nrfprov.modem.dialects.base import POLLERR, POLLHUP, POLLIN, Dialect, TlsParams, connect_failed, ints

_RECV_DONT_WAIT = 64  # MSG_DONTWAIT [ncs-serial-modem at_socket.rst, #XRECV]
#: CONFIG_SM_CR_TERMINATION, the Serial Modem's default command terminator.
SM_LINE_END = b"\r"
#: How long a POLLIN may wait for the pushed ``#XRECV`` that follows it in auto-receive mode before we
#: ask with ``AT#XRECV`` (end of stream and socket errors push no data). The modem sends the two back to
#: back; a full 2048-byte push takes 0.18 s at 115200 baud. Our bound.
PUSH_GRACE_S = 0.5


@dataclass(frozen=True)
class _Terminated(Command):
    """A command sent with the modem's configured terminator instead of the library's CR LF."""

    line_end: bytes = SM_LINE_END

    def encode(self) -> bytes:
        return self.text.encode("ascii") + self.line_end


class SerialModemDialect(Dialect):
    name = "sm"

    def __init__(self, channel: AtChannel, *, line_end: bytes = SM_LINE_END, auto_receive: bool = False) -> None:
        super().__init__(channel)
        if line_end not in (b"\r", b"\n", b"\r\n"):
            raise ValueError(f"line_end must be CR, LF or CR LF, not {line_end!r}")
        self.line_end = line_end
        self.auto_receive = auto_receive
        self._revents: dict[int, int] = {}
        # Handles whose last #XRECV found nothing: that read re-armed POLLIN, so new data will be
        # announced by #XAPOLL and idle polling costs no AT traffic (the MQTT tunnel polls often).
        self._drained: set[int] = set()
        self._pollin_at: dict[int, float] = {}  # auto-receive: when a POLLIN came that no push has followed yet
        # AT#XRECVCFG=,1 / AT#XAPOLL=,1,1 sent since the modem last started (see the module docstring).
        self._context_set = False

    def _cmd(self, text: str, **kw: Any) -> Command:
        c = command(text, **kw)
        return _Terminated(c.text, c.expect, c.bare, c.timeout, c.data_mode, c.requires_info, line_end=self.line_end)

    def _on_urc(self, ev: Urc | RawData) -> None:
        super()._on_urc(ev)
        if isinstance(ev, Urc) and ev.line == "Ready":  # the boot banner: a restart cleared the context
            self._context_set = False
        elif isinstance(ev, Urc) and ev.line.startswith("#XAPOLL:"):
            values = ints(ev.line)
            if len(values) == 2:
                handle, revents = values
                self._revents[handle] = self._revents.get(handle, 0) | revents
                if revents & POLLIN and self.auto_receive:
                    self._pollin_at.setdefault(handle, time.monotonic())
        elif isinstance(ev, RawData) and ev.pushed and ev.handle is not None and ev.data:
            # The push the last POLLIN announced has come: that readiness is used up.
            self._pollin_at.pop(ev.handle, None)
            rest = self._revents.get(ev.handle, 0) & ~POLLIN
            if rest:
                self._revents[ev.handle] = rest
            else:
                self._revents.pop(ev.handle, None)

    def check_raw_binary_safe(self) -> None:
        return None  # length-delimited send: no terminator to collide with

    def _set_context(self) -> None:
        """Auto-receive and POLLIN notifications for every socket of this modem start (module docstring)."""
        if self._context_set:
            return
        if self.auto_receive:
            try:
                self.ch.execute(self._cmd("AT#XRECVCFG=,1"))
            except CommandError:  # a build without auto-receive: read with AT#XRECV instead
                self.auto_receive = False
        self.ch.execute(self._cmd(f"AT#XAPOLL=,1,{POLLIN}"))
        self._context_set = True

    def open(self, host: str, port: int, *, tls: TlsParams | None, timeout: float) -> int:
        with self._lock:
            self._set_context()
            if tls is None:
                reply = self.ch.execute(self._cmd("AT#XSOCKET=1,1,0"))
            else:
                reply = self.ch.execute(
                    self._cmd(f"AT#XSSOCKET=1,1,0,{int(tls.sec_tag)},{int(tls.peer_verify)}")
                )
            handle = _handle(reply.lines, "socket open")
            self._forget(handle)
            try:
                if tls is not None:
                    with self.ch.condition:
                        self._tls.add(handle)
                    self.ch.execute(self._cmd(f"AT#XSSOCKETOPT={handle},1,2,{quote(tls.hostname)}"))
                try:
                    self.ch.execute(
                        self._cmd(f"AT#XCONNECT={handle},{quote(host)},{int(port)}", timeout=timeout)
                    )
                except CommandError as exc:
                    # SO_ERROR tells a failed TLS handshake from a refused or unresolved connect.
                    err = self._so_error(handle) if tls is not None else None
                    raise connect_failed(host, port, tls, exc, so_error=err) from exc
                with self.ch.condition:
                    # Nothing arrives before we send (TLS and MQTT clients speak first); anything seen
                    # for this handle so far is from before the connect.
                    self._revents.pop(handle, None)
                    self._drained.discard(handle)
                    self._pollin_at.pop(handle, None)
            except BaseException:
                self._close_quietly(handle)
                raise
            return handle

    def send(self, handle: int, data: bytes) -> None:
        limit = TLS_SEND_MAX if handle in self._tls else DATAMODE_SEND_MAX
        with self._lock:
            for i in range(0, len(data), limit):
                chunk = data[i : i + limit]
                cmd = self._cmd(f"AT#XSEND={handle},2,0,{len(chunk)}", data_mode=LengthData(len(chunk)))
                try:
                    self.ch.execute_with_data(cmd, chunk)
                except CommandError as exc:
                    raise self._failure(handle, "send") from exc

    def _recv_some(self, handle: int, deadline: float | None) -> None:
        if self.auto_receive and self._await_push(handle, deadline):
            return
        with self.ch.condition:
            # Clear the readiness flag BEFORE reading (lesson from this project's simulator): a POLLIN that arrives
            # during the read is then kept for the next round instead of being lost.
            revents = self._revents.pop(handle, 0)
            self._pollin_at.pop(handle, None)
            idle = not revents and handle in self._drained
        if idle:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            self.ch.wait_for(lambda: self._wake(handle), timeout)
            return
        if revents & POLLERR:
            raise self._failure(handle, "receive")
        with self._lock:
            reply = self.ch.execute(
                self._cmd(f"AT#XRECV={handle},0,{_RECV_DONT_WAIT},0,{RECV_MAX}"), check=False
            )
        if reply.data:
            with self.ch.condition:
                self._drained.discard(handle)
            self._store(handle, b"".join(d.data for d in reply.data))
            return
        if isinstance(reply.final, Ok):
            # OK without an #XRECV line: recv() returned 0, the peer closed (sm_at_socket.c do_recv).
            self._store(handle, b"")
            return
        if revents & (POLLIN | POLLHUP):
            # Readiness was reported but the read failed. Either the socket broke, or the POLLIN
            # was stale: an earlier #XRECV already took the data it announced.
            err = self._so_error(handle)
            if err:
                raise self._socket_failure(handle, err, "receive")
        # No data yet (EAGAIN): wait for the next #XAPOLL without holding the AT channel.
        with self.ch.condition:
            self._drained.add(handle)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        self.ch.wait_for(lambda: self._wake(handle), timeout)

    def _await_push(self, handle: int, deadline: float | None) -> bool:
        """Auto-receive: wait for pushed data without AT traffic. False when an ``AT#XRECV`` must ask:
        a POLLIN came and no push followed it within PUSH_GRACE_S (end of stream, or a failed socket)."""
        with self.ch.condition:
            since = self._pollin_at.get(handle)
            if since is None:
                # Nothing announced: wait for a push or an #XAPOLL until the caller's deadline.
                self._drained.add(handle)
            grace_end = None if since is None else since + PUSH_GRACE_S
        if since is not None and time.monotonic() >= grace_end:  # type: ignore[operator]
            return False
        until = [t for t in (deadline, grace_end) if t is not None]
        wait_end = min(until) if until else None
        timeout = None if wait_end is None else max(0.0, wait_end - time.monotonic())

        def arrived() -> bool:
            return bool(self._rx.get(handle)) or handle in self._eof or handle in self._woken or (
                since is None and handle in self._pollin_at
            )

        self.ch.wait_for(arrived, timeout)
        return True

    def _wake(self, handle: int) -> bool:
        """Something for ``handle`` arrived (condition held): readiness, pushed data, EOF, or a wake()."""
        return handle in self._revents or bool(self._rx.get(handle)) or handle in self._eof or handle in self._woken

    def _so_error(self, handle: int) -> int:
        """SO_ERROR of the socket (0 = none; -1 when the modem cannot say, e.g. handle gone)."""
        with self._lock:
            try:
                reply = self.ch.execute(self._cmd(f"AT#XSOCKETOPT={handle},0,4"))
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
                self.ch.execute(self._cmd(f"AT#XCLOSE={handle}"))
            finally:
                self._forget(handle)
                with self.ch.condition:
                    self._revents.pop(handle, None)
                    self._drained.discard(handle)
                    self._pollin_at.pop(handle, None)


def _handle(lines: list[str], what: str) -> int:
    for line in lines:
        values = ints(line)
        if values:
            return values[0]
    raise AtProtocolError(f"no socket handle in the reply to {what}: {lines!r}")
