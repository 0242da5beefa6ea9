"""Topics, request payloads and reply collectors for each way of getting credentials (sans-IO).

- ``split``: the workaround Nordic's aws_iot_provisioning sample uses
  [coderbyheart/aws-iot-device-credentials-workaround]: an empty publish to
  ``certificate/<id>/create``; the key and the certificate come back as raw PEM on two topics, in
  either order, maybe more than once (QoS 1 redelivery, a stale earlier request).
- ``combined``: CreateKeysAndCertificate [AWS IoT developer guide, fleet-provision-api]; one ~3.5 KB
  message carries everything and is parsed by the streaming C extractor (``nrfprov.extractor``), the
  code a device would run.
- ``csr``: CreateCertificateFromCsr with the CSR from the modem's ``%KEYGEN``.
- ``RegisterThing`` after combined / csr when a template is configured.

Collectors take ``(topic, payload)`` and return a result once they have one; they raise
``CloudRejected`` for a ``rejected`` reply and ``PayloadError`` for a malformed one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nrfprov import iotcore
from nrfprov.errors import CloudRejected, ConfigError, CredentialBundleError, PayloadError, PayloadTooLarge
from nrfprov.iotcore import parse_rejected
from nrfprov.names import PayloadFormat
from nrfprov.provisioning.bundle import key_public_der

#: AWS IoT Core's PUBLISH payload limit: nothing larger can be genuine.
AWS_PAYLOAD_LIMIT = iotcore.PAYLOAD_LIMIT
#: Distinct keys / certs kept while waiting for a matching split pair. Each request yields one of
#: each; four tolerates a few stale deliveries without letting a flood grow memory.
SPLIT_CANDIDATES_LIMIT = 4
#: Thing-name / client-id rule [AWS API reference, CreateThing]: 1-128 chars of [a-zA-Z0-9:_-].
THING_NAME_RE = re.compile(r"[a-zA-Z0-9:_-]{1,128}")


@dataclass(frozen=True)
class Request:
    """What to subscribe to (before publishing), what to publish, and which topics carry its answer."""

    subscribe: tuple[str, ...]
    topic: str
    payload: bytes
    qos: int = 1
    #: The exact topics of an accepted answer (journaled raw the moment they arrive).
    replies: tuple[str, ...] = ()
    #: The operation's name as the journal and the stand-in count it.
    operation: str = ""


@dataclass(frozen=True)
class IssuedCredentials:
    certificate_pem: str
    private_key_pem: str | None
    certificate_id: str = ""
    ownership_token: str = ""


@dataclass(frozen=True)
class Registration:
    thing_name: str
    device_configuration: Mapping[str, str]


def encode(fmt: PayloadFormat, doc: Mapping[str, Any]) -> bytes:
    if fmt == "json":
        return json.dumps(doc, separators=(",", ":")).encode()
    if fmt == "cbor":
        return bytes(cbor2.dumps(dict(doc)))
    raise ValueError(f"unknown payload format {fmt!r}")


def decode(fmt: PayloadFormat, payload: bytes, what: str) -> dict[str, Any]:
    """Decode a small reply (RegisterThing, rejected, CSR) into a dict, or raise PayloadError."""
    if len(payload) > AWS_PAYLOAD_LIMIT:
        raise PayloadTooLarge(what, len(payload), AWS_PAYLOAD_LIMIT)
    try:
        doc = json.loads(payload) if fmt == "json" else cbor2.loads(payload)
    except (ValueError, cbor2.CBORDecodeError) as exc:
        raise PayloadError(f"{what} is not valid {fmt}: {exc}") from exc
    if not isinstance(doc, dict):
        raise PayloadError(f"{what} is a {type(doc).__name__}, expected an object")
    return doc


def _str_field(doc: Mapping[str, Any], name: str, what: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise PayloadError(f"{what} lacks the string field {name!r}")
    return value


# --- requests -----------------------------------------------------------------------------------


def split_request(client_id: str) -> Request:
    base = f"certificate/{client_id}/create"
    # Nordic's aws_iot_provisioning sample subscribes only accepted/+; rejected as well turns a refusal into a
    # fast, typed error.
    return Request((f"{base}/accepted/+", f"{base}/rejected"), base, b"",
                   replies=(f"{base}/accepted/key", f"{base}/accepted/cert"), operation="split")


def combined_request(fmt: PayloadFormat) -> Request:
    base = f"$aws/certificates/create/{fmt}"
    # AWS documents an empty request; the AWS Python SDK sends {} -- we send {}
    # [AWS IoT developer guide, fleet-provision-api; aws-iot-device-sdk-python-v2 iotidentity.py].
    return Request((f"{base}/accepted", f"{base}/rejected"), base, encode(fmt, {}), replies=(f"{base}/accepted",),
                   operation="create")


def csr_request(fmt: PayloadFormat, csr_pem: str) -> Request:
    base = f"$aws/certificates/create-from-csr/{fmt}"
    return Request(
        (f"{base}/accepted", f"{base}/rejected"), base, encode(fmt, {"certificateSigningRequest": csr_pem}),
        replies=(f"{base}/accepted",), operation="create-from-csr",
    )


def register_topics(template: str, fmt: PayloadFormat) -> tuple[str, str, str]:
    base = f"$aws/provisioning-templates/{template}/provision/{fmt}"
    return base, f"{base}/accepted", f"{base}/rejected"


def register_request(template: str, fmt: PayloadFormat, token: str, parameters: Mapping[str, str]) -> Request:
    base, accepted, rejected = register_topics(template, fmt)
    doc: dict[str, Any] = {"certificateOwnershipToken": token}
    if parameters:
        doc["parameters"] = dict(parameters)
    return Request((accepted, rejected), base, encode(fmt, doc), replies=(accepted,), operation="register")


def csr_der_to_pem(der: bytes) -> tuple[str, bytes]:
    """(CSR PEM, SubjectPublicKeyInfo DER) from the modem's CSR, which must verify."""
    try:
        csr = x509.load_der_x509_csr(der)
    except ValueError as exc:
        raise PayloadError(f"the modem's CSR does not parse: {exc}") from exc
    if not csr.is_signature_valid:
        raise PayloadError("the modem's CSR signature does not verify")
    pub = csr.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return csr.public_bytes(serialization.Encoding.PEM).decode(), pub


# --- collectors ---------------------------------------------------------------------------------


class Collector(Protocol):
    def feed(self, topic: str, payload: bytes) -> IssuedCredentials | None: ...


def _pem_text(payload: bytes, what: str) -> str:
    try:
        return payload.decode("ascii")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"{what} is not ASCII PEM", offset=exc.start) from exc


def _spki_of_key(pem: str) -> bytes | None:
    # The bundle check loads the same key again later: share its one validating load (RSA-2048
    # validation costs ~50 ms and holds the GIL). An unusable key pairs with nothing here; the
    # bundle check then reports why.
    try:
        return key_public_der(pem)
    except CredentialBundleError:
        return None


def certificate_spki(pem: str) -> bytes | None:
    """The DER SubjectPublicKeyInfo of a PEM certificate, or None when it does not parse."""
    return _spki_of_cert(pem)


def _spki_of_cert(pem: str) -> bytes | None:
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        return None
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class SplitCollector:
    """Key and certificate on two topics, either order, duplicates and stale parts tolerated.

    A pair is complete when some received key matches some received certificate, so a stale part
    from an earlier request can delay but never poison the result.
    """

    def __init__(self, client_id: str) -> None:
        self._prefix = f"certificate/{client_id}/create/"
        self._keys: dict[str, bytes | None] = {}
        self._certs: dict[str, bytes | None] = {}

    @property
    def parts(self) -> tuple[int, int]:
        return len(self._keys), len(self._certs)

    def feed(self, topic: str, payload: bytes) -> IssuedCredentials | None:
        if len(payload) > AWS_PAYLOAD_LIMIT:
            raise PayloadTooLarge(f"message on {topic}", len(payload), AWS_PAYLOAD_LIMIT)
        if topic == self._prefix + "rejected":
            raise parse_rejected(topic, payload, "json")
        # Matched by suffix (/accepted/key, /accepted/cert), as [Nordic's aws_iot_provisioning sample, src/main.c] does.
        if topic == self._prefix + "accepted/key":
            store, spki = self._keys, _spki_of_key
        elif topic == self._prefix + "accepted/cert":
            store, spki = self._certs, _spki_of_cert
        else:
            return None
        text = _pem_text(payload, f"message on {topic}")
        if text not in store:
            if len(store) >= SPLIT_CANDIDATES_LIMIT:
                raise PayloadError(
                    f"more than {SPLIT_CANDIDATES_LIMIT} different parts on {topic} without a matching pair",
                    hint="another client is requesting credentials with this client id",
                )
            store[text] = spki(text)
        for key_pem, key_spki in self._keys.items():
            for cert_pem, cert_spki in self._certs.items():
                if key_spki is not None and key_spki == cert_spki:
                    return IssuedCredentials(cert_pem, key_pem)
        return None

    def explain_incomplete(self) -> str:
        keys, certs = self.parts
        if keys and certs:
            return f"{keys} key(s) and {certs} certificate(s) but no matching pair"
        if keys:
            return "the private key but no certificate"
        if certs:
            return "the certificate but no private key"
        return "neither the key nor the certificate"


class ExtractorLike(Protocol):
    def feed(self, chunk: bytes) -> None: ...
    def finish(self) -> Any: ...


ExtractorFactory = Callable[[PayloadFormat], ExtractorLike]


def native_extractor(fmt: PayloadFormat) -> ExtractorLike:
    """The C extractor (``native/``); imported here so a missing build fails with its own clear error."""
    from nrfprov.extractor import CombinedExtractor

    return CombinedExtractor(fmt)


#: Chunk size fed to the extractor: the modem's 2048-byte #XRECV [sdk-nrfxlib nrf_socket.h], i.e. what a device
#: parsing the message as it arrives would see.
EXTRACTOR_CHUNK = 2048


class ExtractorCollector:
    """A Fleet Provisioning certificate reply, parsed by the streaming C extractor.

    CreateKeysAndCertificate (``combined``: the one large message with the key) and
    CreateCertificateFromCsr (``csr``: no key, it stays in the modem) share the reply shape, and the
    extractor recognises the ``rejected`` shape too.
    """

    def __init__(self, operation: str, fmt: PayloadFormat, *, with_key: bool,
                 extractor: ExtractorFactory = native_extractor) -> None:
        self._fmt = fmt
        self._base = f"$aws/certificates/{operation}/{fmt}"
        self._with_key = with_key
        self._extractor = extractor

    def feed(self, topic: str, payload: bytes) -> IssuedCredentials | None:
        if topic not in (self._base + "/accepted", self._base + "/rejected"):
            return None
        if len(payload) > AWS_PAYLOAD_LIMIT:
            raise PayloadTooLarge(f"message on {topic}", len(payload), AWS_PAYLOAD_LIMIT)
        ex = self._extractor(self._fmt)
        for i in range(0, len(payload), EXTRACTOR_CHUNK):
            ex.feed(payload[i : i + EXTRACTOR_CHUNK])
        msg = ex.finish()
        if topic.endswith("/rejected") or getattr(msg, "is_rejected", False):
            raise CloudRejected(topic, msg.status_code, msg.error_code or "", msg.error_message or "")
        required = ["certificate_pem", "certificate_id", "ownership_token"]
        if self._with_key:
            required.append("private_key")
        for name in required:
            if not getattr(msg, name, None):
                raise PayloadError(f"the reply on {topic} lacks {name}")
        key = msg.private_key if self._with_key else None
        return IssuedCredentials(msg.certificate_pem, key, msg.certificate_id, msg.ownership_token)


def combined_collector(fmt: PayloadFormat, extractor: ExtractorFactory = native_extractor) -> ExtractorCollector:
    return ExtractorCollector("create", fmt, with_key=True, extractor=extractor)


def csr_collector(fmt: PayloadFormat, extractor: ExtractorFactory = native_extractor) -> ExtractorCollector:
    return ExtractorCollector("create-from-csr", fmt, with_key=False, extractor=extractor)


class RegisterCollector:
    def __init__(self, template: str, fmt: PayloadFormat) -> None:
        self._fmt = fmt
        _, self._accepted, self._rejected = register_topics(template, fmt)

    def feed(self, topic: str, payload: bytes) -> Registration | None:
        if topic == self._rejected:
            raise parse_rejected(topic, payload, self._fmt)
        if topic != self._accepted:
            return None
        doc = decode(self._fmt, payload, "RegisterThing reply")
        name = _str_field(doc, "thingName", "RegisterThing reply")
        if not THING_NAME_RE.fullmatch(name):
            raise PayloadError(f"RegisterThing returned an invalid thing name {name!r}")
        config = doc.get("deviceConfiguration") or {}
        if not isinstance(config, dict):
            raise PayloadError("RegisterThing deviceConfiguration is not a map")
        return Registration(name, {str(k): str(v) for k, v in config.items()})


def expand_parameters(parameters: Mapping[str, str], *, imei: str, client_id: str) -> dict[str, str]:
    """Expand ``{imei}`` and ``{client_id}`` in template parameter values (Settings.parameters())."""
    out: dict[str, str] = {}
    for key, value in parameters.items():
        out[key] = value.replace("{imei}", imei).replace("{client_id}", client_id)
    return out


def check_client_id(client_id: str) -> None:
    if not THING_NAME_RE.fullmatch(client_id):
        raise ConfigError(
            f"client id {client_id!r} is not a valid thing name (1-128 of a-z A-Z 0-9 : _ -)",
            hint="set CONFIG_AWS_IOT_CLIENT_ID_STATIC to a valid name",
        )
