"""Fleet Provisioning replies reach only the connection that made the request, as on AWS.

"IoT Core Fleet Provisioning returns the device provisioning MQTT API results through the same MQTT
connection used to publish the API request" [AWS IoT developer guide, fleet-provision-api]. Every claim
connection shares one certificate and subscribes to the same reply topics, so the topic cannot tell
them apart; the broker plugin does (broker_plugin.c, routing.py).

Plain paho clients only. "Receives nothing" is proven without waiting: after the requester has its
reply, the bystander makes a request of its own; the broker delivers to one connection in order, so a
leaked reply would arrive before the bystander's own one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fixtures.cloud import NOT_AUTHORIZED, PUBACK_OK, MqttProbe
from nrfprov.cloud import LocalAwsIot
from nrfprov.cloud.routing import MARKER, ROUTE_PREFIX

pytestmark = pytest.mark.integration
FORMATS = ["json", "cbor"]
TEMPLATE = "nrfprov"


def enc(fmt: str, obj: Any) -> bytes:
    return bytes(cbor2.dumps(obj)) if fmt == "cbor" else json.dumps(obj).encode()


def dec(fmt: str, data: bytes) -> Any:
    return cbor2.loads(data) if fmt == "cbor" else json.loads(data)


def requests(fmt: str) -> dict[str, str]:
    return {"create": f"$aws/certificates/create/{fmt}",
            "create-from-csr": f"$aws/certificates/create-from-csr/{fmt}",
            "register": f"$aws/provisioning-templates/{TEMPLATE}/provision/{fmt}"}


def csr_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device")])).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@contextmanager
def claim(cloud: LocalAwsIot, client_id: str, fmt: str, **kw: Any) -> Iterator[MqttProbe]:
    """A claim connection subscribed to every accepted/rejected topic of ``fmt``."""
    with MqttProbe.for_claim(cloud, client_id, **kw) as probe:
        assert probe.connect()
        subs = [f"{req}/{kind}" for req in requests(fmt).values() for kind in ("accepted", "rejected")]
        assert probe.subscribe(*subs) == [1] * len(subs)
        yield probe


def call(probe: MqttProbe, fmt: str, op: str, payload: bytes) -> tuple[str, dict[str, Any]]:
    topic = requests(fmt)[op]
    assert probe.publish(topic, payload) == 0
    got, body = probe.get()
    assert got in (f"{topic}/accepted", f"{topic}/rejected"), got
    return got.rsplit("/", 1)[1], dec(fmt, body)


def assert_received_nothing(bystander: MqttProbe, fmt: str, seen: set[str]) -> None:
    """The bystander's next message is the reply to its own (new) request, and nothing else came."""
    kind, body = call(bystander, fmt, "create", b"")
    assert kind == "accepted" and body["certificateId"] not in seen
    assert bystander.drain() == []


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("operation", ["create", "create-from-csr", "register", "rejected"])
def test_a_reply_reaches_only_the_requesting_connection(
    local_aws_factory: Callable[..., LocalAwsIot], fmt: str, operation: str
) -> None:
    cloud = local_aws_factory(device_key_type="ec")
    with claim(cloud, "fp-requester", fmt) as requester, claim(cloud, "fp-bystander", fmt) as bystander:
        seen: set[str] = set()
        if operation == "create":
            kind, body = call(requester, fmt, "create", b"")
            seen.add(body["certificateId"])
        elif operation == "create-from-csr":
            kind, body = call(requester, fmt, "create-from-csr", enc(fmt, {"certificateSigningRequest": csr_pem()}))
            seen.add(body["certificateId"])
        elif operation == "register":
            _, created = call(requester, fmt, "create", b"")
            seen.add(created["certificateId"])
            assert_received_nothing(bystander, fmt, seen)
            kind, body = call(requester, fmt, "register", enc(fmt, {
                "certificateOwnershipToken": created["certificateOwnershipToken"],
                "parameters": {"SerialNumber": "iso-1"}}))
            assert body == {"deviceConfiguration": {}, "thingName": "iso-1"}
        else:
            kind, body = call(requester, fmt, "create-from-csr", enc(fmt, {"certificateSigningRequest": "junk"}))
            assert (kind, body["errorCode"]) == ("rejected", "InvalidCSR")
        assert kind == ("rejected" if operation == "rejected" else "accepted")
        assert_received_nothing(bystander, fmt, seen)
        assert requester.drain() == []  # one reply per request, and the bystander's never came here


def test_an_mqtt311_requester_gets_its_reply_and_only_it(local_aws_factory: Callable[..., LocalAwsIot]) -> None:
    """MQTT 3.1.1 carries no properties; the broker tags the request itself, so 3.1.1 works the same."""
    cloud = local_aws_factory(device_key_type="ec")
    with claim(cloud, "fp-v311", "json", mqtt_v5=False) as old, claim(cloud, "fp-v5", "json") as new:
        kind, body = call(old, "json", "create", b"")
        assert kind == "accepted"
        assert_received_nothing(new, "json", {body["certificateId"]})
        kind, body = call(new, "json", "create", b"")  # and the other way round
        assert kind == "accepted"
        assert old.drain() == []


def test_no_routing_marker_reaches_a_client(local_aws_factory: Callable[..., LocalAwsIot]) -> None:
    cloud = local_aws_factory(device_key_type="ec")
    with claim(cloud, "fp-props", "cbor") as probe:
        assert call(probe, "cbor", "create", b"")[0] == "accepted"
    assert probe.user_properties == [("$aws/certificates/create/cbor/accepted", [])]


def _tagged_request(responder: MqttProbe) -> int:
    """The serial the broker attached to the request the test-side responder just received."""
    topic, _ = responder.get()
    assert topic.startswith("$aws/certificates/create")
    *_, (t, props) = responder.user_properties
    markers = [v for k, v in props if k == MARKER]
    assert t == topic and len(markers) == 1 and markers[0].isdigit(), props
    return int(markers[0])


def test_a_client_cannot_claim_another_connections_replies(local_aws_factory: Callable[..., LocalAwsIot]) -> None:
    """The broker replaces whatever properties a request carries: a forged marker goes nowhere."""
    cloud = local_aws_factory(device_key_type="ec")
    with MqttProbe.for_responder(cloud, "test-responder") as responder, \
            claim(cloud, "fp-victim", "json") as victim, claim(cloud, "fp-forger", "json") as forger:
        assert responder.connect()
        assert responder.subscribe("$aws/certificates/create/json") == [1]
        assert victim.publish("$aws/certificates/create/json") == 0
        victim_serial = _tagged_request(responder)
        forged = Properties(PacketTypes.PUBLISH)
        forged.UserProperty = (MARKER, str(victim_serial))
        assert forger.publish("$aws/certificates/create/json", b"", properties=forged) == 0
        forger_serial = _tagged_request(responder)
        assert forger_serial != victim_serial
        # Only the responder may publish below the route prefix.
        assert forger.publish(f"{ROUTE_PREFIX}/{forger_serial}/$aws/certificates/create/json/accepted") == \
            NOT_AUTHORIZED
        victim.get()  # the real responder's reply to the victim
        forger.get()  # and to the forger
        assert victim.drain() == [] and forger.drain() == []


def test_a_new_connection_with_the_same_client_id_does_not_get_the_old_ones_reply(
    local_aws_factory: Callable[..., LocalAwsIot],
) -> None:
    """AWS: the new connection wins and the old one is disconnected; the old one's results went to the
    old connection. The test plays the responder, so the reply is sent strictly after the takeover.
    The one-CONNECT-per-second quota would refuse the second CONNECT (test_cloud_quotas.py): off here."""
    cloud = local_aws_factory(device_key_type="ec", connect_interval=0)
    with MqttProbe.for_responder(cloud, "test-responder") as responder:
        assert responder.connect()
        assert responder.subscribe("$aws/certificates/create/json") == [1]
        with claim(cloud, "fp-same", "json") as first:
            assert first.publish("$aws/certificates/create/json") == 0
            old_serial = _tagged_request(responder)
            first.get()  # the real responder's reply reached the first connection
            with claim(cloud, "fp-same", "json") as second:
                assert first.wait_disconnected()  # taken over
                late = f"{ROUTE_PREFIX}/{old_serial}/$aws/certificates/create/json/accepted"
                assert responder.publish(late, b"{\"late\": 1}") in PUBACK_OK
                assert_received_nothing(second, "json", set())
                _tagged_request(responder)  # second's own request, seen by the test-side responder too


def test_a_reply_that_bypasses_the_route_reaches_nobody(local_aws_factory: Callable[..., LocalAwsIot]) -> None:
    cloud = local_aws_factory(device_key_type="ec")
    with MqttProbe.for_responder(cloud, "test-responder") as responder, claim(cloud, "fp-sub", "json") as sub:
        assert responder.connect()
        assert responder.publish("$aws/certificates/create/json/accepted", b"{\"unrouted\": 1}") in PUBACK_OK
        assert_received_nothing(sub, "json", set())


@pytest.mark.parametrize("topic", [
    f"{ROUTE_PREFIX}/x1/$aws/certificates/create/json/accepted",  # no serial
    f"{ROUTE_PREFIX}/0/$aws/certificates/create/json/accepted",  # serials start at 1
    f"{ROUTE_PREFIX}/99999999999999999999999/$aws/certificates/create/json/accepted",  # over 64 bits
    f"{ROUTE_PREFIX}/1/$aws/things/dev/shadow/update",  # not a reply topic
    f"{ROUTE_PREFIX}/1/",
])
def test_the_route_carries_only_well_formed_replies(local_aws_factory: Callable[..., LocalAwsIot], topic: str) -> None:
    cloud = local_aws_factory(device_key_type="ec")
    with MqttProbe.for_responder(cloud, "test-responder") as responder:
        assert responder.connect()
        assert responder.publish(topic, b"{}") == NOT_AUTHORIZED
