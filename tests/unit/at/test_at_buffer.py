"""Buffer and readers in isolation: limits hold, partial input waits, counts are exact."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nrfprov.at.buffer import ByteBuffer, CountReader, LineReader
from nrfprov.errors import AtProtocolError


def test_buffer_limit() -> None:
    b = ByteBuffer(limit=8)
    b.feed(b"12345678")
    with pytest.raises(AtProtocolError):
        b.feed(b"9")


def test_line_reader_waits_and_strips_cr() -> None:
    b = ByteBuffer()
    r = LineReader(max_line=10)
    b.feed(b"abc\r")
    assert r.read(b) is None
    b.feed(b"\nxy\n")
    assert r.read(b) == b"abc"
    assert r.read(b) == b"xy"
    assert r.read(b) is None


def test_line_reader_limit() -> None:
    r = LineReader(max_line=4)
    b = ByteBuffer()
    b.feed(b"1234\r")
    assert r.read(b) is None  # could still be a maximal line
    b.feed(b"\n")
    assert r.read(b) == b"1234"
    b.feed(b"123456")
    with pytest.raises(AtProtocolError):
        r.read(b)


def test_count_reader_limit_and_zero() -> None:
    with pytest.raises(AtProtocolError):
        CountReader(2049)
    with pytest.raises(AtProtocolError):
        CountReader(-1)
    b = ByteBuffer()
    assert CountReader(0).read(b) == b""


@given(st.binary(max_size=300), st.integers(0, 300), st.binary(max_size=20))
def test_count_reader_exact(data: bytes, n: int, trailing: bytes) -> None:
    b = ByteBuffer()
    r = CountReader(n)
    if n == 0:
        assert r.read(b) == b""
        return
    for i in range(len(data)):
        b.feed(data[i : i + 1])
        got = r.read(b)
        if got is not None:
            assert got == data[:n] and i + 1 == n
            return
    if len(data) < n:
        b.feed(trailing)
        got = r.read(b)
        assert got is None or got == (data + trailing)[:n]
