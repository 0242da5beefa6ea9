"""The sync probe and abandoned commands: answers owed to earlier commands are never taken for ours."""

from __future__ import annotations

import pytest

from nrfprov.at import AtSession, Event, InfoLine, LengthData, Ok, State, TerminatedData, Urc, command
from nrfprov.at.commands import cmee_read

PROBE = cmee_read()


def _feed(s: AtSession, data: bytes, bytewise: bool) -> list[Event]:
    out: list[Event] = []
    for chunk in ([data[i:i + 1] for i in range(len(data))] if bytewise else [data]):
        s.receive_data(chunk)
        while (ev := s.next_event()) is not None:
            out.append(ev)
    return out


@pytest.mark.parametrize("bytewise", [False, True])
@pytest.mark.parametrize("stale", [b"\r\nOK\r\n", b"\r\nERROR\r\n", b"\r\n+CME ERROR: 518\r\n",
                                   b"\r\n+CFUN: 4\r\n\r\nOK\r\n", b"\r\nOK\r\n\r\nOK\r\n\r\nOK\r\n"])
def test_bare_finals_before_the_probe_line_are_owed_to_earlier_commands(stale: bytes, bytewise: bool) -> None:
    s = AtSession()
    s.send(PROBE, 0.0)
    events = _feed(s, stale + b"\r\n+CMEE: 1\r\n\r\nOK\r\n", bytewise)
    assert events[-2:] == [InfoLine("AT+CMEE?", "+CMEE: 1"), Ok("AT+CMEE?")]
    assert all(isinstance(e, Urc) for e in events[:-2]) and len(events) > 2
    assert s.state is State.IDLE
    # in step afterwards: the next command gets its own answer
    s.send(command("AT+CFUN?"), 1.0)
    assert _feed(s, b"\r\n+CFUN: 1\r\n\r\nOK\r\n", bytewise) == [InfoLine("AT+CFUN?", "+CFUN: 1"), Ok("AT+CFUN?")]


def test_a_plain_command_still_takes_a_bare_ok() -> None:
    s = AtSession()
    s.send(command("AT+CMEE?"), 0.0)  # the same text, but not the probe: OK alone answers it
    assert _feed(s, b"\r\nOK\r\n", False) == [Ok("AT+CMEE?")]


def test_an_abandoned_command_owes_its_answer() -> None:
    s = AtSession()
    s.send(command("AT+CFUN=4"), 0.0)
    assert s.abandon() is False and s.state is State.IDLE
    s.send(command("AT+CFUN?"), 1.0)
    # the late OK of AT+CFUN=4 comes first and is not ours
    events = _feed(s, b"\r\nOK\r\n\r\n+CFUN: 4\r\n\r\nOK\r\n", False)
    assert events == [Urc("OK"), InfoLine("AT+CFUN?", "+CFUN: 4"), Ok("AT+CFUN?")]


@pytest.mark.parametrize("mode", [LengthData(100), TerminatedData(b"+++")])
def test_abandoning_a_data_mode_send_tells_the_caller_to_leave_data_mode(mode: LengthData | TerminatedData) -> None:
    s = AtSession()
    s.send(command("AT#XSEND", data_mode=mode), 0.0)
    _feed(s, b"\r\nOK\r\n", False)
    assert s.state is State.DATA_MODE
    s.send_data(b"abc")
    assert s.abandon() is True and s.state is State.IDLE and s.command is None
    assert s.abandon() is False  # idle: nothing to do
    s.send(command("AT"), 1.0)  # usable again at once
    assert _feed(s, b"\r\nOK\r\n", False) == [Ok("AT")]
