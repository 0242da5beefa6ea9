"""``nrfprov cloud up|revoke|reprovision|list``: run the local AWS IoT stand-in and manage its certificates."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

from nrfprov.cli.options import (
    add_json_option,
    add_old_spelling,
    add_state_option,
    float_range,
    int_range,
    state_dir,
)

UP_EPILOG = """\
examples:
  nrfprov cloud up --state /tmp/aws                      # RSA-2048 device keys, like AWS
  nrfprov cloud up --state /tmp/aws --broker-port 8883 --device-key ec --split-order cert-first
  nrfprov cloud up --state /tmp/aws --server-chain rsa      # the chain AWS presents on RSA suites
  nrfprov cloud up --state /tmp/aws --request-rate 2 --request-burst 1   # throttle like a busy account

In another terminal, with the files it wrote (see docs/stand-in.md):
  mosquitto_rr -h 127.0.0.1 -p PORT --cafile /tmp/aws/ca.pem --cert /tmp/aws/claim-cert.pem \\
      --key /tmp/aws/claim-key.pem -t '$aws/certificates/create/json' \\
      -e '$aws/certificates/create/json/accepted' -m '{}'
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "cloud", help="local AWS IoT Core stand-in (mTLS mosquitto + provisioning responder)",
        description="A local AWS IoT Core for tests, demos and benchmarks: mosquitto with mutual TLS and "
        "per-certificate topic rights on 127.0.0.1, and a responder for the split-topic workaround and the "
        "Fleet Provisioning MQTT API (CreateKeysAndCertificate, CreateCertificateFromCsr, RegisterThing).",
    )
    csub = p.add_subparsers(dest="cloud_command", metavar="SUBCOMMAND", required=True)

    up = csub.add_parser(
        "up", help="run the stand-in in the foreground until Ctrl-C",
        description="Start mosquitto and the provisioning responder. Writes ca.pem, claim-cert.pem, "
        "claim-key.pem (0600) and endpoint.json into --state, prints them, and runs until interrupted. "
        "State (CA, registry, templates) is kept, so a restart keeps issued certificates valid.",
        epilog=UP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _state_arg(up)
    up.add_argument("--broker-port", type=int_range(1, 65535), default=None, metavar="PORT",
                    help="the broker's TCP port on 127.0.0.1 (default: a free one)")
    add_old_spelling(up, "--port", "broker_port", type=int_range(1, 65535))
    up.add_argument("--device-key", choices=["rsa", "ec"], default="rsa",
                    help="key type the responder generates for devices (AWS: RSA-2048)")
    up.add_argument("--split-order", choices=["parallel", "key-first", "cert-first"], default="parallel",
                    help="split flow: order of the key and cert replies (parallel = random, as on AWS)")
    up.add_argument("--split-duplicates", type=int_range(0, 100), default=0, metavar="N",
                    help="split flow: send the key/cert pair N extra times (at-least-once delivery)")
    aws = up.add_argument_group("AWS IoT fidelity (defaults mirror AWS; see docs/stand-in.md)")
    aws.add_argument("--server-chain", choices=["ec", "rsa"], default="ec",
                     help="certificate chain the broker presents: ec (P-256 leaf + root) or rsa (RSA-2048 leaf + "
                     "intermediate, shaped like AWS's Amazon Root CA 1 chain); rsa adds its root to ca.pem")
    aws.add_argument("--server-chain-min-bytes", type=int_range(0, 65536), default=0, metavar="N",
                     help="pad the chain's TLS Certificate message to at least N bytes (the nRF91 takes 4 KB)")
    aws.add_argument("--connect-interval", type=float_range(0, 3600), default=1.0, metavar="SECONDS",
                     help="refuse a CONNECT sooner than this after the last one with the same client ID "
                     "(AWS: 1 s; 0 = off)")
    aws.add_argument("--request-rate", type=float_range(0, 1e6), default=10.0, metavar="PER_SECOND",
                     help="provisioning requests per second per operation before ThrottlingException (0 = off)")
    aws.add_argument("--request-burst", type=int_range(1, 1_000_000), default=10, metavar="N",
                     help="requests allowed at once before the rate applies")
    aws.add_argument("--token-lifetime", type=float_range(1, 1e9), default=3600.0, metavar="SECONDS",
                     help="certificate ownership token lifetime (AWS: one hour)")
    issuing = up.add_argument_group("the issuing side (the handler nrfprov aws deploy deploys; same options)")
    issuing.add_argument("--allow", action="append", default=[], metavar="ID",
                         help="only these device ids (exact, or prefix*) may be provisioned; repeatable")
    issuing.add_argument("--reserve", action="append", default=[], metavar="ID",
                         help="device ids never provisioned (case-insensitive); repeatable")
    issuing.add_argument("--no-hook", action="store_true",
                         help="Fleet Provisioning without the pre-provisioning hook")
    add_json_option(up, "print the endpoint and files as one JSON line")
    up.set_defaults(func=_up)

    rp = csub.add_parser(
        "reprovision", help="allow one more certificate for a thing that already has one",
        description="Record an operator's permission on THING, as `nrfprov aws reprovision` does on AWS: the "
        "next request for it gets a new certificate and the old ones are deactivated (CRL). Works whether "
        "or not the stand-in of --state is running.",
    )
    rp.add_argument("thing", metavar="THING", help="thing name (= device id)")
    rp.add_argument("--hours", type=float_range(0.001, 720), default=24.0,
                    help="the permission expires after this (default 24)")
    _state_arg(rp)
    rp.set_defaults(func=_reprovision)

    rv = csub.add_parser(
        "revoke", help="revoke a certificate (CRL) and reload a running broker",
        description="Mark CERT_ID (the 64-hex certificateId) REVOKED, re-sign the CRL and send SIGHUP to "
        "the broker of --state if it runs. New TLS handshakes with that certificate then fail; "
        "connections already open stay open (mosquitto checks the CRL at handshake only).",
    )
    rv.add_argument("certificate_id", metavar="CERT_ID", help="the certificateId (64 hex digits, see cloud list)")
    _state_arg(rv)
    rv.set_defaults(func=_revoke)

    ls = csub.add_parser("list", help="list certificates in the registry",
                         description="Print the certificates the stand-in issued, with status and thing.")
    _state_arg(ls)
    add_json_option(ls, "one JSON array on stdout")
    ls.set_defaults(func=_list)


def stand_in_options(args: argparse.Namespace) -> dict[str, Any]:
    """``LocalAwsIot`` keyword arguments from ``cloud up``'s flags."""
    return {
        "port": args.broker_port, "device_key_type": args.device_key, "split_order": args.split_order,
        "split_duplicates": args.split_duplicates, "server_chain": args.server_chain,
        "server_chain_min_bytes": args.server_chain_min_bytes, "connect_interval": args.connect_interval,
        "request_rate": args.request_rate, "request_burst": args.request_burst,
        "token_lifetime": args.token_lifetime, "allowed_device_ids": tuple(args.allow),
        "reserved_device_ids": tuple(args.reserve), "pre_provisioning_hook": not args.no_hook,
    }


def _state_arg(p: argparse.ArgumentParser) -> None:
    add_state_option(p, "the stand-in's CA, claim credentials and registry", "cloud")


def usage_text(cloud: Any) -> str:
    """What `cloud up` prints: endpoint, files, and commands to paste into another terminal."""
    d, port = cloud.state_dir, cloud.port
    tls = f"--cafile {d}/ca.pem --cert {d}/claim-cert.pem --key {d}/claim-key.pem"
    return f"""\
local AWS IoT stand-in running
  endpoint   {cloud.host}:{port}   (TLS server name: {cloud.server_name} or {cloud.host})
  CA         {cloud.ca_path}
  claim cert {cloud.claim_cert_path}
  claim key  {cloud.claim_key_path}   (0600)
  endpoint   {cloud.endpoint_path}
  templates  {d}/templates/   ("nrfprov" is the deployed one, aws/fleet_template.json: SerialNumber = thing)
  broker log {d}/mosquitto.log

CreateKeysAndCertificate from another terminal:
  mosquitto_rr -h {cloud.host} -p {port} {tls} \\
      -t '$aws/certificates/create/json' -e '$aws/certificates/create/json/accepted' -m '{{}}'

Split-topic flow (client ID = device ID) with paho:
  {sys.executable} -c "
import ssl, paho.mqtt.client as m
c = m.Client(m.CallbackAPIVersion.VERSION2, client_id='dev1', protocol=m.MQTTv5)
ctx = ssl.create_default_context(cafile='{d}/ca.pem'); ctx.load_cert_chain('{d}/claim-cert.pem', '{d}/claim-key.pem')
c.tls_set_context(ctx); got = []
c.on_connect = lambda c, *a: c.subscribe('certificate/dev1/create/accepted/+', 1)
c.on_subscribe = lambda c, *a: c.publish('certificate/dev1/create', b'', 1)
def on_message(c, u, msg):
    got.append(msg.topic); print(msg.topic, len(msg.payload), 'bytes')
    if len(got) == 2: c.disconnect()
c.on_message = on_message; c.connect('{cloud.host}', {port}); c.loop_forever()"

Ctrl-C stops the broker. Revoke: nrfprov cloud revoke CERT_ID --state {d}
A device id gets one certificate; another one for it: nrfprov cloud reprovision THING --state {d}"""


def _up(args: argparse.Namespace) -> int:
    from nrfprov.cloud import LocalAwsIot
    from nrfprov.errors import TransportError

    stop = threading.Event()
    cloud = LocalAwsIot(state_dir(args, "cloud"), on_broker_exit=lambda _code: stop.set(), **stand_in_options(args))
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    previous_int = signal.getsignal(signal.SIGINT)
    try:
        with cloud:
            # From here Ctrl-C is how a foreground stand-in is stopped, not an interruption (exit 0).
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            if args.json:
                print(json.dumps({
                    "host": cloud.host, "port": cloud.port, "server_name": cloud.server_name,
                    "ca": str(cloud.ca_path), "claim_cert": str(cloud.claim_cert_path),
                    "claim_key": str(cloud.claim_key_path), "endpoint": str(cloud.endpoint_path),
                }), flush=True)
            else:
                print(usage_text(cloud), flush=True)
            stop.wait()  # Ctrl-C, SIGTERM, or the broker died
            died = not cloud.running
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    if died:
        print(f"nrfprov: error: mosquitto exited (code {cloud.broker_exit_code}); see "
              f"{cloud.state_dir}/mosquitto.log", file=sys.stderr)
        return TransportError.exit_code
    print("stopped", file=sys.stderr)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from nrfprov.cloud.local import revoke_in_state

    signalled = revoke_in_state(state_dir(args, "cloud"), args.certificate_id)
    where = "running broker reloaded" if signalled else "no running broker; applies at next start"
    print(f"revoked {args.certificate_id} ({where})")
    return 0


def _reprovision(args: argparse.Namespace) -> int:
    import time

    from nrfprov.cloud.local import reprovision_in_state

    expires = reprovision_in_state(state_dir(args, "cloud"), args.thing, hours=args.hours)
    until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(expires))
    print(f"thing {args.thing} may get one new certificate until {until}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from nrfprov.cloud.registry import Registry

    state = state_dir(args, "cloud")
    if not (state / "registry.json").exists():
        recs = []
    else:
        recs = Registry(state).certificates()
    if args.json:
        print(json.dumps([r.__dict__ for r in recs], indent=1))
        return 0
    for r in recs:
        print(f"{r.certificate_id}  {r.status:<18} {r.operation:<15} {r.thing_name or '-'}")
    return 0
