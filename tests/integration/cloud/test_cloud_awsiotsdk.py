"""The AWS IoT Device SDK v2 (awsiotsdk) against the stand-in: an independent AWS client.

If AWS's own client library accepts the stand-in's topics, field names and error shape, so will
benchmarks that point it here. Connects to "localhost" (the server cert's DNS SAN).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from awscrt import mqtt5, mqtt_request_response
from awsiot import V2ServiceException, iotidentity, mqtt5_client_builder
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fixtures.cloud import PUBACK_OK, MqttProbe
from nrfprov.cloud import LocalAwsIot

pytestmark = pytest.mark.integration
TIMEOUT = 10


@pytest.fixture
def identity(local_aws: LocalAwsIot) -> Iterator[iotidentity.IotIdentityClientV2]:
    connected: Future[bool] = Future()
    stopped: Future[bool] = Future()

    def failed(data: Any) -> None:
        if not connected.done():
            connected.set_exception(RuntimeError(str(data.exception)))

    client = mqtt5_client_builder.mtls_from_path(
        endpoint=local_aws.server_name, port=local_aws.port, cert_filepath=str(local_aws.claim_cert_path),
        pri_key_filepath=str(local_aws.claim_key_path), ca_filepath=str(local_aws.ca_path),
        client_id="sdk-claim-1", clean_session=True, keep_alive_secs=1200,
        on_lifecycle_connection_success=lambda _d: connected.done() or connected.set_result(True),
        on_lifecycle_connection_failure=failed,
        on_lifecycle_stopped=lambda _d: stopped.set_result(True),
    )
    client.start()
    try:
        connected.result(TIMEOUT)
        yield iotidentity.IotIdentityClientV2(client, mqtt_request_response.ClientOptions(
            max_request_response_subscriptions=2, max_streaming_subscriptions=0,
            operation_timeout_in_seconds=TIMEOUT))
    finally:
        client.stop(mqtt5.DisconnectPacket())
        stopped.result(TIMEOUT)


def test_sdk_create_keys_and_register_thing(
    local_aws: LocalAwsIot, identity: iotidentity.IotIdentityClientV2, tmp_path: Path
) -> None:
    created = identity.create_keys_and_certificate(iotidentity.CreateKeysAndCertificateRequest()).result(TIMEOUT)
    assert len(created.certificate_id) == 64 and created.private_key.startswith("-----BEGIN RSA PRIVATE KEY")
    reg = identity.register_thing(iotidentity.RegisterThingRequest(
        template_name="nrfprov", certificate_ownership_token=created.certificate_ownership_token,
        parameters={"SerialNumber": "sdk-1"})).result(TIMEOUT)
    assert (reg.thing_name, reg.device_configuration) == ("sdk-1", {})
    (tmp_path / "c.pem").write_text(created.certificate_pem)
    (tmp_path / "k.pem").write_text(created.private_key)
    with MqttProbe(local_aws, tmp_path / "c.pem", tmp_path / "k.pem", "sdk-1") as dev:
        assert dev.connect()
        assert dev.publish("$aws/things/sdk-1/shadow/get") in PUBACK_OK


def test_sdk_create_from_csr_and_rejection_model(identity: iotidentity.IotIdentityClientV2) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sdk")])).sign(key, hashes.SHA256())
    resp = identity.create_certificate_from_csr(iotidentity.CreateCertificateFromCsrRequest(
        certificate_signing_request=csr.public_bytes(serialization.Encoding.PEM).decode())).result(TIMEOUT)
    cert = x509.load_pem_x509_certificate(resp.certificate_pem.encode())
    assert cert.public_key() == key.public_key()
    with pytest.raises(V2ServiceException) as err:
        identity.register_thing(iotidentity.RegisterThingRequest(
            template_name="nrfprov", certificate_ownership_token="forged",
            parameters={"SerialNumber": "x"})).result(TIMEOUT)
    modeled = err.value.modeled_error
    assert (modeled.status_code, modeled.error_code) == (400, "InvalidCertificateOwnershipToken")
