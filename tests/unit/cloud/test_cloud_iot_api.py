"""The AWS IoT calls the product handler makes, over the stand-in's registry (iot_api.py), and the handler
hosted on them (hosted.py): the issuing side's rules hold in the stand-in because it runs that code.

No broker: ``policy_changed`` records what would reload it; the CRL and ACL come from the registry as the
running stand-in writes them. The broker side is in tests/integration/cloud/test_cloud_split.py.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import nrfprov.aws.handler as handler
from nrfprov.cloud import pki
from nrfprov.cloud.hosted import LambdaHost, allow_reprovision
from nrfprov.cloud.iot_api import DEVICE_POLICY, PUBLISH_LIMIT, ApiError, StandInIot, StandInIotData, cert_arn
from nrfprov.cloud.registry import Registry
from nrfprov.errors import UsageError

CA = pki.CertificateAuthority.create("ec")
NOW = 1_800_000_000.0


class Rig:
    def __init__(self, tmp_path: Path, *, allow_issue: bool = True, **config: Any) -> None:
        self.now = NOW
        self.reloads = 0
        self.issue_ok = allow_issue
        self.registry = Registry(tmp_path)
        self.iot = StandInIot(registry=self.registry, ca=CA, take_key=lambda: pki.generate_key("ec"),
                              policy_changed=self._reload, clock=lambda: self.now,
                              allow_issue=lambda: self.issue_ok)
        self.config = handler.Config(device_policy=DEVICE_POLICY, **config)
        self.host = LambdaHost(self.iot, self.config, lambda: self.now, split_order="key-first")

    def _reload(self) -> None:
        self.reloads += 1

    def split(self, device: str, topic: str | None = None) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
        messages = self.host.split(device if topic is None else topic, device)
        return self.host.calls()[-1].result, messages

    def status(self) -> dict[str, str]:
        return {r.certificate_id: r.status for r in self.registry.certificates()}

    def crl_serials(self) -> set[int]:
        return {serial for serial, _, _ in Registry.crl_entries(self.registry.snapshot())}


def code(exc: BaseException) -> str:
    return handler.error_code(exc)  # the handler reads our errors the way it reads botocore's


def rejected(messages: list[tuple[str, bytes]], device: str) -> dict[str, Any]:
    [(topic, body)] = messages
    assert topic == f"certificate/{device}/create/rejected"
    doc: dict[str, Any] = json.loads(body)
    assert set(doc) == {"statusCode", "errorCode", "errorMessage"}
    return doc


# --- the rules of the issuing side, in the stand-in ---------------------------------------------------


def test_one_certificate_per_thing_until_an_operator_allows_another(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    first, msgs = rig.split("nrf-1")
    assert first["issued"] and [t.rsplit("/", 1)[1] for t, _ in msgs] == ["key", "cert"]
    key = serialization.load_pem_private_key(msgs[0][1], None)
    cert = x509.load_pem_x509_certificate(msgs[1][1])
    assert cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
        == key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    again, msgs = rig.split("nrf-1")
    doc = rejected(msgs, "nrf-1")
    assert (again["errorCode"], doc["statusCode"]) == ("AlreadyProvisioned", 409)
    assert "nrfprov aws reprovision nrf-1" in doc["errorMessage"]
    assert list(rig.status().values()) == ["ACTIVE"]

    # The operator's permission (nrfprov cloud reprovision): one more certificate, the old one deactivated
    # -- and so in the CRL, which is how the stand-in stops a certificate at the TLS handshake.
    allow_reprovision(rig.registry, "nrf-1", hours=1, now=rig.now)
    third, msgs = rig.split("nrf-1")
    assert third["issued"] and third["replaced"] == [first["certificateId"]]
    assert rig.status() == {first["certificateId"]: "INACTIVE", third["certificateId"]: "ACTIVE"}
    old_serial = next(r.serial for r in rig.registry.certificates() if r.certificate_id == first["certificateId"])
    assert old_serial in rig.crl_serials()
    assert handler.REPROVISION_ATTRIBUTE not in rig.iot.describe_thing(thingName="nrf-1")["attributes"]
    assert rig.split("nrf-1")[0]["errorCode"] == "AlreadyProvisioned"  # used up


def test_an_expired_permission_and_a_fleet_provisioned_thing_are_refused(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.split("nrf-2")
    allow_reprovision(rig.registry, "nrf-2", hours=1, now=rig.now)
    rig.now += 3601
    assert rig.split("nrf-2")[0]["errorCode"] == "AlreadyProvisioned"
    # A thing some other way made (Fleet Provisioning, by hand) with an active certificate: refused too.
    rig.iot.create_thing(thingName="fleet-1")
    other = rig.iot.create_keys_and_certificate(setAsActive=True)
    rig.iot.attach_thing_principal(thingName="fleet-1", principal=other["certificateArn"])
    assert rig.split("fleet-1")[0]["errorCode"] == "AlreadyProvisioned"
    with pytest.raises(UsageError, match="no thing"):
        allow_reprovision(rig.registry, "nobody", hours=1, now=rig.now)


@pytest.mark.parametrize(("device", "error"), [
    ("IOT-RESPONDER", "ReservedDeviceId"), ("Localhost", "ReservedDeviceId"), ("dev.1", "InvalidDeviceId"),
    ("x" * 129, "InvalidDeviceId"), ("dev 1", "InvalidDeviceId"), ("other-9", "DeviceNotAllowed"),
])
def test_invalid_reserved_and_unlisted_ids_are_refused(tmp_path: Path, device: str, error: str) -> None:
    rig = Rig(tmp_path, reserved=("iot-responder", "localhost"), allowed=("nrf-*",))
    result, msgs = rig.split(device)
    assert result["errorCode"] == error
    if len(device) <= 128 and " " not in device:
        assert rejected(msgs, device)["errorCode"] == error
    assert rig.registry.certificates() == [] and rig.registry.snapshot()["things"] == {}


def test_a_topic_that_names_another_device_is_refused_on_the_requesters_topic(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    result, msgs = rig.split("attacker", topic="victim")
    assert rejected(msgs, "attacker")["errorCode"] == "ClientIdMismatch" == result["errorCode"]
    assert rig.registry.snapshot()["things"] == {}


def test_a_throttled_issue_is_answered_429_and_keeps_the_permission(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.split("nrf-3")
    allow_reprovision(rig.registry, "nrf-3", hours=1, now=rig.now)
    rig.issue_ok = False  # CreateKeysAndCertificate answers ThrottlingException
    result, msgs = rig.split("nrf-3")
    doc = rejected(msgs, "nrf-3")
    assert (result["errorCode"], doc["statusCode"]) == ("ThrottlingException", 429)
    assert len(rig.registry.certificates()) == 1
    rig.issue_ok = True
    assert rig.split("nrf-3")[0]["issued"]  # the permission was restored for the retry


def test_a_failed_publish_rolls_the_certificate_back(tmp_path: Path) -> None:
    rig = Rig(tmp_path)

    class Refusing(StandInIotData):
        def publish(self, *, topic: str, qos: int = 0, payload: bytes = b"") -> Any:
            if topic.endswith("/cert"):
                return super().publish(topic=topic, qos=qos, payload=b"x" * (PUBLISH_LIMIT + 1))
            return super().publish(topic=topic, qos=qos, payload=payload)

    data = Refusing()
    out = handler.Issuer(rig.iot, data, rig.config, clock=lambda: rig.now).split({"deviceId": "nrf-4",
                                                                                   "topicId": "nrf-4"})
    assert out.error_code == "InternalFailure"
    assert [t for t, _ in data.messages] == ["certificate/nrf-4/create/accepted/key",
                                             "certificate/nrf-4/create/rejected"]
    assert rig.registry.certificates() == []  # detached, deactivated, deleted ...
    [entry] = rig.registry.snapshot()["certificates"].values()
    assert int(entry["serial"]) in rig.crl_serials()  # ... and still refused at the handshake
    assert rig.split("nrf-4")[0]["issued"]  # the device's retry is not refused for it


# --- the registry calls themselves --------------------------------------------------------------------


def test_update_thing_versions_merges_and_limits_attributes(tmp_path: Path) -> None:
    iot = Rig(tmp_path).iot
    iot.create_thing(thingName="t1")
    iot.create_thing(thingName="t1")  # the same again: fine
    v = iot.describe_thing(thingName="t1")["version"]
    iot.update_thing(thingName="t1", attributePayload={"attributes": {"a": "1", "b": "2"}}, expectedVersion=v)
    with pytest.raises(ApiError) as info:
        iot.update_thing(thingName="t1", attributePayload={"attributes": {"a": "3"}}, expectedVersion=v)
    assert code(info.value) == "VersionConflictException"
    iot.update_thing(thingName="t1", attributePayload={"attributes": {"a": "", "c": "3"}, "merge": True},
                     expectedVersion=v + 1)
    doc = iot.describe_thing(thingName="t1")
    assert (doc["attributes"], doc["version"]) == ({"b": "2", "c": "3"}, v + 2)
    with pytest.raises(ApiError) as info:
        iot.update_thing(thingName="t1", attributePayload={"attributes": {"d": "4", "e": "5"}, "merge": True})
    assert code(info.value) == "InvalidRequestException"  # a thing without a type: three attributes
    with pytest.raises(ApiError) as info:
        iot.create_thing(thingName="t1")  # now it has attributes: a different configuration
    assert code(info.value) == "ResourceAlreadyExistsException"
    for bad in ({"attributes": {"x y": "1"}}, {"attributes": {"x": "a b"}}):
        with pytest.raises(ApiError):
            iot.update_thing(thingName="t1", attributePayload=bad)
    for call in (lambda: iot.create_thing(thingName="bad/name"), lambda: iot.describe_thing(thingName="none")):
        with pytest.raises(ApiError) as info:
            call()
        assert code(info.value) in ("InvalidRequestException", "ResourceNotFoundException")
        assert info.value.response["Error"]["Message"]


def test_certificate_states_and_deletion_follow_aws(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    iot = rig.iot
    iot.create_thing(thingName="t2")
    made = iot.create_keys_and_certificate(setAsActive=True)
    cid, arn = made["certificateId"], made["certificateArn"]
    assert arn == cert_arn(cid) and made["keyPair"]["PrivateKey"].startswith("-----BEGIN EC PRIVATE KEY")
    assert iot.describe_certificate(certificateId=cid)["certificateDescription"]["certificatePem"] == \
        made["certificatePem"]
    before = rig.reloads
    iot.attach_policy(policyName=DEVICE_POLICY, target=arn)
    assert rig.reloads == before  # no thing yet: no rights changed
    iot.attach_thing_principal(thingName="t2", principal=arn)
    assert rig.reloads == before + 1
    cn = rig.registry.certificates()[0].common_name
    assert Registry.effective_grants(rig.registry.snapshot(), DEVICE_POLICY)[cn] == ["t2"]
    for call, err in ((lambda: iot.attach_policy(policyName="admin", target=arn), "ResourceNotFoundException"),
                      (lambda: iot.delete_certificate(certificateId=cid), "CertificateStateException")):
        with pytest.raises(ApiError) as info:
            call()
        assert code(info.value) == err
    iot.update_certificate(certificateId=cid, newStatus="INACTIVE")
    with pytest.raises(ApiError) as info:
        iot.delete_certificate(certificateId=cid)
    assert code(info.value) == "DeleteConflictException"
    iot.detach_thing_principal(thingName="t2", principal=arn)
    iot.detach_policy(policyName=DEVICE_POLICY, target=arn)
    assert Registry.effective_grants(rig.registry.snapshot(), DEVICE_POLICY).get(cn, []) == []
    iot.delete_certificate(certificateId=cid)
    with pytest.raises(ApiError) as info:
        iot.describe_certificate(certificateId=cid)
    assert code(info.value) == "ResourceNotFoundException"
    revoked = iot.create_keys_and_certificate(setAsActive=True)["certificateId"]
    iot.update_certificate(certificateId=revoked, newStatus="REVOKED")
    with pytest.raises(ApiError) as info:
        iot.update_certificate(certificateId=revoked, newStatus="ACTIVE")
    assert code(info.value) == "CertificateStateException"


def test_the_handler_follows_list_thing_principals_pages(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.iot.create_thing(thingName="t3")
    arns = []
    for _ in range(30):  # more than one page
        arns.append(rig.iot.create_keys_and_certificate(setAsActive=False)["certificateArn"])
        rig.iot.attach_thing_principal(thingName="t3", principal=arns[-1])
    page = rig.iot.list_thing_principals(thingName="t3")
    assert len(page["principals"]) < 30 and page["nextToken"]
    rig.iot.update_certificate(certificateId=arns[-1].rsplit("/", 1)[1], newStatus="ACTIVE")
    issuer = handler.Issuer(rig.iot, None, rig.config)
    assert issuer.active_principals("t3") == [arns[-1].rsplit("/", 1)[1]]  # found on the second page


def test_publish_keeps_aws_limits(tmp_path: Path) -> None:
    data = StandInIotData()
    for kwargs, err in (({"topic": "a/b", "qos": 2}, "InvalidRequestException"),
                        ({"topic": "a/+", "qos": 1}, "InvalidRequestException"),
                        ({"topic": "a/" + "x" * 300, "qos": 1}, "InvalidRequestException"),
                        ({"topic": "a/b", "qos": 1, "payload": b"x" * (PUBLISH_LIMIT + 1)},
                         "RequestEntityTooLargeException")):
        with pytest.raises(ApiError) as info:
            data.publish(**kwargs)
        assert code(info.value) == err
    data.publish(topic="a/b", qos=1, payload=b"x" * PUBLISH_LIMIT)
    assert len(data.messages) == 1


# --- the host ---------------------------------------------------------------------------------------------


def test_order_and_duplicates_arrange_what_the_handler_published(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.host.split_order, rig.host.split_duplicates = "cert-first", 1
    _, msgs = rig.split("nrf-5")
    assert [t.rsplit("/", 1)[1] for t, _ in msgs] == ["cert", "key", "cert", "key"]
    assert len({p for _, p in msgs}) == 2 and len(rig.registry.certificates()) == 1


def test_a_hook_that_answers_late_refuses_the_registration(tmp_path: Path) -> None:
    release = threading.Event()

    class SlowRegistry(StandInIot):
        def describe_thing(self, *, thingName: str) -> Any:
            release.wait(30)  # a registry call that takes longer than the hook may
            return super().describe_thing(thingName=thingName)

    rig = Rig(tmp_path)
    slow = SlowRegistry(registry=rig.registry, ca=CA, take_key=lambda: pki.generate_key("ec"),
                        policy_changed=lambda: None, clock=lambda: NOW)
    host = LambdaHost(slow, rig.config, lambda: NOW, hook_timeout=0.05)
    event = {"claimCertificateId": "c" * 64, "certificateId": "d" * 64, "certificatePem": "", "clientId": "x",
             "templateArn": "arn:aws:iot:local:000000000000:provisioningtemplate/nrfprov",
             "parameters": {"SerialNumber": "nrf-6"}}
    try:
        answer = host.pre_provisioning(event)
    finally:
        release.set()
    assert not answer.allowed and "did not answer within 0.05 s" in answer.reason
    assert host.calls()[-1].result == {"timeout": True}
    # With a registry that answers in time: allowed (another device: the late hook may still be running).
    assert rig.host.pre_provisioning({**event, "parameters": {"SerialNumber": "nrf-7"}}).allowed
    assert "certificatePem" not in rig.host.calls()[-1].event


def test_two_first_requests_for_one_thing_issue_one_certificate(tmp_path: Path) -> None:
    """B reads "no such thing", then A creates and claims it, then B goes on: B is told to retry."""
    rig = Rig(tmp_path)
    b_has_read, a_done = threading.Event(), threading.Event()

    class Interleaved(StandInIot):
        def describe_thing(self, *, thingName: str) -> Any:
            try:
                return super().describe_thing(thingName=thingName)
            finally:
                if not b_has_read.is_set():
                    b_has_read.set()
                    a_done.wait(30)

    b_iot = Interleaved(registry=rig.registry, ca=CA, take_key=lambda: pki.generate_key("ec"),
                        policy_changed=lambda: None, clock=lambda: NOW)
    b_data = StandInIotData()
    box: dict[str, Any] = {}
    b = threading.Thread(target=lambda: box.update(out=handler.Issuer(b_iot, b_data, rig.config).split(
        {"deviceId": "nrf-8", "topicId": "nrf-8"})))
    b.start()
    assert b_has_read.wait(30)
    try:
        a, _ = rig.split("nrf-8")
    finally:
        a_done.set()
        b.join(30)
    assert a["issued"] and box["out"].error_code == "ConcurrentRequest"
    assert rejected(b_data.messages, "nrf-8")["statusCode"] == 409
    assert len(rig.registry.certificates()) == 1
