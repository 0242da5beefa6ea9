"""One provisioning run, measured: nrfprov's own stack, the way P1, P2 and P4 need it.

- ``host_flow``: nrfprov's host transport (HostTcpStream → NativeTlsStream → MqttSession) running the
  same cloud flow as the awsiotsdk peer (awssdk_client.py): claim connect, CreateKeysAndCertificate
  (parsed by the C extractor, as the product does), RegisterThing, disconnect, reconnect with the new
  credentials, one QoS 1 proof publish. No modem in the loop, so P4 compares like with like.

The relay in front of the stand-in does the byte counting for every client alike; this module only
times and checks that the run really provisioned (thing name returned, proof PUBACKed).
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nrfprov.config import Settings
from nrfprov.mqtt.session import MqttSession
from nrfprov.provisioning import flows
from nrfprov.transport.base import ByteStream
from nrfprov.transport.credentials import TlsCredentials
from nrfprov.transport.native_tls import NativeTlsStream
from nrfprov.transport.tcp import HostTcpStream

TIMEOUT_S = 15.0
DEFAULTS = Settings()
TEMPLATE = "nrfprov"


@dataclass(frozen=True)
class HostRun:
    seconds: float
    thing_name: str
    certificate_id: str


def _factory(host: str, port: int, server_name: str, creds: TlsCredentials) -> Callable[[], ByteStream]:
    def open_stream() -> ByteStream:
        return NativeTlsStream.open(HostTcpStream.connect(host, port, timeout=TIMEOUT_S), creds, server_name,
                                    port=port, timeout=TIMEOUT_S)

    return open_stream


def host_flow(
    host: str,
    port: int,
    *,
    server_name: str,
    ca_pem: str,
    claim_cert_pem: str,
    claim_key_pem: str,
    fmt: str = "json",
    serial: str | None = None,
) -> HostRun:
    """Run the combined flow + RegisterThing + reconnect proof over the host transport; return timings."""
    client_id = f"host-{uuid.uuid4().hex[:12]}"
    # The thing's serial differs from the claim's client ID, as in AWS's fleet-provisioning samples, so the
    # reconnect (as the thing) does not wait for the one-CONNECT-per-second quota.
    serial = serial or f"sn-{client_id}"
    claim = TlsCredentials.from_pems(ca_pem, claim_cert_pem, claim_key_pem)
    t0 = time.perf_counter()
    # The product's session settings (Settings defaults: packets right behind CONNECT, SUBACK awaited).
    opts = {"pipeline": DEFAULTS.mqtt_pipeline, "suback_later": DEFAULTS.publish_before_suback}
    with MqttSession(_factory(host, port, server_name, claim), client_id, **opts) as s:
        s.connect(timeout=TIMEOUT_S)
        req = flows.combined_request(fmt)
        reg_base, reg_acc, reg_rej = flows.register_topics(TEMPLATE, fmt)
        # One SUBSCRIBE for both requests' replies, as the SDK sample subscribes all four up front.
        s.subscribe([(t, 1) for t in (*req.subscribe, reg_acc, reg_rej)], timeout=TIMEOUT_S)
        s.publish(req.topic, req.payload, qos=1, timeout=TIMEOUT_S)
        msg = s.wait_message(req.subscribe[0].rsplit("/", 1)[0] + "/+", TIMEOUT_S)
        issued = flows.combined_collector(fmt).feed(msg.topic, msg.payload)
        if issued is None:
            raise RuntimeError(f"unexpected reply on {msg.topic}")
        reg = flows.register_request(TEMPLATE, fmt, issued.ownership_token, {"SerialNumber": serial})
        s.publish(reg.topic, reg.payload, qos=1, timeout=TIMEOUT_S)
        msg = s.wait_message(reg_base + "/+", TIMEOUT_S)
        registration = flows.RegisterCollector(TEMPLATE, fmt).feed(msg.topic, msg.payload)
        if registration is None:
            raise RuntimeError(f"unexpected reply on {msg.topic}")
    assert issued.private_key_pem is not None
    device = TlsCredentials.from_pems(ca_pem, issued.certificate_pem, issued.private_key_pem)
    thing = registration.thing_name
    with MqttSession(_factory(host, port, server_name, device), thing, **opts) as d:
        d.connect(timeout=TIMEOUT_S)
        proof = json.dumps({"state": {"reported": {"provisioned": True}}}).encode()
        d.publish(f"$aws/things/{thing}/shadow/update", proof, qos=1, timeout=TIMEOUT_S)
        seconds = time.perf_counter() - t0
    return HostRun(seconds=seconds, thing_name=thing, certificate_id=issued.certificate_id)


class Port:
    """The host's side of the serial port, opened afresh for every round (untimed), as every
    ``nrfprov provision`` opens it: nothing a round learnt (an address, the modem's socket settings)
    carries over to the next."""

    def __init__(self, url: str, baud: int = 115200, *, dialect: str = "sm", slm_terminator: str = "+++") -> None:
        self.url = url
        self.baud = baud
        self.dialect = dialect
        self.slm_terminator = slm_terminator
        self.modem: Any = None

    def reopen(self) -> Any:
        from nrfprov.modem.facade import Modem

        self.close()
        self.modem = Modem.open(self.url, baud=self.baud, dialect=self.dialect, slm_terminator=self.slm_terminator)
        return self.modem

    def close(self) -> None:
        if self.modem is not None:
            self.modem.close()
            self.modem = None


def modem_run_settings(stand_in: Any, broker_port: int, certs: Path, flow: str, fmt: str, backend: str, *,
                       claim_tag: int, provisioned_tag: int, response_timeout: int) -> Settings:
    """Settings for one provisioning run of a simulated modem against the stand-in (P1/P2, P7)."""
    return dataclasses.replace(
        Settings(),
        broker_host=stand_in.server_name,  # "localhost": looked up by the modem (a round trip under a profile)
        broker_port=broker_port,
        claim_sec_tag=claim_tag,
        provisioned_sec_tag=provisioned_tag,
        tls_backend=backend,
        flow=flow,
        payload_format="json" if fmt == "pem" else fmt,
        template_name="" if flow == "split" else "nrfprov",
        # The thing's name is not the claim's client ID (as in AWS's fleet-provisioning samples), so the
        # reconnect does not wait for the one-CONNECT-per-second quota (split cannot avoid it).
        template_parameters="" if flow == "split" else "SerialNumber=sn-{client_id}",
        certs_dir=str(certs),
        ca_file=str(stand_in.ca_path),
        lte_timeout=30,
        response_timeout=response_timeout,
    )
