"""A modem socket as a :class:`nrfprov.transport.base.ByteStream`."""

from __future__ import annotations

import logging
import threading

from nrfprov.errors import LinkClosed, NrfprovError
from nrfprov.modem.dialects.base import Dialect

log = logging.getLogger(__name__)


class ModemSocket:
    """A TCP or modem-TLS socket inside the modem, driven over AT.

    ``recv`` on a modem-TLS socket whose incoming record exceeded the modem's 2 KB buffer raises
    :class:`nrfprov.errors.ModemTlsLimitError`; other socket failures raise :class:`LinkClosed`
    or :class:`TransportError`; ``ResponseTimeout`` when nothing arrives in ``timeout``.
    """

    def __init__(self, dialect: Dialect, handle: int, *, host: str, port: int, tls: bool) -> None:
        self._dialect = dialect
        self.handle = handle
        self.host = host
        self.port = port
        self.tls = tls
        self._sent = 0
        self._received = 0
        self._closed = False
        self._close_lock = threading.Lock()

    @property
    def bytes_sent(self) -> int:
        return self._sent

    @property
    def bytes_received(self) -> int:
        return self._received

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, data: bytes) -> None:
        if self._closed:
            raise LinkClosed(f"modem socket {self.handle} to {self.host}:{self.port} is closed")
        if data:
            self._dialect.send(self.handle, bytes(data))
            self._sent += len(data)

    def recv(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._closed:
            raise LinkClosed(f"modem socket {self.handle} to {self.host}:{self.port} is closed")
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        data = self._dialect.recv(self.handle, max_bytes, timeout)
        self._received += len(data)
        return data

    def wake(self) -> None:
        """Any thread: a ``recv`` waiting for this socket returns at once unless data is there
        (``transport.base``, ``wake``)."""
        self._dialect.wake(self.handle)

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._dialect.close(self.handle)
        except NrfprovError as exc:  # close is idempotent and quiet: the socket is gone either way
            log.debug("closing %r: %s", self, exc)

    def __enter__(self) -> ModemSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "tls" if self.tls else "tcp"
        return f"<ModemSocket {kind} #{self.handle} {self.host}:{self.port}>"
