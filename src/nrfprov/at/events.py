"""Events the AT session produces (frozen dataclasses; wire events are nouns)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ok:
    """Final result ``OK`` for the command in flight."""

    command: str


@dataclass(frozen=True)
class Error:
    """Final result ``ERROR`` (SLM/SM failure, grammar error, overflow, ``#XRECV`` timeout)."""

    command: str


@dataclass(frozen=True)
class CmeError:
    """Final result ``+CME ERROR: <code>``; ``code`` is None for the verbose form (no ``AT+CMEE=1``)."""

    command: str
    code: int | None
    text: str = ""


@dataclass(frozen=True)
class CmsError:
    """Final result ``+CMS ERROR: <code>`` (SMS-class; passed through)."""

    command: str
    code: int | None
    text: str = ""


@dataclass(frozen=True)
class InfoLine:
    """A line that belongs to the command in flight (its prefix, or a bare line it expects)."""

    command: str
    line: str


@dataclass(frozen=True)
class Urc:
    """An unsolicited line: anything the command in flight does not expect, or any line when idle."""

    line: str


@dataclass(frozen=True)
class RawData:
    """The ``<n>`` bytes announced by an ``#XRECV:`` header, read by count (binary safe).

    ``header`` is the header line; ``pushed`` is True for the SM auto-receive URC form (no
    ``#XRECV`` command was in flight). ``handle`` is the SM socket handle (None on legacy SLM).
    """

    header: str
    data: bytes
    handle: int | None
    pushed: bool


@dataclass(frozen=True)
class Timeout:
    """The command in flight got no final result before its deadline."""

    command: str
    deadline: float


@dataclass(frozen=True)
class DataModeExited:
    """``#XDATAMODE: <status>`` arrived while the session waited for it (status 0 = ok)."""

    status: int


@dataclass(frozen=True)
class EndOfStream:
    """The link closed (``receive_data(b"")``); ``unparsed`` bytes of an incomplete line were dropped."""

    unparsed: int = 0


FinalResult = Ok | Error | CmeError | CmsError
Event = Ok | Error | CmeError | CmsError | InfoLine | Urc | RawData | Timeout | DataModeExited | EndOfStream
