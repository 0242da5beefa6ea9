"""A bounded receive buffer and the two readers the AT grammar needs.

The modem's output is lines (``\\r\\n<line>\\r\\n``) except after an ``#XRECV:`` header, where
exactly ``<n>`` raw bytes follow. Those bytes are TLS ciphertext or arbitrary payload and contain
CR, LF, ``OK`` and ``#X...`` freely, so they are read by count, never split on lines
[sdk-nrf serial_lte_modem, slm_at_host.c; ncs-serial-modem sm_at_client.c]. Both readers consume from
the same :class:`ByteBuffer`.
"""

from __future__ import annotations

from nrfprov.at.limits import BUFFER_MAX, RECV_MAX, RESPONSE_LINE_MAX
from nrfprov.errors import AtProtocolError


class ByteBuffer:
    """Bytes received but not yet parsed, never more than ``limit``."""

    def __init__(self, limit: int = BUFFER_MAX) -> None:
        self._data = bytearray()
        self.limit = limit

    def __len__(self) -> int:
        return len(self._data)

    def feed(self, data: bytes) -> None:
        if len(self._data) + len(data) > self.limit:
            raise AtProtocolError(
                f"receive buffer would hold {len(self._data) + len(data)} bytes, over its "
                f"{self.limit}-byte limit",
                data=bytes(self._data[:64]),
                hint="the reader must drain events after every read",
            )
        self._data += data

    def find(self, needle: bytes) -> int:
        return self._data.find(needle)

    def take(self, n: int) -> bytes:
        out = bytes(self._data[:n])
        del self._data[:n]
        return out

    def peek(self, n: int) -> bytes:
        return bytes(self._data[:n])


class LineReader:
    """Takes one line (up to LF, CR stripped) from a buffer; ``None`` until a whole line is there.

    A line longer than ``max_line`` raises :class:`AtProtocolError`, as soon as that is certain, so
    a modem spewing bytes without line breaks cannot make us buffer without bound.
    """

    def __init__(self, max_line: int = RESPONSE_LINE_MAX) -> None:
        self.max_line = max_line

    def read(self, buf: ByteBuffer) -> bytes | None:
        end = buf.find(b"\n")
        if end < 0:
            # +1 allows the CR of a maximal line whose LF has not arrived yet.
            if len(buf) > self.max_line + 1:
                raise AtProtocolError(
                    f"response line longer than {self.max_line} bytes (the modem's maximum)",
                    data=buf.peek(64),
                )
            return None
        line = buf.take(end + 1)[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.max_line:
            raise AtProtocolError(
                f"response line of {len(line)} bytes, over the {self.max_line}-byte maximum",
                data=line[:64],
            )
        return line


class CountReader:
    """Takes exactly ``n`` bytes from a buffer, whatever they are; ``None`` until all are there."""

    def __init__(self, n: int, *, limit: int = RECV_MAX) -> None:
        if not 0 <= n <= limit:
            raise AtProtocolError(
                f"#XRECV announces {n} bytes; one receive carries at most {limit}",
                hint="the modem output is corrupt or this is not an nRF91 serial modem",
            )
        self.n = n

    def read(self, buf: ByteBuffer) -> bytes | None:
        if len(buf) < self.n:
            return None
        return buf.take(self.n)
