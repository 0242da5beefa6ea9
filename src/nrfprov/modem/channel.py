"""The I/O shell around :class:`nrfprov.at.AtSession`: one serial port, one reader thread.

The reader thread is the only code that reads the port. It feeds the session and dispatches every
event under one ``Condition``: replies go to the command in flight, URCs (and SM pushed receive
data) to registered handlers. Callers wait on that condition with a timeout; nothing sleeps to poll.
A lock keeps one command in flight across threads (the session enforces it too, and dies if not).
"""

from __future__ import annotations

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
    TerminatedData,
    Timeout,
    Urc,
)
from nrfprov.at.limits import READ_CHUNK
from nrfprov.errors import AtProtocolError, CommandError, CommandTimeout, ModemLinkError

log = logging.getLogger(__name__)

UrcHandler = Callable[[Urc | RawData], None]

# Without cancel_read (socket://), the reader wakes this often to notice close(); it is a blocking
# read with a timeout, not a sleep.
_READ_TIMEOUT_NO_CANCEL = 0.5


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
        self._cmd_lock = threading.Lock()
        self._reply: Reply | None = None
        self._handlers: list[UrcHandler] = []
        self._failure: BaseException | None = None
        self._closing = False
        self.bytes_sent = 0
        self.bytes_received = 0
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
        with self._cmd_lock:
            reply = self._start(command)
            self._await(reply)
        if check:
            raise_for(reply)
        return reply

    def execute_with_data(self, command: Command, payload: bytes) -> Reply:
        """A data-mode send: the command, its ``OK``, then ``payload`` raw; for terminated (SLM)
        data mode also the terminator and the wait for ``#XDATAMODE:``."""
        with self._cmd_lock:
            reply = self._start(command)
            self._await(reply)
            raise_for(reply)
            with self._cond:
                out = self._session.send_data(payload) if payload else b""
            self._write(out)
            if isinstance(command.data_mode, TerminatedData):
                exit_reply = Reply(command)
                with self._cond:
                    self._reply = exit_reply
                    out = self._session.end_data_mode(time.monotonic())
                self._write(out)
                self._await(exit_reply)
                if isinstance(exit_reply.final, Timeout):
                    raise CommandTimeout(command.text + " (leaving data mode)", command.timeout)
        return reply

    def write_raw(self, data: bytes, *, forget_owed: bool = False) -> None:
        """Bytes outside the AT grammar (an empty line to flush the modem's line buffer, a data-mode
        terminator). ``forget_owed``: commands that timed out before will never be answered."""
        with self._cmd_lock:
            if forget_owed:
                with self._cond:
                    self._session.forget_owed()
            self._write(data)

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
            self._port.flush()
        except Exception as exc:  # pyserial raises SerialException/OSError/SerialTimeoutException
            self._fail(ModemLinkError(f"cannot write to {self._name}: {exc}"))
            raise ModemLinkError(f"cannot write to {self._name}: {exc}") from exc
        with self._cond:
            self.bytes_sent += len(data)

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
            for handler in self._handlers:
                try:
                    handler(ev)
                except Exception:  # a handler bug must not kill the reader
                    log.exception("URC handler failed on %r", ev)


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
