"""The simulator's framer and command parser: whole, byte by byte, with trailing bytes, with garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nrfprov.sim.framing import (
    MAX_COMMAND,
    Data,
    DataEnd,
    Framer,
    GrammarError,
    Item,
    Line,
    parse_command,
    split_params,
)


def drain(f: Framer) -> list[Item]:
    out = []
    while (item := f.next_item()) is not None:
        out.append(item)
    return out


def feed_all(chunks: list[bytes]) -> list[Item]:
    f = Framer()
    out: list[Item] = []
    for c in chunks:
        f.feed(c)
        out += drain(f)
    return out


STREAM = b'AT+CFUN?\r\nAT%CMNG=0,1,0,"-----BEGIN\r\nX\n-----"\r\n\r\nat\nATX\x08+CGSN\r'


def test_lines_whole_bytewise_and_trailing() -> None:
    want = [Line(b"AT+CFUN?"), Line(b'AT%CMNG=0,1,0,"-----BEGIN\r\nX\n-----"'), Line(b"at"), Line(b"AT+CGSN")]
    assert feed_all([STREAM]) == want
    assert feed_all([bytes([b]) for b in STREAM]) == want
    f = Framer()
    f.feed(STREAM + b"AT+CG")  # trailing partial command stays pending
    assert drain(f) == want
    f.feed(b"MR\n")
    assert drain(f) == [Line(b"AT+CGMR")]


def test_overflow_discards_the_whole_line() -> None:
    items = feed_all([b"AT" + b"A" * MAX_COMMAND + b"\r\nAT\r\n"])
    assert items == [Line(b"AT" + b"A" * (MAX_COMMAND - 2), overflow=True), Line(b"AT")]


def test_counted_data_mode_ignores_terminators_and_swallows_crlf_lf() -> None:
    f = Framer()
    f.feed(b"AT#XSEND=0,2,0,8\r")
    assert drain(f) == [Line(b"AT#XSEND=0,2,0,8")]
    f.start_counted(8)
    f.feed(b"\n+++\r\nOK")  # the LF of the command's CR LF is not data
    f.feed(b"!AT\r\n")
    assert drain(f) == [Data(b"+++\r\nOK!"), DataEnd(), Line(b"AT")]


@given(st.binary(max_size=300), st.lists(st.integers(1, 40), max_size=30))
@settings(max_examples=200, deadline=None)
def test_terminated_mode_matches_anywhere_however_split(payload: bytes, cuts: list[int]) -> None:
    stream = payload + b"+++" + b"AT\r"
    chunks, i = [], 0
    for c in cuts:
        chunks.append(stream[i : i + c])
        i += c
    chunks.append(stream[i:])
    f = Framer()
    f.start_terminated(b"+++")
    items: list[Item] = []
    for c in chunks:
        f.feed(c)
        items += drain(f)
    data = b"".join(x.payload for x in items if isinstance(x, Data))
    first = (payload + b"+++").find(b"+++")
    assert data == payload[:first]
    assert DataEnd() in items
    if first == len(payload):  # no terminator inside the payload: the command after it is parsed
        assert items[-1] == Line(b"AT")


@given(st.binary(max_size=600))
@settings(max_examples=300, deadline=None)
def test_garbage_gives_lines_or_grammar_errors_only(data: bytes) -> None:
    for item in feed_all([data]):
        assert isinstance(item, Line)
        assert len(item.text) <= MAX_COMMAND
        try:
            parse_command(item.text)
        except GrammarError:
            pass


def test_parse_command_forms_and_grammar() -> None:
    c = parse_command(b'junk AT%CMNG=0,16842753,0,"a,b",')
    assert (c.name, c.form, c.params) == ("%CMNG", "set", ("0", "16842753", "0", "a,b", None))
    assert parse_command(b"at+cfun?").form == "read"
    assert parse_command(b"AT+CFUN=?").form == "test"
    assert parse_command(b"AT").name == ""
    assert parse_command(b"AT#XSEND").form == "exec"
    for bad in (b"ATE0", b"at AT+CGSN", b"AT+", b"AT+X?Y", b"hello", b'AT+X="open'):
        with pytest.raises(GrammarError):
            parse_command(bad)


def test_split_params() -> None:
    assert split_params('1, 2 ,"x, y",,""') == ("1", "2", "x, y", None, "")


def test_noise_with_non_ascii_before_at() -> None:
    # "ß".upper() is "SS": offsets must come from the bytes, not from a case-folded str.
    assert parse_command("ßßAT+CGMR".encode("latin-1")).name == "+CGMR"
