"""Options several commands share, so each is spelled and explained once.

- serial port: ``--port`` (always a serial device or pyserial URL), ``--baud``, ``--rtscts``;
- configuration: ``--conf``, ``--overlay``, ``--set`` (Kconfig fragments, merged like a west build);
- state folder: ``--state DIR``, defaulting to ``<XDG state home>/nrfprov/<command's part>``;
- output mode: ``--json`` (one JSON document on stdout instead of text);
- a sec tag is the positional ``TAG``; a flow is ``--flow``; a TCP port is ``--broker-port``.

Options renamed to fit this vocabulary keep their old spelling as a hidden alias
(:func:`add_old_spelling`), so existing command lines still work.

Nothing here imports a room below ``cli/`` at module level: ``nrfprov --help`` builds every parser
without loading the modem, transport or stand-in code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nrfprov.config import Settings

DEFAULT_BAUD = 115200  # the nRF91 serial modem application's default UART speed
#: Highest baud rate accepted: Linux's highest standard termios rate is B4000000; the nRF91's UARTE
#: tops out at 1 Mbaud, and a USB CDC ACM port ignores the rate. Larger values only overflow C ints.
BAUD_MAX = 4_000_000
#: A timeout longer than an hour is a typo (the longest AT command, a TLS connect, is allowed 60 s).
TIMEOUT_MAX = 3600.0


def int_range(lo: int, hi: int) -> Any:
    """An argparse ``type`` for a whole number in lo..hi: anything else is a usage error (exit 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be {lo}..{hi}, not {value}")
        return value
    return parse


def float_range(lo: float, hi: float, *, above_lo: bool = False) -> Any:
    """An argparse ``type`` for a number in lo..hi (``above_lo``: lo itself excluded); nan and
    infinity are refused."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        low_ok = value > lo if above_lo else value >= lo
        if not (low_ok and value <= hi):  # also refuses nan (every comparison is False)
            shown = f"more than {lo:g} and at most {hi:g}" if above_lo else f"{lo:g}..{hi:g}"
            raise argparse.ArgumentTypeError(f"must be {shown}, not {text}")
        return value
    return parse


def timeout_type() -> Any:
    """Seconds, more than 0 and at most an hour."""
    return float_range(0.0, TIMEOUT_MAX, above_lo=True)


def add_port_options(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The serial-port options every command that talks to a modem shares."""
    g = p.add_argument_group("serial port")
    g.add_argument("--port", required=required, metavar="URL",
                   help="device path or pyserial URL: /dev/ttyACM0, COM3, /dev/pts/5, socket://host:port")
    g.add_argument("--baud", type=int_range(1, BAUD_MAX), default=DEFAULT_BAUD,
                   help=f"baud rate, 1..{BAUD_MAX} (default {DEFAULT_BAUD})")
    g.add_argument("--rtscts", action="store_true",
                   help="hardware flow control (nRF9160 DK has it; Thingy:91 does not)")


def add_config_options(p: argparse.ArgumentParser) -> None:
    """The fragment options every command that reads configuration shares."""
    g = p.add_argument_group("configuration (Kconfig fragments, merged like a west build)")
    g.add_argument("--conf", metavar="FILE", help="base fragment, e.g. prj.conf")
    g.add_argument(
        "--overlay", metavar="FILE", action="append", default=[],
        help="overlay fragment applied after --conf, in order (like -DEXTRA_CONF_FILE=); repeatable",
    )
    g.add_argument(
        "--set", metavar="CONFIG_X=VAL", action="append", default=[], dest="overrides",
        help="override one symbol after all files (like -DCONFIG_X=VAL); repeatable",
    )


def load_settings_from(args: argparse.Namespace) -> Settings:
    from nrfprov.config import load_settings

    return load_settings(args.conf, args.overlay, args.overrides)


def add_state_option(p: Any, holds: str, *default_parts: str) -> None:
    """``--state DIR``: one folder per command, default under the XDG state home (never relative)."""
    from nrfprov.paths import describe_default

    where = describe_default(*default_parts) if default_parts else "one per device, see below"
    p.add_argument("--state", type=Path, default=None, metavar="DIR",
                   help=f"state folder: {holds} (default: {where})")


def state_dir(args: argparse.Namespace, *default_parts: str) -> Path:
    """``--state`` if given, else the XDG default for ``default_parts``."""
    if args.state is not None:
        return Path(args.state)
    from nrfprov.paths import default_state_dir

    return default_state_dir(*default_parts)


#: %CMNG sec tag range [Nordic nRF91 AT Commands reference, %CMNG].
TAG_MAX = 2147483647
TAG_HELP = f"sec tag, 0..{TAG_MAX}"
#: %CMNG list also shows the modem's own tags 4294967292..4294967294 (a uint32), so commands that
#: only read or refuse them by name accept the whole uint32 range.
TAG_LISTED_MAX = 4294967295


def add_tag_argument(p: Any, *, optional: bool = False, what: str = TAG_HELP, hi: int = TAG_MAX) -> None:
    """``TAG``: the sec tag, always positional and always spelled the same."""
    if optional:
        p.add_argument("tag", type=int_range(0, hi), nargs="?", default=None, metavar="TAG", help=what)
    else:
        p.add_argument("tag", type=int_range(0, hi), metavar="TAG", help=what)


def add_old_spelling(p: Any, flag: str, dest: str, **kw: Any) -> None:
    """An option's previous name, still accepted but not shown in --help."""
    p.add_argument(flag, dest=dest, help=argparse.SUPPRESS, **kw)


def add_json_option(p: Any, what: str = "one JSON document on stdout instead of text") -> None:
    p.add_argument("--json", action="store_true", help=what)


def print_json(data: Any, *, indent: int | None = 2) -> None:
    """One JSON document on stdout; a reader that went away does not change the exit status (print_line)."""
    print_line(json.dumps(data, indent=indent))


def print_line(text: str) -> None:
    """Print one line of progress or events, flushed for a reader that pipes it. A reader that went
    away (``| head``) must not stop work on a modem halfway: stdout then goes to /dev/null and the
    run goes on to its end and its exit status [Python docs, signal module, "Note on SIGPIPE"]."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()


def silence_stdout() -> None:
    """Point stdout at /dev/null after its reader went away, so no later write or the interpreter's
    final flush raises again [Python docs, signal module, "Note on SIGPIPE"]."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
