"""Fleet Provisioning MQTT API against the real broker, json and cbor, with a plain paho client.

Topics and field names are AWS's [fleet-provision-api]; replies are decoded here with json/cbor2
directly, never with the stand-in's own code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from fixtures.cloud import PUBACK_OK, MqttProbe
from nrfprov.cloud import LocalAwsIot

pytestmark = pytest.mark.integration
FORMATS = ["json", "cbor"]


def enc(fmt: str, obj: Any) -> bytes:
    return cbor2.dumps(obj) if fmt == "cbor" else json.dumps(obj).encode()


def dec(fmt: str, data: bytes) -> Any:
    return cbor2.loads(data) if fmt == "cbor" else json.loads(data)


class Fleet:
    """A claim connection subscribed to accepted/rejected before publishing, as AWS requires."""

    def __init__(self, cloud: LocalAwsIot, fmt: str, client_id: str = "fp-client", template: str = "nrfprov"):
        self.fmt = fmt
        self.template = template
        self.probe = MqttProbe.for_claim(cloud, client_id)
        assert self.probe.connect()
        subs = []
        for req in self._requests():
            subs += [f"{req}/accepted", f"{req}/rejected"]
        assert self.probe.subscribe(*subs) == [1] * len(subs)

    def _requests(self) -> list[str]:
        return [f"$aws/certificates/create/{self.fmt}", f"$aws/certificates/create-from-csr/{self.fmt}",
                f"$aws/provisioning-templates/{self.template}/provision/{self.fmt}"]

    def call(self, request_topic: str, payload: bytes) -> tuple[str, dict[str, Any]]:
        assert self.probe.publish(request_topic, payload) == 0
        topic, body = self.probe.get()
        assert topic in (f"{request_topic}/accepted", f"{request_topic}/rejected")
        return topic.rsplit("/", 1)[1], dec(self.fmt, body)

    def create(self, payload: bytes = b"") -> tuple[str, dict[str, Any]]:
        return self.call(f"$aws/certificates/create/{self.fmt}", payload)

    def from_csr(self, csr_pem: str) -> tuple[str, dict[str, Any]]:
        return self.call(f"$aws/certificates/create-from-csr/{self.fmt}",
                         enc(self.fmt, {"certificateSigningRequest": csr_pem}))

    def register(self, token: str | None, parameters: dict[str, str] | None = None) -> tuple[str, dict[str, Any]]:
        req: dict[str, Any] = {} if token is None else {"certificateOwnershipToken": token}
        if parameters is not None:
            req["parameters"] = parameters
        return self.call(f"$aws/provisioning-templates/{self.template}/provision/{self.fmt}", enc(self.fmt, req))

    def close(self) -> None:
        self.probe.close()


def _cert_id(pem: str) -> str:
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def _connect_as(cloud: LocalAwsIot, tmp: Path, cert_pem: str, key_pem: bytes, client_id: str) -> MqttProbe:
    (tmp / f"{client_id}-c.pem").write_text(cert_pem)
    (tmp / f"{client_id}-k.pem").write_bytes(key_pem)
    return MqttProbe(cloud, tmp / f"{client_id}-c.pem", tmp / f"{client_id}-k.pem", client_id, tls12_only=True)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("request_payload", [b"", b"{}"])
def test_create_keys_and_certificate_then_register_thing(
    local_aws: LocalAwsIot, tmp_path: Path, fmt: str, request_payload: bytes
) -> None:
    fleet = Fleet(local_aws, fmt)
    try:
        payload = enc(fmt, {}) if request_payload else b""
        kind, body = fleet.create(payload)
        assert kind == "accepted"
        assert set(body) == {"certificateId", "certificatePem", "privateKey", "certificateOwnershipToken"}
        assert body["certificateId"] == _cert_id(body["certificatePem"])
        key = serialization.load_pem_private_key(body["privateKey"].encode(), None)
        assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048  # as AWS
        cert = x509.load_pem_x509_certificate(body["certificatePem"].encode())
        assert cert.public_key().public_numbers() == key.public_key().public_numbers()
        [rec] = local_aws.certificates()
        assert (rec.status, rec.operation) == ("PENDING_ACTIVATION", "create")

        # As on AWS, a pending certificate cannot connect until RegisterThing activates it.
        assert not _connect_as(local_aws, tmp_path, body["certificatePem"], body["privateKey"].encode(),
                               "sn-1").connect()

        kind, reg = fleet.register(body["certificateOwnershipToken"], {"SerialNumber": "sn-1"})
        assert kind == "accepted"
        assert reg == {"deviceConfiguration": {}, "thingName": "sn-1"}
        [rec] = local_aws.certificates()
        assert (rec.status, rec.thing_name) == ("ACTIVE", "sn-1")

        # Tokens are single-use.
        kind, again = fleet.register(body["certificateOwnershipToken"], {"SerialNumber": "sn-1"})
        assert kind == "rejected" and again["errorCode"] == "InvalidCertificateOwnershipToken"
        assert again["statusCode"] == 400
    finally:
        fleet.close()

    with _connect_as(local_aws, tmp_path, body["certificatePem"], body["privateKey"].encode(), "sn-1") as dev:
        assert dev.connect()
        assert dev.publish("$aws/things/sn-1/shadow/get") in PUBACK_OK
        assert dev.publish("$aws/things/sn-2/shadow/get") == 135
        assert dev.publish(f"$aws/certificates/create/{fmt}") == 135
    assert local_aws.request_counts() == {"split": 0, "create": 1, "create-from-csr": 0, "register": 2}


def _csr(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> x509.CertificateSigningRequest:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device")])
    return x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _with_null_sig_params(csr: x509.CertificateSigningRequest) -> str:
    """Re-encode an ECDSA CSR with an explicit NULL in signatureAlgorithm, as nRF91 modem firmware does."""
    der = csr.public_bytes(serialization.Encoding.DER)
    alg = bytes.fromhex("300a06082a8648ce3d040302")  # SEQUENCE { ecdsa-with-SHA256 }
    at = der.rindex(alg)
    patched_alg = bytes.fromhex("300c06082a8648ce3d0403020500")
    inner_start = 2 + (der[1] & 0x7F if der[1] & 0x80 else 0)
    body = der[inner_start:at] + patched_alg + der[at + len(alg):]
    new = b"\x30" + _der_len(len(body)) + body
    b64 = __import__("base64").encodebytes(new).decode().replace("\n", "")
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return "-----BEGIN CERTIFICATE REQUEST-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE REQUEST-----\n"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("variant", ["ec", "ec-null-params", "rsa"])
def test_create_certificate_from_csr_signs_the_csr_key(
    local_aws_factory: Callable[..., LocalAwsIot], tmp_path: Path, fmt: str, variant: str
) -> None:
    cloud = local_aws_factory(device_key_type="ec")
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
        rsa.generate_private_key(65537, 2048) if variant == "rsa" else ec.generate_private_key(ec.SECP256R1())
    )
    csr = _csr(key)
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    if variant == "ec-null-params":
        pem = _with_null_sig_params(csr)
        with pytest.raises(ValueError):  # cryptography itself refuses this encoding
            x509.load_pem_x509_csr(pem.encode())
    fleet = Fleet(cloud, fmt)
    try:
        kind, body = fleet.from_csr(pem)
        assert kind == "accepted", body
        assert set(body) == {"certificateOwnershipToken", "certificateId", "certificatePem"}
        cert = x509.load_pem_x509_certificate(body["certificatePem"].encode())
        assert cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo) == \
            key.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
        assert body["certificateId"] == _cert_id(body["certificatePem"])
        kind, reg = fleet.register(body["certificateOwnershipToken"], {"SerialNumber": f"csr-{variant}"})
        assert (kind, reg["thingName"]) == ("accepted", f"csr-{variant}")
    finally:
        fleet.close()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    with _connect_as(cloud, tmp_path, body["certificatePem"], key_pem, f"csr-{variant}") as dev:
        assert dev.connect()
        assert dev.publish(f"$aws/things/csr-{variant}/shadow/get") in PUBACK_OK


def _tampered_csr() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    der = bytearray(_csr(key).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature: still parses, no longer verifies
    b64 = __import__("base64").encodebytes(bytes(der)).decode()
    return "-----BEGIN CERTIFICATE REQUEST-----\n" + b64 + "-----END CERTIFICATE REQUEST-----\n"


@pytest.mark.parametrize("fmt", FORMATS)
def test_rejected_paths_answer_with_aws_error_shape(
    local_aws_factory: Callable[..., LocalAwsIot], fmt: str
) -> None:
    clock = [1_000_000.0]
    cloud = local_aws_factory(device_key_type="ec", clock=lambda: clock[0])
    fleet = Fleet(cloud, fmt)
    try:
        def rejected(result: tuple[str, dict[str, Any]]) -> tuple[int, str]:
            kind, body = result
            assert kind == "rejected", body
            assert set(body) == {"statusCode", "errorCode", "errorMessage"} and body["errorMessage"]
            return body["statusCode"], body["errorCode"]

        assert rejected(fleet.from_csr("not a csr")) == (400, "InvalidCSR")
        assert rejected(fleet.from_csr(_tampered_csr())) == (400, "InvalidCSR")
        assert rejected(fleet.call(f"$aws/certificates/create-from-csr/{fmt}", enc(fmt, {}))) == \
            (400, "InvalidParameters")
        assert rejected(fleet.create(b"\xff\x00garbage" if fmt == "json" else b"\xff")) == (400, "InvalidPayload")
        assert rejected(fleet.register(None, {"SerialNumber": "x"})) == (400, "InvalidCertificateOwnershipToken")
        assert rejected(fleet.register("", {"SerialNumber": "x"})) == (400, "InvalidCertificateOwnershipToken")
        assert rejected(fleet.register("forged", {"SerialNumber": "x"})) == (400, "InvalidCertificateOwnershipToken")

        _, created = fleet.create()
        token = created["certificateOwnershipToken"]
        assert rejected(fleet.register(token, {})) == (400, "InvalidParameters")  # SerialNumber required
        assert rejected(fleet.register(token, {"SerialNumber": "bad/name"})) == (400, "InvalidParameters")
        clock[0] += 3600  # ownership tokens live one hour
        assert rejected(fleet.register(token, {"SerialNumber": "late"})) == (400, "InvalidCertificateOwnershipToken")
    finally:
        fleet.close()
    other = Fleet(cloud, fmt, client_id="fp-2", template="no-such-template")
    try:
        assert rejected(other.register("whatever", {"SerialNumber": "x"})) == (404, "ResourceNotFound")
    finally:
        other.close()
    assert [r.status for r in cloud.certificates()] == ["PENDING_ACTIVATION"]


def test_custom_template_from_the_state_dir(local_aws_factory: Callable[..., LocalAwsIot]) -> None:
    cloud = local_aws_factory(device_key_type="ec")
    template = {
        "Parameters": {"SerialNumber": {"Type": "String"}, "Region": {"Type": "String", "Default": "eu"}},
        "Resources": {"thing": {"Type": "AWS::IoT::Thing", "Properties": {
            "ThingName": {"Fn::Join": ["_", ["nrf", {"Ref": "SerialNumber"}]]}}}},
        "DeviceConfiguration": {"region": {"Ref": "Region"}, "fixed": "1"},
    }
    (cloud.state_dir / "templates" / "fleet-b.json").write_text(json.dumps(template))
    fleet = Fleet(cloud, "json", template="fleet-b")
    try:
        _, created = fleet.create()
        kind, reg = fleet.register(created["certificateOwnershipToken"], {"SerialNumber": "42"})
    finally:
        fleet.close()
    assert kind == "accepted"
    assert reg == {"deviceConfiguration": {"region": "eu", "fixed": "1"}, "thingName": "nrf_42"}
    registry = json.loads((cloud.state_dir / "registry.json").read_text())
    assert registry["things"]["nrf_42"]["certificates"] == [created["certificateId"]]
    assert created["certificateOwnershipToken"] not in json.dumps(registry)  # only hashes at rest
