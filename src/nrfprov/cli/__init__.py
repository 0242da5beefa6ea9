"""``nrfprov`` command line: parses arguments, runs a subcommand, maps errors to exit codes.

Every subcommand lives in a module of this package with ``register(subparsers)``; shared options
are in ``options.py``. Those modules import nothing below ``cli/`` at module level: a handler
imports the rooms it drives when it runs, so ``nrfprov --help`` loads no modem, TLS or MQTT code.
The exit codes are ``nrfprov.errors.EXIT_CODES``; ``--help`` prints them. SIGINT, SIGTERM and
SIGHUP end every command the same way (``nrfprov.interrupts``): exit 130, 143 and 129.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from nrfprov.cli.options import silence_stdout
from nrfprov.errors import EXIT_BROKEN_PIPE, EXIT_CODES, EXIT_INTERRUPTED, Interrupted, NrfprovError
from nrfprov.interrupts import install as install_interrupts

# Modules that add subcommands, in the order they appear in --help.
_COMMAND_MODULES = [
    "nrfprov.cli.config",
    "nrfprov.cli.modem",
    "nrfprov.cli.sim",
    "nrfprov.cli.provision",
    "nrfprov.cli.ports",
    "nrfprov.cli.station",
    "nrfprov.cli.demo",
    "nrfprov.cli.tls_check",
    "nrfprov.cli.cloud",
    "nrfprov.cli.aws",
]


def _epilog() -> str:
    codes = "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES.items())
    return (f"exit codes:\n{codes}\n\n"
            "Start with `nrfprov config show --conf prj.conf --overlay overlay-native_tls.conf`\n"
            "to see what a set of NCS fragments selects.")


def build_parser() -> argparse.ArgumentParser:
    from nrfprov import __version__

    parser = argparse.ArgumentParser(
        prog="nrfprov",
        description="Provision Nordic nRF91 modems with AWS IoT credentials over their AT interface.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"nrfprov {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level={0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG),
        format="%(levelname)s %(name)s: %(message)s",
    )
    handler = getattr(args, "func", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    # SIGINT, SIGTERM and SIGHUP all become Interrupted (a KeyboardInterrupt), held while an AT
    # command is in flight, so every command ends them the same way: modem restored, exit 128 + signal.
    with install_interrupts():
        try:
            return int(handler(args) or 0)
        except NrfprovError as exc:
            print(f"nrfprov: error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt as exc:
            code = exc.exit_code if isinstance(exc, Interrupted) else EXIT_INTERRUPTED
            name = exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"
            print(f"nrfprov: interrupted ({name})", file=sys.stderr)
            return code
        except BrokenPipeError:
            silence_stdout()
            return EXIT_BROKEN_PIPE
