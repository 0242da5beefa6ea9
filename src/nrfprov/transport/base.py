"""The one byte-stream interface every transport implements.

A modem raw socket, a modem-offloaded TLS socket, the native TLS bridge and a host TCP connection all
look the same to the layers above: ordered bytes both ways, EOF as ``b""``, typed errors. The native
TLS bridge wraps *any* ``ByteStream``, which is what lets TLS run on the host over the modem's TCP.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class ByteStream(Protocol):
    """An ordered, reliable byte stream (TCP semantics).

    - ``send`` writes all of ``data`` or raises ``TransportError``.
    - ``recv`` returns 1..``max_bytes`` bytes, ``b""`` at end of stream, and raises
      ``ResponseTimeout`` when ``timeout`` (seconds, None = forever) passes with nothing to read.
    - ``close`` is idempotent.
    - ``bytes_sent`` / ``bytes_received`` count payload bytes at this layer (for "bytes on the air").
    """

    @property
    def bytes_sent(self) -> int: ...

    @property
    def bytes_received(self) -> int: ...

    def send(self, data: bytes) -> None: ...

    def recv(self, max_bytes: int, timeout: float | None = None) -> bytes: ...

    def close(self) -> None: ...
