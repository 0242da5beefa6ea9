"""Split-topic workaround against the real broker, with a plain paho client [aws-iot-device-credentials-workaround]."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fixtures.cloud import MqttProbe
from nrfprov.cloud import LocalAwsIot

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
    assert cert.subject.rfc4514_string() == "CN=dev-1"
    [rec] = local_aws.certificates()
    assert rec.certificate_id == hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert (rec.status, rec.thing_name, rec.operation) == ("ACTIVE", "dev-1", "split")
    assert local_aws.request_counts()["split"] == 1

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


def test_each_split_request_makes_another_active_certificate(
    local_aws_factory: Callable[..., LocalAwsIot],
) -> None:
    cloud = local_aws_factory(device_key_type="ec", connect_interval=0)  # two claim sessions in a row
    _request_split(cloud, "dev-r")
    _request_split(cloud, "dev-r")
    recs = cloud.certificates()
    assert [r.status for r in recs] == ["ACTIVE", "ACTIVE"]  # as with AWS CreateKeysAndCertificate
    assert len({r.certificate_id for r in recs}) == 2


@pytest.mark.parametrize("device_id", ["bad.id", "iot-responder", "nrfprov-claim"])
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
    assert body["statusCode"] in (400, 403)
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
        for p in probes:
            key_pem, cert_pem = _parts([p.get(), p.get()])
            cert = x509.load_pem_x509_certificate(cert_pem)
            assert cert.subject.rfc4514_string() == f"CN={p.client_id}"
            key = serialization.load_pem_private_key(key_pem, None)
            assert cert.public_key() == key.public_key()
            assert p.drain() == []
    finally:
        for p in probes:
            p.close()
    assert sorted(r.thing_name or "" for r in cloud.certificates()) == ids
