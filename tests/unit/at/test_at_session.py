"""The AT session, fed whole, byte by byte, with trailing bytes, and with garbage."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nrfprov.at import (
    AtSession,
    CmeError,
    CmsError,
    DataModeExited,
    EndOfStream,
    Error,
    Event,
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
from nrfprov.at.limits import RECV_MAX, RESPONSE_LINE_MAX
from nrfprov.errors import AtProtocolError, DialectError, LocalProtocolError


def drain(s: AtSession) -> list[Event]:
    out: list[Event] = []
    while (ev := s.next_event()) is not None:
        out.append(ev)
    return out


def whole(s: AtSession, data: bytes) -> list[Event]:
    s.receive_data(data)
    return drain(s)


def bytewise(s: AtSession, data: bytes) -> list[Event]:
    out: list[Event] = []
    for i in range(len(data)):
        s.receive_data(data[i : i + 1])
        out += drain(s)
    return out


def halves(s: AtSession, data: bytes) -> list[Event]:
    out: list[Event] = []
    for part in (data[: len(data) // 2], data[len(data) // 2 :]):
        if not part:
            continue  # b"" is end of stream, not an empty read
        s.receive_data(part)
        out += drain(s)
    return out


FEEDERS: list[Callable[[AtSession, bytes], list[Event]]] = [whole, bytewise, halves]
feeders = pytest.mark.parametrize("feed", FEEDERS, ids=["whole", "bytewise", "halves"])


def started(text: str, **kw: object) -> AtSession:
    s = AtSession()
    out = s.send(command(text, **kw), now=0.0)  # type: ignore[arg-type]
    assert out == text.encode() + b"\r\n"
    return s


@feeders
def test_info_line_then_ok(feed: Callable[[AtSession, bytes], list[Event]]) -> None:
    s = started("AT+CFUN?")
    assert feed(s, b"\r\n+CFUN: 4\r\n\r\nOK\r\n") == [InfoLine("AT+CFUN?", "+CFUN: 4"), Ok("AT+CFUN?")]
    assert s.state is State.IDLE


@feeders
def test_urc_before_final_and_after_is_urc(feed: Callable[[AtSession, bytes], list[Event]]) -> None:
    s = started("AT+CFUN=1")
    data = b"\r\n+CEREG: 2,\"0001\",\"01A2\",7\r\n\r\nOK\r\n\r\n+CEREG: 1,\"0001\",\"01A2\",7\r\n"
    assert feed(s, data) == [
        Urc('+CEREG: 2,"0001","01A2",7'),
        Ok("AT+CFUN=1"),
        Urc('+CEREG: 1,"0001","01A2",7'),
    ]


@feeders
def test_same_prefix_is_reply_only_when_expected(feed: Callable[[AtSession, bytes], list[Event]]) -> None:
    s = started("AT+CEREG?")
    assert feed(s, b"\r\n+CEREG: 5,1,\"0001\",\"01A2\",7\r\n\r\nOK\r\n") == [
        InfoLine("AT+CEREG?", '+CEREG: 5,1,"0001","01A2",7'),
        Ok("AT+CEREG?"),
    ]


@feeders
def test_trailing_bytes_stay_buffered(feed: Callable[[AtSession, bytes], list[Event]]) -> None:
    s = started("AT+CGSN")
    events = feed(s, b"\r\n352656100123456\r\n\r\nOK\r\n\r\n#XAPOL")
    assert events == [InfoLine("AT+CGSN", "352656100123456"), Ok("AT+CGSN")]
    assert whole(s, b"L: 0,1\r\n") == [Urc("#XAPOLL: 0,1")]


def test_bare_reply_excludes_banners_and_prefixed_lines() -> None:
    s = started("AT+CGMR")
    events = whole(s, b"\r\nReady\r\n\r\n%CESQ: 1\r\n\r\nmfw_nrf9160_1.3.5\r\n\r\nOK\r\n")
    assert events == [Urc("Ready"), Urc("%CESQ: 1"), InfoLine("AT+CGMR", "mfw_nrf9160_1.3.5"), Ok("AT+CGMR")]


@feeders
def test_error_forms(feed: Callable[[AtSession, bytes], list[Event]]) -> None:
    for data, expected in [
        (b"\r\nERROR\r\n", Error("AT%CMNG=3,1,0")),
        (b"\r\n+CME ERROR: 513\r\n", CmeError("AT%CMNG=3,1,0", 513, "513")),
        (b"\r\n+CMS ERROR: 500\r\n", CmsError("AT%CMNG=3,1,0", 500, "500")),
        (b"\r\n+CME ERROR: not allowed\r\n", CmeError("AT%CMNG=3,1,0", None, "not allowed")),
    ]:
        s = started("AT%CMNG=3,1,0")
        assert feed(s, data) == [expected]


def test_final_result_when_idle_is_a_urc() -> None:
    s = AtSession()
    assert whole(s, b"\r\nOK\r\n\r\nERROR\r\n") == [Urc("OK"), Urc("ERROR")]


RECV_SM = b"\r\n#XRECV: 0,0,12\r\nOK\r\n\r\nAB\n#X\r\r\nOK\r\n"


@feeders
def test_sm_recv_is_read_by_count(feed: Callable[[AtSession, bytes], list[Event]]) -> None:
    s = started("AT#XRECV=0,0,64,0,2048")
    assert feed(s, RECV_SM) == [
        RawData("#XRECV: 0,0,12", b"OK\r\n\r\nAB\n#X\r", 0, False),
        Ok("AT#XRECV=0,0,64,0,2048"),
    ]


@feeders
def test_slm_recv_and_eof_form(feed: Callable[[AtSession, bytes], list[Event]]) -> None:
    s = started("AT#XRECV=1")
    assert feed(s, b"\r\n#XRECV: 3\r\n+++\r\nOK\r\n") == [
        RawData("#XRECV: 3", b"+++", None, False),
        Ok("AT#XRECV=1"),
    ]
    s = started("AT#XRECV=1")
    assert feed(s, b"\r\nOK\r\n") == [Ok("AT#XRECV=1")]


@feeders
def test_sm_pushed_receive_is_a_urc_with_data(feed: Callable[[AtSession, bytes], list[Event]]) -> None:
    s = started("AT+CFUN?")
    data = b"\r\n#XRECV: 3,0,5\r\nOK\r\n\r\n\r\n+CFUN: 1\r\n\r\nOK\r\n"
    assert feed(s, data) == [
        RawData("#XRECV: 3,0,5", b"OK\r\n\r", 3, True),
        InfoLine("AT+CFUN?", "+CFUN: 1"),
        Ok("AT+CFUN?"),
    ]


def test_recv_over_limit_is_our_error() -> None:
    s = started("AT#XRECV=0,0,0,1")
    with pytest.raises(AtProtocolError):
        whole(s, f"\r\n#XRECV: 0,0,{RECV_MAX + 1}\r\n".encode())
    assert s.state is State.DEAD
    with pytest.raises(AtProtocolError) as after:  # dead of what the modem sent: still remote
        s.send(command("AT"), 0.0)
    assert not isinstance(after.value, LocalProtocolError)


def test_hex_mode_recv_is_refused() -> None:
    s = AtSession()
    with pytest.raises(AtProtocolError):
        whole(s, b"\r\n#XRECV: 0,1,4\r\n")


def test_overlong_line_is_our_error_before_its_end() -> None:
    s = AtSession()
    with pytest.raises(AtProtocolError):
        whole(s, b"x" * (RESPONSE_LINE_MAX + 2))


def test_longest_line_passes() -> None:
    s = AtSession()
    assert whole(s, b"y" * RESPONSE_LINE_MAX + b"\r\n") == [Urc("y" * RESPONSE_LINE_MAX)]


@feeders
def test_quoted_multiline_value(feed: Callable[[AtSession, bytes], list[Event]]) -> None:
    s = started("AT%CMNG=2,7,0")
    body = b'%CMNG: 7,0,"ABCD","-----BEGIN CERTIFICATE-----\r\nMIIB\r\n-----END CERTIFICATE-----\r\n"'
    events = feed(s, b"\r\n" + body + b"\r\n\r\nOK\r\n")
    assert events == [
        InfoLine("AT%CMNG=2,7,0", body.decode().replace("\r\n", "\n")),
        Ok("AT%CMNG=2,7,0"),
    ]


def test_one_command_in_flight() -> None:
    s = started("AT")
    with pytest.raises(LocalProtocolError):  # our misuse, not the modem's: exit 1, not 3
        s.send(command("AT"), 0.0)
    assert s.state is State.DEAD
    with pytest.raises(LocalProtocolError, match="dead after: illegal step send"):
        s.receive_data(b"\r\nOK\r\n")


def test_timer_gives_timeout_and_late_reply_is_urc() -> None:
    s = AtSession()
    s.send(command("AT+CFUN?", timeout=2.0), now=10.0)
    assert s.next_deadline() == 12.0
    s.handle_timer(11.9)
    assert drain(s) == []
    s.handle_timer(12.0)
    assert drain(s) == [Timeout("AT+CFUN?", 12.0)]
    assert s.next_deadline() is None and s.state is State.IDLE
    assert whole(s, b"\r\n+CFUN: 1\r\n\r\nOK\r\n") == [Urc("+CFUN: 1"), Urc("OK")]


@feeders
def test_late_reply_after_timeout_is_not_taken_for_the_next(
    feed: Callable[[AtSession, bytes], list[Event]],
) -> None:
    s = AtSession()
    s.send(command("AT+CFUN?", timeout=1.0), now=0.0)
    s.handle_timer(1.0)
    assert drain(s) == [Timeout("AT+CFUN?", 1.0)]
    s.send(command("AT+CFUN?"), now=1.0)
    late = b"\r\n+CFUN: 4\r\n\r\nOK\r\n"
    fresh = b"\r\n+CFUN: 1\r\n\r\nOK\r\n"
    assert feed(s, late + fresh) == [
        Urc("+CFUN: 4"),
        Urc("OK"),
        InfoLine("AT+CFUN?", "+CFUN: 1"),
        Ok("AT+CFUN?"),
    ]


def test_a_dropped_command_cannot_desync_forever() -> None:
    s = AtSession()
    s.send(command("AT+CGMR", timeout=1.0), now=0.0)
    s.handle_timer(1.0)  # never answered: the modem dropped it
    s.send(command("AT+CGSN", timeout=1.0), now=1.0)
    assert whole(s, b"\r\n351234567890123\r\n\r\nOK\r\n") == [
        Timeout("AT+CGMR", 1.0), Urc("351234567890123"), Urc("OK"),  # taken as the late answer
    ]
    s.handle_timer(2.0)
    assert drain(s) == [Timeout("AT+CGSN", 2.0)]
    s.send(command("AT+CGSN"), now=2.0)  # owes nothing now: its own answer is its own
    assert whole(s, b"\r\n351234567890123\r\n\r\nOK\r\n") == [
        InfoLine("AT+CGSN", "351234567890123"), Ok("AT+CGSN"),
    ]
    s.send(command("AT+CGMR", timeout=1.0), now=3.0)
    s.handle_timer(4.0)
    s.forget_owed()
    s.send(command("AT"), now=4.0)
    assert whole(s, b"\r\nOK\r\n") == [Timeout("AT+CGMR", 4.0), Ok("AT")]


@feeders
def test_sm_length_send(feed: Callable[[AtSession, bytes], list[Event]]) -> None:
    s = AtSession()
    s.send(command("AT#XSEND=0,2,0,5", data_mode=LengthData(5)), 0.0)
    assert feed(s, b"\r\nOK\r\n") == [Ok("AT#XSEND=0,2,0,5")]
    assert s.state is State.DATA_MODE
    assert s.send_data(b"+++") == b"+++"
    assert s.send_data(b"\r\n") == b"\r\n"
    assert s.state is State.IDLE
    assert feed(s, b"\r\n#XDATAMODE: 0\r\n") == [Urc("#XDATAMODE: 0")]


def test_sm_length_send_overrun_kills() -> None:
    s = AtSession()
    s.send(command("AT#XSEND=0,2,0,2", data_mode=LengthData(2)), 0.0)
    whole(s, b"\r\nOK\r\n")
    with pytest.raises(LocalProtocolError):
        s.send_data(b"abc")
    assert s.state is State.DEAD


@feeders
def test_slm_terminated_send(feed: Callable[[AtSession, bytes], list[Event]]) -> None:
    s = AtSession()
    s.send(command("AT#XSEND", data_mode=TerminatedData(b"+++")), 0.0)
    feed(s, b"\r\nOK\r\n")
    s.send_data(b"hello +")
    with pytest.raises(DialectError):
        s.send_data(b"++ world")  # spans the previous chunk
    assert s.state is State.DATA_MODE  # refused before sending: still usable
    with pytest.raises(DialectError):
        s.end_data_mode(1.0)  # "+" then "+++" would end one byte early
    s.send_data(b"x")
    assert s.end_data_mode(now=1.0, timeout=5.0) == b"+++"
    assert s.next_deadline() == 6.0
    assert feed(s, b"\r\n#XDATAMODE: 0\r\n") == [Urc("#XDATAMODE: 0"), DataModeExited(0)]
    assert s.state is State.IDLE


def test_eof_reports_once_and_closes() -> None:
    s = started("AT")
    s.receive_data(b"\r\nOK\r\n\r\npartial")
    s.receive_data(b"")
    assert drain(s) == [Ok("AT"), EndOfStream(7)]
    assert s.state is State.CLOSED
    assert drain(s) == []
    with pytest.raises(LocalProtocolError):
        s.send(command("AT"), 0.0)
    closed = AtSession()
    closed.receive_data(b"")
    with pytest.raises(LocalProtocolError, match="data after end of stream"):
        closed.receive_data(b"x")  # the shell fed bytes after it reported end of stream


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.sampled_from(["AT", "AT+CGSN", "AT#XRECV=0,0,0,1", "AT%CMNG=2,1,0"]))
def test_garbage_gives_events_or_our_error(data: bytes, text: str) -> None:
    for feed in FEEDERS:
        s = started(text)
        try:
            feed(s, data)
            s.receive_data(b"")
            drain(s)
        except AtProtocolError:
            assert s.state is State.DEAD


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=RECV_MAX), st.binary(max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b))
def test_any_payload_round_trips(payload: bytes, urc: bytes) -> None:
    wire = b"\r\n#XRECV: 1,0,%d\r\n" % len(payload) + payload + b"\r\nOK\r\n"
    for feed in FEEDERS:
        s = started("AT#XRECV=1,0,0,1")
        events = feed(s, wire + b"\r\n+CEREG: " + urc + b"\r\n")
        assert events[0] == RawData(f"#XRECV: 1,0,{len(payload)}", payload, 1, False)
        assert events[1] == Ok("AT#XRECV=1,0,0,1")
        assert events[2:] == [Urc("+CEREG: " + urc.decode("latin-1"))]
