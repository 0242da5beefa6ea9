"""``nrfprov station``: provision every selected modem at once, with a live view and a batch report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nrfprov.cli.options import (
    add_config_options,
    add_json_option,
    float_range,
    int_range,
    load_settings_from,
    print_line,
)
from nrfprov.cli.ports import add_selection_options
from nrfprov.names import FLOWS, FORMATS

#: Mirrors station.runner.MAX_JOBS (not imported: --help loads no room below cli/).
MAX_JOBS = 100

DESCRIPTION = """\
Run the provisioning chain of `nrfprov provision` on every selected modem at the same time: one
journal per IMEI as `provision` keeps it, one report row per device attempt, the cloud's request
rate respected station-wide. The modems are the Nordic boards plugged in (see `nrfprov ports`), or
the ports --port / --serial-number name."""

EPILOG = """\
the bench workflow:
  1. flash the firmware image with the claim credentials in CONFIG_AWS_IOT_SEC_TAG and plug the
     boards in (one USB cable each); `nrfprov ports` shows each board, IMEI and modem firmware.
  2. provision the batch; every attempt is appended to the report (CSV, JSON lines beside it):
       nrfprov station --conf prj.conf --report batch-0412.csv
  3. rerun the same command after replugging or fixing a cable: modems already done are skipped
     without contacting the cloud, interrupted ones resume from their journal (no new certificate),
     failed ones are tried again. --force re-provisions modems that are done.
  4. or leave it running and plug modems in as you go; Ctrl-C finishes or journals every device
     in flight and leaves no modem offline (CFUN=4):
       nrfprov station --conf prj.conf --report batch-0412.csv --watch

more examples:
  nrfprov station --conf prj.conf --overlay overlay-native_tls.conf --jobs 16 --report batch.csv
  nrfprov station --conf prj.conf --port '/dev/ttyACM*' --port /dev/ttyUSB3 --report batch.csv
  nrfprov station --conf prj.conf --serial-number 001050912345 --serial-number 001050912346
  nrfprov station --conf prj.conf --report batch.csv --json | tee events.jsonl   (one JSON event per line)
  nrfprov sim --count 10 --baud 0 --state /tmp/bench --link '/tmp/nrf91-{n}' &   (a simulated bench,
  nrfprov station --conf prj.conf --port '/tmp/nrf91-*' --report /tmp/bench.csv   see docs/station.md)

On a terminal a live view shows one row per device (port, IMEI, step of the chain, elapsed, UART
bytes, result) and the batch (done / failed / running, devices per minute, ETA); otherwise, or with
--json, stdout carries one JSON event per line: found, device (each step), result (the report row),
summary (last).

Rate limits: certificate and RegisterThing requests take a token from a station-wide bucket
(CONFIG_NRFPROV_STATION_REQUEST_RATE per second, CONFIG_NRFPROV_STATION_REQUEST_BURST at once;
default 5 and 5); a request the cloud throttles issued nothing and is repeated after a jittered
backoff. The client id must differ per device ({imei} in CONFIG_AWS_IOT_CLIENT_ID_STATIC, or unset:
nrf-<IMEI>): AWS IoT allows one connection, and one CONNECT per second, per client id.

Exit status: 0 when every device was provisioned, resumed or skipped as done; otherwise the most
severe class among the failed devices (8, 1, 7, 6, 5, 4, 3, 2), and the summary names their ports;
128 + signal when stopped by Ctrl-C / SIGTERM / SIGHUP. docs/station.md has the details."""


def register(sub: Any) -> None:
    p = sub.add_parser("station", help="provision every plugged-in nRF91 at once (live view, report, safe reruns)",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_selection_options(p)
    add_config_options(p)
    g = p.add_argument_group("station")
    g.add_argument("--jobs", type=int_range(1, MAX_JOBS), default=MAX_JOBS, metavar="N",
                   help=f"devices provisioned at once, 1..{MAX_JOBS} (default {MAX_JOBS}); the others wait their turn")
    g.add_argument("--report", type=Path, default=None, metavar="FILE.csv",
                   help="append one row per device attempt to FILE.csv and FILE.jsonl (no secrets in either); "
                   "a rerun reads it to recognise certificates proven earlier")
    g.add_argument("--watch", action="store_true",
                   help="keep running and provision modems as they are plugged in, until Ctrl-C")
    g.add_argument("--poll-s", type=float_range(0.05, 60.0), default=1.0, metavar="S",
                   help="with --watch: seconds between looks for new ports (default 1)")
    g.add_argument("--flow", choices=FLOWS, help="as for `nrfprov provision` (default: CONFIG_NRFPROV_FLOW)")
    g.add_argument("--format", dest="payload_format", choices=FORMATS,
                   help="as for `nrfprov provision` (default: CONFIG_NRFPROV_PAYLOAD_FORMAT)")
    g.add_argument("--state", type=Path, default=None, metavar="DIR",
                   help="journals in DIR/<IMEI> (default: the folder `nrfprov provision` uses for each IMEI)")
    g.add_argument("--force", action="store_true",
                   help="re-provision modems whose sec tag already holds a client certificate (done ones too)")
    add_json_option(p, "no live view: one JSON event per line on stdout (also the default without a terminal)")
    p.set_defaults(func=_station)


def _check(settings: Any, args: argparse.Namespace) -> None:
    from nrfprov.config import IMEI_PLACEHOLDER
    from nrfprov.errors import UsageError
    from nrfprov.provisioning.plan import check_combination

    check_combination(settings, args.flow or settings.flow, settings.tls_backend, will_request=True)
    if IMEI_PLACEHOLDER not in settings.client_id:
        raise UsageError(
            f"every modem would connect as client id {settings.client_id!r} ({settings.symbol('client_id')}); "
            "AWS IoT drops the older of two connections with one client id",
            hint="put {imei} in CONFIG_AWS_IOT_CLIENT_ID_STATIC, or leave it unset (nrf-<IMEI>)")
    if args.report is not None and args.report.suffix != ".csv":
        raise UsageError(f"--report {args.report}: the report is a .csv file (its JSON lines go beside it)",
                         hint=f"--report {args.report.with_suffix('.csv')}")


def _station(args: argparse.Namespace) -> int:
    from nrfprov.station import Station, StationOptions

    settings = load_settings_from(args)
    _check(settings, args)
    options = StationOptions(
        patterns=tuple(args.port), serial_numbers=tuple(args.serial_numbers), jobs=args.jobs, watch=args.watch,
        poll_s=args.poll_s, state_root=args.state, flow=args.flow, payload_format=args.payload_format,
        force=args.force, baud=args.baud, rtscts=args.rtscts, report=args.report)
    live = not args.json and sys.stdout.isatty()
    if live:
        from nrfprov.cli.station_view import LiveView

        station = Station(settings, options)
        with LiveView(station):
            summary = station.run()
        _print_summary(summary.as_dict())
    else:
        station = Station(settings, options, emit=_print_event)
        summary = station.run()
    if summary.stopped_by:
        print(f"nrfprov: station stopped ({summary.as_dict()['stopped_by']}): devices in flight finished or "
              "journaled; rerun the same command to continue", file=sys.stderr)
    if summary.devices == 0:
        print("nrfprov: station: no modem found (pyserial lists no Nordic board; ptys need --port; "
              "see nrfprov ports --all)", file=sys.stderr)
    if summary.exit_code != 0:
        _print_failed(summary.as_dict())
    return summary.exit_code


def _print_event(event: dict[str, Any]) -> None:
    # Called under the station's output lock: one whole line per event, flushed for a reader piping it.
    print_line(json.dumps(event, separators=(",", ":")))


def _print_summary(s: dict[str, Any]) -> None:
    print(f"{s['devices']} devices: {s['provisioned']} provisioned, {s['resumed']} resumed, {s['skipped']} skipped "
          f"(done), {s['failed']} failed, {s['busy']} busy, {s['interrupted']} interrupted, {s['not_started']} not "
          f"started; {s['seconds']:.1f} s, {s['devices_per_min']:.1f} devices/min", flush=True)


def _print_failed(s: dict[str, Any]) -> None:
    for f in s["failed_ports"]:
        print(f"nrfprov: {f['port']}: {f['result']} ({f['error_class'] or '-'}, exit {f['exit_code']})",
              file=sys.stderr)
    for e in s["report_errors"]:
        print(f"nrfprov: report: {e}", file=sys.stderr)
    if s["failed_ports"]:
        print(f"nrfprov: station: {len(s['failed_ports'])} device(s) not done: "
              + ", ".join(f["port"] for f in s["failed_ports"]), file=sys.stderr)
