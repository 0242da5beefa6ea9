"""The cloud side of the split-topic workaround, and the Fleet Provisioning pre-provisioning hook.

This file is deployed as it is: ``nrfprov aws deploy`` puts its text inline into the CloudFormation
template (CloudFormation stores inline code as ``index.py``; the function's handler is
``index.handler``), for the Lambda runtime ``python3.14``. So it imports nothing but the standard
library; boto3 comes from the Lambda runtime and is imported only by :func:`handler` when it builds
the real clients. Everything else takes its AWS clients as parameters (:class:`IotClient`,
:class:`IotDataClient`), so the local stand-in can run the very same code over its own registry.

One function serves two callers, told apart by the event's shape:

- the IoT rule ``SELECT clientid() AS deviceId, topic(2) AS topicId FROM 'certificate/+/create'``
  (SQL 2016-03-23) sends ``{"deviceId": ..., "topicId": ...}``: issue a certificate and publish the
  key and the certificate as raw PEM at QoS 1 on ``certificate/<id>/create/accepted/key`` and
  ``.../cert``, or publish ``{"statusCode", "errorCode", "errorMessage"}`` on
  ``certificate/<id>/create/rejected`` [the workaround: coderbyheart/aws-iot-device-credentials-workaround];
- AWS IoT's pre-provisioning hook for RegisterThing sends ``{"claimCertificateId", "certificateId",
  "templateArn", "clientId", "parameters"}`` and must get ``{"allowProvisioning": bool}`` back within
  5 s [AWS IoT developer guide, pre-provisioning-hook.html].

Both apply the same rules (docs/aws.md, "What the issuing side refuses"):

- a device id is a thing name: 1-128 of ``[a-zA-Z0-9:_-]`` [AWS IoT API reference, API_CreateThing];
- reserved ids are matched case-insensitively; an optional allowlist (exact ids or ``prefix*``);
- no certificate for a thing that already has an active principal, unless an operator recorded a
  permission (``nrfprov aws reprovision THING`` writes the thing attribute ``nrfprov_reprovision`` =
  expiry in epoch seconds); the permission is used up by the request, and the old certificates are
  deactivated once the new one is out;
- at most one request per thing at a time: the request claims the thing with
  ``UpdateThing(expectedVersion=...)``, which AWS refuses with ``VersionConflictException`` when the
  thing changed since it was read [AWS IoT API reference, API_UpdateThing].

Logs name the device id and certificate ids of every issue and refusal, never key material.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("nrfprov.aws.handler")
log.setLevel(logging.INFO)

THING_NAME_RE = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
#: Thing attribute holding an operator's permission to issue again (value: expiry, epoch seconds).
REPROVISION_ATTRIBUTE = "nrfprov_reprovision"
#: Thing attribute the handler writes when it claims a thing (value: epoch seconds of the request).
ISSUED_ATTRIBUTE = "nrfprov_issued"
#: RegisterThing parameter that names the thing in nrfprov's provisioning template.
DEFAULT_DEVICE_ID_PARAMETER = "SerialNumber"


# --- the AWS clients, as far as this code uses them ---------------------------------------------
# Method and parameter names are boto3's, so a boto3 client satisfies these as it is. Failures are
# exceptions with ``response["Error"]["Code"]``, like botocore's ClientError.


class IotClient(Protocol):
    def describe_thing(self, *, thingName: str) -> Mapping[str, Any]: ...
    def create_thing(self, *, thingName: str) -> Mapping[str, Any]: ...
    def update_thing(
        self, *, thingName: str, attributePayload: Mapping[str, Any], expectedVersion: int
    ) -> Mapping[str, Any]: ...
    def list_thing_principals(self, *, thingName: str, nextToken: str = ...) -> Mapping[str, Any]: ...
    def describe_certificate(self, *, certificateId: str) -> Mapping[str, Any]: ...
    def create_keys_and_certificate(self, *, setAsActive: bool) -> Mapping[str, Any]: ...
    def attach_policy(self, *, policyName: str, target: str) -> Mapping[str, Any]: ...
    def detach_policy(self, *, policyName: str, target: str) -> Mapping[str, Any]: ...
    def attach_thing_principal(self, *, thingName: str, principal: str) -> Mapping[str, Any]: ...
    def detach_thing_principal(self, *, thingName: str, principal: str) -> Mapping[str, Any]: ...
    def update_certificate(self, *, certificateId: str, newStatus: str) -> Mapping[str, Any]: ...
    def delete_certificate(self, *, certificateId: str) -> Mapping[str, Any]: ...


class IotDataClient(Protocol):
    def publish(self, *, topic: str, qos: int, payload: bytes) -> Mapping[str, Any]: ...


def quiet_sdk_loggers() -> None:
    """Hold the AWS SDK's loggers at WARNING: at DEBUG botocore logs whole request and response bodies,
    and those of CreateKeysAndCertificate and of the key publish carry the private key."""
    for name in ("botocore", "boto3"):
        logging.getLogger(name).setLevel(logging.WARNING)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a client exception (botocore's ClientError shape), else ''."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        err = response.get("Error")
        if isinstance(err, Mapping):
            return str(err.get("Code", ""))
    return ""


# --- configuration --------------------------------------------------------------------------------


def _names(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


@dataclass(frozen=True)
class Config:
    device_policy: str
    #: Exact ids or ``prefix*`` patterns; empty: every valid id may be provisioned.
    allowed: tuple[str, ...] = ()
    reserved: tuple[str, ...] = ()
    device_id_parameter: str = DEFAULT_DEVICE_ID_PARAMETER

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        policy = env.get("DEVICE_POLICY_NAME", "")
        if not policy:
            raise RuntimeError("DEVICE_POLICY_NAME is not set in the function's environment")
        return cls(
            device_policy=policy,
            allowed=_names(env.get("ALLOWED_DEVICE_IDS", "")),
            reserved=_names(env.get("RESERVED_DEVICE_IDS", "")),
            device_id_parameter=env.get("DEVICE_ID_PARAMETER", DEFAULT_DEVICE_ID_PARAMETER),
        )


# --- outcomes ---------------------------------------------------------------------------------------


class Refusal(Exception):
    """Why a request gets no certificate; becomes the ``rejected`` message."""

    def __init__(self, status: int, code: str, message: str, *, certificates: tuple[str, ...] = ()) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        #: Existing certificate ids the refusal is about (logged, not sent).
        self.certificates = certificates

    def body(self) -> bytes:
        doc = {"statusCode": self.status, "errorCode": self.code, "errorMessage": self.message}
        return json.dumps(doc, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Outcome:
    """What one request led to (returned by the handler; no key material)."""

    device_id: str
    issued: bool
    certificate_id: str | None = None
    error_code: str | None = None
    replaced: tuple[str, ...] = field(default=())
    published: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "deviceId": self.device_id, "issued": self.issued, "certificateId": self.certificate_id,
            "errorCode": self.error_code, "replaced": list(self.replaced), "published": list(self.published),
        }


# --- the rules both callers apply ------------------------------------------------------------------


def check_device_id(device_id: str, config: Config) -> None:
    if THING_NAME_RE.fullmatch(device_id) is None:
        raise Refusal(400, "InvalidDeviceId",
                      "The device id must be 1-128 characters of a-z A-Z 0-9 : _ - (an AWS IoT thing name).")
    folded = device_id.casefold()
    if any(folded == r.casefold() for r in config.reserved):
        raise Refusal(403, "ReservedDeviceId", f"The device id {device_id} is reserved.")
    if config.allowed and not any(fnmatch.fnmatchcase(device_id, p) for p in config.allowed):
        raise Refusal(403, "DeviceNotAllowed", f"The device id {device_id} is not on the allowlist.")


#: AWS's error code for a throttled API call [AWS IoT API reference, Common Errors].
THROTTLED = "ThrottlingException"


def _failure(exc: BaseException) -> Refusal:
    """The refusal for an AWS call that failed: the device may retry later either way; a throttled one
    says so (on Lambda, botocore's standard retry mode has already retried the call)."""
    if error_code(exc) == THROTTLED:
        return Refusal(429, THROTTLED, "AWS IoT is throttling certificate requests; try again later.")
    return Refusal(500, "InternalFailure", "The certificate could not be issued; try again later.")


def _cert_id_from_arn(arn: str) -> str | None:
    # arn:aws:iot:<region>:<account>:cert/<64 hex>
    _, sep, cert_id = arn.rpartition(":cert/")
    return cert_id if sep else None


class Issuer:
    """Applies the rules and issues certificates; one instance serves many requests."""

    def __init__(self, iot: IotClient, data: IotDataClient | None, config: Config,
                 clock: Callable[[], float] = time.time) -> None:
        self.iot = iot
        self.data = data
        self.config = config
        self.clock = clock
        quiet_sdk_loggers()

    # --- registry reads -------------------------------------------------------------------------

    def _thing(self, name: str) -> Mapping[str, Any] | None:
        try:
            return self.iot.describe_thing(thingName=name)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise

    def active_principals(self, name: str) -> list[str]:
        """Certificate ids (or other principal ARNs) attached to the thing that are still active."""
        principals: list[str] = []
        token: str | None = None
        while True:
            page = (self.iot.list_thing_principals(thingName=name, nextToken=token) if token
                    else self.iot.list_thing_principals(thingName=name))
            principals += list(page.get("principals", []))
            token = page.get("nextToken")
            if not token:
                break
        active = []
        for arn in principals:
            cert_id = _cert_id_from_arn(arn)
            if cert_id is None:
                active.append(arn)  # not a certificate (e.g. a Cognito identity): counts as active
                continue
            try:
                desc = self.iot.describe_certificate(certificateId=cert_id)["certificateDescription"]
            except Exception as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    continue
                raise
            if desc.get("status") == "ACTIVE":
                active.append(cert_id)
        return active

    def _permission(self, thing: Mapping[str, Any]) -> str | None:
        """The operator's unexpired re-provisioning permission (its raw value), if any."""
        value = (thing.get("attributes") or {}).get(REPROVISION_ATTRIBUTE)
        if not value:
            return None
        try:
            expiry = float(value)
        except ValueError:
            return None
        return str(value) if expiry > self.clock() else None

    # --- the claim on a thing -------------------------------------------------------------------

    def claim(self, device_id: str) -> tuple[list[str], str | None]:
        """Make sure this request may issue for ``device_id`` and hold the thing for it.

        The thing is created here for both flows (RegisterThing uses an existing thing), so that two
        concurrent first requests for one id also meet at the version check.

        Returns (old active certificates to deactivate after the issue, the permission used).
        """
        thing = self._thing(device_id)
        if thing is None:
            try:
                self.iot.create_thing(thingName=device_id)  # succeeds again for an identical thing
            except Exception as exc:
                # Another request created it and already claimed it (its attributes differ now).
                if error_code(exc) == "ResourceAlreadyExistsException":
                    raise Refusal(409, "ConcurrentRequest",
                                  f"Another request for thing {device_id} is being served; try again.") from exc
                raise
            thing = self._thing(device_id)
            if thing is None:
                raise Refusal(500, "InternalFailure", "The thing could not be created.")
        old = self.active_principals(device_id)
        permission = self._permission(thing)
        if old and permission is None:
            raise Refusal(
                409, "AlreadyProvisioned",
                f"Thing {device_id} already has an active certificate. An operator can allow a new one "
                f"with: nrfprov aws reprovision {device_id}", certificates=tuple(old))
        try:
            self.iot.update_thing(
                thingName=device_id,
                attributePayload={"attributes": {REPROVISION_ATTRIBUTE: "", ISSUED_ATTRIBUTE: str(int(self.clock()))},
                                  "merge": True},
                expectedVersion=int(thing.get("version", 1)),
            )
        except Exception as exc:
            if error_code(exc) == "VersionConflictException":
                raise Refusal(409, "ConcurrentRequest",
                              f"Another request for thing {device_id} is being served; try again.") from exc
            raise
        return old, permission

    def _restore_permission(self, device_id: str, permission: str | None) -> None:
        if permission is None:
            return
        try:
            thing = self._thing(device_id)
            if thing is not None:
                self.iot.update_thing(thingName=device_id, expectedVersion=int(thing.get("version", 1)),
                                      attributePayload={"attributes": {REPROVISION_ATTRIBUTE: permission},
                                                        "merge": True})
        except Exception as exc:
            log.error("device=%s could not restore the re-provisioning permission (%s); grant it again",
                      device_id, error_code(exc) or type(exc).__name__)

    def deactivate(self, device_id: str, cert_ids: list[str], new_id: str | None) -> tuple[str, ...]:
        done = []
        for cert_id in cert_ids:
            if cert_id == new_id or ":" in cert_id:  # an ARN: not a certificate we can deactivate
                continue
            try:
                self.iot.update_certificate(certificateId=cert_id, newStatus="INACTIVE")
                done.append(cert_id)
                log.info("device=%s certificate=%s deactivated (replaced by %s)", device_id, cert_id, new_id)
            except Exception as exc:
                log.error("device=%s certificate=%s could not be deactivated (%s): deactivate it by hand",
                          device_id, cert_id, error_code(exc) or type(exc).__name__)
        return tuple(done)

    # --- split workaround -----------------------------------------------------------------------

    def split(self, event: Mapping[str, Any]) -> Outcome:
        """Serve one ``certificate/<id>/create`` request (the rule's event)."""
        device_id = event.get("deviceId")
        topic_id = event.get("topicId")
        if not isinstance(device_id, str) or not isinstance(topic_id, str):
            # Not from our rule: there is no requester to answer.
            log.warning("refused an event without deviceId/topicId strings: keys %s", sorted(event)[:8])
            return Outcome(str(device_id), False, error_code="InvalidEvent")
        try:
            if device_id != topic_id:
                raise Refusal(403, "ClientIdMismatch",
                              f"The request topic names {topic_id[:128]!r}, but the client id is {device_id[:128]!r}.")
            check_device_id(device_id, self.config)
            old, permission = self.claim(device_id)
        except Refusal as ref:
            return self._refuse(device_id, ref)
        except Exception as exc:
            # A registry call failed before anything was issued: tell the device now rather than let
            # it wait for its timeout (a raised error would only reach the function's log).
            log.error("device=%s certificate=none registry check failed: %s", device_id[:128],
                      error_code(exc) or type(exc).__name__)
            return self._refuse(device_id, _failure(exc))
        return self._issue(device_id, old, permission)

    def _refuse(self, device_id: str, ref: Refusal) -> Outcome:
        # Answer on the requester's own topic (its client id). An id that could not be a topic level
        # (wildcards, '/', empty) gets no answer: it cannot have subscribed to one.
        existing = ",".join(ref.certificates) or "none"
        log.warning("device=%s refused %s (%s) existing_certificates=%s certificate=none",
                    device_id[:128], ref.code, ref.message, existing)
        published: tuple[str, ...] = ()
        if device_id and len(device_id) <= 128 and not set(device_id) & set("/+#\0"):
            topic = f"certificate/{device_id}/create/rejected"
            try:
                if self.data is None:
                    raise RuntimeError("no iot-data client")
                self.data.publish(topic=topic, qos=1, payload=ref.body())
                published = (topic,)
            except Exception as exc:
                log.error("device=%s rejected reply not published (%s)", device_id,
                          error_code(exc) or type(exc).__name__)
        return Outcome(device_id, False, error_code=ref.code, published=published)

    def _issue(self, device_id: str, old: list[str], permission: str | None) -> Outcome:
        created: Mapping[str, Any] | None = None
        steps: list[str] = []
        try:
            created = self.iot.create_keys_and_certificate(setAsActive=True)
            cert_arn, cert_id = created["certificateArn"], created["certificateId"]
            self.iot.attach_policy(policyName=self.config.device_policy, target=cert_arn)
            steps.append("policy")
            self.iot.attach_thing_principal(thingName=device_id, principal=cert_arn)
            steps.append("thing")
            base = f"certificate/{device_id}/create/accepted"
            if self.data is None:
                raise RuntimeError("no iot-data client")
            # Two publishes at QoS 1; a device must accept either arrival order. Each is < 2 KB, far
            # below AWS IoT's 128 KB message limit [AWS IoT quotas].
            self.data.publish(topic=f"{base}/key", qos=1, payload=created["keyPair"]["PrivateKey"].encode())
            self.data.publish(topic=f"{base}/cert", qos=1, payload=created["certificatePem"].encode())
        except Exception as exc:
            code = error_code(exc) or type(exc).__name__
            cert_id = created.get("certificateId") if created else None
            log.error("device=%s certificate=%s issue failed at step after %s: %s",
                      device_id, cert_id or "none", steps[-1] if steps else "start", code)
            if created is not None:
                self._rollback(device_id, created["certificateArn"], created["certificateId"], steps)
            self._restore_permission(device_id, permission)
            return self._refuse(device_id, _failure(exc))
        replaced = self.deactivate(device_id, old, cert_id) if permission is not None else ()
        log.info("device=%s certificate=%s issued%s", device_id, cert_id,
                 f" replacing {','.join(replaced)}" if replaced else "")
        return Outcome(device_id, True, certificate_id=cert_id, replaced=replaced,
                       published=(f"{base}/key", f"{base}/cert"))

    def _rollback(self, device_id: str, cert_arn: str, cert_id: str, steps: list[str]) -> None:
        """Undo a half-issued certificate so the device's retry is not refused for it."""
        undo: list[tuple[str, Callable[[], object]]] = []
        if "thing" in steps:
            undo.append(("detach thing",
                         lambda: self.iot.detach_thing_principal(thingName=device_id, principal=cert_arn)))
        if "policy" in steps:
            undo.append(("detach policy", lambda: self.iot.detach_policy(policyName=self.config.device_policy,
                                                                          target=cert_arn)))
        undo.append(("deactivate", lambda: self.iot.update_certificate(certificateId=cert_id, newStatus="INACTIVE")))
        undo.append(("delete", lambda: self.iot.delete_certificate(certificateId=cert_id)))
        for what, call in undo:
            try:
                call()
            except Exception as exc:
                # Detaching is eventually consistent on AWS, so a delete can still conflict; an
                # INACTIVE certificate is no active principal and cannot connect.
                log.error("device=%s certificate=%s rollback step %r failed (%s)",
                          device_id, cert_id, what, error_code(exc) or type(exc).__name__)

    # --- Fleet Provisioning pre-provisioning hook -----------------------------------------------

    def pre_provisioning(self, event: Mapping[str, Any]) -> dict[str, Any]:
        params = event.get("parameters") or {}
        device_id = params.get(self.config.device_id_parameter) if isinstance(params, Mapping) else None
        new_cert = str(event.get("certificateId", ""))
        if not isinstance(device_id, str):
            log.warning("fleet device=none certificate=%s refused: no %s parameter",
                        new_cert, self.config.device_id_parameter)
            return {"allowProvisioning": False}
        try:
            check_device_id(device_id, self.config)
            old, permission = self.claim(device_id)
        except Refusal as ref:
            log.warning("fleet device=%s certificate=%s refused %s (%s) existing_certificates=%s",
                        device_id[:128], new_cert, ref.code, ref.message, ",".join(ref.certificates) or "none")
            return {"allowProvisioning": False}
        # RegisterThing attaches the new certificate after this answer; the old ones stop now.
        replaced = self.deactivate(device_id, old, new_cert) if permission is not None else ()
        log.info("fleet device=%s certificate=%s allowed%s", device_id, new_cert,
                 f" replacing {','.join(replaced)}" if replaced else "")
        return {"allowProvisioning": True}


def dispatch(event: Mapping[str, Any], issuer: Issuer) -> dict[str, Any]:
    """Route an event to the split flow or the pre-provisioning hook by its shape."""
    if "templateArn" in event or "claimCertificateId" in event:
        return issuer.pre_provisioning(event)
    return issuer.split(event).as_dict()


# --- the Lambda entry point ------------------------------------------------------------------------

_ISSUER: Issuer | None = None


def handler(event: Mapping[str, Any], context: object = None) -> dict[str, Any]:
    """AWS Lambda entry point (``index.handler``); builds boto3 clients once per container."""
    global _ISSUER
    if _ISSUER is None:
        import boto3  # provided by the Lambda runtime
        from botocore.config import Config as BotoConfig

        # Standard retry mode retries throttling with backoff; tight timeouts keep the hook < 5 s.
        cfg = BotoConfig(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2, read_timeout=3)
        _ISSUER = Issuer(boto3.client("iot", config=cfg), boto3.client("iot-data", config=cfg),
                         Config.from_env(os.environ))
    return dispatch(event, _ISSUER)
