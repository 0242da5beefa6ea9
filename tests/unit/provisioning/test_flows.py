"""Collectors and request builders, fed the way a broker delivers: whole messages, in any order."""

from __future__ import annotations

import json

import cbor2
import pytest
from provpki import Pki

from nrfprov.errors import CloudRejected, ConfigError, PayloadError, PayloadTooLarge
from nrfprov.provisioning import flows


def test_split_collector_limits_distinct_parts(pki: Pki) -> None:
    c = flows.SplitCollector("dev-1")
    for _ in range(flows.SPLIT_CANDIDATES_LIMIT):
        assert c.feed("certificate/dev-1/create/accepted/key", pki.issue()[1].encode()) is None
    with pytest.raises(PayloadError, match="without a matching pair"):
        c.feed("certificate/dev-1/create/accepted/key", pki.issue()[1].encode())


def test_split_collector_ignores_other_devices_and_rejects_typed(pki: Pki) -> None:
    c = flows.SplitCollector("dev-1")
    _cert, key = pki.issue()
    assert c.feed("certificate/dev-2/create/accepted/key", key.encode()) is None
    assert c.parts == (0, 0)
    with pytest.raises(CloudRejected) as info:
        c.feed("certificate/dev-1/create/rejected", b'{"statusCode":400,"errorCode":"InvalidId","errorMessage":"x"}')
    assert info.value.error_code == "InvalidId"
    with pytest.raises(PayloadTooLarge):
        c.feed("certificate/dev-1/create/accepted/cert", b"x" * (flows.AWS_PAYLOAD_LIMIT + 1))
    with pytest.raises(PayloadError, match="ASCII"):
        c.feed("certificate/dev-1/create/accepted/cert", b"\xff\xfe")


@pytest.mark.parametrize("fmt", ["json", "cbor"])
def test_extractor_collectors_take_accepted_and_rejected(pki: Pki, fmt: str) -> None:
    enc = (lambda d: json.dumps(d).encode()) if fmt == "json" else cbor2.dumps
    cert, key = pki.issue(rsa_key=True)
    doc = {"certificateId": "ab" * 32, "certificatePem": cert, "privateKey": key,
           "certificateOwnershipToken": "t" * 450, "extra": {"nested": [1, 2, {"x": None}]}}
    payload = enc(doc)
    assert len(payload) > flows.EXTRACTOR_CHUNK  # really fed in several chunks
    got = flows.combined_collector(fmt).feed(f"$aws/certificates/create/{fmt}/accepted", payload)
    assert got is not None and got.private_key_pem == key and got.certificate_id == "ab" * 32
    csr = flows.csr_collector(fmt).feed(f"$aws/certificates/create-from-csr/{fmt}/accepted", payload)
    assert csr is not None and csr.private_key_pem is None
    with pytest.raises(CloudRejected) as info:
        flows.combined_collector(fmt).feed(
            f"$aws/certificates/create/{fmt}/rejected",
            enc({"statusCode": 400, "errorCode": "InvalidCertificateOwnershipToken", "errorMessage": "empty"}))
    assert info.value.status_code == 400
    no_key = enc({k: v for k, v in doc.items() if k != "privateKey"})
    with pytest.raises(PayloadError, match="private_key"):
        flows.combined_collector(fmt).feed(f"$aws/certificates/create/{fmt}/accepted", no_key)


def test_truncated_combined_reply_is_a_payload_error(pki: Pki) -> None:
    cert, key = pki.issue()
    payload = json.dumps({"certificateId": "a", "certificatePem": cert, "privateKey": key,
                          "certificateOwnershipToken": "t"}).encode()
    with pytest.raises(PayloadError):
        flows.combined_collector("json").feed("$aws/certificates/create/json/accepted", payload[:-10])


def test_register_collector_checks_the_thing_name() -> None:
    c = flows.RegisterCollector("nrfprov", "json")
    topic = "$aws/provisioning-templates/nrfprov/provision/json/accepted"
    assert c.feed(topic, b'{"thingName":"SN-1","deviceConfiguration":{"a":"b"}}') == flows.Registration(
        "SN-1", {"a": "b"})
    with pytest.raises(PayloadError, match="invalid thing name"):
        c.feed(topic, b'{"thingName":"bad name"}')
    with pytest.raises(PayloadError, match="thingName"):
        c.feed(topic, b"{}")
    with pytest.raises(PayloadError, match="not valid json"):
        c.feed(topic, b"{")


def test_requests_and_parameters() -> None:
    r = flows.register_request("tpl", "cbor", "tok", {"SerialNumber": "1"})
    assert r.topic == "$aws/provisioning-templates/tpl/provision/cbor"
    assert cbor2.loads(r.payload) == {"certificateOwnershipToken": "tok", "parameters": {"SerialNumber": "1"}}
    assert flows.combined_request("json").payload == b"{}"
    assert flows.expand_parameters({"SerialNumber": "{imei}", "Name": "x-{client_id}"}, imei="35", client_id="c") == {
        "SerialNumber": "35", "Name": "x-c"}
    flows.check_client_id("dev_1:a-b")
    with pytest.raises(ConfigError):
        flows.check_client_id("has space")
