"""AT commands as values: the text, the info-line prefixes the reply may carry, a timeout.

Builders quote parameters the way the modem's parser reads them: a ``"`` toggles "inside quotes"
and line breaks inside quotes are part of the parameter, so a multi-line PEM passes intact; there is
no escape for ``"`` itself, so content containing one is refused [sdk-nrf serial_lte_modem, slm_at_host.c].
The 4096-byte command limit is checked here, before anything is sent, because the modem answers an overlong line
with a bare ``ERROR`` that says nothing about why.
"""

from __future__ import annotations

from dataclasses import dataclass

from nrfprov.at.limits import COMMAND_MAX
from nrfprov.errors import PayloadError, PayloadTooLarge

TERMINATOR = b"\r\n"  # what Nordic's host tools send; SLM's default [serial_lte_modem app/Kconfig; nrfcredstore]

# Commands whose information response is a bare line (no "+NAME:" prefix) [sdk-nrf lib/hw_id/hw_id.c].
_BARE = {"+CGSN", "+CGMR", "+CGMM", "+CGMI", "+CIMI"}

# Per-command timeouts in seconds (our values, after ncs-serial-modem sm_at_client.c): TLS connects run
# the handshake inside the command (tens of seconds on LTE-M/NB-IoT), %KEYGEN takes seconds, %CMNG writes ~1 s each,
# CFUN changes detach/attach the radio.
_TIMEOUTS = {
    "#XCONNECT": 60.0,
    "%KEYGEN": 30.0,
    "%CMNG": 10.0,
    "+CFUN": 15.0,
    "#XSEND": 30.0,  # SO_SNDTIMEO is 30 s per socket [sdk-nrf serial_lte_modem, slm_at_socket.c]
}
DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True)
class LengthData:
    """After ``OK``, exactly ``length`` raw bytes follow, no terminator scan (SM ``AT#XSEND=h,2,..``)."""

    length: int


@dataclass(frozen=True)
class TerminatedData:
    """After ``OK``, raw bytes follow until ``terminator`` (legacy SLM data mode, default ``+++``)."""

    terminator: bytes


DataMode = LengthData | TerminatedData


@dataclass(frozen=True)
class Command:
    """One AT command. ``expect`` holds the prefixes of lines that belong to its reply; ``bare``
    says bare lines (no ``+``/``%``/``#`` prefix) belong to it too. Everything else is a URC."""

    text: str
    expect: tuple[str, ...] = ()
    bare: bool = False
    timeout: float = DEFAULT_TIMEOUT
    data_mode: DataMode | None = None
    #: The reply always carries an info line (``+CMEE: 1`` for ``AT+CMEE?``): a final result that
    #: comes without one is a late answer to an earlier command, and the session keeps waiting.
    #: The handshake's sync probe uses this to drain answers owed to a killed host program.
    requires_info: bool = False

    @property
    def name(self) -> str:
        return command_name(self.text)

    def encode(self) -> bytes:
        return self.text.encode("ascii") + TERMINATOR


def command_name(text: str) -> str:
    """``AT+CFUN=4`` → ``+CFUN``; ``AT%CMNG=1`` → ``%CMNG``; ``AT`` → ``""``."""
    body = text[2:]
    for i, ch in enumerate(body):
        if ch in "=?":
            return body[:i].upper()
    return body.upper()


def command(
    text: str,
    *,
    timeout: float | None = None,
    expect: tuple[str, ...] | None = None,
    bare: bool | None = None,
    data_mode: DataMode | None = None,
    requires_info: bool = False,
) -> Command:
    """Validate ``text`` and derive what its reply looks like.

    By default a reply line belongs to the command when it starts with ``<NAME>:`` (``+CFUN:`` for
    ``AT+CFUN?``), and bare lines belong to the few commands that answer bare (``AT+CGSN``).
    """
    _check_text(text)
    name = command_name(text)
    if expect is None:
        expect = (f"{name}:",) if name else ()
        if name == "#XSSOCKET":  # one doc example answers a TLS open with #XSOCKET [sdk-nrf SOCKET_AT_commands.rst]
            expect = ("#XSSOCKET:", "#XSOCKET:")
    if bare is None:
        # AT+CGSN=1 answers "+CGSN: "<imei>"", plain AT+CGSN a bare line [sdk-nrf lib/hw_id/hw_id.c].
        bare = name in _BARE and "=" not in text
    if timeout is None:
        timeout = _TIMEOUTS.get(name, DEFAULT_TIMEOUT)
        if name == "+CFUN" and "?" in text:
            timeout = DEFAULT_TIMEOUT
    return Command(text, expect, bare, timeout, data_mode, requires_info)


def _check_text(text: str) -> None:
    if not text[:2].upper() == "AT":
        raise PayloadError(f"not an AT command: {text[:20]!r}", hint="commands start with AT")
    try:
        encoded = text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise PayloadError(
            "AT command contains non-ASCII characters", offset=exc.start,
            hint="the modem's AT parser takes ASCII only",
        ) from exc
    size = len(encoded) + len(TERMINATOR)
    if size > COMMAND_MAX:
        raise PayloadTooLarge(
            "AT command", size, COMMAND_MAX,
            hint="the modem answers longer commands with ERROR; shorten the content "
            "(a PEM credential must stay under ~4060 bytes)",
        )
    inside = False
    for i, ch in enumerate(text):
        if ch == '"':
            inside = not inside
        elif ch in "\r\n" and not inside:
            raise PayloadError("line break outside quotes would end the command early", offset=i)
    if inside:
        raise PayloadError("unbalanced double quote in AT command", hint="quote every string parameter")


def quote(value: str, *, what: str = "parameter") -> str:
    """``value`` as a quoted AT string parameter. The AT grammar has no escape for ``"``."""
    if '"' in value:
        raise PayloadError(
            f"{what} contains a double quote, which the AT parser cannot carry inside a string",
            offset=value.index('"'),
        )
    return f'"{value}"'


# --- builders -----------------------------------------------------------------------------------

SEC_TAG_MAX = 2147483647  # %CMNG sec_tag range 0..2^31-1 [Nordic AT reference, %CMNG]
CRED_TYPE_MAX = 11  # 0..7 per the AT reference, 8..11 named by nrfcredstore


def _check_tag(sec_tag: int) -> None:
    if not 0 <= sec_tag <= SEC_TAG_MAX:
        raise PayloadError(f"sec tag {sec_tag} outside 0..{SEC_TAG_MAX}")


def _check_type(cred_type: int) -> None:
    if not 0 <= cred_type <= CRED_TYPE_MAX:
        raise PayloadError(f"credential type {cred_type} outside 0..{CRED_TYPE_MAX}")


def cmee(mode: int = 1) -> Command:
    return command(f"AT+CMEE={mode}")


def cmee_read() -> Command:
    """``AT+CMEE?``: always answered ``+CMEE: <n>`` then ``OK`` [3GPP TS 27.007 §9.1], so it serves as
    the sync probe: an ``OK`` without the ``+CMEE:`` line is owed to an earlier command."""
    return command("AT+CMEE?", requires_info=True)


def cfun_read() -> Command:
    return command("AT+CFUN?")


def cfun_set(mode: int) -> Command:
    return command(f"AT+CFUN={int(mode)}")


def cereg_set(n: int = 5) -> Command:
    return command(f"AT+CEREG={int(n)}")


def cereg_read() -> Command:
    return command("AT+CEREG?")


def cgsn() -> Command:
    return command("AT+CGSN")


def cgmr() -> Command:
    return command("AT+CGMR")


def cmng_write(sec_tag: int, cred_type: int, content: str) -> Command:
    _check_tag(sec_tag)
    _check_type(cred_type)
    if not content:
        raise PayloadError("empty credential content (the modem refuses it)")
    return command(f"AT%CMNG=0,{sec_tag},{cred_type},{quote(content, what='credential content')}")


def cmng_list(sec_tag: int | None = None, cred_type: int | None = None) -> Command:
    if sec_tag is None:
        if cred_type is not None:
            raise PayloadError("%CMNG list filters by type only together with a sec tag")
        return command("AT%CMNG=1")
    if cred_type is None:
        return command(f"AT%CMNG=1,{int(sec_tag)}")
    return command(f"AT%CMNG=1,{int(sec_tag)},{int(cred_type)}")


def cmng_delete(sec_tag: int, cred_type: int) -> Command:
    _check_tag(sec_tag)
    _check_type(cred_type)
    return command(f"AT%CMNG=3,{sec_tag},{cred_type}")


def keygen(sec_tag: int, *, attributes: str | None = None) -> Command:
    """``AT%KEYGEN=<tag>,2,0[,"<attrs>"]``: client key (type 2), answer a CSR
    [nRF91 AT Commands reference, %KEYGEN set]."""
    _check_tag(sec_tag)
    text = f"AT%KEYGEN={sec_tag},2,0"
    if attributes:
        text += "," + quote(attributes, what="CSR attributes")
    return command(text)
