"""The one parser of AWS's ``rejected`` reply, and the collectors and the MQTT session that use it."""

from __future__ import annotations

import json

import cbor2
import pytest

from nrfprov import iotcore
from nrfprov.errors import CloudRejected
from nrfprov.provisioning.flows import RegisterCollector, SplitCollector

BODY = {"statusCode": 403, "errorCode": "Forbidden", "errorMessage": "no"}


@pytest.mark.parametrize(("fmt", "raw"), [("json", json.dumps(BODY).encode()), ("cbor", cbor2.dumps(BODY))])
def test_documented_shape_in_both_formats(fmt: str, raw: bytes) -> None:
    e = iotcore.parse_rejected("t/rejected", raw, fmt)  # type: ignore[arg-type]
    assert (e.topic, e.status_code, e.error_code, e.error_message) == ("t/rejected", 403, "Forbidden", "no")
    assert e.exit_code == 5


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b"\xff\x00 not json", "\ufffd\x00 not json"),  # not JSON (nor UTF-8)
        (b"[1,2]", "[1,2]"),  # JSON, but not the documented object: the body itself is shown
        (b'"just a string"', '"just a string"'),
        (b"{" + b" " * iotcore.PAYLOAD_LIMIT + b"}", "{" + " " * 199),  # over AWS's limit: not parsed at all
    ],
)
def test_anything_else_is_still_a_refusal(raw: bytes, shown: str) -> None:
    e = iotcore.parse_rejected("t/rejected", raw, "json")
    assert (e.status_code, e.error_code, e.error_message) == (None, "Unparseable", shown)


def test_status_code_must_be_an_integer_not_a_bool() -> None:
    assert iotcore.parse_rejected("t", b'{"statusCode": true, "errorCode": "X"}').status_code is None
    assert iotcore.parse_rejected("t", b'{"statusCode": "400"}').status_code is None
    assert iotcore.parse_rejected("t", b'{"statusCode": 400}').status_code == 400


@pytest.mark.parametrize("raw", [b"[1,2]", b"\xff", json.dumps(BODY).encode()])
def test_collectors_and_session_report_a_rejection_identically(raw: bytes) -> None:
    expected = iotcore.parse_rejected("certificate/dev-1/create/rejected", raw, "json")
    with pytest.raises(CloudRejected) as split:
        SplitCollector("dev-1").feed("certificate/dev-1/create/rejected", raw)
    topic = "$aws/provisioning-templates/t/provision/json/rejected"
    with pytest.raises(CloudRejected) as register:
        RegisterCollector("t", "json").feed(topic, raw)
    for got in (split.value, register.value):
        assert (got.status_code, got.error_code, got.error_message) == (
            expected.status_code, expected.error_code, expected.error_message)
