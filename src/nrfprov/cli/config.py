"""``nrfprov config show``: what a set of NCS fragments means to nrfprov."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


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


def load_from_args(args: argparse.Namespace) -> Any:
    from nrfprov.config import load_settings

    return load_settings(args.conf, args.overlay, args.overrides)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "config", help="inspect configuration",
        description="Inspect what nrfprov reads from NCS Kconfig fragments.",
    )
    csub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    show = csub.add_parser(
        "show", help="print the merged settings",
        description="Merge --conf and --overlay fragments (last assignment wins), apply --set, and print "
        "the settings nrfprov will use. TLS backend rule: 'native' when CONFIG_NRFPROV_TLS_BACKEND=\"native\" "
        "or when the fragments enable NCS native TLS (CONFIG_MBEDTLS_TLS_LIBRARY=y or "
        "CONFIG_MQTT_HELPER_NATIVE_TLS=y); 'offload' otherwise; 'host' only by name.",
    )
    add_config_options(show)
    show.add_argument("--json", action="store_true", help="one JSON object on stdout")
    show.set_defaults(func=_show)


def _show(args: argparse.Namespace) -> int:
    s = load_from_args(args)
    data = s.public_dict()
    if args.json:
        if args.verbose:
            data["ignored"] = list(s.ignored)
            data["origins"] = dict(s.origins)
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    width = max(len(k) for k in data)
    for key, value in data.items():
        origin = s.origins.get(key)
        suffix = f"    ← {origin}" if origin and args.verbose and key != "tls_backend_reason" else ""
        print(f"{key:<{width}}  {value!r}{suffix}")
    if args.verbose and s.ignored:
        print(f"\nignored firmware-only symbols ({len(s.ignored)}):")
        for line in s.ignored:
            print(f"  {line}")
    return 0
