"""atheris (libFuzzer) harness for the sans-IO AT core: arbitrary modem bytes, random commands in flight.

    python tests/unit/at/fuzz_at.py CORPUS_DIR -dict=tests/unit/at/at.dict -runs=1000000

Each input is decoded into a program: feed these bytes, send this command (plain, bare-answer,
``requires_info``, counted ``#XRECV``, length-delimited or terminated data mode), let time pass,
send data-mode payload, leave data mode, abandon the command, forget owed answers, end the stream.
Operations the session's state does not allow are mostly skipped, sometimes done on purpose.

The program runs twice: modem bytes as given, and in chunks of 1 to 5 bytes. The harness fails (a libFuzzer
crash report and a crash-* file) when:
  * anything but an event comes out of ``next_event`` or anything but nrfprov's own errors
    (``NrfprovError``: AtProtocolError, LocalProtocolError, DialectError, PayloadError) escapes;
  * the two runs disagree (events, or where and with which error class they stopped);
  * the receive buffer holds more than its limit, or a dead session accepts another call.
"""

from __future__ import annotations

import sys
from typing import Any

import atheris

with atheris.instrument_imports(include=["nrfprov.at"]):
    from nrfprov.at import (
        AtSession,
        CmeError,
        CmsError,
        DataModeExited,
        EndOfStream,
        Error,
        InfoLine,
        LengthData,
        Ok,
        RawData,
        State,
        TerminatedData,
        Timeout,
        Urc,
        command,
    )
    from nrfprov.at.commands import cmee_read
    from nrfprov.at.limits import BUFFER_MAX, READ_CHUNK
    from nrfprov.errors import LocalProtocolError, NrfprovError

EVENTS = (Ok, Error, CmeError, CmsError, InfoLine, Urc, RawData, Timeout, DataModeExited, EndOfStream)

COMMANDS = [
    command("AT"),
    command("AT+CFUN?"),
    command("AT+CGSN"),  # answers with a bare line
    command("AT%CMNG=1"),  # quoted, multi-line values
    cmee_read(),  # requires_info: bare finals before its line are owed to earlier commands
    command("AT#XRECV=0,0,64,0,2048", expect=("#XRECV:",)),
    command("AT#XRECV=1", expect=("#XRECV:",)),
    command("AT#XSEND=0,2,0,16", data_mode=LengthData(16)),
    command("AT#XSEND=0,2,0,0", data_mode=LengthData(0)),
    command("AT#XSEND", data_mode=TerminatedData(b"+++")),
    command("AT#XSEND", data_mode=TerminatedData(b"nrfprov-term-4b1d")),
]


def _program(data: bytes) -> list[tuple[Any, ...]]:
    fdp = atheris.FuzzedDataProvider(data)
    ops: list[tuple[Any, ...]] = []
    while fdp.remaining_bytes() and len(ops) < 64:
        op = fdp.ConsumeIntInRange(0, 15)
        if op <= 7:
            ops.append(("feed", fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 300))))
        elif op <= 9:
            ops.append(("send", fdp.ConsumeIntInRange(0, len(COMMANDS) - 1), fdp.ConsumeBool()))
        elif op == 10:
            ops.append(("time", fdp.ConsumeIntInRange(0, 40) / 4))
        elif op == 11:
            ops.append(("data", fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 24)), fdp.ConsumeBool()))
        elif op == 12:
            ops.append(("end_data", fdp.ConsumeBool()))
        elif op == 13:
            ops.append(("abandon",))
        elif op == 14:
            ops.append(("forget",))
        else:
            ops.append(("eof",))
    return ops


def _drain(s: AtSession, out: list[Any]) -> None:
    while True:
        ev = s.next_event()
        if ev is None:
            return
        if not isinstance(ev, EVENTS):
            raise AssertionError(f"next_event returned {ev!r}, not an event")
        out.append(ev)


def _run(ops: list[tuple[Any, ...]], step: int) -> list[Any]:
    """Execute the program, modem bytes fed ``step`` at a time (0: as given); the transcript of events
    and the error (class) that stopped it."""
    s = AtSession()
    now = 0.0
    out: list[Any] = []
    ended = False
    try:
        for op in ops:
            kind = op[0]
            if kind == "feed":
                if ended or not op[1]:  # b"" would mean end of stream: that is the "eof" operation
                    continue
                size = step or len(op[1])
                for chunk in (op[1][i:i + size] for i in range(0, len(op[1]), size)):
                    s.receive_data(chunk[:READ_CHUNK])
                    _drain(s, out)
                    if len(s._buf) > BUFFER_MAX:
                        raise AssertionError(f"receive buffer holds {len(s._buf)} bytes")
            elif kind == "send":
                _, idx, force = op
                if s.state is State.IDLE or force:
                    out.append(("sent", s.send(COMMANDS[idx], now)))
            elif kind == "time":
                now += op[1]
                s.handle_timer(now)
                _drain(s, out)
            elif kind == "data":
                _, payload, force = op
                if s.state is State.DATA_MODE or force:
                    out.append(("wrote", s.send_data(payload)))
            elif kind == "end_data":
                cmd = s.command
                if (s.state is State.DATA_MODE and cmd is not None and isinstance(cmd.data_mode, TerminatedData)) \
                        or op[1]:
                    out.append(("wrote", s.end_data_mode(now, timeout=5.0)))
            elif kind == "abandon":
                out.append(("abandoned", s.abandon()))
            elif kind == "forget":
                s.forget_owed()
            elif kind == "eof":
                s.receive_data(b"")
                ended = True
                _drain(s, out)
        if ended:
            s.receive_data(b"")  # EOF twice is fine
    except NrfprovError as exc:
        out.append(("stopped", type(exc).__name__))
        # A session that died stays dead: every further call raises our own error.
        try:
            s.next_event()
            if s.state is State.DEAD:
                raise AssertionError("a dead session answered next_event")
        except NrfprovError:
            pass
        return out
    if s.state is State.DEAD:
        raise AssertionError("the session is dead without having raised")
    return out


def test_one_input(data: bytes) -> None:
    ops = _program(data)
    whole = _run(ops, step=0)
    step = 1 + (data[-1] % 5 if data else 0)  # byte by byte in a fifth of the inputs, small chunks otherwise
    split = _run(ops, step=step)
    if whole != split:
        raise AssertionError(f"whole and {step}-byte feeding disagree:\n{whole!r}\n{split!r}")


def main() -> None:
    assert issubclass(LocalProtocolError, NrfprovError)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
