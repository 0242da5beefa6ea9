"""The responder's decisions, without a broker: real CA, real registry files, the product handler
(``nrfprov.aws.handler``) hosted over the stand-in's registry, a recording policy hook.

The broker side of the same behaviour is covered in tests/integration/cloud.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nrfprov.aws.handler as handler
from nrfprov.cloud import acl, pki, templates
from nrfprov.cloud.broker import BrokerFiles, render_config
from nrfprov.cloud.hosted import LambdaHost
from nrfprov.cloud.iot_api import DEVICE_POLICY, StandInIot
from nrfprov.cloud.registry import Registry, TokenProblem
from nrfprov.cloud.service import KeyPool, ProvisioningService

CA = pki.CertificateAuthority.create("ec")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


RESERVED = ("iot-responder", "nrfprov-claim")


def make_service(tmp_path: Path, events: list[Any], clock: Clock, **host: Any) -> ProvisioningService:
    templates.ensure_dir(tmp_path)
    registry = Registry(tmp_path)
    keys = KeyPool("ec", 0)
    iot = StandInIot(registry=registry, ca=CA, take_key=keys.take, policy_changed=lambda: events.append("policy"),
                     clock=clock)
    lam = LambdaHost(iot, handler.Config(device_policy=DEVICE_POLICY, reserved=RESERVED), clock,
                     **{"split_order": "key-first", **host})
    return ProvisioningService(state_dir=tmp_path, ca=CA, registry=registry, keys=keys, host=lam,
                               policy_changed=lambda: events.append("policy"), clock=clock,
                               claim_certificate_id="c" * 64)


@pytest.fixture
def svc(tmp_path: Path) -> tuple[ProvisioningService, list[Any], Clock]:
    events: list[Any] = []
    clock = Clock()
    return make_service(tmp_path, events, clock), events, clock


def grants(s: ProvisioningService) -> dict[str, list[str]]:
    return {cn: things for cn, things in Registry.effective_grants(s.registry.snapshot(), DEVICE_POLICY).items()
            if things}


def test_split_is_served_by_the_product_handler_and_grants_before_replying(
    svc: tuple[ProvisioningService, list[Any], Clock],
) -> None:
    s, events, _ = svc
    reply = s.handle("certificate/dev-1/create", b"anything", "dev-1")
    assert reply is not None and reply.sequential
    assert [t for t, _ in reply.messages] == ["certificate/dev-1/create/accepted/key",
                                              "certificate/dev-1/create/accepted/cert"]
    assert events == ["policy"]  # one ACL rewrite + reload, when the thing met the device policy
    cert = x509.load_pem_x509_certificate(reply.messages[1][1])
    [rec] = s.registry.certificates()
    assert pki.common_name(cert) == rec.common_name and rec.common_name.startswith("cert-")
    assert grants(s) == {rec.common_name: ["dev-1"]}
    assert (rec.status, rec.thing_name, rec.operation) == ("ACTIVE", "dev-1", "split")
    assert s.request_counts() == {"split": 1}
    # The handler's own record of the run: the rule's event and the certificate it issued.
    [call] = s.host.calls()
    assert call.caller == "split" and call.event == {"deviceId": "dev-1", "topicId": "dev-1"}
    assert call.result["issued"] and call.result["certificateId"] == rec.certificate_id


def test_a_split_request_without_the_brokers_client_id_tag_gets_no_answer(
    svc: tuple[ProvisioningService, list[Any], Clock],
) -> None:
    s, _, _ = svc
    assert s.handle("certificate/dev-1/create", b"", None) is None
    assert s.host.calls() == [] and s.registry.certificates() == []


def test_unknown_topics_are_ignored(svc: tuple[ProvisioningService, list[Any], Clock]) -> None:
    s, _, _ = svc
    assert s.handle("certificate/x/create/accepted/key", b"") is None
    assert s.handle("$aws/certificates/create/xml", b"") is None


@pytest.mark.parametrize("fmt", ["json", "cbor"])
def test_fleet_flow_and_token_rules(svc: tuple[ProvisioningService, list[Any], Clock], fmt: str) -> None:
    s, events, clock = svc
    load = cbor2.loads if fmt == "cbor" else json.loads
    dump = cbor2.dumps if fmt == "cbor" else (lambda o: json.dumps(o).encode())
    reply = s.handle(f"$aws/certificates/create/{fmt}", b"")
    assert reply is not None
    [(topic, body)] = reply.messages
    assert topic == f"$aws/certificates/create/{fmt}/accepted"
    created = load(body)
    assert events == ["policy"]  # pending cert held in the CRL before the reply leaves
    reg = f"$aws/provisioning-templates/nrfprov/provision/{fmt}"
    req = {"certificateOwnershipToken": created["certificateOwnershipToken"], "parameters": {"SerialNumber": "a1"}}
    reply = s.handle(reg, dump(req))
    assert reply is not None
    assert reply.messages[0][0] == f"{reg}/accepted"
    assert load(reply.messages[0][1]) == {"deviceConfiguration": {}, "thingName": "a1"}
    cn = next(r.common_name for r in s.registry.certificates())
    assert events[-1] == "policy" and grants(s) == {cn: ["a1"]}
    # RegisterThing asked the product handler first, as AWS asks the pre-provisioning hook.
    [hook] = s.host.calls()
    assert hook.caller == "hook" and hook.result == {"allowProvisioning": True}
    assert hook.event["parameters"] == {"SerialNumber": "a1"} and hook.event["claimCertificateId"] == "c" * 64
    # second use, then expiry on a fresh token
    again = s.handle(reg, dump(req))
    assert again is not None and load(again.messages[0][1])["errorCode"] == "InvalidCertificateOwnershipToken"
    r2 = s.handle(f"$aws/certificates/create/{fmt}", b"")
    assert r2 is not None
    token2 = load(r2.messages[0][1])["certificateOwnershipToken"]
    clock.now += 3599
    clock_ok = s.registry.check_token(s.registry.snapshot(), token2, clock.now)
    assert len(clock_ok) == 64
    clock.now += 1
    late = s.handle(reg, dump({"certificateOwnershipToken": token2, "parameters": {"SerialNumber": "a2"}}))
    assert late is not None and "expired" in load(late.messages[0][1])["errorMessage"]


@pytest.mark.parametrize("name", ["nrfprov-claim", "iot-responder", "IOT-RESPONDER", "Nrfprov-Claim"])
def test_reserved_names_cannot_be_taken_in_any_case(svc: tuple[ProvisioningService, list[Any], Clock],
                                                      name: str) -> None:
    s, _, _ = svc
    reply = s.handle(f"certificate/{name}/create", b"", name)
    assert reply is not None and [t for t, _ in reply.messages] == [f"certificate/{name}/create/rejected"]
    assert json.loads(reply.messages[0][1])["errorCode"] == "ReservedDeviceId"
    r = s.handle("$aws/certificates/create/json", b"", "fp-1")
    assert r is not None
    tok = json.loads(r.messages[0][1])["certificateOwnershipToken"]
    reg = s.handle("$aws/provisioning-templates/nrfprov/provision/json",
                   json.dumps({"certificateOwnershipToken": tok, "parameters": {"SerialNumber": name}}).encode(),
                   "fp-1")
    assert reg is not None and json.loads(reg.messages[0][1])["statusCode"] == 403
    assert grants(s) == {}
    assert [r.status for r in s.registry.certificates()] == ["PENDING_ACTIVATION"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(topic=st.sampled_from([
    "$aws/certificates/create/json", "$aws/certificates/create/cbor", "$aws/certificates/create-from-csr/json",
    "$aws/certificates/create-from-csr/cbor", "$aws/provisioning-templates/nrfprov/provision/json",
    "$aws/provisioning-templates/nrfprov/provision/cbor", "$aws/provisioning-templates/x/provision/json"]),
    payload=st.one_of(st.binary(max_size=200), st.builds(lambda o: json.dumps(o).encode(), st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(
            ["certificateOwnershipToken", "parameters", "certificateSigningRequest", "SerialNumber"]), c, max_size=3),
        max_leaves=8))))
def test_any_payload_gets_an_accepted_or_aws_shaped_rejected_reply(
    svc: tuple[ProvisioningService, list[Any], Clock], topic: str, payload: bytes
) -> None:
    s, _, _ = svc
    reply = s.handle(topic, payload, "fp-1")
    assert reply is not None and len(reply.messages) == 1
    out_topic, body = reply.messages[0]
    assert out_topic in (f"{topic}/accepted", f"{topic}/rejected")
    if out_topic.endswith("/rejected"):
        obj = cbor2.loads(body) if topic.endswith("cbor") else json.loads(body)
        assert set(obj) == {"statusCode", "errorCode", "errorMessage"}
        assert obj["statusCode"] in (400, 403, 404), obj  # never 500: no responder bug reached


def test_acl_layout() -> None:
    text = acl.render(claim_cn="claim", responder_cn="resp", principals=["dev-1", "pending-1", "bad name"],
                      grants={"dev-1": ["dev-1"]})
    sections = {block.splitlines()[0]: block.splitlines()[1:] for block in text.split("\n\n")}
    assert "pattern write certificate/%c/create" in text.split("\n\n")[0]
    claim = sections["user claim"]
    for fmt in ("json", "cbor"):
        assert f"topic write $aws/certificates/create/{fmt}" in claim
        assert f"topic read $aws/provisioning-templates/+/provision/{fmt}/accepted" in claim
    assert sections["user dev-1"] == ["topic deny certificate/#", "topic readwrite $aws/things/dev-1/#",
                                      "topic readwrite things/dev-1/#"]
    assert sections["user pending-1"] == ["topic deny certificate/#"]
    assert "user bad name" not in text
    with pytest.raises(ValueError):
        acl.device_rules("#")


def test_registry_persists_and_rejects_unknown_tokens(tmp_path: Path) -> None:
    r = Registry(tmp_path)
    with r.transaction() as data:
        r.add_certificate(data, certificate_id="a" * 64, common_name="x", serial=2**150, status="PENDING_ACTIVATION",
                          operation="create", created_at=5.0)
        r.add_token(data, "secret-token-Zq9", "a" * 64, 5.0)
    again = Registry(tmp_path)
    [rec] = again.certificates()
    assert rec.serial == 2**150 and rec.status == "PENDING_ACTIVATION"
    assert "secret-token-Zq9" not in (tmp_path / "registry.json").read_text()
    assert again.check_token(again.snapshot(), "secret-token-Zq9", 6.0) == "a" * 64
    with pytest.raises(TokenProblem, match="invalid"):
        again.check_token(again.snapshot(), "other", 6.0)
    assert Registry.crl_entries(again.snapshot()) == [(2**150, 5.0, True)]


def test_the_default_template_is_the_deployed_document(tmp_path: Path) -> None:
    templates.ensure_dir(tmp_path)
    body = templates.load(tmp_path, "nrfprov", device_policy="pol-1")
    deployed = json.loads((Path(handler.__file__).parent / "fleet_template.json").read_text())
    assert body == json.loads(json.dumps(deployed).replace("${DevicePolicyName}", "pol-1"))
    # A stale copy in the state folder (written by older stand-ins) does not shadow it.
    (tmp_path / "templates" / "nrfprov.json").write_text(json.dumps({"Resources": {}}))
    assert templates.load(tmp_path, "nrfprov", device_policy="pol-1") == body
    out = templates.evaluate(body, {"SerialNumber": "s1"}, "c" * 64)
    assert (out.thing_name, out.certificate_status, out.device_configuration, out.policies) == \
        ("s1", "ACTIVE", {}, ("pol-1",))
    with pytest.raises(templates.TemplateError, match="SerialNumber"):
        templates.evaluate(body, {}, "c" * 64)
    with pytest.raises(templates.TemplateNotFound):
        templates.load(tmp_path, "../etc", device_policy="pol-1")
    joined = {"Resources": {"t": {"Type": "AWS::IoT::Thing", "Properties": {
        "ThingName": {"Fn::Join": ["-", ["p", {"Ref": "AWS::IoT::Certificate::Id"}]]}}},
        "p": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyDocument": "{}"}}}}
    out = templates.evaluate(joined, {}, "abc")
    assert (out.thing_name, out.policies) == ("p-abc", (None,))


def test_broker_config_mirrors_aws_limits(tmp_path: Path) -> None:
    files = BrokerFiles(*(tmp_path / n for n in ("ca", "cert", "key", "crl", "acl", "p.so")),
                        plugin_options=(("connect_interval_ms", "1000"), ("reply_topics", "a/+ b/#")))
    lines = render_config(18883, files, "me").splitlines()
    for want in ("message_size_limit 131072", "require_certificate true", f"plugin {tmp_path / 'p.so'}",
                 "plugin_opt_connect_interval_ms 1000", "plugin_opt_reply_topics a/+ b/#",
                 "tls_version tlsv1.2", "set_tcp_nodelay true", "persistence false", "user me",
                 "listener 18883 127.0.0.1"):
        assert want in lines
    # The plugin takes the username from the certificate: with this option it would never see a CONNECT.
    assert "use_identity_as_username true" not in lines
    # max_qos is a listener option: before `listener` it would open a default listener on 1883.
    assert lines.index("max_qos 1") > lines.index("listener 18883 127.0.0.1")
