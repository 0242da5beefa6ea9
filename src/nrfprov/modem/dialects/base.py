"""What a socket dialect provides, and what both dialects share (errno mapping, receive buffers)."""

from __future__ import annotations

import abc
import errno as errno_mod
import ipaddress
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from nrfprov.at import RawData, Urc, command, quote
from nrfprov.at.commands import Command
from nrfprov.errors import (
    AtProtocolError,
    ConnectError,
    LinkClosed,
    ModemTlsHandshakeError,
    ModemTlsLimitError,
    NrfprovError,
    ResponseTimeout,
    TransportError,
)
from nrfprov.modem.channel import AtChannel

log = logging.getLogger(__name__)

# poll(2) revents as the modem reports them (the ones read here: IN 1, ERR 8, HUP 16)
# [ncs-serial-modem at_socket.rst, #XAPOLL].
POLLIN, POLLERR, POLLHUP = 1, 8, 16

#: A DNS lookup by the modem: one round trip on the air, more when the resolver retries (our bound;
#: the AT documentation gives none).
LOOKUP_TIMEOUT_S = 60.0

EMSGSIZE = 122  # nrf_errno / Linux value the modem reports for an oversized TLS record
# SO_ERROR after a failed modem TLS handshake: users report connect() failing with EOPNOTSUPP (95 in the
# Zephyr/newlib numbering the serial modem prints; bifravst/cat-tracker-fw issue 53). Not documented by
# Nordic: unconfirmed, and the same for every handshake failure cause.
EOPNOTSUPP = 95


@dataclass(frozen=True)
class TlsParams:
    """Modem-offloaded TLS: the modem runs TLS 1.2 with the credentials stored in ``sec_tag``."""

    sec_tag: int
    hostname: str
    peer_verify: int = 2  # 0 none, 1 optional, 2 required (client default) [ncs-serial-modem at_socket.rst, #XSSOCKET]


class Dialect(abc.ABC):
    """Socket operations over one AT channel. Handles are the modem's socket numbers."""

    name: str = ""

    def __init__(self, channel: AtChannel) -> None:
        self.ch = channel
        self._addresses: dict[str, tuple[str, float]] = {}  # host -> (IPv4, monotonic time looked up)
        self._rx: dict[int, bytearray] = {}  # bytes received but not yet returned, per handle
        self._failed: dict[int, TransportError] = {}  # sticky per-socket failure
        self._eof: set[int] = set()
        self._tls: set[int] = set()
        self._woken: set[int] = set()  # handles whose recv should return now (wake())
        self._lock = threading.RLock()  # multi-command socket operations run one at a time
        channel.add_urc_handler(self._on_urc)

    # --- the interface ------------------------------------------------------------------------

    @abc.abstractmethod
    def open(self, host: str, port: int, *, tls: TlsParams | None, timeout: float) -> int: ...

    @abc.abstractmethod
    def send(self, handle: int, data: bytes) -> None: ...

    @abc.abstractmethod
    def _recv_some(self, handle: int, deadline: float | None) -> None:
        """Bring received bytes (or EOF, or a failure) into ``_rx``/``_eof``/``_failed`` for
        ``handle``, or return at ``deadline`` (monotonic) with nothing."""

    @abc.abstractmethod
    def close(self, handle: int) -> None: ...

    def _close_quietly(self, handle: int) -> None:
        """Close after a failed open; the failure being raised matters more than this one."""
        try:
            self.close(handle)
        except NrfprovError as exc:  # typed: the modem or link refused; a bug still propagates
            log.debug("closing socket %d after a failure: %s", handle, exc)

    @abc.abstractmethod
    def check_raw_binary_safe(self) -> None:
        """Raise DialectError if arbitrary binary payload (TLS ciphertext) cannot be sent."""

    def resolve(self, host: str, *, max_age: float) -> str:
        """The IPv4 address of ``host``: the one looked up less than ``max_age`` seconds ago, else a new
        lookup by the modem (``AT#XGETADDRINFO``, one DNS round trip on the air). An address literal is
        returned as it is."""
        if _is_ip(host):
            return host
        now = time.monotonic()
        with self.ch.condition:
            cached = self._addresses.get(host)
        if cached is not None and now - cached[1] < max_age:
            return cached[0]
        with self._lock:
            # Family 1 = IPv4, as the sockets this dialect opens [ncs-serial-modem at_socket.rst].
            reply = self.ch.execute(self._cmd(f"AT#XGETADDRINFO={quote(host)},1", timeout=LOOKUP_TIMEOUT_S))
        ip = _first_ipv4(reply.lines)
        if ip is None:
            raise AtProtocolError(f"no IPv4 address in the reply to AT#XGETADDRINFO: {reply.lines!r}")
        with self.ch.condition:
            self._addresses[host] = (ip, now)
        return ip

    def forget_address(self, host: str) -> None:
        """Drop a looked-up address (a connect to it failed: it may be stale)."""
        with self.ch.condition:
            self._addresses.pop(host, None)

    def _cmd(self, text: str, **kw: Any) -> Command:
        """A command as this modem's build expects it (the Serial Modem dialect changes the terminator)."""
        return command(text, **kw)

    def wake(self, handle: int) -> None:
        """Any thread: the ``recv`` waiting for ``handle`` (or the next one) returns now, with
        ``ResponseTimeout`` unless data or EOF is there; the caller has something to send."""
        with self.ch.condition:
            self._woken.add(handle)
            self.ch.condition.notify_all()

    def recv(self, handle: int, max_bytes: int, timeout: float | None) -> bytes:
        """1..max_bytes bytes, b"" at EOF; ResponseTimeout after ``timeout`` s with nothing."""
        deadline = None if timeout is None else time.monotonic() + timeout
        asked = False  # ask the modem at least once, even with timeout=0
        while True:
            with self.ch.condition:
                buf = self._rx.get(handle)
                if buf:
                    out = bytes(buf[:max_bytes])
                    del buf[:max_bytes]
                    return out
                if handle in self._eof:
                    return b""
                failure = self._failed.get(handle)
                woken = handle in self._woken
                self._woken.discard(handle)
            if failure is not None:
                raise failure
            if woken:
                raise ResponseTimeout(f"data on modem socket {handle} (woken to send)", timeout or 0.0)
            if asked and deadline is not None and time.monotonic() >= deadline:
                raise ResponseTimeout(f"data on modem socket {handle}", timeout or 0.0)
            self._recv_some(handle, deadline)
            asked = True

    # --- shared helpers -----------------------------------------------------------------------

    def _on_urc(self, ev: Urc | RawData) -> None:
        """Runs in the reader thread (condition held). Subclasses extend."""
        if isinstance(ev, RawData) and ev.pushed and ev.handle is not None:
            if ev.data:
                self._rx.setdefault(ev.handle, bytearray()).extend(ev.data)
            else:
                self._eof.add(ev.handle)

    def _store(self, handle: int, data: bytes) -> None:
        with self.ch.condition:
            if data:
                self._rx.setdefault(handle, bytearray()).extend(data)
            else:
                self._eof.add(handle)

    def _forget(self, handle: int) -> None:
        with self.ch.condition:
            self._woken.discard(handle)
            self._rx.pop(handle, None)
            self._failed.pop(handle, None)
            self._eof.discard(handle)
            self._tls.discard(handle)

    def _socket_failure(self, handle: int, err: int, what: str) -> TransportError:
        """The typed error for SO_ERROR ``err``; remembered so later calls fail the same way."""
        exc: TransportError
        if err == EMSGSIZE and handle in self._tls:
            exc = ModemTlsLimitError(
                f"socket {handle}: the modem dropped an incoming TLS record larger than its 2 KB "
                f"secure-socket buffer (EMSGSIZE) during {what}; the data is lost",
                limit=2048,
            )
        else:
            name = errno_mod.errorcode.get(err, "unknown")
            hint = "the peer reset or the network dropped the connection; reconnect"
            if err == errno_mod.ECONNRESET and handle in self._tls:
                hint = ("the server reset the TLS connection; the likely cause is that it refused the client "
                        "certificate (an expired or revoked claim certificate) or a policy refused the connection")
            exc = LinkClosed(f"socket {handle} failed during {what}: errno {err} ({name})", hint=hint)
        with self.ch.condition:
            self._failed.setdefault(handle, exc)
            return self._failed[handle]



def connect_failed(
    host: str, port: int, tls: TlsParams | None, cause: Exception, *, so_error: int | None = None
) -> ConnectError:
    """The typed error for a failed ``AT#XCONNECT``; ``so_error`` is the socket's SO_ERROR, when read."""
    if tls is not None and so_error == EOPNOTSUPP:
        return ModemTlsHandshakeError(host, port, tls.sec_tag, tls.hostname)
    if tls is not None:
        hint = (
            f"check that sec tag {tls.sec_tag} holds the server's CA (type 0) and that "
            f"'{tls.hostname}' matches its certificate; the TLS handshake runs inside AT#XCONNECT"
        )
    else:
        hint = "check the host name, the port and that the modem is registered (AT+CEREG?)"
    return ConnectError(host, port, str(cause), hint=hint)  # CommandError reads "modem answered ..."


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _first_ipv4(lines: list[str]) -> str | None:
    """The first IPv4 address in ``#XGETADDRINFO: "<ip_addresses>"`` [ncs-serial-modem at_socket.rst]."""
    for line in lines:
        for token in re.split(r'[\s",]+', line.split(":", 1)[-1]):
            try:
                if isinstance(ipaddress.ip_address(token), ipaddress.IPv4Address):
                    return token
            except ValueError:
                continue
    return None


_INT_RE = re.compile(r"-?\d+")


def ints(line: str) -> list[int]:
    """The integers after the ``:`` of a reply line (``#XSOCKET: 0,1,6`` → [0, 1, 6])."""
    return [int(x) for x in _INT_RE.findall(line.split(":", 1)[1] if ":" in line else line)]
