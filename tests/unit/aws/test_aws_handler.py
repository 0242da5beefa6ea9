"""The split-topic handler and the pre-provisioning hook against moto's IoT registry (``mock_aws``).

moto stands in for the AWS IoT registry (things, certificates, policies) and records iot-data
publishes; it does not fire topic rules, so each test hands the handler the event the rule
``SELECT clientid() AS deviceId, topic(2) AS topicId FROM 'certificate/+/create'`` would build.
moto ignores UpdateThing's expectedVersion, so the concurrency test wraps it (VersionedIot below).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.iotdata.models import iotdata_backends

from nrfprov.aws import handler as h

REGION = "eu-west-1"
POLICY = "nrfprov-device-test"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    for k in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws(config={"iot": {"use_valid_cert": True}}):
        iot = boto3.client("iot", region_name=REGION)
        iot.create_policy(policyName=POLICY, policyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
        yield iot, boto3.client("iot-data", region_name=REGION)


def published() -> list[tuple[str, bytes]]:
    return list(iotdata_backends[DEFAULT_ACCOUNT_ID][REGION].published_payloads)


def issuer(aws: tuple[Any, Any], **cfg: Any) -> h.Issuer:
    return h.Issuer(aws[0], aws[1], h.Config(device_policy=POLICY, **cfg))


def request(iss: h.Issuer, device: str, topic: str | None = None) -> dict[str, Any]:
    return h.dispatch({"deviceId": device, "topicId": device if topic is None else topic}, iss)


def certificates(iot: Any) -> list[dict[str, Any]]:
    return list(iot.list_certificates()["certificates"])


def rejected_body(topic: str) -> dict[str, Any]:
    bodies = [json.loads(p) for t, p in published() if t == topic]
    assert len(bodies) == 1, published()
    doc: dict[str, Any] = bodies[0]
    assert set(doc) == {"statusCode", "errorCode", "errorMessage"}
    return doc


def test_one_certificate_attached_and_two_publishes_to_the_requester(aws: tuple[Any, Any]) -> None:
    iot, _ = aws
    out = request(issuer(aws), "nrf-352656100000001")
    assert out["issued"] is True
    certs = certificates(iot)
    assert len(certs) == 1 and certs[0]["status"] == "ACTIVE"
    arn = certs[0]["certificateArn"]
    assert out["certificateId"] == certs[0]["certificateId"]
    assert iot.list_thing_principals(thingName="nrf-352656100000001")["principals"] == [arn]
    assert [p["policyName"] for p in iot.list_attached_policies(target=arn)["policies"]] == [POLICY]
    pubs = published()
    base = "certificate/nrf-352656100000001/create/accepted"
    assert [t for t, _ in pubs] == [f"{base}/key", f"{base}/cert"]
    key = serialization.load_pem_private_key(pubs[0][1], password=None)
    cert = x509.load_pem_x509_certificate(pubs[1][1])
    # The key and the certificate belong together (what the device writes into its sec tag).
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]


def test_a_thing_with_an_active_certificate_gets_no_second_one(aws: tuple[Any, Any]) -> None:
    iot, _ = aws
    iss = issuer(aws)
    first = request(iss, "dev-1")
    again = request(iss, "dev-1")
    assert again["issued"] is False and again["errorCode"] == "AlreadyProvisioned"
    assert len(certificates(iot)) == 1
    doc = rejected_body("certificate/dev-1/create/rejected")
    assert doc["statusCode"] == 409 and "nrfprov aws reprovision dev-1" in doc["errorMessage"]
    assert first["certificateId"] not in doc["errorMessage"]  # ids go to the log, not to the requester


def test_an_existing_fleet_provisioned_thing_is_refused_too(aws: tuple[Any, Any]) -> None:
    iot, _ = aws
    # A thing made by Fleet Provisioning (or by hand): active certificate attached, not by this handler.
    iot.create_thing(thingName="fleet-7")
    other = iot.create_keys_and_certificate(setAsActive=True)
    iot.attach_thing_principal(thingName="fleet-7", principal=other["certificateArn"])
    out = request(issuer(aws), "fleet-7")
    assert out["errorCode"] == "AlreadyProvisioned"
    assert len(certificates(iot)) == 1


def test_reprovision_permission_issues_once_and_deactivates_the_old_certificate(aws: tuple[Any, Any]) -> None:
    iot, _ = aws
    now = [1_800_000_000.0]
    iss = h.Issuer(aws[0], aws[1], h.Config(device_policy=POLICY), clock=lambda: now[0])
    first = request(iss, "dev-2")
    iot.update_thing(thingName="dev-2", attributePayload={
        "attributes": {h.REPROVISION_ATTRIBUTE: str(int(now[0]) + 3600)}, "merge": True})
    second = request(iss, "dev-2")
    assert second["issued"] is True and second["replaced"] == [first["certificateId"]]
    status = {c["certificateId"]: c["status"] for c in certificates(iot)}
    assert status == {first["certificateId"]: "INACTIVE", second["certificateId"]: "ACTIVE"}
    attrs = iot.describe_thing(thingName="dev-2")["attributes"]
    assert h.REPROVISION_ATTRIBUTE not in attrs  # used up
    assert request(iss, "dev-2")["errorCode"] == "AlreadyProvisioned"


def test_an_expired_permission_is_no_permission(aws: tuple[Any, Any]) -> None:
    iot, _ = aws
    now = [1_800_000_000.0]
    iss = h.Issuer(aws[0], aws[1], h.Config(device_policy=POLICY), clock=lambda: now[0])
    request(iss, "dev-3")
    iot.update_thing(thingName="dev-3", attributePayload={
        "attributes": {h.REPROVISION_ATTRIBUTE: str(int(now[0]) + 60)}, "merge": True})
    now[0] += 61
    assert request(iss, "dev-3")["errorCode"] == "AlreadyProvisioned"


def test_client_id_and_topic_segment_must_agree(aws: tuple[Any, Any]) -> None:
    iot, _ = aws
    out = request(issuer(aws), "attacker-1", topic="victim-1")
    assert out["errorCode"] == "ClientIdMismatch"
    assert certificates(iot) == [] and iot.list_things()["things"] == []
    # The refusal goes to the requester's own topic, nothing to the victim's.
    assert rejected_body("certificate/attacker-1/create/rejected")["statusCode"] == 403
    assert not [t for t, _ in published() if "victim-1" in t]


@pytest.mark.parametrize("device", ["dev.1", "x" * 129, "dev 1", "dév"])
def test_invalid_device_ids_are_rejected(aws: tuple[Any, Any], device: str) -> None:
    iot, _ = aws
    out = request(issuer(aws), device)
    assert out["errorCode"] == "InvalidDeviceId"
    assert certificates(iot) == []
    if len(device) <= 128:
        assert rejected_body(f"certificate/{device}/create/rejected")["statusCode"] == 400


def test_an_id_that_cannot_be_a_topic_level_gets_no_reply(aws: tuple[Any, Any]) -> None:
    out = request(issuer(aws), "a/b", topic="a/b")
    assert out["errorCode"] == "InvalidDeviceId" and out["published"] == [] and published() == []


@pytest.mark.parametrize("device", ["IOT-RESPONDER", "Localhost", "localhost"])
def test_reserved_ids_match_case_insensitively(aws: tuple[Any, Any], device: str) -> None:
    iot, _ = aws
    out = request(issuer(aws, reserved=("iot-responder", "LOCALHOST")), device)
    assert out["errorCode"] == "ReservedDeviceId" and certificates(iot) == []


def test_allowlist(aws: tuple[Any, Any]) -> None:
    iot, _ = aws
    iss = issuer(aws, allowed=("nrf-35*", "lab-device"))
    assert request(iss, "nrf-351")["issued"] is True
    assert request(iss, "lab-device")["issued"] is True
    assert request(iss, "lab-device-2")["errorCode"] == "DeviceNotAllowed"
    assert request(iss, "NRF-352")["errorCode"] == "DeviceNotAllowed"  # patterns are case-sensitive
    assert len(certificates(iot)) == 2


def test_a_failed_attach_rolls_back_and_publishes_rejected(aws: tuple[Any, Any]) -> None:
    iot, _ = aws
    broken = h.Issuer(aws[0], aws[1], h.Config(device_policy="no-such-policy"))
    out = request(broken, "dev-4")
    assert out["errorCode"] == "InternalFailure"
    assert rejected_body("certificate/dev-4/create/rejected")["statusCode"] == 500
    assert certificates(iot) == []  # deactivated and deleted again
    # Nothing half-made blocks the device's retry once the cloud side is fixed.
    assert request(issuer(aws), "dev-4")["issued"] is True


class FailingData:
    """An iot-data client whose key publish fails (AWS answering 503)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def publish(self, **kw: Any) -> Any:
        if kw["topic"].endswith("/accepted/key"):
            err = Exception("publish failed")
            err.response = {"Error": {"Code": "ServiceUnavailableException"}}  # type: ignore[attr-defined]
            raise err
        return self.real.publish(**kw)


def test_a_failed_publish_detaches_and_removes_the_certificate(aws: tuple[Any, Any]) -> None:
    iot, data = aws
    out = request(h.Issuer(iot, FailingData(data), h.Config(device_policy=POLICY)), "dev-5")
    assert out["errorCode"] == "InternalFailure"
    assert iot.list_thing_principals(thingName="dev-5")["principals"] == []
    assert certificates(iot) == []
    assert [t for t, _ in published()] == ["certificate/dev-5/create/rejected"]
    assert request(issuer(aws), "dev-5")["issued"] is True


class VersionedIot:
    """moto's IoT client plus UpdateThing's expectedVersion check, which moto does not implement
    [AWS IoT API reference, API_UpdateThing: a version mismatch fails with VersionConflictException].
    ``before_update`` runs once, before the first guarded update: a concurrent request."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.versions: dict[str, int] = {}
        self.before_update: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def describe_thing(self, **kw: Any) -> Any:
        doc = dict(self.real.describe_thing(**kw))
        doc["version"] = self.versions.setdefault(kw["thingName"], 1)
        return doc

    def update_thing(self, **kw: Any) -> Any:
        hook, self.before_update = self.before_update, None
        if hook is not None:
            hook()
        name = kw["thingName"]
        if "expectedVersion" in kw and kw["expectedVersion"] != self.versions.get(name, 1):
            err = Exception("version conflict")
            err.response = {"Error": {"Code": "VersionConflictException"}}  # type: ignore[attr-defined]
            raise err
        self.versions[name] = self.versions.get(name, 1) + 1
        return self.real.update_thing(**{k: v for k, v in kw.items() if k != "expectedVersion"})


def test_two_concurrent_first_requests_get_one_certificate(aws: tuple[Any, Any]) -> None:
    iot = VersionedIot(aws[0])
    a = h.Issuer(iot, aws[1], h.Config(device_policy=POLICY))
    b = h.Issuer(iot, aws[1], h.Config(device_policy=POLICY))
    outcomes: list[dict[str, Any]] = []
    iot.before_update = lambda: outcomes.append(request(b, "dev-6"))  # b runs between a's read and a's claim
    outcomes.append(request(a, "dev-6"))
    assert [o["issued"] for o in outcomes] == [True, False]
    assert outcomes[1]["errorCode"] == "ConcurrentRequest"
    assert len(certificates(aws[0])) == 1


class ThrottledIot(VersionedIot):
    """moto's IoT client whose ``operation`` fails with ``code`` (botocore's ClientError shape)."""

    def __init__(self, real: Any, operation: str, code: str) -> None:
        super().__init__(real)
        self.fail = (operation, code)

    def __getattribute__(self, name: str) -> Any:
        operation, code = object.__getattribute__(self, "fail") if name != "fail" else ("", "")
        if name == operation:
            def failing(**_kw: Any) -> Any:
                err = Exception(code)
                err.response = {"Error": {"Code": code}}  # type: ignore[attr-defined]
                raise err
            return failing
        return object.__getattribute__(self, name)


@pytest.mark.parametrize(("operation", "code", "status"), [
    ("list_thing_principals", "ThrottlingException", 429),  # while checking the thing
    ("describe_thing", "InternalFailureException", 500),
    ("create_keys_and_certificate", "ThrottlingException", 429),  # while issuing
])
def test_a_failing_aws_call_is_answered_on_rejected_at_once(aws: tuple[Any, Any], operation: str, code: str,
                                                            status: int) -> None:
    iot = ThrottledIot(aws[0], operation, code)
    out = request(h.Issuer(iot, aws[1], h.Config(device_policy=POLICY)), "dev-9")
    doc = rejected_body("certificate/dev-9/create/rejected")
    assert out["issued"] is False and doc["statusCode"] == status
    assert doc["errorCode"] == ("ThrottlingException" if status == 429 else "InternalFailure")
    assert certificates(aws[0]) == []


def test_no_key_material_in_logs(aws: tuple[Any, Any], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    iss = issuer(aws)
    out = request(iss, "dev-7")
    request(iss, "dev-7")  # refusal
    request(h.Issuer(aws[0], FailingData(aws[1]), h.Config(device_policy=POLICY)), "dev-8")  # failure
    key_pem = dict(published())["certificate/dev-7/create/accepted/key"].decode()
    body_lines = [ln for ln in key_pem.splitlines() if ln and not ln.startswith("-----")]
    text = caplog.text
    assert "BEGIN" not in text and "PRIVATE" not in text
    assert not any(line in text for line in body_lines)
    # ... but every issue and refusal is there, with device and certificate ids.
    assert f"device=dev-7 certificate={out['certificateId']} issued" in text
    assert re.search(r"device=dev-7 refused AlreadyProvisioned .*existing_certificates=" + out["certificateId"], text)
    assert re.search(r"device=dev-8 certificate=[0-9a-f]{64} issue failed", text)


def hook_event(serial: str | None, cert: str = "c" * 64) -> dict[str, Any]:
    params = {} if serial is None else {"SerialNumber": serial}
    return {"claimCertificateId": "a" * 64, "certificateId": cert, "certificatePem": "...",
            "templateArn": f"arn:aws:iot:{REGION}:{DEFAULT_ACCOUNT_ID}:provisioningtemplate/nrfprov",
            "clientId": "whatever", "parameters": params}


def test_pre_provisioning_hook_applies_the_same_rules(aws: tuple[Any, Any]) -> None:
    iot, _ = aws
    iss = issuer(aws, allowed=("nrf-*",), reserved=("nrf-admin",))
    assert h.dispatch(hook_event("nrf-1"), iss) == {"allowProvisioning": True}
    assert h.dispatch(hook_event(None), iss) == {"allowProvisioning": False}
    assert h.dispatch(hook_event("other"), iss) == {"allowProvisioning": False}
    assert h.dispatch(hook_event("NRF-ADMIN".lower()), iss) == {"allowProvisioning": False}
    assert h.dispatch(hook_event("nrf-x.y"), iss) == {"allowProvisioning": False}
    # nrf-1 now gets its certificate from RegisterThing; a second registration is refused ...
    cert = iot.create_keys_and_certificate(setAsActive=True)
    iot.attach_thing_principal(thingName="nrf-1", principal=cert["certificateArn"])
    assert h.dispatch(hook_event("nrf-1"), iss) == {"allowProvisioning": False}
    # ... unless an operator allowed it; then the old certificate stops at once.
    iot.update_thing(thingName="nrf-1", attributePayload={
        "attributes": {h.REPROVISION_ATTRIBUTE: "9999999999"}, "merge": True})
    assert h.dispatch(hook_event("nrf-1"), iss) == {"allowProvisioning": True}
    desc = iot.describe_certificate(certificateId=cert["certificateId"])["certificateDescription"]
    assert desc["status"] == "INACTIVE"
    assert certificates(iot)[0]["certificateId"] == cert["certificateId"] and len(certificates(iot)) == 1


def test_lambda_entry_point_builds_its_clients_from_the_environment(
    aws: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("DEVICE_POLICY_NAME", POLICY)
    monkeypatch.setenv("RESERVED_DEVICE_IDS", "admin")
    monkeypatch.setattr(h, "_ISSUER", None)
    assert h.handler({"deviceId": "dev-9", "topicId": "dev-9"}, None)["issued"] is True
    assert h.handler({"deviceId": "ADMIN", "topicId": "ADMIN"}, None)["errorCode"] == "ReservedDeviceId"
    assert len(certificates(aws[0])) == 1


def test_events_not_from_the_rule_are_ignored(aws: tuple[Any, Any]) -> None:
    assert h.dispatch({"something": "else"}, issuer(aws))["errorCode"] == "InvalidEvent"
    assert published() == []
