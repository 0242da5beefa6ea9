"""The peer a user would otherwise pick: the AWS IoT Device SDK v2 for Python (``awsiotsdk``, awscrt inside).

It runs the same flow as ``nrfprov``'s combined/json provisioning — CreateKeysAndCertificate, RegisterThing
with template ``nrfprov`` (parameter ``SerialNumber``), disconnect, reconnect with the new certificate and
one QoS 1 publish as proof — against the local stand-in, written the way the SDK's own fleet-provisioning
sample writes it (``mqtt_connection_builder.mtls_from_path`` + ``iotidentity.IotIdentityClient``).

Only JSON: the SDK's identity client has no CBOR topics. awscrt offers no TCP_NODELAY switch and no way to
cap TLS at 1.2 from Python (``TlsCipherPref`` only sets a minimum), so it negotiates TLS 1.3 with
mosquitto; the relay (relay.py) reports the session-ticket bytes that AWS would not send, and the
benchmarks subtract them (see RESULTS.md).

This is benchmark-only code (the ``bench`` extra); nothing in ``nrfprov`` imports it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A request that the stand-in answers in ~40-100 ms (RSA key generation) must not wait forever if it is lost.
REPLY_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class SdkRun:
    """One provisioning run by the SDK: wall seconds (connect .. proof PUBACK) and what it obtained."""

    seconds: float
    thing_name: str
    certificate_id: str


class SdkProvisioningError(RuntimeError):
    """The SDK's run was rejected or timed out; carries the step name."""

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"awsiotsdk provisioning failed at {step}: {detail}")
        self.step = step


def _wait(fut: Future[Any], step: str) -> Any:
    try:
        return fut.result(timeout=REPLY_TIMEOUT_S)
    except TimeoutError as exc:  # concurrent.futures.TimeoutError is TimeoutError on 3.11
        raise SdkProvisioningError(step, f"no result within {REPLY_TIMEOUT_S:g} s") from exc


def _connect(
    host: str, port: int, ca_path: str, client_id: str, *, cert_path: str, key_path: str
) -> Any:
    from awsiot import mqtt_connection_builder

    conn = mqtt_connection_builder.mtls_from_path(
        endpoint=host,
        port=port,
        cert_filepath=cert_path,
        pri_key_filepath=key_path,
        ca_filepath=ca_path,
        client_id=client_id,
        clean_session=True,
        keep_alive_secs=30,
    )
    _wait(conn.connect(), f"connect {client_id}")
    return conn


def provision_once(
    host: str,
    port: int,
    *,
    ca_path: str,
    claim_cert_path: str,
    claim_key_path: str,
    work_dir: Path,
    template: str = "nrfprov",
    serial: str | None = None,
    flow: str = "combined",
    csr: tuple[str, str] | None = None,
    on_start: Any = None,
) -> SdkRun:
    """Run one provisioning (request + RegisterThing + reconnect + proof publish); return the timing.

    ``flow``: ``combined`` (CreateKeysAndCertificate), ``csr`` (CreateCertificateFromCsr; ``csr`` is
    the (CSR PEM, private key PEM) pair the caller made beforehand, as the SDK's CSR sample reads them
    from files) or ``split`` (the workaround's topics through the SDK's plain MQTT connection; no
    RegisterThing, the client ID is the thing name).

    The clock covers the whole flow, from the claim connect to the proof's PUBACK, like nrfprov's own
    host-transport run it is compared with (P4). ``on_start()`` is called when the clock starts.
    """
    from awscrt import mqtt

    client_id = f"sdk-{uuid.uuid4().hex[:12]}"
    # The thing's serial differs from the claim's client ID, as in the SDK's fleet-provisioning sample (the
    # split workaround names the thing after the client ID, so it reconnects with the same one).
    serial = serial or f"sn-{client_id}"
    t0 = time.perf_counter()
    if on_start is not None:
        on_start()
    conn = _connect(host, port, ca_path, client_id, cert_path=claim_cert_path, key_path=claim_key_path)
    claim_connected = time.monotonic()
    qos = mqtt.QoS.AT_LEAST_ONCE
    if flow == "split":
        cert_pem, key_pem, cert_id, thing_name = _split(conn, client_id, qos)
    else:
        cert_pem, key_pem, cert_id, thing_name = _fleet(conn, flow, template, serial, qos, csr)
    _wait(conn.disconnect(), "disconnect claim")

    # The SDK takes credentials from files (or bytes); files keep parity with the sample. 0600: private key.
    work_dir.mkdir(parents=True, exist_ok=True)
    cert_file = work_dir / f"{thing_name}-cert.pem"
    key_file = work_dir / f"{thing_name}-key.pem"
    cert_file.write_text(cert_pem)
    key_file.touch(mode=0o600)
    key_file.write_text(key_pem)

    if thing_name == client_id:
        # Same client ID again: AWS IoT allows one CONNECT per second per client ID; nrfprov waits its
        # turn the same way (mqtt/session.py ConnectSpacer).
        time.sleep(max(0.0, claim_connected + CONNECT_SPACING_S - time.monotonic()))
    dev = _connect(host, port, ca_path, thing_name, cert_path=str(cert_file), key_path=str(key_file))
    proof = json.dumps({"state": {"reported": {"provisioned": True}}}).encode()
    pub_future, _ = dev.publish(f"$aws/things/{thing_name}/shadow/update", proof, qos)
    _wait(pub_future, "proof publish")
    seconds = time.perf_counter() - t0
    _wait(dev.disconnect(), "disconnect device")
    key_file.unlink()
    cert_file.unlink()
    return SdkRun(seconds=seconds, thing_name=thing_name, certificate_id=cert_id)


#: One CONNECT per second per client ID [AWS IoT quotas], plus the margin nrfprov's spacer uses.
CONNECT_SPACING_S = 1.1


def _fleet(conn: Any, flow: str, template: str, serial: str, qos: Any,
           csr: tuple[str, str] | None) -> tuple[str, str, str, str]:
    """CreateKeysAndCertificate or CreateCertificateFromCsr, then RegisterThing, as the SDK sample does."""
    from awsiot import iotidentity

    identity = iotidentity.IotIdentityClient(conn)
    got: dict[str, Any] = {}
    done = {name: threading.Event() for name in ("keys", "thing")}

    def on(name: str, field: str) -> Any:
        def cb(response: Any) -> None:
            got.setdefault(field, response)
            done[name].set()

        return cb

    if flow == "csr":
        cert_subs = [
            identity.subscribe_to_create_certificate_from_csr_accepted(
                iotidentity.CreateCertificateFromCsrSubscriptionRequest(), qos, on("keys", "keys")),
            identity.subscribe_to_create_certificate_from_csr_rejected(
                iotidentity.CreateCertificateFromCsrSubscriptionRequest(), qos, on("keys", "keys_rejected")),
        ]
    else:
        cert_subs = [
            identity.subscribe_to_create_keys_and_certificate_accepted(
                iotidentity.CreateKeysAndCertificateSubscriptionRequest(), qos, on("keys", "keys")),
            identity.subscribe_to_create_keys_and_certificate_rejected(
                iotidentity.CreateKeysAndCertificateSubscriptionRequest(), qos, on("keys", "keys_rejected")),
        ]
    subs = [
        *cert_subs,
        identity.subscribe_to_register_thing_accepted(
            iotidentity.RegisterThingSubscriptionRequest(template_name=template), qos, on("thing", "thing")
        ),
        identity.subscribe_to_register_thing_rejected(
            iotidentity.RegisterThingSubscriptionRequest(template_name=template),
            qos,
            on("thing", "thing_rejected"),
        ),
    ]
    for sub_future, _topic in subs:
        _wait(sub_future, "subscribe")

    if flow == "csr":
        assert csr is not None, "the csr flow needs the caller's (CSR PEM, key PEM)"
        request = identity.publish_create_certificate_from_csr(
            iotidentity.CreateCertificateFromCsrRequest(certificate_signing_request=csr[0]), qos)
    else:
        request = identity.publish_create_keys_and_certificate(iotidentity.CreateKeysAndCertificateRequest(), qos)
    _wait(request, f"publish {flow} request")
    if not done["keys"].wait(REPLY_TIMEOUT_S):
        raise SdkProvisioningError(flow, "no reply")
    if "keys" not in got:
        raise SdkProvisioningError(flow, str(got.get("keys_rejected")))
    keys = got["keys"]

    _wait(
        identity.publish_register_thing(
            iotidentity.RegisterThingRequest(
                template_name=template,
                certificate_ownership_token=keys.certificate_ownership_token,
                parameters={"SerialNumber": serial},
            ),
            qos,
        ),
        "publish RegisterThing",
    )
    if not done["thing"].wait(REPLY_TIMEOUT_S):
        raise SdkProvisioningError("RegisterThing", "no reply")
    if "thing" not in got:
        raise SdkProvisioningError("RegisterThing", str(got.get("thing_rejected")))
    key_pem = csr[1] if flow == "csr" and csr is not None else keys.private_key
    return keys.certificate_pem, key_pem, keys.certificate_id, got["thing"].thing_name


def _split(conn: Any, client_id: str, qos: Any) -> tuple[str, str, str, str]:
    """The split workaround with the SDK's plain MQTT client: key and certificate on two topics."""
    base = f"certificate/{client_id}/create"
    parts: dict[str, str] = {}
    done = threading.Event()

    def on_message(topic: str, payload: bytes, **_kw: Any) -> None:
        if topic == f"{base}/rejected":
            parts["rejected"] = payload.decode("utf-8", "replace")
        elif topic.endswith(("/accepted/key", "/accepted/cert")):
            parts[topic.rsplit("/", 1)[1]] = payload.decode("ascii")
        if "rejected" in parts or {"key", "cert"} <= parts.keys():
            done.set()

    subs = [conn.subscribe(f"{base}/accepted/+", qos, on_message), conn.subscribe(f"{base}/rejected", qos, on_message)]
    for sub_future, _mid in subs:
        _wait(sub_future, "subscribe")
    pub_future, _ = conn.publish(base, b"", qos)
    _wait(pub_future, "publish split request")
    if not done.wait(REPLY_TIMEOUT_S):
        raise SdkProvisioningError("split", f"incomplete reply: {sorted(parts)}")
    if "rejected" in parts:
        raise SdkProvisioningError("split", parts["rejected"])
    return parts["cert"], parts["key"], "", client_id
