"""The AWS IoT registry and data-plane calls the split handler makes, over the stand-in's own registry.

``nrfprov.aws.handler`` takes its AWS clients as parameters (``IotClient``, ``IotDataClient``); on
Lambda they are boto3's, here they are :class:`StandInIot` and :class:`StandInIotData`, so the stand-in
runs the very code users deploy. Method and parameter names are boto3's; failures are :class:`ApiError`,
which has botocore ``ClientError``'s shape (``response["Error"]["Code"]``) without needing boto3.

What each call does here, and the AWS behaviour it keeps [AWS IoT API reference, one page per action]:

- ``create_thing``: thing names 1-128 of ``[a-zA-Z0-9:_-]``; the same name again succeeds for an
  identical thing, ``ResourceAlreadyExistsException`` for one with attributes (a different configuration);
- ``update_thing``: ``expectedVersion`` must equal the thing's version, else ``VersionConflictException``;
  ``merge`` keeps other attributes and an empty value removes one; attribute names and values follow
  AWS's patterns (``API_AttributePayload``); a thing without a thing type holds at most three
  attributes [AWS IoT developer guide, "How to manage things with the registry"];
- ``create_keys_and_certificate``: a key from the stand-in's pool (RSA-2048 by default, as AWS), a
  certificate from its CA (CN ``cert-<uuid>``: AWS's CN is fixed, the stand-in's ACL needs one per
  certificate), certificateId = SHA-256 of the DER; over the request rate: ``ThrottlingException``;
- ``attach_policy`` / ``attach_thing_principal``: a certificate with the device policy and a thing may use
  that thing's topics (the broker's ACL, reloaded before the call returns);
- ``update_certificate``: INACTIVE and REVOKED go into the CRL at once (a REVOKED certificate cannot be
  changed back: ``CertificateStateException``);
- ``delete_certificate``: refused while ACTIVE (``CertificateStateException``) or attached
  (``DeleteConflictException``); a deleted certificate stays in the CRL;
- ``publish`` (iot-data): QoS 0 or 1, a topic without wildcards, at most 128 KB
  (``RequestEntityTooLargeException``) [AWS IoT Core quotas, message broker]. Messages are handed to the
  responder after the handler returns, as AWS delivers them after the Publish call returned.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization

from nrfprov.cloud import acl, pki
from nrfprov.cloud.registry import ACTIVE, INACTIVE, REVOKED, Registry

#: The stand-in's (made-up) region and account, for ARNs in the shape AWS gives them.
REGION = "local"
ACCOUNT = "000000000000"
#: The one IoT policy the stand-in knows: the rights of a provisioned device (acl.device_rules).
DEVICE_POLICY = "nrfprov-device"
#: AWS IoT's PUBLISH payload limit [AWS IoT Core quotas, message broker]; the broker enforces it too.
PUBLISH_LIMIT = 128 * 1024
#: Attributes of a thing without a thing type [AWS IoT developer guide, thing registry].
MAX_THING_ATTRIBUTES = 3
#: ListThingPrincipals page size: the stand-in's choice, so that callers must follow nextToken.
PRINCIPALS_PAGE = 25
# [AWS IoT API reference, API_AttributePayload]
_ATTR_NAME = re.compile(r"[a-zA-Z0-9_.,@/:#-]{1,128}")
_ATTR_VALUE = re.compile(r"[a-zA-Z0-9_.,@/:#=\[\]-]{0,800}")
_STATUSES = (ACTIVE, INACTIVE, REVOKED)


class ApiError(Exception):
    """An AWS API error in botocore ``ClientError``'s shape: ``response["Error"]["Code"]``."""

    def __init__(self, operation: str, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"An error occurred ({code}) when calling the {operation} operation: {message}")
        self.operation_name = operation
        self.response: dict[str, Any] = {"Error": {"Code": code, "Message": message},
                                         "ResponseMetadata": {"HTTPStatusCode": status}}


def cert_arn(certificate_id: str) -> str:
    return f"arn:aws:iot:{REGION}:{ACCOUNT}:cert/{certificate_id}"


def thing_arn(name: str) -> str:
    return f"arn:aws:iot:{REGION}:{ACCOUNT}:thing/{name}"


def template_arn(name: str) -> str:
    return f"arn:aws:iot:{REGION}:{ACCOUNT}:provisioningtemplate/{name}"


def _cert_id(operation: str, arn_or_id: str) -> str:
    _, sep, tail = arn_or_id.rpartition(":cert/")
    cert_id = tail if sep else arn_or_id
    if re.fullmatch(r"[0-9a-f]{64}", cert_id) is None:
        raise ApiError(operation, "InvalidRequestException", f"{arn_or_id!r} is not a certificate ARN or id.")
    return cert_id


class StandInIot:
    """``IotClient`` over the stand-in's registry, CA and broker (see the module docstring).

    ``policy_changed`` rewrites the ACL and CRL and reloads the broker; it returns once new connections
    see the change. ``allow_issue`` is the request-rate check (False: throttled). ``operation`` labels the
    certificates this client creates in ``nrfprov cloud list``.
    """

    def __init__(self, *, registry: Registry, ca: pki.CertificateAuthority, take_key: Callable[[], pki.PrivateKey],
                 policy_changed: Callable[[], None], clock: Callable[[], float],
                 allow_issue: Callable[[], bool] = lambda: True, operation: str = "split") -> None:
        self.registry = registry
        self.ca = ca
        self.take_key = take_key
        self.policy_changed = policy_changed
        self.clock = clock
        self.allow_issue = allow_issue
        self.operation = operation

    # --- things ----------------------------------------------------------------------------------

    def _thing(self, op: str, data: dict[str, Any], name: str) -> dict[str, Any]:
        entry = Registry.thing(data, name)
        if entry is None:
            raise ApiError(op, "ResourceNotFoundException", f"Thing {name} cannot be found.", 404)
        return entry

    def describe_thing(self, *, thingName: str) -> Mapping[str, Any]:
        t = self._thing("DescribeThing", self.registry.snapshot(), thingName)
        return {"defaultClientId": thingName, "thingName": thingName, "thingId": _thing_id(thingName),
                "thingArn": thing_arn(thingName), "attributes": dict(t["attributes"]), "version": int(t["version"])}

    def create_thing(self, *, thingName: str) -> Mapping[str, Any]:
        if not acl.valid_name(thingName):
            raise ApiError("CreateThing", "InvalidRequestException",
                           "thingName must be 1-128 characters of a-z A-Z 0-9 : _ -")
        with self.registry.transaction() as data:
            existing = Registry.thing(data, thingName)
            if existing is not None and existing["attributes"]:
                raise ApiError("CreateThing", "ResourceAlreadyExistsException",
                               f"Thing {thingName} already exists with a different configuration.", 409)
            if existing is None:
                Registry.create_thing(data, thingName, self.clock())
        return {"thingName": thingName, "thingArn": thing_arn(thingName), "thingId": _thing_id(thingName)}

    def update_thing(self, *, thingName: str, attributePayload: Mapping[str, Any] | None = None,
                     expectedVersion: int | None = None) -> Mapping[str, Any]:
        op = "UpdateThing"
        payload = attributePayload or {}
        attrs = payload.get("attributes") or {}
        if not isinstance(attrs, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) and _ATTR_NAME.fullmatch(k) and _ATTR_VALUE.fullmatch(v)
                for k, v in attrs.items()):
            raise ApiError(op, "InvalidRequestException", "attributes do not match AWS's name/value patterns.")
        with self.registry.transaction() as data:
            t = self._thing(op, data, thingName)
            if expectedVersion is not None and int(expectedVersion) != int(t["version"]):
                raise ApiError(op, "VersionConflictException",
                               f"The version for thing {thingName} does not match the expected version.", 409)
            new = dict(t["attributes"]) if payload.get("merge") else {}
            for k, v in attrs.items():
                if v == "":
                    new.pop(k, None)
                else:
                    new[k] = v
            if len(new) > MAX_THING_ATTRIBUTES:
                raise ApiError(op, "InvalidRequestException",
                               f"A thing without a thing type has at most {MAX_THING_ATTRIBUTES} attributes.")
            t["attributes"] = new
            t["version"] = int(t["version"]) + 1
        return {}

    def list_thing_principals(self, *, thingName: str, nextToken: str = "") -> Mapping[str, Any]:
        t = self._thing("ListThingPrincipals", self.registry.snapshot(), thingName)
        start = int(nextToken) if nextToken.isdigit() else 0
        ids = t["certificates"][start:start + PRINCIPALS_PAGE]
        out: dict[str, Any] = {"principals": [cert_arn(i) for i in ids]}
        if start + PRINCIPALS_PAGE < len(t["certificates"]):
            out["nextToken"] = str(start + PRINCIPALS_PAGE)
        return out

    # --- certificates ----------------------------------------------------------------------------

    def _cert(self, op: str, data: dict[str, Any], cert_id: str) -> dict[str, Any]:
        entry: dict[str, Any] | None = data["certificates"].get(cert_id)
        if entry is None or entry.get("deleted"):
            raise ApiError(op, "ResourceNotFoundException", f"Certificate {cert_id} does not exist.", 404)
        return entry

    def describe_certificate(self, *, certificateId: str) -> Mapping[str, Any]:
        op = "DescribeCertificate"
        e = self._cert(op, self.registry.snapshot(), _cert_id(op, certificateId))
        desc = {"certificateArn": cert_arn(e["certificate_id"]), "certificateId": e["certificate_id"],
                "status": e["status"], "ownedBy": ACCOUNT,
                "creationDate": dt.datetime.fromtimestamp(float(e["created_at"]), dt.UTC)}
        if e.get("pem"):
            desc["certificatePem"] = e["pem"]
        return {"certificateDescription": desc}

    def create_keys_and_certificate(self, *, setAsActive: bool = False) -> Mapping[str, Any]:
        if not self.allow_issue():
            raise ApiError("CreateKeysAndCertificate", "ThrottlingException", "Rate exceeded.", 429)
        key = self.take_key()
        cert = self.ca.issue(key.public_key(), f"cert-{uuid.uuid4().hex}")
        cert_id = pki.certificate_id(cert)
        cert_pem = pki.cert_to_pem(cert).decode()
        with self.registry.transaction() as data:
            self.registry.add_certificate(
                data, certificate_id=cert_id, common_name=pki.common_name(cert), serial=cert.serial_number,
                status=ACTIVE if setAsActive else INACTIVE, operation=self.operation, created_at=self.clock(),
                pem=cert_pem,
            )
        if not setAsActive:
            self.policy_changed()  # into the CRL before anyone holds the key
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
        return {"certificateArn": cert_arn(cert_id), "certificateId": cert_id, "certificatePem": cert_pem,
                "keyPair": {"PublicKey": public.decode(), "PrivateKey": pki.key_to_pem(key).decode()}}

    def update_certificate(self, *, certificateId: str, newStatus: str) -> Mapping[str, Any]:
        op = "UpdateCertificate"
        if newStatus not in _STATUSES:
            raise ApiError(op, "InvalidRequestException", f"The stand-in supports newStatus {', '.join(_STATUSES)}.")
        with self.registry.transaction() as data:
            e = self._cert(op, data, _cert_id(op, certificateId))
            if e["status"] == REVOKED and newStatus != REVOKED:
                raise ApiError(op, "CertificateStateException", "A revoked certificate cannot change status.", 409)
            e["status"] = newStatus
            if newStatus != ACTIVE:
                e["revoked_at"] = self.clock()
        self.policy_changed()
        return {}

    def delete_certificate(self, *, certificateId: str) -> Mapping[str, Any]:
        op = "DeleteCertificate"
        with self.registry.transaction() as data:
            e = self._cert(op, data, _cert_id(op, certificateId))
            if e["status"] == ACTIVE:
                raise ApiError(op, "CertificateStateException", "Certificate must be deactivated before deletion.",
                               409)
            if e.get("things") or e.get("policies"):
                raise ApiError(op, "DeleteConflictException",
                               "Things or policies are attached to the certificate.", 409)
            e["deleted"] = True
        return {}

    # --- attachments -----------------------------------------------------------------------------

    def _attach(self, op: str, cert: str, change: Callable[[dict[str, Any], dict[str, Any]], None],
                thing: str | None = None) -> Mapping[str, Any]:
        with self.registry.transaction() as data:
            e = self._cert(op, data, _cert_id(op, cert))
            if thing is not None:
                self._thing(op, data, thing)
            before = bool(e.get("things")) and DEVICE_POLICY in Registry.attached_policies(e)
            change(data, e)
            after = bool(e.get("things")) and DEVICE_POLICY in Registry.attached_policies(e)
        if before or after:  # the device's rights changed: rewrite the ACL before returning
            self.policy_changed()
        return {}

    def _policy(self, op: str, name: str) -> None:
        if name != DEVICE_POLICY:
            raise ApiError(op, "ResourceNotFoundException", f"Policy {name} does not exist "
                           f"(the stand-in has one device policy, {DEVICE_POLICY}).", 404)

    def attach_policy(self, *, policyName: str, target: str) -> Mapping[str, Any]:
        self._policy("AttachPolicy", policyName)

        def add(_data: dict[str, Any], e: dict[str, Any]) -> None:
            if policyName not in Registry.attached_policies(e):
                Registry.attached_policies(e).append(policyName)
        return self._attach("AttachPolicy", target, add)

    def detach_policy(self, *, policyName: str, target: str) -> Mapping[str, Any]:
        self._policy("DetachPolicy", policyName)

        def remove(_data: dict[str, Any], e: dict[str, Any]) -> None:
            if policyName in Registry.attached_policies(e):
                Registry.attached_policies(e).remove(policyName)
        return self._attach("DetachPolicy", target, remove)

    def attach_thing_principal(self, *, thingName: str, principal: str) -> Mapping[str, Any]:
        op = "AttachThingPrincipal"
        return self._attach(op, principal, lambda data, e: Registry.attach_thing(data, thingName, e["certificate_id"]),
                            thing=thingName)

    def detach_thing_principal(self, *, thingName: str, principal: str) -> Mapping[str, Any]:
        op = "DetachThingPrincipal"
        return self._attach(op, principal, lambda data, e: Registry.detach_thing(data, thingName, e["certificate_id"]),
                            thing=thingName)


def _thing_id(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, thing_arn(name)))


class StandInIotData:
    """``IotDataClient``: collects what the handler publishes; the responder sends it afterwards (QoS 1)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    def publish(self, *, topic: str, qos: int = 0, payload: bytes = b"") -> Mapping[str, Any]:
        op = "Publish"
        if qos not in (0, 1):
            raise ApiError(op, "InvalidRequestException", "qos must be 0 or 1.")
        if not topic or set(topic) & set("+#\0") or len(topic.encode()) > 256:
            raise ApiError(op, "InvalidRequestException", f"{topic[:64]!r} is not a topic to publish on.")
        if len(payload) > PUBLISH_LIMIT:
            raise ApiError(op, "RequestEntityTooLargeException",
                           f"The payload is {len(payload)} bytes, over {PUBLISH_LIMIT}.", 413)
        self.messages.append((topic, bytes(payload)))
        return {}
