"""Legacy Serial LTE Modem (NCS 2.x-3.1): selected-socket model [sdk-nrf ``SOCKET_AT_commands.rst``].

Every socket command acts on the *selected* socket, so operations select first when needed. Binary
send uses data mode: ``AT#XSEND`` → ``OK`` → raw bytes → the terminator (default ``+++``) → URC
``#XDATAMODE: 0``. The SLM matches the terminator anywhere in the stream, across chunks, with no
escaping [SLM ``slm_at_host.c`` ``raw_rx_handler``]: a payload containing it would be cut there and
its tail run as AT commands. Random TLS ciphertext contains ``+++`` about 6 % per MB
(2⁻²⁴ per offset; our arithmetic estimate), so raw ciphertext is refused unless a long terminator is configured, and any
payload that contains the terminator is refused whatever its length.
"""

from __future__ import annotations

import re
import time

from nrfprov.at import Ok, TerminatedData, command, quote, terminator_safe
from nrfprov.at.limits import DATAMODE_SEND_MAX
from nrfprov.errors import CommandError, DialectError, TransportError
from nrfprov.modem.channel import AtChannel
from nrfprov.modem.dialects.base import POLLERR, POLLHUP, POLLIN, Dialect, TlsParams, connect_failed, ints

#: Shortest terminator we accept for raw binary (ciphertext). With 8 random bytes a false match has
#: probability 2^-64 per offset, i.e. never in practice; "+++" is 2^-24 (≈ 6 %/MB).
SAFE_TERMINATOR_MIN = 8

# One #XPOLL waits at most this long so a sender in another thread gets the AT channel in between.
_POLL_SLICE_S = 0.25
_POLL_RE = re.compile(r'#XPOLL: *(\d+) *, *"?(0x[0-9A-Fa-f]+|\d+)"?')


class SlmDialect(Dialect):
    name = "slm"

    def __init__(self, channel: AtChannel, *, terminator: str = "+++") -> None:
        super().__init__(channel)
        if not terminator:
            raise DialectError("empty SLM data-mode terminator", hint="CONFIG_NRFPROV_SLM_TERMINATOR")
        self.terminator = terminator.encode("ascii")
        self._selected: int | None = None

    def check_raw_binary_safe(self) -> None:
        if len(self.terminator) >= SAFE_TERMINATOR_MIN:
            return
        raise DialectError(
            f"legacy SLM leaves data mode wherever the terminator {self.terminator.decode()!r} appears "
            "in the byte stream, with no escaping; random TLS ciphertext contains it about 6 % per MB "
            "(a hit truncates a TLS record and kills the session), so raw binary over this modem is "
            "refused",
            hint=f"use the Serial Modem add-on (NCS ≥ 3.1, length-based send), or build SLM with "
            f"CONFIG_SLM_DATAMODE_TERMINATOR set to a random string of ≥ {SAFE_TERMINATOR_MIN} "
            "characters and pass the same value as CONFIG_NRFPROV_SLM_TERMINATOR, or use the "
            "modem-offloaded TLS backend (CONFIG_NRFPROV_TLS_BACKEND=\"offload\")",
        )

    def _select(self, handle: int) -> None:
        if self._selected != handle:
            self.ch.execute(command(f"AT#XSOCKETSELECT={handle}"))
            self._selected = handle

    def open(self, host: str, port: int, *, tls: TlsParams | None, timeout: float) -> int:
        with self._lock:
            if tls is None:
                reply = self.ch.execute(command("AT#XSOCKET=1,1,0"))
            else:
                reply = self.ch.execute(
                    command(f"AT#XSSOCKET=1,1,0,{int(tls.sec_tag)},{int(tls.peer_verify)}")
                )
            values = ints(reply.lines[0]) if reply.lines else []
            if not values:
                raise DialectError(f"no socket handle in the reply to the socket open: {reply.lines!r}")
            handle = values[0]
            self._selected = handle  # opening silently selects [sdk-nrf serial_lte_modem, SOCKET_AT_commands.rst]
            self._forget(handle)
            try:
                if tls is not None:
                    with self.ch.condition:
                        self._tls.add(handle)
                    # SLM does not set the host name itself; it must precede the connect.
                    self.ch.execute(command(f"AT#XSSOCKETOPT=1,2,{quote(tls.hostname)}"))
                try:
                    self.ch.execute(command(f"AT#XCONNECT={quote(host)},{int(port)}", timeout=timeout))
                except CommandError as exc:
                    # SO_ERROR tells a failed TLS handshake from a refused or unresolved connect.
                    err = self._so_error() if tls is not None else None
                    raise connect_failed(host, port, tls, exc, so_error=err) from exc
            except BaseException:
                self._close_quietly(handle)
                raise
            return handle

    def send(self, handle: int, data: bytes) -> None:
        for i in range(0, len(data), DATAMODE_SEND_MAX):
            chunk = data[i : i + DATAMODE_SEND_MAX]
            if not terminator_safe(chunk, self.terminator):
                raise DialectError(
                    f"payload contains the SLM data-mode terminator {self.terminator.decode()!r} "
                    "(or ends with its start); sending it would end data mode early and run the "
                    "rest as AT commands",
                    hint="configure a long terminator (CONFIG_SLM_DATAMODE_TERMINATOR and "
                    "CONFIG_NRFPROV_SLM_TERMINATOR) or use the Serial Modem add-on",
                )
        with self._lock:
            self._select(handle)
            for i in range(0, len(data), DATAMODE_SEND_MAX):
                chunk = data[i : i + DATAMODE_SEND_MAX]
                cmd = command("AT#XSEND", data_mode=TerminatedData(self.terminator))
                try:
                    self.ch.execute_with_data(cmd, chunk)
                except CommandError as exc:
                    raise self._failure(handle, "send") from exc

    def _recv_some(self, handle: int, deadline: float | None) -> None:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        wait_s = _POLL_SLICE_S if remaining is None else min(_POLL_SLICE_S, remaining)
        ms = max(1, int(wait_s * 1000))
        with self._lock:
            reply = self.ch.execute(command(f"AT#XPOLL={ms},{handle}", timeout=wait_s + 5.0))
            revents = 0
            for line in reply.lines:
                m = _POLL_RE.match(line)
                if m and int(m.group(1)) == handle:
                    revents |= int(m.group(2), 0)
            if not revents:
                return  # nothing yet; the caller re-checks its deadline
            if revents & POLLERR and not revents & POLLIN:
                raise self._failure(handle, "receive")
            if not revents & (POLLIN | POLLHUP):
                return
            self._select(handle)
            reply = self.ch.execute(command("AT#XRECV=1"), check=False)
            if reply.data:
                self._store(handle, b"".join(d.data for d in reply.data))
            elif isinstance(reply.final, Ok):
                # peer closed: just OK, no #XRECV line [sdk-nrf serial_lte_modem, slm_at_socket.c]
                self._store(handle, b"")
            else:
                raise self._failure(handle, "receive")

    def _so_error(self) -> int:
        """SO_ERROR of the selected socket (0 = none; -1 when the modem cannot say)."""
        try:
            reply = self.ch.execute(command("AT#XSOCKETOPT=0,4"))
        except CommandError:
            return -1
        values = ints(reply.lines[0]) if reply.lines else []
        return values[0] if values else -1

    def _failure(self, handle: int, what: str) -> TransportError:
        with self._lock:
            try:
                self._select(handle)
            except CommandError:
                return self._socket_failure(handle, -1, what)
            err = self._so_error()
        if err == 0:
            return TransportError(f"modem socket {handle}: {what} failed without a socket error")
        return self._socket_failure(handle, err, what)

    def close(self, handle: int) -> None:
        with self._lock:
            try:
                self._select(handle)
                self.ch.execute(command("AT#XSOCKET=0"))
            finally:
                self._forget(handle)
                if self._selected == handle:
                    self._selected = None
