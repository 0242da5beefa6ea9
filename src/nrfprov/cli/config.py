"""``nrfprov config show``: what a set of NCS fragments means to nrfprov."""

from __future__ import annotations

import argparse
from typing import Any

from nrfprov.cli.options import add_config_options, add_json_option, load_settings_from, print_json


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
    add_json_option(show, "one JSON object on stdout")
    show.set_defaults(func=_show)


def _show(args: argparse.Namespace) -> int:
    from nrfprov.errors import ConfigError
    from nrfprov.provisioning.cas import choose_ca

    s = load_settings_from(args)
    data = s.public_dict()
    try:  # which CA a provisioning run would write into the provisioned sec tag, and from where
        data["provisioned_ca"] = choose_ca(s).describe()
    except ConfigError as exc:
        data["provisioned_ca"] = f"none: {exc}"
    if args.json:
        if args.verbose:
            data["ignored"] = list(s.ignored)
            data["origins"] = dict(s.origins)
        print_json(data)
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
