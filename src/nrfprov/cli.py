"""``nrfprov`` command line: parses arguments, runs a subcommand, maps errors to exit codes.

Each room keeps its subcommands in its own module with ``register(subparsers)``; handlers import
their heavy dependencies lazily so ``nrfprov --help`` stays fast.
Exit codes (see errors.py): 0 ok · 2 usage/config · 3 modem/AT · 4 network/TLS · 5 cloud rejected ·
6 payload invalid · 7 credential write/verify failed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from nrfprov.errors import NrfprovError

# Modules that add subcommands, in the order they appear in --help.
_COMMAND_MODULES = [
    "nrfprov.config_cli",
    "nrfprov.modem.cli",
    "nrfprov.sim.cli",
    "nrfprov.provisioning.cli",
    "nrfprov.transport.cli",
    "nrfprov.cloud.cli",
    "nrfprov.aws_cli",
]

EPILOG = """\
exit codes: 0 ok, 2 usage/config, 3 modem/AT, 4 network/TLS, 5 cloud rejected,
            6 payload invalid, 7 credential write/verify failed

Start with `nrfprov config show --conf prj.conf --overlay overlay-native_tls.conf`
to see what a set of NCS fragments selects."""


def build_parser() -> argparse.ArgumentParser:
    from nrfprov import __version__

    parser = argparse.ArgumentParser(
        prog="nrfprov",
        description="Provision Nordic nRF91 modems with AWS IoT credentials over their AT interface.",
        epilog=EPILOG,
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
    try:
        return int(handler(args) or 0)
    except NrfprovError as exc:
        print(f"nrfprov: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("nrfprov: interrupted", file=sys.stderr)
        return 130
