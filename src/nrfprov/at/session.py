"""The sans-IO AT session: bytes in, events out, bytes to send returned (docs/architecture.md).

One command is in flight at a time. Whether a line is part of its reply or a URC is decided by the
prefixes that command expects (``+CFUN:`` for ``AT+CFUN?``), never by the prefix alone: ``+CEREG:``
is a reply to ``AT+CEREG?`` and a URC at any other time [ncs-serial-modem sm_at_client.c]. After an ``#XRECV:``
header the session reads exactly ``<n>`` raw bytes by count, both for the reply to ``AT#XRECV`` and
for the SM pushed (auto-receive) form, which has no command in flight.

Verbs (shared by every core): ``receive_data(bytes)`` (``b""`` = EOF), ``next_event()``,
``send(command, now) -> bytes``, ``send_data(bytes) -> bytes``, ``end_data_mode(now) -> bytes``,
``handle_timer(now)``, ``next_deadline()``; ``abandon()`` when an interrupt broke a wait. The caller
owns the clock and the port.
"""

from __future__ import annotations

import enum
from collections import deque

from nrfprov.at.buffer import ByteBuffer, CountReader, LineReader
from nrfprov.at.commands import Command, LengthData, TerminatedData
from nrfprov.at.events import (
    CmeError,
    CmsError,
    DataModeExited,
    EndOfStream,
    Error,
    Event,
    InfoLine,
    Ok,
    RawData,
    Timeout,
    Urc,
)
from nrfprov.at.limits import QUOTED_VALUE_MAX, RESPONSE_LINE_MAX
from nrfprov.errors import AtProtocolError, DialectError, LocalProtocolError

#: How long to wait for ``#XDATAMODE:`` after sending the SLM terminator (the SLM flushes its
#: buffer to the socket first, and a send blocks up to SO_SNDTIMEO = 30 s) [sdk-nrf serial_lte_modem, slm_at_socket.c].
DATAMODE_EXIT_TIMEOUT = 30.0

# Lines the modem prints on its own, never part of a reply even for commands that answer bare.
_BANNERS = {"Ready", "INIT ERROR"}


class State(enum.Enum):
    IDLE = "idle"  # no command in flight
    AWAITING = "awaiting"  # a command was sent; waiting for its final result
    DATA_MODE = "data_mode"  # the modem said OK to a send; the host streams raw bytes
    LEAVING_DATA = "leaving_data"  # SLM terminator sent; waiting for #XDATAMODE
    CLOSED = "closed"  # the link reached end of stream
    DEAD = "dead"  # a protocol error or an illegal step; every further call raises


class Step(enum.Enum):
    SEND = "send"
    FINAL = "final"
    ENTER_DATA = "enter_data"
    DATA_DONE = "data_done"
    SEND_TERMINATOR = "send_terminator"
    DATAMODE_URC = "datamode_urc"
    TIMEOUT = "timeout"
    ABANDON = "abandon"
    EOF = "eof"


_TRANSITIONS: dict[tuple[State, Step], State] = {
    (State.IDLE, Step.SEND): State.AWAITING,
    (State.AWAITING, Step.FINAL): State.IDLE,
    (State.AWAITING, Step.ENTER_DATA): State.DATA_MODE,
    (State.AWAITING, Step.TIMEOUT): State.IDLE,
    (State.DATA_MODE, Step.DATA_DONE): State.IDLE,
    (State.DATA_MODE, Step.SEND_TERMINATOR): State.LEAVING_DATA,
    (State.LEAVING_DATA, Step.DATAMODE_URC): State.IDLE,
    (State.LEAVING_DATA, Step.TIMEOUT): State.IDLE,
    (State.IDLE, Step.ABANDON): State.IDLE,
    (State.AWAITING, Step.ABANDON): State.IDLE,
    (State.DATA_MODE, Step.ABANDON): State.IDLE,
    (State.LEAVING_DATA, Step.ABANDON): State.IDLE,
    (State.IDLE, Step.EOF): State.CLOSED,
    (State.AWAITING, Step.EOF): State.CLOSED,
    (State.DATA_MODE, Step.EOF): State.CLOSED,
    (State.LEAVING_DATA, Step.EOF): State.CLOSED,
}


def terminator_safe(payload: bytes, terminator: bytes) -> bool:
    """True when the modem, scanning ``payload + terminator`` for ``terminator`` anywhere (across
    chunks, no escaping [SLM ``slm_at_host.c`` ``raw_rx_handler``]), first finds it at the end."""
    return (payload + terminator).find(terminator) == len(payload)


class AtSession:
    """One AT conversation with an nRF91 serial modem (SM or legacy SLM)."""

    def __init__(self) -> None:
        self.state = State.IDLE
        self._buf = ByteBuffer()
        self._lines = LineReader(RESPONSE_LINE_MAX)
        self._events: deque[Event] = deque()
        self._command: Command | None = None
        self._deadline: float | None = None
        self._count: CountReader | None = None
        self._header: tuple[str, int | None, bool] | None = None  # line, handle, pushed
        self._quoted: bytes | None = None  # an info line whose quoted value spans lines
        self._eof = False
        self._eof_reported = False
        self._remaining = 0  # LengthData bytes still to send
        self._tail = b""  # last bytes sent in terminated data mode (matches span chunks)
        self._death: str | None = None
        self._death_local = False  # the session died of our misuse, not of what the modem sent
        # Final results still owed by commands that timed out. The modem answers strictly in order,
        # so the next final result belongs to the timed-out command, not to the one now in flight.
        self._stale = 0
        self._absorbed = False  # a final result was taken as a late answer during this command
        self._info_seen = False  # the command in flight got an info line (see Command.requires_info)

    # --- state machine ------------------------------------------------------------------------

    def _step(self, step: Step) -> None:
        new = _TRANSITIONS.get((self.state, step))
        if new is None:  # every step the modem's bytes cause is legal by construction: this is ours
            self._misuse(f"illegal step {step.value} in state {self.state.value}")
        assert new is not None
        self.state = new

    def _misuse(self, why: str) -> None:
        """Local: the caller broke the session's rules. The session dies (as h11's does)."""
        self._death, self._death_local = why, True
        self.state = State.DEAD
        raise LocalProtocolError(f"AT session misused: {why}")

    def _check_alive(self) -> None:
        if self.state is State.DEAD:
            if self._death_local:
                raise LocalProtocolError(f"AT session is dead after: {self._death}")
            raise AtProtocolError(f"AT session is dead after: {self._death}")

    @property
    def command(self) -> Command | None:
        """The command in flight (or whose data mode is open), if any."""
        return self._command

    # --- host → modem ---------------------------------------------------------------------------

    def send(self, command: Command, now: float) -> bytes:
        """Start ``command``; returns the bytes to write. Only one command may be in flight."""
        self._check_alive()
        self._step(Step.SEND)
        self._command = command
        self._deadline = now + command.timeout
        self._absorbed = False
        self._info_seen = False
        return command.encode()

    def send_data(self, data: bytes) -> bytes:
        """Raw bytes in data mode (after the ``OK`` to a send command); returns them to write."""
        self._check_alive()
        if self.state is not State.DATA_MODE or self._command is None:
            self._misuse(f"send_data in state {self.state.value}")
        assert self._command is not None
        mode = self._command.data_mode
        if isinstance(mode, LengthData):
            if len(data) > self._remaining:
                self._misuse(f"{len(data)} data bytes but only {self._remaining} announced")
            self._remaining -= len(data)
            if self._remaining == 0:
                self._step(Step.DATA_DONE)
                self._command = None
                self._deadline = None
            return data
        assert isinstance(mode, TerminatedData)
        if mode.terminator in self._tail + data:
            # Refuse before anything is written: the modem would leave data mode mid-payload.
            raise DialectError(
                f"payload contains the data-mode terminator {mode.terminator!r}; the modem would "
                "cut it there and treat the rest as AT commands",
                hint="use the Serial Modem length-based send, or a longer SLM terminator",
            )
        self._tail = (self._tail + data)[-(len(mode.terminator) - 1) :] if len(mode.terminator) > 1 else b""
        return data

    def end_data_mode(self, now: float, timeout: float = DATAMODE_EXIT_TIMEOUT) -> bytes:
        """Leave terminated (SLM) data mode; returns the terminator. ``#XDATAMODE:`` ends the wait."""
        self._check_alive()
        mode = self._command.data_mode if self._command is not None else None
        if self.state is not State.DATA_MODE or not isinstance(mode, TerminatedData):
            self._misuse(f"end_data_mode in state {self.state.value} without terminated data mode")
        assert isinstance(mode, TerminatedData)
        if not terminator_safe(self._tail, mode.terminator):
            raise DialectError(
                f"the data sent ends with the start of the terminator {mode.terminator!r}; the "
                "modem would leave data mode early and drop the last bytes",
            )
        self._step(Step.SEND_TERMINATOR)
        self._tail = b""
        self._deadline = now + timeout
        return mode.terminator

    def abandon(self) -> bool:
        """The caller stopped waiting for the command in flight (an interrupt broke the wait).

        Awaiting a final result: it is owed, as after a timeout, so it cannot be taken for the next
        command's answer. In data mode (or leaving it): the session returns to idle and True is
        returned, meaning the modem may still be in data mode and the caller must take it out
        (finish a counted send, send the terminator) before the next command. Idle: nothing to do.
        """
        self._check_alive()
        if self.state is State.CLOSED:
            return False
        in_data = self.state in (State.DATA_MODE, State.LEAVING_DATA)
        if self.state is State.AWAITING:
            self._stale = 0 if (self._stale or self._absorbed) else 1
        self._step(Step.ABANDON)
        self._command = None
        self._deadline = None
        self._remaining = 0
        self._tail = b""
        return in_data

    def forget_owed(self) -> None:
        """The caller knows timed-out commands will never be answered (e.g. they went into a data
        mode as payload): stop treating the next final result as theirs."""
        self._check_alive()
        self._stale = 0

    # --- time -----------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        return self._deadline if self.state in (State.AWAITING, State.LEAVING_DATA) else None

    def handle_timer(self, now: float) -> None:
        """Past the deadline, give up on the command in flight with a :class:`Timeout` event.

        A late final result for it will then surface as a :class:`Urc`.
        """
        self._check_alive()
        deadline = self.next_deadline()
        if deadline is None or now < deadline or self._command is None:
            return
        self._events.append(Timeout(self._command.text, deadline))
        if self.state is State.AWAITING:
            # Normally this command's answer is now owed (late). But if an answer was taken as an
            # earlier command's late one during this command, or one is still owed, the earlier
            # answer was lost and we probably ate this one: owe nothing. Otherwise a modem that
            # dropped one command would make every later answer look late, forever.
            self._stale = 0 if (self._stale or self._absorbed) else 1
        self._step(Step.TIMEOUT)
        self._command = None
        self._deadline = None

    # --- modem → host ---------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the modem; ``b""`` means the link closed."""
        self._check_alive()
        if self._eof:
            if data:
                self._misuse("data after end of stream")
            return
        if not data:
            self._eof = True
            return
        try:
            self._buf.feed(data)
        except AtProtocolError:
            self.state = State.DEAD
            self._death = "receive buffer overflow"
            raise

    def next_event(self) -> Event | None:
        """The next event, or None when more bytes are needed."""
        self._check_alive()
        while not self._events:
            try:
                progressed = self._parse_one()
            except AtProtocolError as exc:
                self.state = State.DEAD
                self._death = exc.message
                raise
            if not progressed:
                if self._eof and not self._eof_reported:
                    self._eof_reported = True
                    unparsed = len(self._buf)
                    self._buf.take(unparsed)
                    if self.state is not State.CLOSED:
                        self._step(Step.EOF)
                    self._command = None
                    self._deadline = None
                    return EndOfStream(unparsed)
                return None
        return self._events.popleft()

    # --- parsing --------------------------------------------------------------------------------

    def _parse_one(self) -> bool:
        if self._count is not None:
            payload = self._count.read(self._buf)
            if payload is None:
                return False
            assert self._header is not None
            header, handle, pushed = self._header
            self._count = None
            self._header = None
            self._events.append(RawData(header, payload, handle, pushed))
            return True
        raw = self._lines.read(self._buf)
        if raw is None:
            return False
        if self._quoted is not None:
            raw = self._quoted + b"\n" + raw
            self._quoted = None
            if len(raw) > QUOTED_VALUE_MAX:
                raise AtProtocolError(
                    f"quoted value longer than {QUOTED_VALUE_MAX} bytes", data=raw[:64]
                )
        elif not raw:
            return True  # the CR LF that opens every response
        self._classify(raw)
        return True

    def _classify(self, raw: bytes) -> None:
        line = raw.decode("latin-1")  # ASCII in practice; latin-1 never fails on garbage
        cmd = self._command if self.state is State.AWAITING else None
        if self._stale and not line.startswith("#XRECV:"):
            # Lines before the late final result are the timed-out command's reply (or URCs).
            if _final_result(line, "") is not None:
                self._stale -= 1
                self._absorbed = cmd is not None
            self._events.append(Urc(line))
            return
        if cmd is not None:
            final = _final_result(line, cmd.text)
            if final is not None and cmd.requires_info and not self._info_seen:
                # The modem answers in order and this command's reply always carries an info line:
                # a bare final result before it belongs to an earlier command (a killed host's).
                self._absorbed = True
                self._events.append(Urc(line))
                return
            if final is not None:
                if isinstance(final, Ok) and cmd.data_mode is not None:
                    self._step(Step.ENTER_DATA)
                    self._deadline = None
                    if isinstance(cmd.data_mode, LengthData):
                        self._remaining = cmd.data_mode.length
                        if self._remaining == 0:
                            self._step(Step.DATA_DONE)
                            self._command = None
                    self._tail = b""
                else:
                    self._step(Step.FINAL)
                    self._command = None
                    self._deadline = None
                self._events.append(final)
                return
        if line.startswith("#XRECV:"):
            pushed = not (cmd is not None and "#XRECV:" in cmd.expect)
            self._info_seen = self._info_seen or not pushed
            self._start_count(line, pushed=pushed)
            return
        if cmd is not None and _belongs(line, cmd):
            self._info_seen = True
            if line.count('"') % 2 == 1:
                # A quoted value with line breaks inside (PEM from %CMNG read): keep reading.
                self._quoted = raw
                return
            self._events.append(InfoLine(cmd.text, line))
            return
        if self.state is State.LEAVING_DATA and line.startswith("#XDATAMODE:"):
            status = _int_or_none(line.split(":", 1)[1].strip())
            self._step(Step.DATAMODE_URC)
            self._command = None
            self._deadline = None
            self._events.append(Urc(line))
            self._events.append(DataModeExited(status if status is not None else -1))
            return
        self._events.append(Urc(line))

    def _start_count(self, line: str, *, pushed: bool) -> None:
        fields = [f.strip() for f in line.split(":", 1)[1].split(",")]
        handle: int | None = None
        if len(fields) == 1:  # legacy SLM: #XRECV: <n>
            n = _int_or_none(fields[0])
        elif len(fields) == 3:  # SM: #XRECV: <h>,<mode>,<n>
            handle, mode, n = (_int_or_none(f) for f in fields)
            if mode != 0:
                raise AtProtocolError(
                    f"#XRECV in mode {mode}: only binary mode 0 is supported", data=line.encode("latin-1")
                )
        else:
            raise AtProtocolError("malformed #XRECV header", data=line.encode("latin-1")[:64])
        if n is None or (handle is None and len(fields) == 3):
            raise AtProtocolError("malformed #XRECV header", data=line.encode("latin-1")[:64])
        self._count = CountReader(n)
        self._header = (line, handle, pushed)


def _belongs(line: str, cmd: Command) -> bool:
    if any(line.startswith(prefix) for prefix in cmd.expect):
        return True
    return cmd.bare and line[:1] not in ("+", "%", "#") and line not in _BANNERS


def _int_or_none(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _final_result(line: str, command: str) -> Ok | Error | CmeError | CmsError | None:
    if line == "OK":
        return Ok(command)
    if line == "ERROR":
        return Error(command)
    for prefix, cls in (("+CME ERROR:", CmeError), ("+CMS ERROR:", CmsError)):
        if line.startswith(prefix):
            text = line[len(prefix) :].strip()
            return cls(command, _int_or_none(text), text)
    return None
