"""``nrfprov provision``: the 12-step chain on a real (or simulated) modem."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nrfprov.cli.options import (
    add_config_options,
    add_json_option,
    add_port_options,
    add_state_option,
    load_settings_from,
    print_json,
    print_line,
    state_dir,
)
from nrfprov.names import FLOWS, FORMATS

PROVISION_EPILOG = """\
examples:
  # Nordic's aws_iot_provisioning sample's split-topic workaround, modem TLS with the claim credentials in sec tag 43
  nrfprov provision --port /dev/ttyACM0 --conf prj.conf
  # the official CreateKeysAndCertificate reply, TLS on the host over the modem's TCP socket
  nrfprov provision --port /dev/ttyACM0 --conf prj.conf --overlay overlay-native_tls.conf \\
      --flow combined --format cbor
  # key generated inside the modem (%KEYGEN), CreateCertificateFromCsr + RegisterThing
  nrfprov provision --port /dev/ttyACM0 --conf prj.conf --flow csr
  # the run was interrupted after the credentials arrived: finish it, no new certificate
  nrfprov provision --port /dev/ttyACM0 --conf prj.conf --resume

The chain (Nordic's aws_iot_provisioning sample's 12 steps): LTE up -> claim connect -> subscribe ->
request -> receive -> disconnect -> CFUN=4 -> write CA, cert, key to the provisioned sec tag (verified by %CMNG SHA-256)
-> clear subscriptions -> CFUN=1 -> reconnect with the new credentials and publish QoS 1 to
$aws/things/<thing>/shadow/update (the PUBACK is the proof).

Each request is journaled (0600) in the state directory BEFORE it is sent, every credential reply
the moment it arrives, and the key is erased from the journal only after the verified write and the
successful reconnect; --resume tells "never requested", "requested, reply lost" (naming what the cloud
probably issued) and "finished" apart. A sec tag that already holds a client certificate is not
overwritten without --force.
Refused before anything is requested (exit 2): combined/csr without CONFIG_NRFPROV_TEMPLATE_NAME
(AWS activates such certificates only in RegisterThing); offload without CONFIG_AWS_IOT_SEC_TAG;
claim tag == provisioned tag; a CA file that is no PEM certificate, expired, or too large for one
AT%CMNG command; a certs folder whose key does not match its certificate; sec tags out of range.
combined over offloaded TLS is refused the same way, as ModemTlsLimitError (exit 4): its ~3.5 KB
reply does not fit the modem's 2 KB TLS buffer; use the native backend or split."""

def register(sub: Any) -> None:
    p = sub.add_parser(
        "provision", help="provision a modem with AWS IoT credentials (the 12-step chain)",
        description="Fetch device credentials from AWS IoT with the claim identity, write them to the "
        "modem's provisioned sec tag, and prove them by reconnecting. Configuration comes from the same "
        "Kconfig fragments the firmware build uses.",
        epilog=PROVISION_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_port_options(p)
    add_config_options(p)
    g = p.add_argument_group("provisioning")
    g.add_argument("--flow", choices=FLOWS,
                   help="split: the workaround topics of Nordic's aws_iot_provisioning sample; "
                   "combined: CreateKeysAndCertificate; csr: %%KEYGEN + CreateCertificateFromCsr "
                   "(default: CONFIG_NRFPROV_FLOW, else split)")
    g.add_argument("--format", dest="payload_format", choices=FORMATS,
                   help="Fleet Provisioning payload format (default: CONFIG_NRFPROV_PAYLOAD_FORMAT, else json)")
    add_state_option(g, "the provisioning journal", "<IMEI>")
    g.add_argument("--resume", action="store_true",
                   help="continue an interrupted run with the journaled credentials; requests nothing new "
                   "(a run already proven is reported as such)")
    g.add_argument("--force", action="store_true",
                   help="replace a client certificate the provisioned sec tag already holds (without it the "
                   "run stops, exit 2); the old certificate's id is printed so it can be revoked")
    g.add_argument("--thing", metavar="NAME",
                   help="with --resume after an interrupted RegisterThing: the thing name it created, when "
                   "nrfprov cannot derive it (it tries the client id and the template parameter values)")
    add_json_option(p, "no progress display; one JSON summary on stdout")
    p.set_defaults(func=_provision)



class _Progress:
    """Live step-by-step display: rich on a terminal, one plain line per step otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = sys.stdout.isatty()
        self._console: Any = None
        self._status: Any = None
        if enabled and self.tty:
            from rich.console import Console

            self._console = Console()

    def start(self, text: str) -> None:
        if not self.enabled:
            return
        if self._console is not None:
            self._status = self._console.status(text)
            self._status.start()
        else:
            print_line(text)

    def step(self, report: Any, next_step: str | None) -> None:
        if not self.enabled:
            return
        detail = f"  {report.detail}" if report.detail else ""
        if self._console is not None:
            self._console.print(f"[green]✓[/green] {report.state.value:<20}[dim]{report.seconds:7.2f} s[/dim]{detail}",
                                highlight=False)
            if self._status is not None and next_step:
                self._status.update(f"{next_step} ...")
        else:
            print_line(f"step {report.state.value}: {report.seconds:.2f} s{detail}")

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def _provision(args: argparse.Namespace) -> int:
    from nrfprov.errors import NrfprovError
    from nrfprov.modem import Modem
    from nrfprov.provisioning.driver import Driver
    from nrfprov.provisioning.plan import check_combination
    from nrfprov.provisioning.results import StepReport

    settings = load_settings_from(args)
    flow = args.flow or settings.flow
    # Refuse what cannot work before the port is even opened (exit 2).
    check_combination(settings, flow, settings.tls_backend, will_request=not args.resume)
    progress = _Progress(enabled=not args.json)
    # A --state folder two runs may share is locked before the modem hears a byte; the default folder
    # is per IMEI, so the driver locks it once the IMEI is known (Driver.run). Both: nrfprov.locks.
    journal_lock = _lock_state_folder(args)
    try:
        modem = Modem.open(args.port, baud=args.baud, dialect=settings.modem_dialect,
                           slm_terminator=settings.slm_terminator, rtscts=args.rtscts)
    except BaseException:
        if journal_lock is not None:
            journal_lock.release()
        raise
    driver: Driver | None = None
    try:
        state = state_dir(args, modem.imei())

        def on_step(report: StepReport) -> None:
            steps = driver.machine.steps if driver is not None and driver.machine is not None else []
            later = steps[steps.index(report.state) + 1:] if report.state in steps else []
            progress.step(report, later[0].value if later else None)

        driver = Driver(settings, modem, state_dir=state, flow=flow, payload_format=args.payload_format,
                        resume=args.resume, force=args.force, thing=args.thing, progress=on_step)
        progress.start(f"provisioning over {args.port} ({flow}, {settings.tls_backend} TLS), journal {state}")
        try:
            result = driver.run()
        except NrfprovError as exc:
            progress.stop()
            if args.json:
                summary = driver.result.summary() if driver.result is not None else {"ok": False}
                print_json(summary)
                print(f"nrfprov: error: {exc}", file=sys.stderr)
                return exc.exit_code
            raise
        progress.stop()
        if args.json:
            print_json(result.summary())
        else:
            print(f"provisioned: thing {result.thing_name}, certificate {result.certificate_id[:16]}..., "
                  f"sec tag {settings.provisioned_sec_tag}, {result.seconds:.1f} s, "
                  f"{result.uart_bytes} UART bytes", flush=True)
            if result.replaced:
                old = result.replaced.get("certificate_id") or f"SHA-256 of its PEM {result.replaced['sha256']}"
                print(f"replaced certificate {old}: it is still ACTIVE in AWS; revoke it", flush=True)
        return 0
    finally:
        progress.stop()
        modem.close()
        if journal_lock is not None:
            journal_lock.release()


def _lock_state_folder(args: argparse.Namespace) -> Any:
    if args.state is None:
        return None
    from nrfprov.provisioning.journal import Journal

    return Journal(state_dir(args)).lock().acquire()
