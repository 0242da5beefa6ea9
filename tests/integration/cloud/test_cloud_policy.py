"""Broker policy against the real broker: run-time certs, revocation, AWS size limit, identities."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography import x509

from fixtures.cloud import NOT_AUTHORIZED, PUBACK_OK, MqttProbe
from nrfprov.cloud import LocalAwsIot

pytestmark = pytest.mark.integration


def test_identity_has_no_rights_until_granted_then_only_its_thing(local_aws: LocalAwsIot) -> None:
    cert, key = local_aws.issue_identity("bench-1")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    pid = local_aws.broker_pid
    with MqttProbe(local_aws, cert, key, "bench-1") as dev:
        assert dev.connect()  # issued after start-up: accepted without a restart
        assert dev.publish("$aws/things/bench-1/shadow/get") == NOT_AUTHORIZED
        assert dev.publish("certificate/bench-1/create") == NOT_AUTHORIZED  # global %c pattern taken back
        local_aws.grant_device("bench-1", "bench-1")
        assert dev.publish("$aws/things/bench-1/shadow/get") in PUBACK_OK  # same connection, new ACL
        assert dev.publish("$aws/things/other/shadow/get") == NOT_AUTHORIZED
    assert local_aws.broker_pid == pid


def test_revoked_certificate_is_refused_at_the_handshake(local_aws: LocalAwsIot) -> None:
    cert, key = local_aws.issue_identity("rev-1")
    cert_id = next(r.certificate_id for r in local_aws.certificates() if r.common_name == "rev-1")
    with MqttProbe(local_aws, cert, key, "rev-1", tls12_only=True) as before:
        assert before.connect()
    local_aws.revoke(cert_id)
    [rec] = [r for r in local_aws.certificates() if r.certificate_id == cert_id]
    assert rec.status == "REVOKED"
    crl = x509.load_pem_x509_crl((local_aws.state_dir / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(rec.serial) is not None
    with MqttProbe(local_aws, cert, key, "rev-1", tls12_only=True) as after:
        assert not after.connect()
    # Others are unaffected (an expired or broken CRL would refuse everyone).
    with MqttProbe.for_claim(local_aws, "still-ok") as claim:
        assert claim.connect()


def test_claim_identity_is_denied_device_topics(local_aws: LocalAwsIot) -> None:
    with MqttProbe.for_claim(local_aws, "sn-9") as claim:
        assert claim.connect()
        assert claim.publish("$aws/things/sn-9/shadow/update", b"{}") == NOT_AUTHORIZED
        assert claim.publish("$aws/certificates/create/xml") == NOT_AUTHORIZED
        assert claim.publish("things/sn-9/data", b"x") == NOT_AUTHORIZED


@pytest.mark.parametrize(("size", "delivered"), [(131072, True), (131073, False)])
def test_aws_128_kb_payload_limit(local_aws: LocalAwsIot, size: int, delivered: bool) -> None:
    cert, key = local_aws.issue_identity("big-1")
    local_aws.grant_device("big-1", "big-1")
    payload = os.urandom(size)
    with MqttProbe(local_aws, cert, key, "big-1") as dev:
        assert dev.connect()
        assert dev.subscribe("things/big-1/blob") == [1]
        ack = dev.publish("things/big-1/blob", payload)
        if delivered:
            assert ack == 0
            assert dev.get() == ("things/big-1/blob", payload)
        else:
            # mosquitto drops the connection (AWS answers PAYLOAD_LIMIT_EXCEEDED): see docs/stand-in.md.
            assert ack is None
            assert dev.wait_disconnected()
            assert dev.drain() == []


def test_qos2_subscription_is_downgraded_to_1(local_aws: LocalAwsIot) -> None:
    from paho.mqtt.subscribeoptions import SubscribeOptions

    with MqttProbe.for_claim(local_aws, "q2") as claim:
        assert claim.connect()
        _, mid = claim.client.subscribe([("certificate/q2/create/accepted/+", SubscribeOptions(qos=2))])
        with claim._cond:
            assert claim._cond.wait_for(lambda: mid in claim._subacks, 5)
            assert [int(r.value) for r in claim._subacks[mid]] == [1]


def test_certs_folder_layout_for_native_tls(local_aws: LocalAwsIot, tmp_path: Path) -> None:
    d = local_aws.write_certs_folder(tmp_path / "certs")
    assert sorted(p.name for p in d.iterdir()) == ["ca-cert.pem", "client-cert.pem", "private-key.pem"]
    assert stat.S_IMODE(os.stat(d / "private-key.pem").st_mode) == 0o600
    assert (d / "client-cert.pem").read_bytes() == local_aws.claim_cert_path.read_bytes()
    with MqttProbe(local_aws, d / "client-cert.pem", d / "private-key.pem", "native-1") as c:
        assert c.connect()
