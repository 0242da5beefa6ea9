"""The I/O shell around :class:`nrfprov.at.AtSession`: one serial port, one reader thread.

The reader thread is the only code that reads the port. It feeds the session and dispatches every
event under one ``Condition``: replies go to the command in flight, URCs (and SM pushed receive
data) to registered handlers. Callers wait on that condition with a timeout; nothing sleeps to poll.
A lock keeps one command in flight across threads (the session enforces it too, and dies if not).

Interrupts: each command exchange is an ``nrfprov.interrupts.critical`` section, so SIGINT, SIGTERM
and SIGHUP are held until its final result is in. An exception that still breaks a wait (Python's own
``KeyboardInterrupt`` in a program that did not install nrfprov's handlers) abandons the command:
its answer is owed, like a timed-out one's, and if the modem was in data mode, the next command
first takes it out (:meth:`AtChannel.leave_data_mode`). Either way the next command gets its own answer.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nrfprov.at import (
    AtSession,
    CmeError,
    CmsError,
    Command,
    DataModeExited,
    EndOfStream,
    Error,
    Event,
    InfoLine,
    Ok,
    RawData,
    State,
    TerminatedData,
    Timeout,
    Urc,
)
from nrfprov.at.limits import DATAMODE_SEND_MAX, READ_CHUNK
from nrfprov.errors import AtProtocolError, CommandError, CommandTimeout, ModemLinkError
from nrfprov.interrupts import critical

log = logging.getLogger(__name__)

UrcHandler = Callable[[Urc | RawData], None]

# Without cancel_read (socket://), the reader wakes this often to notice close(); it is a blocking
# read with a timeout, not a sleep.
_READ_TIMEOUT_NO_CANCEL = 0.5

#: Filler that completes a length-delimited send the modem is still counting (Serial Modem
#: ``AT#XSEND=<h>,2,<flags>,<len>`` takes exactly <len> bytes, any bytes, and scans for no terminator
#: [ncs-serial-modem sm_at_host.c raw_rx_handler]). CR is the one byte harmless in AT-command mode
#: too: the AT host buffers nothing before the "AT" of a command, so surplus CRs are dropped
#: [sm_at_host.c cmd_rx_handler].
DATAMODE_FILLER = b"\r"
#: Quiet time around the data-mode terminator: the SLM of NCS 1.x required
#: CONFIG_SLM_DATAMODE_SILENCE (default 1 s) of UART silence before and after it [sdk-nrf
#: serial_lte_modem doc, slm_data_mode.rst]; later SLM and the Serial Modem match it anywhere. The
#: wait ends early when the modem reports leaving data mode.
DATAMODE_GUARD_S = 1.0


@dataclass
class Reply:
    """What one command got back: its info lines, its counted data, and the final result."""

    command: Command
    lines: list[str] = field(default_factory=list)
    data: list[RawData] = field(default_factory=list)
    final: Ok | Error | CmeError | CmsError | Timeout | None = None


class AtChannel:
    """Runs AT commands over an open pyserial port (any ``serial_for_url`` object)."""

    def __init__(self, port: Any, *, name: str = "modem") -> None:
        self._port = port
        self._name = name
        self._session = AtSession()
        self._cond = threading.Condition()
        self._cmd_lock = threading.RLock()  # re-entrant: a command may first leave an abandoned data mode
        self._reply: Reply | None = None
        self._handlers: list[UrcHandler] = []
        self._failure: BaseException | None = None
        self._closing = False
        self.bytes_sent = 0
        self.bytes_received = 0
        #: Data-mode terminators to try when leaving a data mode we did not start (Modem sets them).
        self.datamode_terminators: tuple[bytes, ...] = (b"+++",)
        self.datamode_exits = 0  # #XDATAMODE: URCs seen (and stray OKs while leaving a data mode)
        self._leaving = False
        self._dirty_data_mode = False  # an abandoned data-mode send: leave data mode before the next command
        self._cancellable = hasattr(port, "cancel_read")
        port.timeout = None if self._cancellable else _READ_TIMEOUT_NO_CANCEL
        self._thread = threading.Thread(target=self._reader, name=f"nrfprov-at-{name}", daemon=True)
        self._thread.start()

    # --- public ---------------------------------------------------------------------------------

    @property
    def condition(self) -> threading.Condition:
        """Held while URC handlers run; wait on it (``wait_for``) for URC-driven state."""
        return self._cond

    def add_urc_handler(self, handler: UrcHandler) -> None:
        """``handler`` runs in the reader thread with the condition held: keep it short."""
        with self._cond:
            self._handlers.append(handler)

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Wait until ``predicate()`` (checked under the condition) or ``timeout``; raise if the
        link died meanwhile."""
        with self._cond:
            ok = self._cond.wait_for(lambda: predicate() or self._failure is not None, timeout)
            if predicate():
                return True
            self._raise_if_failed()
            return ok

    def execute(self, command: Command, *, check: bool = True) -> Reply:
        """Send ``command`` and wait for its final result (``command.timeout``)."""
        with self._cmd_lock, critical():
            reply = self._start(command)
            self._guarded_await(reply)
        if check:
            raise_for(reply)
        return reply

    def execute_with_data(self, command: Command, payload: bytes) -> Reply:
        """A data-mode send: the command, its ``OK``, then ``payload`` raw; for terminated (SLM)
        data mode also the terminator and the wait for ``#XDATAMODE:``."""
        with self._cmd_lock, critical():
            reply = self._start(command)
            self._guarded_await(reply)
            raise_for(reply)
            try:
                with self._cond:
                    out = self._session.send_data(payload) if payload else b""
                self._write(out)
                if isinstance(command.data_mode, TerminatedData):
                    exit_reply = Reply(command)
                    with self._cond:
                        self._reply = exit_reply
                        out = self._session.end_data_mode(time.monotonic())
                    self._write(out)
                    self._guarded_await(exit_reply)
                    if isinstance(exit_reply.final, Timeout):
                        raise CommandTimeout(command.text + " (leaving data mode)", command.timeout)
            except BaseException:
                self._abandon(reply)
                raise
        return reply

    def write_raw(self, data: bytes, *, forget_owed: bool = False) -> None:
        """Bytes outside the AT grammar (an empty line to flush the modem's line buffer, a data-mode
        terminator). ``forget_owed``: commands that timed out before will never be answered."""
        with self._cmd_lock, critical():
            if forget_owed:
                with self._cond:
                    self._session.forget_owed()
            self._write(data)

    def leave_data_mode(self, guard: float = DATAMODE_GUARD_S) -> bool:
        """Take the modem out of a data mode that nobody on this side started (a host program killed
        mid-send): first filler to complete a length-delimited send (Serial Modem), then, if the
        modem did not report leaving, each terminator alone between quiet gaps (open-ended Serial
        Modem send, legacy SLM). Harmless in AT-command mode. True if the modem reported leaving.

        Answers still owed to timed-out commands are forgotten: they went into the data mode as payload.
        """
        with self._cmd_lock, critical():
            with self._cond:
                self._session.forget_owed()
                self._dirty_data_mode = False
                self._leaving = True
                seen = self.datamode_exits
            try:
                self._write(DATAMODE_FILLER * DATAMODE_SEND_MAX)
                if self.wait_for(lambda: self.datamode_exits > seen, guard):
                    return True
                for terminator in self.datamode_terminators:
                    self._write(terminator)
                    if self.wait_for(lambda: self.datamode_exits > seen, guard):
                        return True
                return False
            finally:
                with self._cond:
                    self._leaving = False

    def close(self) -> None:
        with self._cond:
            self._closing = True
        if self._cancellable:
            try:
                self._port.cancel_read()
            except Exception as exc:
                log.debug("cancel_read: %s", exc)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5.0)
        try:
            self._port.close()  # only after the reader stopped (pty fd reuse, measured on this project's loopback)
        except Exception as exc:
            log.debug("close: %s", exc)

    # --- command plumbing -------------------------------------------------------------------------

    def _start(self, command: Command) -> Reply:
        if self._dirty_data_mode:
            log.warning("a send was interrupted in data mode: taking the modem out of it")
            self.leave_data_mode()
        reply = Reply(command)
        with self._cond:
            self._raise_if_failed()
            self._reply = reply
            try:
                out = self._session.send(command, time.monotonic())
            except AtProtocolError as exc:
                self._reply = None
                raise ModemLinkError(f"AT session broken: {exc}") from exc
        log.debug("→ %s", _shown(command.text))
        self._write(out)
        return reply

    def _guarded_await(self, reply: Reply) -> None:
        try:
            self._await(reply)
        except BaseException:
            self._abandon(reply)
            raise

    def _abandon(self, reply: Reply) -> None:
        """An exception broke the wait for ``reply`` (or a data-mode send): keep the session in step."""
        with self._cond:
            if self._reply is reply:
                self._reply = None
            if self._session.state in (State.AWAITING, State.DATA_MODE, State.LEAVING_DATA):
                if self._session.abandon():
                    self._dirty_data_mode = True

    def _await(self, reply: Reply) -> None:
        with self._cond:
            while reply.final is None:
                self._raise_if_failed()
                deadline = self._session.next_deadline()
                if deadline is None:
                    break  # SM length send: the session left data mode by itself
                now = time.monotonic()
                if now >= deadline:
                    self._session.handle_timer(now)
                    self._drain()
                    continue
                self._cond.wait(deadline - now)
            if self._reply is reply:
                self._reply = None
        if isinstance(reply.final, Timeout):
            raise CommandTimeout(reply.command.text, reply.command.timeout)

    def _write(self, data: bytes) -> None:
        if not data:
            return
        try:
            self._port.write(data)
            self._drain_output()
        except Exception as exc:  # pyserial raises SerialException/OSError/SerialTimeoutException
            self._fail(ModemLinkError(f"cannot write to {self._name}: {exc}"))
            raise ModemLinkError(f"cannot write to {self._name}: {exc}") from exc
        with self._cond:
            self.bytes_sent += len(data)

    def _drain_output(self) -> None:
        """``flush()``: wait until the bytes left the UART. On POSIX that is ``tcdrain``, which a signal
        interrupts with EINTR and Python's termios does not retry (PEP 475 covers ``os``, not
        ``termios``), so a Ctrl-C held during an AT exchange would otherwise kill the link."""
        while True:
            try:
                self._port.flush()
                return
            except Exception as exc:  # termios.error on POSIX (not an OSError), OSError elsewhere
                if _errno_of(exc) != errno.EINTR:
                    raise

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            if isinstance(self._failure, ModemLinkError):
                raise ModemLinkError(str(self._failure)) from self._failure
            raise ModemLinkError(f"{self._name} link failed: {self._failure}") from self._failure

    def _fail(self, exc: BaseException) -> None:
        with self._cond:
            if self._failure is None:
                self._failure = exc
            self._cond.notify_all()

    # --- reader thread ----------------------------------------------------------------------------

    def _reader(self) -> None:
        while True:
            try:
                data = self._port.read(1)
                waiting = self._port.in_waiting if data else 0
                if waiting:
                    data += self._port.read(min(waiting, READ_CHUNK - 1))
            except Exception as exc:
                if self._closing:
                    return
                self._fail(ModemLinkError(f"{self._name} link lost: {exc}", hint="is the device still "
                                          "connected, and no other program using the port?"))
                return
            with self._cond:
                if self._closing:
                    self._cond.notify_all()
                    return
                if not data:
                    continue
                self.bytes_received += len(data)
                try:
                    self._session.receive_data(data)
                    self._drain()
                except AtProtocolError as exc:
                    self._failure = exc
                    self._cond.notify_all()
                    return

    def _drain(self) -> None:
        """Dispatch every pending event; called with the condition held."""
        while True:
            ev: Event | None = self._session.next_event()
            if ev is None:
                break
            self._dispatch(ev)
        self._cond.notify_all()

    def _dispatch(self, ev: Event) -> None:
        reply = self._reply
        if isinstance(ev, InfoLine) and reply is not None:
            reply.lines.append(ev.line)
        elif isinstance(ev, RawData) and not ev.pushed and reply is not None:
            reply.data.append(ev)
        elif isinstance(ev, Ok | Error | CmeError | CmsError | Timeout) and reply is not None:
            log.debug("← %s", type(ev).__name__)
            reply.final = ev
        elif isinstance(ev, DataModeExited) and reply is not None:
            reply.final = Ok(reply.command.text) if ev.status == 0 else Error(reply.command.text)
        elif isinstance(ev, EndOfStream):
            self._failure = ModemLinkError(f"{self._name} closed the link")
        elif isinstance(ev, Urc | RawData):
            if isinstance(ev, Urc):
                log.debug("URC %s", ev.line)
                if ev.line.startswith("#XDATAMODE:") or (self._leaving and ev.line in ("OK", "ERROR")):
                    # Serial Modem and SLM ≥ 2.x report leaving data mode with #XDATAMODE; the SLM of
                    # NCS 1.x answered the terminator with OK (or ERROR after a failed send).
                    self.datamode_exits += 1
            for handler in self._handlers:
                try:
                    handler(ev)
                except Exception:  # a handler bug must not kill the reader
                    log.exception("URC handler failed on %r", ev)


def _errno_of(exc: BaseException) -> int | None:
    code = getattr(exc, "errno", None)
    if code is None and exc.args and isinstance(exc.args[0], int):
        code = exc.args[0]  # termios.error carries (errno, text) as its args
    return code if isinstance(code, int) else None


def raise_for(reply: Reply) -> None:
    """Raise :class:`CommandError` for an error final result."""
    final = reply.final
    if isinstance(final, Error):
        raise CommandError(reply.command.text, "ERROR")
    if isinstance(final, CmeError):
        raise CommandError(reply.command.text, "CME", final.code)
    if isinstance(final, CmsError):
        raise CommandError(reply.command.text, "CMS", final.code)


def _shown(text: str) -> str:
    from nrfprov.errors import _redact_command

    return _redact_command(text)
