"""AWS IoT quotas the stand-in enforces, and how nrfprov's MQTT session copes with them.

- One CONNECT per second per client ID [AWS General Reference, AWS IoT Core endpoints and quotas]; a
  faster one is hung up on without a CONNACK (AWS staff, aws/aws-iot-device-sdk-java issue 127; the
  wire behaviour is otherwise undocumented).
- Provisioning requests over the configured rate are answered on ``rejected`` with statusCode 429,
  errorCode ThrottlingException (the error of AWS's throttled API calls; its use on the MQTT API is
  our assumption).
- Ownership tokens expire (one hour by default) [AWS IoT developer guide, fleet-provision-api].
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from fixtures.cloud import MqttProbe
from nrfprov.cloud import LocalAwsIot
from nrfprov.config import load_settings
from nrfprov.errors import ConnectThrottled
from nrfprov.mqtt.session import ConnectSpacer, MqttSession
from nrfprov.transport import open_stream

pytestmark = pytest.mark.integration


def _session(cloud: LocalAwsIot, client_id: str, spacer: ConnectSpacer) -> MqttSession:
    creds_dir = cloud.write_certs_folder(cloud.state_dir.parent / f"certs-{cloud.port}")
    settings = load_settings(overrides=[
        "CONFIG_NRFPROV_TLS_BACKEND=host", "CONFIG_AWS_IOT_BROKER_HOST_NAME=localhost",
        f"CONFIG_AWS_IOT_PORT={cloud.port}", f"CONFIG_NRFPROV_CERTS_DIR={creds_dir}",
    ])
    return MqttSession(lambda: open_stream(settings, timeout=10), client_id, mqtt_v5=True, spacer=spacer)


# --- one CONNECT per second per client ID ------------------------------------------------------------


@pytest.mark.parametrize("mqtt_v5", [True, False])
def test_a_second_connect_within_a_second_is_hung_up_on(
    local_aws_factory: Callable[..., LocalAwsIot], mqtt_v5: bool
) -> None:
    cloud = local_aws_factory(device_key_type="ec")
    with MqttProbe.for_claim(cloud, "q-dev", mqtt_v5=mqtt_v5) as first, \
            MqttProbe.for_claim(cloud, "q-dev", mqtt_v5=mqtt_v5) as second, \
            MqttProbe.for_claim(cloud, "q-other", mqtt_v5=mqtt_v5) as other:
        assert first.connect()
        assert not second.connect()  # no CONNACK: the broker closed the connection
        # The refused CONNECT did not take the client ID over: the first connection still works.
        assert first.subscribe("certificate/q-dev/create/accepted/+") == [1]
        assert first.publish("certificate/q-dev/create") == 0
        assert {first.get()[0], first.get()[0]} == {"certificate/q-dev/create/accepted/key",
                                                     "certificate/q-dev/create/accepted/cert"}
        assert other.connect()  # the quota is per client ID
    log = (cloud.state_dir / "mosquitto.log").read_text()
    assert "refused CONNECT of client ID q-dev" in log


def test_a_configuration_reload_does_not_count_as_a_connect(local_aws_factory: Callable[..., LocalAwsIot]) -> None:
    """mosquitto re-authenticates every client after SIGHUP (each grant): that is not a CONNECT."""
    cloud = local_aws_factory(device_key_type="ec")
    with MqttProbe.for_claim(cloud, "q-reload") as probe:
        assert probe.connect()
        cloud.issue_identity("q-someone")  # rewrites the ACL and reloads the broker
        assert probe.subscribe("certificate/q-reload/create/accepted/+") == [1]
        assert probe.publish("certificate/q-reload/create") == 0
        probe.get()


def test_the_session_spaces_connects_and_names_a_refusal(local_aws_factory: Callable[..., LocalAwsIot]) -> None:
    cloud = local_aws_factory(device_key_type="ec", connect_interval=0.3)
    unspaced = ConnectSpacer(0.0)
    with _session(cloud, "q-sess", unspaced) as first:
        first.connect(10)
        with pytest.raises(ConnectThrottled) as info, _session(cloud, "q-sess", unspaced) as second:
            second.connect(10)
    assert info.value.client_id == "q-sess" and info.value.exit_code == 4
    assert "one CONNECT per second per client ID" in str(info.value)

    spaced = ConnectSpacer(0.4)  # the shared default spacer uses AWS's 1 s (+ margin)
    for _ in range(2):  # the second waits for its turn instead of being refused
        with _session(cloud, "q-spaced", spaced) as s:
            s.connect(10)


def test_the_default_spacing_fits_the_default_quota(local_aws_factory: Callable[..., LocalAwsIot]) -> None:
    """Both at AWS's values: a reconnect right after a session waits ~1 s and is accepted."""
    import time

    cloud = local_aws_factory(device_key_type="ec")
    waited: list[float] = []

    def sleep(seconds: float) -> None:  # the real sleep, recorded
        waited.append(seconds)
        time.sleep(seconds)

    spacer = ConnectSpacer(sleep=sleep)
    for _ in range(2):
        with _session(cloud, "q-default", spacer) as s:
            s.connect(10)
    assert len(waited) == 1 and 0.5 < waited[0] <= 1.1


# --- request throttling ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "cbor"])
def test_requests_over_the_rate_are_rejected_with_a_throttling_error(
    local_aws_factory: Callable[..., LocalAwsIot], fmt: str
) -> None:
    import cbor2

    clock = [1_000_000.0]
    cloud = local_aws_factory(device_key_type="ec", request_rate=1.0, request_burst=2, clock=lambda: clock[0])
    topic = f"$aws/certificates/create/{fmt}"
    with MqttProbe.for_claim(cloud, "q-rate") as probe:
        assert probe.connect()
        probe.subscribe(f"{topic}/accepted", f"{topic}/rejected")
        kinds = []
        for _ in range(3):
            assert probe.publish(topic) == 0
            got, body = probe.get()
            kinds.append(got.rsplit("/", 1)[1])
        assert kinds == ["accepted", "accepted", "rejected"]
        rejected = cbor2.loads(body) if fmt == "cbor" else json.loads(body)
        assert rejected == {"statusCode": 429, "errorCode": "ThrottlingException", "errorMessage": "Rate exceeded."}
        clock[0] += 1.0  # one more token
        assert probe.publish(topic) == 0
        assert probe.get()[0] == f"{topic}/accepted"
    assert cloud.throttled_counts()["create"] == 1
    assert len(cloud.certificates()) == 3  # nothing issued for the throttled request


def test_split_requests_are_throttled_too(local_aws_factory: Callable[..., LocalAwsIot]) -> None:
    """The rate applies to the certificates the product handler creates (CreateKeysAndCertificate), and
    the handler answers a throttled one with 429 and keeps the operator's permission for the retry."""
    cloud = local_aws_factory(device_key_type="ec", request_rate=0.001, request_burst=1)
    with MqttProbe.for_claim(cloud, "q-split") as probe:
        assert probe.connect()
        probe.subscribe("certificate/q-split/create/accepted/+", "certificate/q-split/create/rejected")
        assert probe.publish("certificate/q-split/create") == 0
        assert {probe.get()[0], probe.get()[0]} == {"certificate/q-split/create/accepted/key",
                                                     "certificate/q-split/create/accepted/cert"}
        cloud.allow_reprovision("q-split")  # else the second request is refused as AlreadyProvisioned
        assert probe.publish("certificate/q-split/create") == 0
        topic, body = probe.get_json()
    assert topic == "certificate/q-split/create/rejected"
    assert (body["statusCode"], body["errorCode"]) == (429, "ThrottlingException")
    assert cloud.throttled_counts()["split"] == 1 and cloud.request_counts()["split"] == 2
    assert len(cloud.certificates()) == 1
    attrs = cloud.registry.snapshot()["things"]["q-split"]["attributes"]
    assert "nrfprov_reprovision" in attrs  # restored: the device's retry may still use it


# --- ownership token lifetime ------------------------------------------------------------------------


def test_token_lifetime_is_configurable(local_aws_factory: Callable[..., LocalAwsIot]) -> None:
    clock = [1_000_000.0]
    cloud = local_aws_factory(device_key_type="ec", token_lifetime=60, clock=lambda: clock[0])
    req, reg = "$aws/certificates/create/json", "$aws/provisioning-templates/nrfprov/provision/json"
    with MqttProbe.for_claim(cloud, "q-token") as probe:
        assert probe.connect()
        probe.subscribe(f"{req}/accepted", f"{reg}/accepted", f"{reg}/rejected")
        tokens = []
        for _ in range(2):
            assert probe.publish(req) == 0
            tokens.append(probe.get_json()[1]["certificateOwnershipToken"])
        clock[0] += 59.9
        assert probe.publish(reg, json.dumps({"certificateOwnershipToken": tokens[0],
                                              "parameters": {"SerialNumber": "q-t1"}})) == 0
        assert probe.get_json()[0] == f"{reg}/accepted"
        clock[0] += 0.1
        assert probe.publish(reg, json.dumps({"certificateOwnershipToken": tokens[1],
                                              "parameters": {"SerialNumber": "q-t2"}})) == 0
        topic, body = probe.get_json()
    assert topic == f"{reg}/rejected"
    assert (body["statusCode"], body["errorCode"]) == (400, "InvalidCertificateOwnershipToken")
    assert "expired" in body["errorMessage"]
