"""``nrfprov aws``: deploy, inspect and remove the cloud side in your own AWS account.

Argument parsing and printing only; the work is in ``nrfprov.aws`` (which needs the ``aws`` extra,
imported when a subcommand runs, so ``nrfprov --help`` works without boto3). ``claim --port`` also
writes the claim credentials into a modem, which is the one reason this module imports
``nrfprov.modem`` (``nrfprov.aws`` itself imports no device layer).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nrfprov.cli.options import TAG_MAX, add_port_options, float_range, int_range

AWS_EPILOG = """\
From nothing to a provisioned device (docs/aws.md):
  nrfprov aws deploy                      # CloudFormation stack: policies, rule, function, template
  nrfprov aws claim --out ~/nrfprov-claim --port /dev/ttyACM0
  nrfprov provision --port /dev/ttyACM0 --overlay ~/nrfprov-claim/aws.conf \\
      --set CONFIG_AWS_IOT_CLIENT_ID_STATIC=my-device-1

Credentials and region come from the usual AWS places (AWS_PROFILE, AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY, AWS_REGION, ~/.aws/config) or --profile / --region. Needs the extra:
pip install 'nrfprov[aws]'."""

DEPLOY_EPILOG = """\
examples:
  nrfprov aws deploy --dry-run --json            # the plan: every resource, no credentials needed
  nrfprov aws deploy --flow split --allow 'nrf-35*'
  nrfprov aws deploy --dry-run --template-out stack.json   # deploy it with any CloudFormation tool

A second run with the same options changes nothing. A stack whose creation failed, or whose
resources were deleted by hand, is replaced only with --recreate (deletes it first; claim
certificates are kept, device certificates are never touched)."""


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("AWS")
    g.add_argument("--stack-name", default="nrfprov", help="CloudFormation stack name (default nrfprov)")
    g.add_argument("--region", help="AWS region (default: AWS_REGION / the profile's region)")
    g.add_argument("--profile", help="AWS profile from ~/.aws/config (default: AWS_PROFILE)")
    g.add_argument("--endpoint-url", help="send every AWS call to this URL (a local AWS emulator)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")


def register(sub: Any) -> None:
    p = sub.add_parser("aws", help="deploy the cloud side (split workaround, Fleet Provisioning) to your AWS account",
                       description="Deploy, inspect and remove the AWS side of run-time provisioning.",
                       epilog=AWS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    asub = p.add_subparsers(dest="aws_command", metavar="SUBCOMMAND", required=True)

    d = asub.add_parser("deploy", help="create or update the stack (idempotent)", epilog=DEPLOY_EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(d)
    d.add_argument("--flow", choices=("split", "fleet", "both"), default="both",
                   help="split: certificate/<id>/create workaround; fleet: Fleet Provisioning; both (default)")
    d.add_argument("--template-name", default="nrfprov", help="Fleet Provisioning template name (default nrfprov)")
    d.add_argument("--allow", action="append", default=[], metavar="ID",
                   help="allow only these device ids (exact, or prefix*); repeatable; default: any valid id")
    d.add_argument("--reserve", action="append", default=[], metavar="ID",
                   help="never issue for this device id (case-insensitive); repeatable")
    d.add_argument("--no-hook", action="store_true", help="Fleet Provisioning without the pre-provisioning hook")
    d.add_argument("--log-retention-days", type=int_range(1, 3653), default=30,
                   help="function log retention (default 30)")
    d.add_argument("--recreate", action="store_true",
                   help="delete the stack first (a failed or damaged one), then deploy; claim certificates are "
                   "kept and attached to the new claim policy")
    d.add_argument("--dry-run", action="store_true", help="print the plan; no AWS calls, no credentials needed")
    d.add_argument("--template-out", metavar="FILE", help="also write the complete CloudFormation template")
    d.set_defaults(func=_deploy)

    c = asub.add_parser("claim", help="create a claim certificate: certs folder + aws.conf (+ modem sec tag)")
    _common(c)
    c.add_argument("--out", required=True, metavar="DIR", help="folder for ca-cert.pem, client-cert.pem, "
                   "private-key.pem (0600) and aws.conf; must not hold a claim identity yet")
    add_port_options(c, required=False)  # given: also write the claim credentials into this modem
    c.add_argument("--sec-tag", type=int_range(0, TAG_MAX), default=43,
                   help="claim sec tag (default 43, the NCS sample's)")
    c.add_argument("--broker-port", type=int_range(1, 65535), default=8883,
                   help="MQTT port written to aws.conf (default 8883)")
    c.set_defaults(func=_claim)

    s = asub.add_parser("status", help="what is deployed, missing or disabled, and the command that fixes it",
                        description="Exit 0 when everything is in place, 1 when something needs the printed fix.")
    _common(s)
    s.set_defaults(func=_status)

    x = asub.add_parser("destroy", help="delete the stack and the claim certificates (never device certificates)")
    _common(x)
    x.set_defaults(func=_destroy)

    r = asub.add_parser("reprovision", help="allow one more certificate for an existing thing")
    _common(r)
    r.add_argument("thing", metavar="THING", help="thing name (= device id)")
    r.add_argument("--hours", type=float_range(0, 8760, above_lo=True), default=24.0,
                   help="the permission expires after this (default 24)")
    r.set_defaults(func=_reprovision)


def _clients(args: argparse.Namespace) -> Any:
    from nrfprov.aws.session import Clients

    return Clients.create(region=args.region, profile=args.profile, endpoint_url=args.endpoint_url)


def _print_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _options(args: argparse.Namespace) -> Any:
    from nrfprov.aws.template import STACK_NAME_RE, TEMPLATE_NAME_RE, StackOptions
    from nrfprov.errors import UsageError

    if not STACK_NAME_RE.fullmatch(args.stack_name):
        raise UsageError(f"{args.stack_name!r} is not a stack name", hint="a letter, then letters, digits, '-'")
    if not TEMPLATE_NAME_RE.fullmatch(args.template_name):
        raise UsageError(f"{args.template_name!r} is not a template name", hint="1-36 of A-Z a-z 0-9 _ -")
    return StackOptions(flow=args.flow, template_name=args.template_name, allowed=tuple(args.allow),
                        reserved=tuple(args.reserve), hook=not args.no_hook,
                        log_retention_days=args.log_retention_days)


def _deploy(args: argparse.Namespace) -> int:
    from nrfprov.aws import template as tpl

    options = _options(args)
    if args.template_out:
        Path(args.template_out).write_text(json.dumps(tpl.render(), indent=2) + "\n")
    planned = tpl.plan(args.stack_name, options)
    if args.dry_run:
        if args.json:
            _print_json({"stack": args.stack_name, "dryRun": True, "parameters": options.parameters(),
                         "resources": [r.as_dict() for r in planned]})
        else:
            print(f"stack {args.stack_name} would hold ({options.flow} flow):")
            for r in planned:
                print(f"  {r.resource_type:<32} {r.logical_id:<20} {r.purpose}")
        return 0
    from nrfprov.aws.deploy import deploy

    result = deploy(_clients(args), args.stack_name, options, recreate=args.recreate)
    if args.json:
        _print_json(result.as_dict())
        return 0
    if result.action == "unchanged":
        print(f"stack {result.stack} in {result.region} is up to date ({result.status}); nothing changed")
    else:
        print(f"{result.action} stack {result.stack} in {result.region} ({result.status}):")
        for ch in result.changes:
            print(f"  {ch.action:<7} {ch.resource_type:<32} {ch.logical_id:<20} {tpl.PURPOSES.get(ch.logical_id, '')}")
    for k, v in sorted(result.outputs.items()):
        print(f"  {k}: {v}")
    print("next: nrfprov aws claim --out DIR  (a claim certificate for your devices)")
    return 0


def _claim(args: argparse.Namespace) -> int:
    from nrfprov.aws.claim import create_claim

    clients = _clients(args)
    modem = None
    if args.port:
        # Open the modem first: a wrong port must not cost a claim certificate.
        from nrfprov.modem import Modem

        modem = Modem.open(args.port, baud=args.baud, rtscts=args.rtscts)
    try:
        result = create_claim(clients, args.stack_name, Path(args.out), port=args.broker_port, sec_tag=args.sec_tag)
        written = _write_to_modem(modem, args.sec_tag, result) if modem is not None else None
    finally:
        if modem is not None:
            modem.close()
    if args.json:
        doc = result.as_dict()
        doc["secTag"] = args.sec_tag if written else None
        _print_json(doc)
        return 0
    print(f"claim certificate {result.certificate_id} for stack {args.stack_name} ({result.flow} flow)")
    for f in result.files:
        print(f"  wrote {f}")
    if written:
        print(f"  wrote CA, certificate and key into sec tag {args.sec_tag} on {args.port}")
    print(f"next: nrfprov provision --port PORT --overlay {result.out_dir / 'aws.conf'} "
          "--set CONFIG_AWS_IOT_CLIENT_ID_STATIC=<device id>")
    return 0


def _write_to_modem(modem: Any, sec_tag: int, result: Any) -> bool:
    from nrfprov.errors import NrfprovError
    from nrfprov.modem.credentials import CredentialType

    try:
        modem.write_credential(sec_tag, CredentialType.ROOT_CA_CERT, result.ca_pem)
        modem.write_credential(sec_tag, CredentialType.CLIENT_CERT, result.cert_pem)
        modem.write_credential(sec_tag, CredentialType.CLIENT_KEY, result.key_pem)
    except NrfprovError as exc:
        # The claim identity is safe in the folder; only the copy into the modem is missing.
        note = (f"the claim files are safe in {result.out_dir}; write them with: nrfprov creds write "
                f"--port PORT {sec_tag} ca|cert|key FILE")
        exc.hint = f"{exc.hint}; {note}" if exc.hint else note
        raise
    return True


_MARK = {"ok": "ok", "missing": "MISSING", "disabled": "DISABLED", "failed": "FAILED", "busy": "BUSY"}


def _status(args: argparse.Namespace) -> int:
    from nrfprov.aws.status import status

    report = status(_clients(args), args.stack_name)
    if args.json:
        _print_json(report.as_dict())
    else:
        flow = f", {report.flow} flow" if report.flow else ""
        print(f"stack {report.stack} in {report.region}{flow}:")
        for c in report.checks:
            detail = f"  ({c.detail})" if c.detail else ""
            print(f"  {_MARK.get(c.state, c.state):<9} {c.what}{detail}")
        print("all in place" if report.ok else f"fix: {report.fix}")
    return 0 if report.ok else 1


def _destroy(args: argparse.Namespace) -> int:
    from nrfprov.aws.deploy import destroy

    result = destroy(_clients(args), args.stack_name)
    if args.json:
        _print_json(result.as_dict())
        return 0
    if not result.existed:
        print(f"stack {args.stack_name} does not exist; nothing to remove")
        return 0
    print(f"deleted stack {result.stack}")
    for cert in result.deleted_claim_certificates:
        print(f"  deleted claim certificate {cert}")
    for cert in result.detached_certificates:
        print(f"  detached the claim policy from certificate {cert} (kept: it is not a claim-only certificate)")
    if result.kept_device_policy:
        print(f"  kept device policy {result.kept_device_policy} ({result.device_certificates} device "
              "certificates use it; provisioned devices keep connecting)")
    for note in result.notes:
        print(f"  note: {note}")
    return 0


def _reprovision(args: argparse.Namespace) -> int:
    import time

    from nrfprov.aws.things import allow_reprovision

    result = allow_reprovision(_clients(args), args.thing, hours=args.hours)
    if args.json:
        _print_json(result.as_dict())
        return 0
    until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(result.expires_at))
    active = ", ".join(result.active_certificates) or "none"
    print(f"thing {result.thing} may get one new certificate until {until}")
    print(f"  active now: {active} (deactivated when the new one is issued)")
    return 0
