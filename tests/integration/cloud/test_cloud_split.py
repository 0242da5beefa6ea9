"""Split-topic workaround against the real broker, with a plain paho client [aws-iot-device-credentials-workaround].

The stand-in answers with the product handler (``nrfprov.aws.handler``, what ``nrfprov aws deploy`` deploys):
``handler_calls()`` is that handler's own record of each request, so these tests exercise the deployed code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fixtures.cloud import MqttProbe
from nrfprov.cloud import LocalAwsIot
from nrfprov.cloud.routing import CLIENT_ID_MARKER, MARKER

pytestmark = pytest.mark.integration


def _request_split(cloud: LocalAwsIot, device_id: str, n_messages: int = 2) -> list[tuple[str, bytes]]:
    with MqttProbe.for_claim(cloud, device_id) as claim:
        assert claim.connect()
        assert claim.subscribe(f"certificate/{device_id}/create/accepted/+") == [1]
        assert claim.publish(f"certificate/{device_id}/create", b"") == 0
        return [claim.get() for _ in range(n_messages)]


def _parts(msgs: list[tuple[str, bytes]]) -> tuple[bytes, bytes]:
    by_kind = {topic.rsplit("/", 1)[1]: payload for topic, payload in msgs}
    return by_kind["key"], by_kind["cert"]


def test_split_flow_delivers_matching_raw_pem_and_the_cert_works_at_once(
    local_aws_factory: Callable[..., LocalAwsIot], tmp_path: Path
) -> None:
    # The device reconnects with the claim's client ID at once; AWS's one-CONNECT-per-second quota
    # (tested in test_cloud_quotas.py) would refuse that, so it is off here.
    local_aws = local_aws_factory(connect_interval=0)
    msgs = _request_split(local_aws, "dev-1")
    key_pem, cert_pem = _parts(msgs)
    # Raw PEM, not JSON; RSA-2048 like AWS; PKCS#1 header like the workaround's Lambda.
    assert key_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    [rec] = local_aws.certificates()
    assert cert.subject.rfc4514_string() == f"CN={rec.common_name}" and rec.common_name.startswith("cert-")
    assert rec.certificate_id == hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert (rec.status, rec.thing_name, rec.operation) == ("ACTIVE", "dev-1", "split")
    assert local_aws.request_counts()["split"] == 1
    # Served by the product handler, with the event the deployed rule builds (clientid() from the
    # broker's tag on the request, topic(2) from the topic).
    [call] = local_aws.handler_calls()
    assert (call.caller, call.event) == ("split", {"deviceId": "dev-1", "topicId": "dev-1"})
    assert call.result["issued"] and call.result["certificateId"] == rec.certificate_id

    # Issued at run time, no broker restart: connect with the new identity (client ID = thing name).
    pid = local_aws.broker_pid
    (tmp_path / "k.pem").write_bytes(key_pem)
    (tmp_path / "c.pem").write_bytes(cert_pem)
    with MqttProbe(local_aws, tmp_path / "c.pem", tmp_path / "k.pem", "dev-1") as dev:
        assert dev.connect()
        assert dev.subscribe("$aws/things/dev-1/shadow/update") == [1]
        assert dev.publish("$aws/things/dev-1/shadow/update", b'{"state":{}}') == 0
        assert dev.get() == ("$aws/things/dev-1/shadow/update", b'{"state":{}}')
        # Only its own thing; and it may not ask for more credentials.
        assert dev.publish("$aws/things/dev-2/shadow/update", b"{}") == 135
        assert dev.publish("certificate/dev-1/create", b"") == 135
    assert local_aws.broker_pid == pid


@pytest.mark.parametrize("order", ["key-first", "cert-first"])
def test_split_order_is_configurable(local_aws_factory: Callable[..., LocalAwsIot], order: str) -> None:
    cloud = local_aws_factory(split_order=order, device_key_type="ec")
    msgs = _request_split(cloud, "dev-o")
    kinds = [t.rsplit("/", 1)[1] for t, _ in msgs]
    assert kinds == (["key", "cert"] if order == "key-first" else ["cert", "key"])
    key_pem, _ = _parts(msgs)
    assert key_pem.startswith(b"-----BEGIN EC PRIVATE KEY-----")
    assert isinstance(serialization.load_pem_private_key(key_pem, None), ec.EllipticCurvePrivateKey)


def test_split_duplicates_repeat_the_same_pair(local_aws_factory: Callable[..., LocalAwsIot]) -> None:
    cloud = local_aws_factory(split_order="key-first", split_duplicates=2, device_key_type="ec")
    msgs = _request_split(cloud, "dev-d", n_messages=6)
    assert [t.rsplit("/", 1)[1] for t, _ in msgs] == ["key", "cert"] * 3
    assert len({p for _, p in msgs}) == 2  # duplicates, not new credentials
    assert len(cloud.certificates()) == 1


def test_split_parallel_delivers_both_in_some_order(local_aws_factory: Callable[..., LocalAwsIot]) -> None:
    cloud = local_aws_factory(device_key_type="ec")
    msgs = _request_split(cloud, "dev-p")
    assert sorted(t.rsplit("/", 1)[1] for t, _ in msgs) == ["cert", "key"]


def test_a_second_certificate_needs_the_operators_permission_and_retires_the_first(
    local_aws_factory: Callable[..., LocalAwsIot], tmp_path: Path,
) -> None:
    cloud = local_aws_factory(device_key_type="ec", connect_interval=0)  # claim sessions in a row
    first = _request_split(cloud, "dev-r")
    with MqttProbe.for_claim(cloud, "dev-r") as claim:
        assert claim.connect()
        claim.subscribe("certificate/dev-r/create/accepted/+", "certificate/dev-r/create/rejected")
        assert claim.publish("certificate/dev-r/create") == 0
        topic, body = claim.get_json()
    assert topic == "certificate/dev-r/create/rejected"
    assert (body["statusCode"], body["errorCode"]) == (409, "AlreadyProvisioned")
    assert "reprovision dev-r" in body["errorMessage"]
    [only] = cloud.certificates()

    cloud.allow_reprovision("dev-r")  # nrfprov cloud reprovision dev-r, as nrfprov aws reprovision
    second = _request_split(cloud, "dev-r")
    status = {r.certificate_id: r.status for r in cloud.certificates()}
    assert status.pop(only.certificate_id) == "INACTIVE" and list(status.values()) == ["ACTIVE"]
    # The old identity is refused at the handshake now; the new one connects.
    for n, (msgs, works) in enumerate(((first, False), (second, True))):
        key_pem, cert_pem = _parts(msgs)
        (tmp_path / f"k{n}.pem").write_bytes(key_pem)
        (tmp_path / f"c{n}.pem").write_bytes(cert_pem)
        with MqttProbe(cloud, tmp_path / f"c{n}.pem", tmp_path / f"k{n}.pem", "dev-r", tls12_only=True) as dev:
            assert dev.connect() is works
    assert [c.result.get("errorCode") for c in cloud.handler_calls()] == [None, "AlreadyProvisioned", None]


@pytest.mark.parametrize("device_id", ["bad.id", "iot-responder", "nrfprov-claim", "IOT-RESPONDER", "Localhost"])
def test_split_rejects_invalid_or_reserved_device_ids(local_aws_factory: Callable[..., LocalAwsIot],
                                                      device_id: str) -> None:
    cloud = local_aws_factory(device_key_type="ec")
    with MqttProbe.for_claim(cloud, device_id) as claim:
        assert claim.connect()
        claim.subscribe(f"certificate/{device_id}/create/accepted/+", f"certificate/{device_id}/create/rejected")
        assert claim.publish(f"certificate/{device_id}/create") == 0
        topic, body = claim.get_json()
    assert topic == f"certificate/{device_id}/create/rejected"
    assert set(body) == {"statusCode", "errorCode", "errorMessage"}
    assert (body["statusCode"], body["errorCode"]) in ((400, "InvalidDeviceId"), (403, "ReservedDeviceId"))
    assert cloud.certificates() == []


def test_claim_cannot_request_or_read_for_another_client_id(
    local_aws_factory: Callable[..., LocalAwsIot],
) -> None:
    cloud = local_aws_factory(device_key_type="ec", split_order="key-first")
    with MqttProbe.for_claim(cloud, "attacker") as spy, MqttProbe.for_claim(cloud, "victim") as victim:
        assert spy.connect() and victim.connect()
        # MQTT 5 PUBACK 135: the claim may only publish on certificate/<its own client id>/create.
        assert spy.publish("certificate/victim/create") == 135
        # mosquitto grants the SUBSCRIBE but filters delivery (measured with mosquitto 2.0.11; AWS refuses it).
        spy.subscribe("certificate/victim/create/accepted/+", "certificate/attacker/create/accepted/+")
        victim.subscribe("certificate/victim/create/accepted/+")
        assert victim.publish("certificate/victim/create") == 0
        assert {victim.get()[0], victim.get()[0]} == {
            "certificate/victim/create/accepted/key", "certificate/victim/create/accepted/cert"}
        # Barrier: the spy's own request is answered after the victim's, so anything it was going
        # to receive for the victim would be queued ahead of its own reply.
        assert spy.publish("certificate/attacker/create") == 0
        first = spy.get()
        assert first[0].startswith("certificate/attacker/")
        assert all(t.startswith("certificate/attacker/") for t, _ in spy.drain())
        # Device topics are not the claim's either.
        assert spy.publish("$aws/things/victim/shadow/update", b"{}") == 135


def test_concurrent_split_requests_each_get_their_own_pair(
    local_aws_factory: Callable[..., LocalAwsIot], tmp_path: Path
) -> None:
    cloud = local_aws_factory(device_key_type="ec")
    ids = [f"many-{i}" for i in range(5)]
    probes = [MqttProbe.for_claim(cloud, i) for i in ids]
    try:
        for p in probes:
            assert p.connect()
            p.subscribe(f"certificate/{p.client_id}/create/accepted/+")
        for p in probes:  # all requests in flight before any reply is read
            assert p.publish(f"certificate/{p.client_id}/create") == 0
        pairs = {p.client_id: _parts([p.get(), p.get()]) for p in probes}
        for p in probes:
            assert p.drain() == []
    finally:
        for p in probes:
            p.close()
    by_id = {r.certificate_id: r for r in cloud.certificates()}
    for client_id, (key_pem, cert_pem) in pairs.items():
        cert = x509.load_pem_x509_certificate(cert_pem)
        cert_id = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
        assert by_id[cert_id].thing_name == client_id  # its own certificate, attached to its own thing
        assert cert.public_key() == serialization.load_pem_private_key(key_pem, None).public_key()
    assert sorted(r.thing_name or "" for r in cloud.certificates()) == ids


def test_the_rule_event_takes_the_client_id_from_the_broker_not_from_the_client(
    local_aws_factory: Callable[..., LocalAwsIot],
) -> None:
    """clientid() in the deployed rule is the connection's client ID; the broker plugin tags the request
    with it and drops whatever properties the client sent, so a forged one never reaches the handler."""
    cloud = local_aws_factory(device_key_type="ec", split_order="key-first")
    with MqttProbe.for_responder(cloud, "test-responder") as watcher, MqttProbe.for_claim(cloud, "dev-t") as dev:
        assert watcher.connect() and dev.connect()
        assert watcher.subscribe("certificate/+/create") == [1]
        dev.subscribe("certificate/dev-t/create/accepted/+")
        forged = Properties(PacketTypes.PUBLISH)
        forged.UserProperty = (CLIENT_ID_MARKER, "victim")
        forged.UserProperty = (MARKER, "1")
        assert dev.publish("certificate/dev-t/create", b"", properties=forged) == 0
        assert watcher.get()[0] == "certificate/dev-t/create"
        _, props = watcher.user_properties[-1]
        assert sorted(k for k, _ in props) == sorted([MARKER, CLIENT_ID_MARKER])
        assert dict(props)[CLIENT_ID_MARKER] == "dev-t" and dict(props)[MARKER] != "1"
        assert [dev.get()[0] for _ in range(2)] == ["certificate/dev-t/create/accepted/key",
                                                    "certificate/dev-t/create/accepted/cert"]
        assert dev.user_properties[-1][1] == []  # nothing of the tag reaches a client
    [call] = cloud.handler_calls()
    assert call.event == {"deviceId": "dev-t", "topicId": "dev-t"}
