"""Command builders: quoting, the 4096-byte limit checked before sending, reply expectations."""

from __future__ import annotations

import pytest

from nrfprov.at import commands as c
from nrfprov.at.limits import COMMAND_MAX
from nrfprov.errors import PayloadError, PayloadTooLarge

PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"


def test_pem_keeps_line_breaks_inside_quotes() -> None:
    cmd = c.cmng_write(16842753, 0, PEM)
    assert cmd.encode() == b'AT%CMNG=0,16842753,0,"' + PEM.encode() + b'"\r\n'
    assert cmd.expect == ("%CMNG:",)
    assert cmd.timeout == 10.0


def test_quote_inside_content_refused() -> None:
    with pytest.raises(PayloadError):
        c.cmng_write(1, 0, 'a"b')
    with pytest.raises(PayloadError):
        c.quote('x"')


def test_limit_checked_before_sending() -> None:
    prefix = 'AT%CMNG=0,1,0,""'
    room = COMMAND_MAX - len(prefix) - 2
    assert len(c.cmng_write(1, 0, "A" * room).encode()) == COMMAND_MAX
    with pytest.raises(PayloadTooLarge) as info:
        c.cmng_write(1, 0, "A" * (room + 1))
    assert info.value.limit == COMMAND_MAX and info.value.size == COMMAND_MAX + 1


@pytest.mark.parametrize(
    "text", ["ATZ\r\nAT", "AT+X=\"unbalanced", "at+cgsn\n", "XYZ", "AT+CGSN=é"]
)
def test_malformed_text_refused(text: str) -> None:
    with pytest.raises(PayloadError):
        c.command(text)


@pytest.mark.parametrize(
    ("text", "expect", "bare"),
    [
        ("AT+CFUN?", ("+CFUN:",), False),
        ("AT+CGSN", ("+CGSN:",), True),
        ("AT+CGSN=1", ("+CGSN:",), False),
        ("AT%XMODEMUUID", ("%XMODEMUUID:",), False),
        ("AT#XSSOCKET=1,1,0,7", ("#XSSOCKET:", "#XSOCKET:"), False),
        ("AT", (), False),
    ],
)
def test_expectations(text: str, expect: tuple[str, ...], bare: bool) -> None:
    cmd = c.command(text)
    assert cmd.expect == expect and cmd.bare is bare


def test_ranges_and_filters() -> None:
    with pytest.raises(PayloadError):
        c.cmng_delete(-1, 0)
    with pytest.raises(PayloadError):
        c.cmng_delete(1, 12)
    with pytest.raises(PayloadError):
        c.cmng_write(1, 0, "")
    with pytest.raises(PayloadError):
        c.cmng_list(None, 1)
    assert c.cmng_list().text == "AT%CMNG=1"
    assert c.cmng_list(5, 2).text == "AT%CMNG=1,5,2"
    assert c.keygen(9, attributes="CN=dev,O=x").text == 'AT%KEYGEN=9,2,0,"CN=dev,O=x"'
    assert c.keygen(9).timeout == 30.0
    assert c.cfun_read().timeout == c.DEFAULT_TIMEOUT
