"""Nordic's aws_iot_provisioning sample's sequence, replayed by nrfprov's client with no optimisation.

The sample's README gives the chain: LTE up → MQTT connect with the claim credentials → subscribe to
the reply topic(s) → publish the request → receive → disconnect → CFUN=4 → write key, certificate and
CA into sec tag 50 → CFUN=1 → connect with the new credentials. Replayed here step by step with
nrfprov's own building blocks (``Modem``, ``open_stream``, ``MqttSession``, the reply parsers) the way
the sample's library runs them: every exchange waits for its answer before the next (CONNECT for
CONNACK, SUBSCRIBE for SUBACK), one request at a time, the request at QoS 0 as the sample sends it,
the reply topics in one SUBSCRIBE (the library subscribes its application topic list at once), the
broker's name looked up by the modem for each connection. Every client in P7 ends with the same
proof, a QoS 1 publish as the new identity answered by its PUBACK; the sample's own chain ends at the
CONNACK, so this proof is the one step added to it.

For the flows the sample does not have (combined, csr: the sample handles only the split workaround)
the same rules are applied to the Fleet Provisioning topics, with RegisterThing as a second request.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from typing import Any

from nrfprov.config import Settings
from nrfprov.modem.credentials import CredentialType
from nrfprov.mqtt.session import MqttSession
from nrfprov.provisioning import flows
from nrfprov.transport import TlsCredentials, open_stream

REQUEST_QOS = 0  # the sample publishes its request at QoS 0 (after the READY event, i.e. after SUBACK)
TIMEOUT_S = 90.0


@dataclass(frozen=True)
class SampleRun:
    thing_name: str
    certificate_pem: str
    seconds: float


def unoptimised(settings: Settings) -> Settings:
    """``settings`` with every round-trip saving of nrfprov switched off (those this build has)."""
    off = {"mqtt_pipeline": False, "publish_before_suback": False, "dns_reuse_s": 0}
    fields = Settings.__dataclass_fields__
    return dataclasses.replace(settings, **{k: v for k, v in off.items() if k in fields})


def run(modem: Any, settings: Settings, *, flow: str, fmt: str, backend: str, claim_tag: int, tag: int,
        client_id: str, ca_pem: str, lte_timeout: float = 30.0) -> SampleRun:
    """One provisioning in the sample's sequence; returns what was written and the thing name."""
    s = unoptimised(settings)
    fmt_ = "json" if fmt == "pem" else fmt
    t0 = time.perf_counter()
    csr_pem = ""
    if flow == "csr":  # the key is made in the modem, offline (Modem.keygen_csr switches CFUN itself)
        for t in (CredentialType.ROOT_CA_CERT, CredentialType.CLIENT_CERT):
            modem.delete_credential(tag, t, missing_ok=True)
        csr_pem, _ = flows.csr_der_to_pem(modem.keygen_csr(tag))
    modem.set_cfun(1)
    modem.wait_registered(lte_timeout)

    claim = MqttSession.from_settings(
        s, lambda: open_stream(s, modem=modem, backend=backend, sec_tag=claim_tag, timeout=TIMEOUT_S), client_id)
    if flow == "split":
        req = flows.split_request(client_id)
        topics = [req.subscribe[0]]  # the sample subscribes accepted/+ only
    else:
        req = flows.combined_request(fmt_) if flow == "combined" else flows.csr_request(fmt_, csr_pem)
        topics = [*req.subscribe, *flows.register_topics("nrfprov", fmt_)[1:]]
    with claim:
        claim.connect(TIMEOUT_S)
        claim.subscribe([(t, 1) for t in topics], TIMEOUT_S)
        claim.publish(req.topic, req.payload, REQUEST_QOS, TIMEOUT_S)
        if flow == "split":
            got = claim.wait_messages([req.subscribe[0].replace("+", "key"), req.subscribe[0].replace("+", "cert")],
                                      TIMEOUT_S)
            issued = None
            collector = flows.SplitCollector(client_id)
            for msg in got.values():
                issued = collector.feed(msg.topic, msg.payload) or issued
            thing = client_id
        else:
            msg = claim.wait_any(list(req.subscribe), TIMEOUT_S)
            collector_fn = flows.combined_collector if flow == "combined" else flows.csr_collector
            issued = collector_fn(fmt_).feed(msg.topic, msg.payload)
            assert issued is not None
            reg = flows.register_request("nrfprov", fmt_, issued.ownership_token, {"SerialNumber": f"sn-{client_id}"})
            claim.publish(reg.topic, reg.payload, REQUEST_QOS, TIMEOUT_S)
            msg = claim.wait_any(list(reg.subscribe), TIMEOUT_S)
            registration = flows.RegisterCollector("nrfprov", fmt_).feed(msg.topic, msg.payload)
            assert registration is not None
            thing = registration.thing_name
    assert issued is not None

    modem.set_cfun(4)
    if issued.private_key_pem is not None:
        modem.write_credential(tag, CredentialType.CLIENT_KEY, issued.private_key_pem)
    modem.write_credential(tag, CredentialType.CLIENT_CERT, issued.certificate_pem)
    modem.write_credential(tag, CredentialType.ROOT_CA_CERT, ca_pem)
    modem.set_cfun(1)
    modem.wait_registered(lte_timeout)

    if backend == "offload" or flow == "csr":
        def factory() -> Any:
            return open_stream(s, modem=modem, backend="offload", sec_tag=tag, timeout=TIMEOUT_S)
    else:
        assert issued.private_key_pem is not None
        creds = TlsCredentials.from_pems(ca_pem, issued.certificate_pem, issued.private_key_pem)

        def factory() -> Any:
            return open_stream(s, modem=modem, backend=backend, credentials=creds, timeout=TIMEOUT_S)
    with MqttSession.from_settings(s, factory, thing) as device:
        device.connect(TIMEOUT_S)
        proof = json.dumps({"state": {"reported": {"provisioned": True}}}).encode()
        device.publish(f"$aws/things/{thing}/shadow/update", proof, 1, TIMEOUT_S)
        seconds = time.perf_counter() - t0
    return SampleRun(thing_name=thing, certificate_pem=issued.certificate_pem, seconds=seconds)
