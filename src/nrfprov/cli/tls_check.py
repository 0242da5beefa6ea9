"""``nrfprov tls-check``: open the configured transport to the broker and report what it negotiated."""

from __future__ import annotations

import argparse
import json
from typing import Any

from nrfprov.cli.options import (
    add_config_options,
    add_json_option,
    add_port_options,
    int_range,
    load_settings_from,
    timeout_type,
)
from nrfprov.names import BACKENDS

EPILOG = """\
examples:
  # the backend the fragments select, through the modem (native or offload)
  nrfprov tls-check --port /dev/ttyACM0 --conf prj.conf --overlay overlay-native_tls.conf
  # TLS on this computer, with a claim certs folder, and an MQTT CONNECT as the claim client
  nrfprov tls-check --backend host --conf prj.conf --certs ~/claim --mqtt my-thing
  # the local stand-in: connect to 127.0.0.1, verify the name "localhost"
  nrfprov tls-check --backend host --host 127.0.0.1 --server-name localhost --broker-port 8883 \\
      --certs ./stand-in-certs --set CONFIG_AWS_IOT_BROKER_HOST_NAME=localhost

Prints the backend and why it was chosen, then for TLS on the host: version 1.2, cipher suite, ALPN,
handshake bytes up/down and writes. The modem's functional mode (CFUN) is put back afterwards.
Device-mirror mode (CONFIG_NRFPROV_MIRROR_DEVICE_LIMITS=y) applies
to the handshake records too. Exit code 4 on a TLS/network failure, with the cause and the fix."""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "tls-check", help="connect to the broker with the configured TLS backend and report the handshake",
        description="Open the transport the configuration selects (native: host Mbed TLS over the modem's "
        "TCP socket; offload: the modem's own TLS; host: this computer's network), run the TLS handshake "
        "and optionally an MQTT CONNECT, and report what was negotiated.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_options(p)
    p.add_argument("--backend", choices=BACKENDS, help="override the fragments' choice")
    add_port_options(p, required=False)  # not needed for the host backend
    p.add_argument("--host", help="connect here instead of CONFIG_AWS_IOT_BROKER_HOST_NAME")
    p.add_argument("--broker-port", type=int_range(1, 65535), help="broker TCP port (default CONFIG_AWS_IOT_PORT)")
    p.add_argument("--server-name", help="name checked in the server certificate (default: the broker name)")
    p.add_argument("--certs", metavar="DIR", help="certs folder (ca-cert.pem, client-cert.pem, private-key.pem)")
    p.add_argument("--mqtt", metavar="CLIENT_ID", help="also send MQTT CONNECT with this client ID")
    p.add_argument("--timeout", type=timeout_type(), default=None,
                   help="seconds for connect + handshake (default CONFIG_NRFPROV_CONNECT_TIMEOUT_S, 90)")
    add_json_option(p, "one JSON object on stdout")
    p.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from nrfprov.errors import UsageError
    from nrfprov.mqtt import MqttSession
    from nrfprov.transport import NativeTlsStream, TlsCredentials, describe_backend, layer_counters, open_stream

    settings = load_settings_from(args)
    timeout = args.timeout if args.timeout is not None else float(settings.connect_timeout)
    backend = args.backend or settings.tls_backend
    creds = None
    if args.certs:
        creds = TlsCredentials.from_folder(args.certs, ca_file=settings.ca_file or None)
    report: dict[str, Any] = {"backend": backend, "decided_by": describe_backend(settings, args.backend)}
    with ExitStack() as stack:
        modem = None
        if backend in ("native", "offload"):
            if not args.port:
                raise UsageError(f"the {backend} backend needs the modem", hint="pass --port /dev/ttyACM0")
            from nrfprov.modem import Modem

            modem = stack.enter_context(Modem.open(args.port, baud=args.baud, rtscts=args.rtscts,
                                                   dialect=settings.modem_dialect,
                                                   slm_terminator=settings.slm_terminator))
            # A check leaves the modem as it found it: the functional mode it had goes back on every exit.
            stack.callback(_restore_cfun, modem, modem.cfun())
            modem.set_cfun(1)
            modem.wait_registered(settings.lte_timeout)

        def factory() -> Any:
            return open_stream(settings, modem=modem, credentials=creds, host=args.host, port=args.broker_port,
                               server_name=args.server_name, backend=args.backend, timeout=timeout)

        if args.mqtt:
            session = stack.enter_context(MqttSession.from_settings(settings, factory, args.mqtt))
            session.connect(timeout)
            stream = session.stream
            report["mqtt"] = {"client_id": args.mqtt, "connack": "accepted", "v5": session.mqtt_v5}
        else:
            stream = factory()
            stack.callback(stream.close)
        if isinstance(stream, NativeTlsStream):
            up, down = stream.handshake_bytes
            report["tls"] = {"version": "TLSv1.2", "cipher": stream.cipher, "alpn": stream.negotiated_alpn,
                             "server_name": stream.server_name, "handshake_bytes_up": up,
                             "handshake_bytes_down": down, "handshake_writes": stream.handshake_writes,
                             "handshake_ms": round(stream.handshake_seconds * 1000, 1)}
        report["layers"] = layer_counters(stream)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(report["decided_by"])
    tls = report.get("tls")
    if tls:
        print(f"TLS 1.2 with {tls['server_name']}: {tls['cipher']}, ALPN {tls['alpn'] or '-'}, handshake "
              f"{tls['handshake_bytes_up']} B up / {tls['handshake_bytes_down']} B down in "
              f"{tls['handshake_writes']} writes, {tls['handshake_ms']} ms")
    else:
        print("TLS runs inside the modem (offload): connected")
    if "mqtt" in report:
        print(f"MQTT CONNECT as {args.mqtt}: accepted")
    return 0


def _restore_cfun(modem: Any, mode: int) -> None:
    import logging

    from nrfprov.errors import NrfprovError

    try:
        if modem.cfun() != mode:
            modem.set_cfun(mode)
    except NrfprovError as exc:  # the error that ended the check is already on its way
        logging.getLogger(__name__).warning("could not put the modem back to CFUN=%d: %s", mode, exc)
