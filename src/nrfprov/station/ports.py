"""Which serial ports are nRF91 modems: pyserial's port list, Nordic boards by USB ids, an AT probe.

A board enumerates several serial ports and only one of them reaches the nRF91's AT interface (the
application UART that runs the Serial Modem application). Where nrfprov looks:

- **Thingy:91** — the nRF52840 connectivity bridge, USB VID 0x1915, PID 0x9100, two CDC ACM ports
  [sdk-nrf applications/connectivity_bridge/prj.conf and boards/thingy91_nrf52840.conf:
  CONFIG_USB_DEVICE_VID/PID, CONFIG_USB_CDC_ACM_DEVICE_COUNT=2]. The first (USB interface 0) is the
  nRF9160's UART0; Nordic's own port picker takes the first port of a Thingy:91 [nrfcredstore
  comms.py, ``usb_patterns``, main port 0]. No RTS/CTS.
- **Thingy:91 X** — the nRF5340 connectivity bridge, VID 0x1915, PID 0x910A [sdk-nrf
  applications/connectivity_bridge/boards/thingy91x_nrf5340_cpuapp.conf], the same two-port layout;
  the first port (interface 0) is the nRF9151's AT interface [nrfcredstore, main port 0].
- **nRF9160 / nRF9161 / nRF9151 DK** — the SEGGER J-Link OB interface chip, VID 0x1366, whose PID
  depends on the J-Link configuration (0x1015, 0x1051, 0x1059 ... with MSD and VCOM counts), so the
  board is told by its J-Link serial number: 0009600… nRF9160 DK, 0010509… nRF9161 DK, 0010512…
  nRF9151 DK [nrfcredstore comms.py, ``usb_patterns``]. Of its virtual COM ports, VCOM0 (USB
  interface 0; Linux location ``…:1.0``) is wired to the nRF91's UART0 [Zephyr/NuttX nrf9160dk board
  docs: UART0 on "virtual COM 0"], which the serial modem application uses on the DK
  (``CONFIG_SLM_CONNECT_UART_0``, sdk-nrf serial_lte_modem slm_description.rst); the others reach the
  board controller and UART1. The DK's UART has RTS/CTS (``hw-flow-control`` in the board overlay).

pyserial reports the interface number only inside ``location`` (Linux ``<bus>-<ports>:<config>.<if>``,
Windows ``…:x.<if>`` [pyserial list_ports_linux.py, list_ports_windows.py]); macOS has none, and
there the lowest device name of a board is its first port, as Nordic's picker sorts them on macOS.

pyserial never lists ptys (the simulator's), so ``--port`` also takes paths and glob patterns: every
match is a candidate, except the other interfaces of a recognised board. A candidate is a modem once
it answers ``AT`` and ``AT+CGSN=1`` (the IMEI); ``AT+CGMR`` gives its firmware.
"""

from __future__ import annotations

import glob as _glob
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from nrfprov.errors import AtProtocolError, CommandError, LockHeld, NrfprovError

if TYPE_CHECKING:
    from nrfprov.modem import Modem

NORDIC_VID = 0x1915
SEGGER_VID = 0x1366
#: Seconds an ``AT`` may take on a port being probed; a port that is no modem costs a few of these.
PROBE_READY_TIMEOUT = 1.0


@dataclass(frozen=True)
class Board:
    name: str
    vid: int
    pid: int | None  # None: any (a J-Link's PID depends on its configuration)
    serial_prefix: str  # "" = any USB serial number
    at_interface: int  # USB interface number of the port that reaches the nRF91's AT interface
    hwfc: bool  # the board wires RTS/CTS between the USB bridge and the nRF91


BOARDS: tuple[Board, ...] = (
    Board("Thingy:91", NORDIC_VID, 0x9100, "", 0, False),
    Board("Thingy:91 X", NORDIC_VID, 0x910A, "", 0, False),
    Board("nRF9160 DK", SEGGER_VID, None, "0009600", 0, True),
    Board("nRF9161 DK", SEGGER_VID, None, "0010509", 0, True),
    Board("nRF9151 DK", SEGGER_VID, None, "0010512", 0, True),
)


def board_of(info: Any) -> Board | None:
    """The Nordic board a pyserial ``ListPortInfo`` belongs to, or None."""
    vid, pid, serial = getattr(info, "vid", None), getattr(info, "pid", None), getattr(info, "serial_number", None)
    for b in BOARDS:
        if vid == b.vid and (b.pid is None or pid == b.pid) and (serial or "").startswith(b.serial_prefix):
            return b
    return None


_IFACE = re.compile(r":(?:\d+|x)\.(\d+)$")


def usb_interface(info: Any) -> int | None:
    """The USB interface number in pyserial's ``location`` (Linux, Windows), None where it is absent."""
    m = _IFACE.search(getattr(info, "location", None) or "")
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class Candidate:
    """A port to probe: a recognised board's AT port, or a path the user named."""

    port: str
    board: str = ""
    usb_serial: str = ""
    hwfc: bool = False

    @property
    def key(self) -> str:
        """One key per physical port: a symlink and its target are one port."""
        return os.path.realpath(self.port) if "://" not in self.port else self.port


@dataclass(frozen=True)
class PortListing:
    """Every port pyserial lists, with what nrfprov makes of it (``nrfprov ports --all``)."""

    port: str
    board: str
    usb_serial: str
    role: str  # "AT" (a candidate), "other interface", "not a Nordic board"


def _at_ports(infos: Sequence[Any]) -> tuple[dict[str, Candidate], dict[str, PortListing]]:
    """Per device path: the candidates (each recognised board's AT port) and a listing of all ports."""
    groups: dict[tuple[int, str, str], list[tuple[Any, Board]]] = {}
    listing: dict[str, PortListing] = {}
    for info in infos:
        board = board_of(info)
        if board is None:
            listing[info.device] = PortListing(info.device, "", info.serial_number or "", "not a Nordic board")
            continue
        groups.setdefault((board.vid, board.name, info.serial_number or info.device), []).append((info, board))
    found: dict[str, Candidate] = {}
    for members in groups.values():
        board = members[0][1]
        with_iface = [(usb_interface(i), i) for i, _ in members]
        exact = [i for n, i in with_iface if n == board.at_interface]
        if exact:
            chosen = exact[0]
        elif all(n is None for n, _ in with_iface):  # macOS: no interface numbers; the first port
            chosen = sorted((i for _, i in with_iface), key=lambda i: _natural(i.device))[0]
        else:
            chosen = None
        for info, _ in members:
            role = "AT" if info is chosen else "other interface"
            listing[info.device] = PortListing(info.device, board.name, info.serial_number or "", role)
        if chosen is not None:
            found[chosen.device] = Candidate(chosen.device, board.name, chosen.serial_number or "", board.hwfc)
    return found, listing


def _natural(text: str) -> list[Any]:
    """``ttyACM10`` after ``ttyACM9``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def default_comports() -> list[Any]:
    from serial.tools import list_ports

    return list(list_ports.comports())


def find_candidates(
    patterns: Iterable[str] = (),
    serial_numbers: Iterable[str] = (),
    *,
    comports: Callable[[], Sequence[Any]] = default_comports,
    glob: Callable[[str], list[str]] = _glob.glob,
) -> list[Candidate]:
    """The ports to probe, sorted by name, one per physical port.

    ``patterns`` (``--port``): paths, glob patterns or pyserial URLs; every match is a candidate except
    another interface of a recognised board. ``serial_numbers`` (``--serial-number``): recognised boards
    with those USB serial numbers. Neither: every recognised board's AT port.
    """
    infos = list(comports())
    at_ports, listing = _at_ports(infos)
    by_real = {os.path.realpath(i.device): i.device for i in infos}
    pats, serials = list(patterns), set(serial_numbers)
    out: dict[str, Candidate] = {}
    if pats:
        for pattern in pats:
            if "://" in pattern:
                out.setdefault(pattern, Candidate(pattern))
                continue
            matches = sorted(glob(pattern), key=_natural) or ([pattern] if os.path.exists(pattern) else [])
            for path in matches:
                listed = by_real.get(os.path.realpath(path))
                if listed is not None and listing[listed].role == "other interface":
                    continue  # a DK's board-controller VCOM or a Thingy's second port: no AT there
                known = at_ports.get(listed) if listed is not None else None
                c = Candidate(path, known.board, known.usb_serial, known.hwfc) if known else Candidate(path)
                out.setdefault(c.key, c)
    else:
        for c in at_ports.values():
            if not serials or c.usb_serial in serials:
                out.setdefault(c.key, c)
    return sorted(out.values(), key=lambda c: _natural(c.port))


def list_all(comports: Callable[[], Sequence[Any]] = default_comports) -> list[PortListing]:
    """Every port pyserial lists, with its board and role, sorted by name."""
    _, listing = _at_ports(list(comports()))
    return sorted(listing.values(), key=lambda p: _natural(p.port))


# --- the probe ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    imei: str
    firmware: str


_CGSN = re.compile(r'\+CGSN:\s*"?(\d{15})"?')


def parse_cgsn1(lines: Sequence[str]) -> str:
    """The IMEI in ``AT+CGSN=1``'s answer ``+CGSN: "<15 digits>"`` [nRF91 AT Commands reference, +CGSN]."""
    for line in lines:
        m = _CGSN.fullmatch(line.strip())
        if m:
            return m.group(1)
    raise AtProtocolError(f"AT+CGSN=1 answered {list(lines)!r}, not +CGSN: \"<IMEI>\"")


def identify(modem: Modem) -> Identity:
    """IMEI (``AT+CGSN=1``) and modem firmware (``AT+CGMR``; empty if the firmware does not say)."""
    imei = parse_cgsn1(modem.at("AT+CGSN=1"))
    try:
        firmware = modem.firmware()
    except (CommandError, AtProtocolError):  # a firmware that does not answer AT+CGMR with a version
        firmware = ""
    return Identity(imei, firmware)


@dataclass(frozen=True)
class PortReport:
    """What the probe found on one candidate."""

    port: str
    board: str
    usb_serial: str
    status: str  # "modem", "busy", "no answer"
    imei: str = ""
    firmware: str = ""
    detail: str = ""
    holder_pid: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"port": self.port, "board": self.board, "usb_serial": self.usb_serial, "status": self.status,
                "imei": self.imei, "firmware": self.firmware, "detail": self.detail, "holder_pid": self.holder_pid}


def probe(c: Candidate, *, baud: int = 115200, rtscts: bool = False, dialect: str = "auto",
          ready_timeout: float = PROBE_READY_TIMEOUT) -> PortReport:
    """Open ``c`` (taking its port lock), confirm a modem with ``AT`` and ``AT+CGSN=1``, read ``AT+CGMR``.

    A port another nrfprov holds is ``busy`` (its PID in ``holder_pid``), not an error; a port that
    does not answer is ``no answer`` with the reason."""
    from nrfprov.modem import Modem

    base = PortReport(c.port, c.board, c.usb_serial, "modem")
    try:
        modem = Modem.open(c.port, baud=baud, rtscts=rtscts or c.hwfc, dialect=dialect, ready_timeout=ready_timeout)
    except LockHeld as exc:
        return replace(base, status="busy", detail=exc.message, holder_pid=exc.pid)
    except NrfprovError as exc:
        return replace(base, status="no answer", detail=str(exc))
    try:
        ident = identify(modem)
    except NrfprovError as exc:
        return replace(base, status="no answer", detail=str(exc))
    finally:
        modem.close()
    return replace(base, imei=ident.imei, firmware=ident.firmware)


def probe_all(candidates: Sequence[Candidate], *, jobs: int = 16, **kw: Any) -> list[PortReport]:
    """``probe`` every candidate, ``jobs`` at a time (a port that is no modem costs its timeout, so
    probing one by one would make a bench of 50 ports wait minutes); results in candidate order."""
    from concurrent.futures import ThreadPoolExecutor

    if not candidates:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(candidates))), thread_name_prefix="probe") as pool:
        return list(pool.map(lambda c: probe(c, **kw), candidates))
