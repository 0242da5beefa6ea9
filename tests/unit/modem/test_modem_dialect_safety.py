"""SLM terminator hazard: raw binary refused with a short terminator; payloads containing it refused."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import serial

from nrfprov.errors import DialectError
from nrfprov.modem.channel import AtChannel
from nrfprov.modem.dialects.slm import SlmDialect
from nrfprov.modem.dialects.sm import SerialModemDialect


@pytest.fixture
def channel() -> Iterator[AtChannel]:
    # loop:// is an in-process serial port; these checks refuse before writing anything.
    ch = AtChannel(serial.serial_for_url("loop://"), name="loop")
    yield ch
    ch.close()


def test_short_terminator_refuses_raw_binary(channel: AtChannel) -> None:
    with pytest.raises(DialectError) as info:
        SlmDialect(channel, terminator="+++").check_raw_binary_safe()
    text = str(info.value)
    assert "+++" in text and "CONFIG_NRFPROV_SLM_TERMINATOR" in text and "Serial Modem" in text


def test_long_terminator_allows_raw_binary(channel: AtChannel) -> None:
    SlmDialect(channel, terminator="q7#Zp!k2Wx").check_raw_binary_safe()
    SerialModemDialect(channel).check_raw_binary_safe()


@pytest.mark.parametrize("payload", [b"ab+++cd", b"abc++", b"+", b"x" * 5000 + b"q7#Zp!k2Wx"])
def test_payload_containing_terminator_refused_before_sending(channel: AtChannel, payload: bytes) -> None:
    term = "+++" if b"q7" not in payload else "q7#Zp!k2Wx"
    d = SlmDialect(channel, terminator=term)
    sent = channel.bytes_sent
    with pytest.raises(DialectError):
        d.send(0, payload)
    assert channel.bytes_sent == sent


def test_empty_terminator_refused(channel: AtChannel) -> None:
    with pytest.raises(DialectError):
        SlmDialect(channel, terminator="")
