"""The one byte-stream interface every transport implements.

A modem raw socket, a modem-offloaded TLS socket, the native TLS bridge and a host TCP connection all
look the same to the layers above: ordered bytes both ways, EOF as ``b""``, typed errors. The native
TLS bridge wraps *any* ``ByteStream``, which is what lets TLS run on the host over the modem's TCP.

Optional extension: a stream that can be waited on with ``select()`` also offers ``select_fileno()``
(:class:`SelectableStream`; deliberately not ``fileno()``, which a modem socket might answer with its
serial port — readable for any URC, so useless for this socket). The contract is: once
``recv(n, timeout=0)`` has raised
``ResponseTimeout``, no more data arrives without that descriptor turning readable. Host TCP and the
native TLS bridge over host TCP offer it; modem sockets do not (their readiness is an AT URC), and the
MQTT tunnel falls back to short ``recv`` timeouts for them.

Second optional extension, for those: ``wake()``, callable from any thread, makes a ``recv`` that is
waiting (or the next one) return at once with ``ResponseTimeout`` unless data is there, so the thread
that owns the stream can send what another thread just queued without waiting out its timeout
(``wake_stream``; the MQTT tunnel uses it when paho has written a packet).
"""

from __future__ import annotations

from typing import Protocol, TypedDict, runtime_checkable


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


@runtime_checkable
class SelectableStream(ByteStream, Protocol):
    """A ``ByteStream`` whose readiness can be waited on with ``select()`` (see module docstring)."""

    def select_fileno(self) -> int: ...


def select_fd(stream: object) -> int | None:
    """The descriptor to ``select()`` on for ``stream``, or None when it cannot be selected on."""
    fn = getattr(stream, "select_fileno", None)
    if fn is None:
        return None
    try:
        return int(fn())
    except (AttributeError, OSError, ValueError):
        return None


def wake_stream(stream: object) -> None:
    """Call ``stream.wake()`` if it has one (see the module docstring); else nothing."""
    fn = getattr(stream, "wake", None)
    if fn is not None:
        fn()


class LayerCounters(TypedDict):
    layer: str  # the stream's class name
    bytes_sent: int
    bytes_received: int


def layer_counters(stream: object) -> list[LayerCounters]:
    """Byte counters of ``stream`` and every stream it wraps (outermost first).

    A wrapping stream names the stream it wraps in an ``inner`` attribute; this walks that chain, so
    a caller sees e.g. TLS plaintext and the ciphertext the modem socket carried, in one list.
    """
    out: list[LayerCounters] = []
    seen: set[int] = set()
    cur: object | None = stream
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        out.append(
            {
                "layer": type(cur).__name__,
                "bytes_sent": int(getattr(cur, "bytes_sent", 0)),
                "bytes_received": int(getattr(cur, "bytes_received", 0)),
            }
        )
        cur = getattr(cur, "inner", None)
    return out
