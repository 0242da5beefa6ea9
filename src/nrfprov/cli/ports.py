"""``nrfprov ports``: which serial ports are nRF91 modems (board, USB serial, IMEI, modem firmware)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nrfprov.cli.options import BAUD_MAX, DEFAULT_BAUD, add_json_option, int_range, print_json

DESCRIPTION = """\
List the Nordic boards plugged in and confirm each one's modem: the board is recognised by its USB
ids (Thingy:91, Thingy:91 X; nRF9160 / nRF9161 / nRF9151 DK behind a SEGGER J-Link OB), the port
that reaches the nRF91's AT interface is picked among the board's interfaces, and each such port is
asked AT, AT+CGSN=1 (IMEI) and AT+CGMR (modem firmware). A port another nrfprov holds is shown as
busy, not opened. `nrfprov station` selects ports the same way."""

EPILOG = """\
examples:
  nrfprov ports                                  every Nordic board's AT port, probed
  nrfprov ports --all                            every serial port and what nrfprov makes of it (no probe)
  nrfprov ports --port '/dev/ttyACM*'            paths and glob patterns (also ptys: the simulator)
  nrfprov ports --serial-number 000960012345     only the board with this USB serial number
  nrfprov ports --json                           one JSON document"""


def add_selection_options(p: argparse.ArgumentParser) -> None:
    """``--port`` (repeatable, globs), ``--serial-number``, ``--baud``, ``--rtscts``: shared with station."""
    g = p.add_argument_group("port selection (default: every recognised Nordic board)")
    g.add_argument("--port", dest="port", action="append", default=[], metavar="PATH|GLOB|URL",
                   help="a device path, a glob pattern ('/dev/ttyACM*', quoted) or a pyserial URL; repeatable. "
                   "A recognised board's other interfaces are left out")
    g.add_argument("--serial-number", dest="serial_numbers", action="append", default=[], metavar="SN",
                   help="only the recognised board with this USB serial number (J-Link serial on a DK); repeatable")
    g.add_argument("--baud", type=int_range(1, BAUD_MAX), default=DEFAULT_BAUD,
                   help=f"baud rate, 1..{BAUD_MAX} (default {DEFAULT_BAUD})")
    g.add_argument("--rtscts", action="store_true",
                   help="hardware flow control on every port (a recognised DK gets it anyway)")


def register(sub: Any) -> None:
    p = sub.add_parser("ports", help="list the nRF91 modems plugged in (board, USB serial, IMEI, firmware)",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_selection_options(p)
    p.add_argument("--all", action="store_true", help="list every serial port pyserial sees, without probing")
    add_json_option(p)
    p.set_defaults(func=_ports)


def _ports(args: argparse.Namespace) -> int:
    from nrfprov.station import ports

    if args.all:
        listing = ports.list_all()
        if args.json:
            print_json([{"port": x.port, "board": x.board, "usb_serial": x.usb_serial, "role": x.role}
                        for x in listing])
        else:
            for x in listing:
                print(f"{x.port:<24} {x.board or '-':<14} {x.usb_serial or '-':<16} {x.role}")
        return 0
    candidates = ports.find_candidates(args.port, args.serial_numbers)
    reports = ports.probe_all(candidates, baud=args.baud, rtscts=args.rtscts)
    if args.json:
        print_json([r.as_dict() for r in reports])
    elif not reports:
        print("no nRF91 board found (pyserial lists no Thingy:91 or J-Link port; ptys need --port)", file=sys.stderr)
    else:
        print(f"{'PORT':<24} {'BOARD':<14} {'USB SERIAL':<16} {'IMEI':<16} {'FIRMWARE':<22} STATUS")
        for r in reports:
            status = r.status if r.status == "modem" else f"{r.status}: {r.detail}"
            print(f"{r.port:<24} {r.board or '-':<14} {r.usb_serial or '-':<16} {r.imei or '-':<16} "
                  f"{r.firmware or '-':<22} {status}")
    # Nothing found is no error (an empty bench); a candidate that is no modem is the user's to see.
    return 0
