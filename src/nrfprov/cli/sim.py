"""``nrfprov sim``: run the simulated nRF91 in the foreground on a pty."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from nrfprov.cli.options import BAUD_MAX, TIMEOUT_MAX, add_state_option, float_range, int_range, state_dir
from nrfprov.names import DIALECTS, NETWORKS

DESCRIPTION = """\
Serve a simulated nRF91 (modem firmware + Serial Modem or legacy SLM socket commands) on a
pseudo-terminal. The first line on stdout is the pty path; point any AT client at it.

The simulator keeps its credential store, IMEI and device UUID in --state, throttles the UART
to --baud both ways, maps sockets to real TCP on 127.0.0.1, runs modem-offloaded TLS 1.2 with the
sec tag's credentials and enforces the modem's two TLS limits: 2303 bytes per received TLS data
record (EMSGSIZE) and 4 KB of server certificate chain in the handshake (the connect fails).
On exit (Ctrl-C / SIGTERM) it writes stats.json (UART and air byte counters) into --state.

Fault injection: --faults FILE is re-read whenever it changes; each new line is a JSON object:
  {"fail": "AT%CMNG=0", "cme": 518, "times": 1}   answer matching commands with +CME ERROR
  {"fail": "AT#XCONNECT", "cme": null}             ... or with a plain ERROR
  {"delay": "AT+CFUN", "seconds": 2.5}             hold matching commands before answering
  {"drop_link_after": 100}                         the UART dies after 100 more bytes
"""

EPILOG = """\
examples:
  nrfprov sim --dialect sm --state /tmp/dev1
  nrfprov sim --dialect slm --baud 9600 --link /tmp/nrf91 --attach-s 3
  nrfprov sim --count 100 --state /tmp/bench --link '/tmp/nrf91-{n}'   (a bench of 100 modems)
  nrfprov sim --network nb-iot                     (RTT 1.6 s, 62.5/26 kbit/s, attach 5 s)
  nrfprov sim --network lte-m --rtt-ms 400 --down-kbps 100
  nrfprov sim --resolve a1b2-ats.iot.eu-west-1.amazonaws.com=127.0.0.1
  nrfprov sim --fail AT%CMNG=0=515 --delay AT+CFUN=2 --drop-link-after 5000
  nrfcredstore /dev/ttyACM-nrfsim list        (with --tty-alias /dev/ttyACM-nrfsim, as root)
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "sim",
        help="run a simulated nRF91 on a pty",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dialect", choices=DIALECTS, default="sm", help="socket dialect (default sm)")
    p.add_argument("--baud", type=int_range(0, BAUD_MAX), default=115200,
                   help=f"UART speed in baud, 0..{BAUD_MAX}, 0 = unthrottled")
    add_state_option(p, "credentials, IMEI, stats.json; with --count, one subfolder per modem", "sim")
    p.add_argument(
        "--count", type=int_range(1, 1000), default=1, metavar="N",
        help="serve N modems from this process, each with its own pty, IMEI and state "
        "(--state DIR/modem-000 …); --link and --tty-alias take {n} (default: -<n> appended)",
    )
    p.add_argument("--link", type=Path, default=None, help="also make a symlink to the pty here ({n}: modem number)")
    p.add_argument(
        "--network",
        choices=NETWORKS,
        default="ideal",
        help="radio between modem and internet: delay and rate on every socket (TCP and modem TLS) and "
        "the attach time after CFUN=1; ideal (default) = none. lte-m: RTT 150 ms, up 375 / down 300 "
        "kbit/s, attach 2 s; nb-iot: RTT 1600 ms, up 62.5 / down 26 kbit/s, attach 5 s",
    )
    p.add_argument("--rtt-ms", type=float_range(0, 600_000), default=None,
                   help="round-trip time in ms (overrides --network)")
    p.add_argument("--up-kbps", type=float_range(0, 1e7), default=None, help="uplink rate in kbit/s, 0 = unlimited")
    p.add_argument("--down-kbps", type=float_range(0, 1e7), default=None, help="downlink rate in kbit/s, 0 = unlimited")
    p.add_argument(
        "--attach-s", "--attach-delay", dest="attach_delay", type=float_range(0, TIMEOUT_MAX), default=None,
        help="seconds from CFUN=1 to +CEREG: 1 (default: the --network profile's, 0 for ideal)",
    )
    p.add_argument("--imei", default=None, help="15-digit Luhn-valid IMEI (default: made up once per state)")
    p.add_argument("--terminator", default="+++", help="legacy SLM data-mode terminator (default +++)")
    p.add_argument(
        "--at-termination",
        choices=["cr", "lf", "crlf", "any"],
        default=None,
        help="AT command terminator the firmware was built with: default cr for sm "
        "(CONFIG_SM_CR_TERMINATION), crlf for slm; 'any' accepts CR or LF",
    )
    p.add_argument("--no-csr-quirk", action="store_true", help="emit clean CSRs (no mfw NULL parameter)")
    p.add_argument(
        "--signing-key",
        choices=["production", "rd", "identity"],
        default="production",
        help="key type the %%KEYGEN / %%ATTESTTOKEN COSE header names: Nordic base production (-4, default), "
        "R&D (-5) or identity (-2); the simulator always signs with its own per-device key",
    )
    p.add_argument("--faults", type=Path, default=None, help="JSON-lines fault control file (re-read)")
    p.add_argument(
        "--fail",
        action="append",
        default=[],
        metavar="PREFIX=CME",
        help="answer the first command starting with PREFIX with +CME ERROR: CME ('ERROR' for plain)",
    )
    p.add_argument(
        "--delay", action="append", default=[], metavar="PREFIX=SECONDS", help="hold matching commands"
    )
    p.add_argument("--drop-link-after", type=int_range(0, 1 << 40), default=None,
                   metavar="N", help="UART dies after N bytes")
    p.add_argument(
        "--resolve",
        action="append",
        default=[],
        metavar="HOST=IP",
        help="map a host name for #XCONNECT (repeatable); only loopback is reachable",
    )
    p.add_argument(
        "--tty-alias",
        type=Path,
        default=None,
        help="bind-mount the pty at this /dev/ttyACM* path so tools that enumerate serial ports "
        "(nrfcredstore) find it; needs root",
    )
    p.set_defaults(func=run)


def _resolve_map(items: list[str]) -> dict[str, str]:
    from nrfprov.errors import UsageError

    out = {}
    for item in items:
        host, sep, ip = item.partition("=")
        if not sep or not host or not ip:
            raise UsageError(f"--resolve expects HOST=IP, got {item!r}")
        out[host] = ip
    return out


def _network(args: argparse.Namespace) -> Any:
    from nrfprov.errors import UsageError
    from nrfprov.sim.network import profile

    try:
        return profile(args.network).with_overrides(rtt_ms=args.rtt_ms, up_kbps=args.up_kbps,
                                                    down_kbps=args.down_kbps)
    except ValueError as exc:
        raise UsageError(str(exc), hint="--rtt-ms 150 --up-kbps 375 --down-kbps 300") from exc


def _flag_faults(args: argparse.Namespace) -> list[dict[str, Any]]:
    """--fail / --delay / --drop-link-after as the same objects the fault file holds."""
    from nrfprov.errors import UsageError

    specs: list[dict[str, Any]] = []
    try:
        for item in args.fail:
            prefix, _, code = item.rpartition("=")
            specs.append({"fail": prefix, "cme": None if code.upper() == "ERROR" else int_range(0, 65535)(code)})
        for item in args.delay:
            prefix, _, secs = item.rpartition("=")
            specs.append({"delay": prefix, "seconds": float_range(0, TIMEOUT_MAX)(secs)})
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise UsageError(f"bad fault flag: {exc}", hint="--fail AT%CMNG=0=518, --delay AT+CFUN=2.5") from exc
    if any(not (s.get("fail") or s.get("delay")) for s in specs):
        raise UsageError("a fault flag needs a command prefix", hint="--fail AT%CMNG=0=518")
    if args.drop_link_after is not None:
        specs.append({"drop_link_after": args.drop_link_after})
    return specs


def run(args: argparse.Namespace) -> int:
    from nrfprov.errors import UsageError
    from nrfprov.sim import SimulatedModem, fleet
    from nrfprov.sim.faults import FaultFile, apply_fault

    state = state_dir(args, "sim")
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    count = args.count
    if not 1 <= count <= fleet.MAX_COUNT:
        raise UsageError(f"--count must be 1..{fleet.MAX_COUNT}, not {count}")
    if count > 1 and args.tty_alias is not None and fleet.PLACEHOLDER not in str(args.tty_alias):
        raise UsageError("with --count, --tty-alias needs {n} in the path", hint="--tty-alias /dev/ttyACM-sim{n}")
    network = _network(args)
    sims: list[SimulatedModem] = []
    try:
        for n in range(count):
            sims.append(SimulatedModem(
                fleet.state_dir(state, n, count),
                dialect=args.dialect,
                baud=args.baud,
                attach_delay=args.attach_delay,
                network=network,
                imei=fleet.imei(args.imei, n),
                terminator=args.terminator,
                link=fleet.numbered(args.link, n, count),
                csr_null_quirk=not args.no_csr_quirk,
                resolve=_resolve_map(args.resolve),
                signing_key=args.signing_key,
                at_termination=args.at_termination,
            ))
    except (ValueError, OSError) as exc:
        for sim in sims:
            sim.stop()
        raise UsageError(str(exc), hint="see nrfprov sim --help") from exc
    faults = [FaultFile(args.faults, sim) for sim in sims] if args.faults else []
    for spec in _flag_faults(args):
        for sim in sims:
            apply_fault(sim, spec)
    aliases: list[Any] = []
    started: list[SimulatedModem] = []
    try:
        for sim in sims:
            started.append(sim.start())
        if args.tty_alias is not None:
            from nrfprov.sim.ttyalias import TtyAlias

            for n, sim in enumerate(sims):
                alias = TtyAlias(Path(sim.port_url), fleet.numbered(args.tty_alias, n, count) or args.tty_alias)
                alias.__enter__()
                aliases.append(alias)
        for sim in sims:  # the first `count` lines on stdout: one pty path per modem, in order
            print(sim.port_url, flush=True)
        also = f", also at {args.tty_alias}" if aliases else ""
        who = f"IMEI {sims[0].identity.imei}" if count == 1 else f"{count} modems, IMEIs {sims[0].identity.imei}…"
        print(
            f"simulated nRF91 ({args.dialect}, {args.baud or 'unthrottled'} baud, {network.name} network, "
            f"{who}){also} - state in {state}; Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(0.25):
            for f in faults:
                f.poll()
    finally:
        for alias in aliases:
            alias.__exit__(None, None, None)
        for sim in started:
            sim.stop()
    total: dict[str, int] = {}
    for sim in sims:
        stats = sim.stats.snapshot()
        (sim.state_dir / "stats.json").write_text(json.dumps(stats, indent=1) + "\n")
        for k, v in stats.items():
            total[k] = total.get(k, 0) + v
    print(json.dumps(total), file=sys.stderr)
    return 0
