"""What the stand-in answers to each request: the split workaround and the Fleet Provisioning MQTT API.

Topics, field names and the error shape are AWS's exactly [fleet-provision-api], so an AWS client
(paho by hand, or the AWS IoT Device SDK v2 ``iotidentity`` client) works unchanged.

The split workaround is answered by nrfprov's product handler (``nrfprov.aws.handler``, the function
``nrfprov aws deploy`` deploys), hosted as AWS hosts it (hosted.py) over the stand-in's registry
(iot_api.py); this module has no split logic of its own. RegisterThing runs the same handler as its
pre-provisioning hook and applies the deployed provisioning template (templates.py).

This module decides; ``responder.py`` carries the bytes. Time comes from a ``clock`` parameter.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2

from nrfprov.cloud import acl, pki, templates
from nrfprov.cloud.hosted import LambdaHost
from nrfprov.cloud.iot_api import DEVICE_POLICY, MAX_THING_ATTRIBUTES, template_arn
from nrfprov.cloud.registry import PENDING, TOKEN_LIFETIME_S, Registry, TokenProblem

log = logging.getLogger(__name__)

# Request payloads are bounded by the broker's message_size_limit (AWS's 128 KB) before they reach us.

SPLIT_RE = re.compile(r"certificate/([^/]+)/create")
CREATE_RE = re.compile(r"\$aws/certificates/create/(json|cbor)")
CSR_RE = re.compile(r"\$aws/certificates/create-from-csr/(json|cbor)")
REGISTER_RE = re.compile(r"\$aws/provisioning-templates/([^/]+)/provision/(json|cbor)")

# What the responder subscribes to (request topics only, never its own replies).
REQUEST_FILTERS = [
    "certificate/+/create",
    *(f"$aws/certificates/create/{f}" for f in acl.FORMATS),
    *(f"$aws/certificates/create-from-csr/{f}" for f in acl.FORMATS),
    *(f"$aws/provisioning-templates/+/provision/{f}" for f in acl.FORMATS),
]


@dataclass(frozen=True)
class Reply:
    """Messages to publish (QoS 1). ``sequential``: wait for each PUBACK before the next."""

    messages: list[tuple[str, bytes]]
    sequential: bool = False


class RateLimiter:
    """A token bucket per operation: ``rate`` requests per second, bursts of up to ``burst``.

    AWS IoT throttles Fleet Provisioning and control-plane calls per account; over the rate a call
    fails with ``ThrottlingException`` ("The rate exceeds the limit", HTTP 429) [AWS IoT API reference,
    RegisterThing / CreateKeysAndCertificate errors]. The per-operation default rates of the MQTT API
    are not published in a source we found; the stand-in's default (LocalAwsIot) is our choice.
    ``rate`` 0 turns the limiter off. Time comes from ``clock``.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        if rate < 0 or burst < 1:
            raise ValueError("rate must be >= 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # op -> (tokens, at)
        self._lock = threading.Lock()

    def allow(self, op: str) -> bool:
        if self.rate == 0:
            return True
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(op, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + max(0.0, now - at) * self.rate)
            ok = tokens >= 1.0
            self._buckets[op] = (tokens - 1.0 if ok else tokens, now)
        return ok


class Rejection(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def encode(fmt: str, obj: dict[str, Any]) -> bytes:
    if fmt == "cbor":
        return bytes(cbor2.dumps(obj))
    return json.dumps(obj, separators=(",", ":")).encode()


def decode(fmt: str, payload: bytes, *, empty_ok: bool = False) -> dict[str, Any]:
    if not payload:
        if empty_ok:
            return {}
        raise Rejection(400, "InvalidPayload", "The request payload is empty.")
    try:
        obj = cbor2.loads(payload) if fmt == "cbor" else json.loads(payload)
    except (ValueError, cbor2.CBORDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise Rejection(400, "InvalidPayload", f"The request payload is not valid {fmt.upper()}.") from exc
    if not isinstance(obj, dict):
        raise Rejection(400, "InvalidPayload", f"The request payload must be a {fmt.upper()} object.")
    return obj


class KeyPool:
    """Pre-generated device keys, so RSA-2048 generation (~40 ms median, ~100 ms p95) is off the
    request path. ``size`` keys are kept ready by one background thread; ``take`` never waits for it.
    """

    def __init__(self, key_type: str, size: int) -> None:
        if key_type not in pki.KEY_TYPES:
            raise ValueError(f"unknown key type {key_type!r}")
        self.key_type = key_type
        self.size = size
        self._keys: deque[pki.PrivateKey] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        if size > 0:
            self._thread = threading.Thread(target=self._fill, name="cloud-keypool", daemon=True)
            self._thread.start()

    def _fill(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or len(self._keys) < self.size)
                if self._closed:
                    return
            key = pki.generate_key(self.key_type)
            with self._cond:
                self._keys.append(key)

    def take(self) -> pki.PrivateKey:
        with self._cond:
            key = self._keys.popleft() if self._keys else None
            self._cond.notify_all()
        return key if key is not None else pki.generate_key(self.key_type)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(5.0)


@dataclass
class ProvisioningService:
    state_dir: Path
    ca: pki.CertificateAuthority
    registry: Registry
    keys: KeyPool
    host: LambdaHost  # the product handler, for the split flow and as pre-provisioning hook
    policy_changed: Callable[[], None]  # rewrite ACL + CRL from the registry and reload the broker
    clock: Callable[[], float]
    claim_certificate_id: str = ""  # for the hook's event (the only identity allowed to use the API)
    hook: bool = True  # RegisterThing runs the pre-provisioning hook (nrfprov aws deploy's default)
    limiter: RateLimiter | None = None
    token_lifetime: float = TOKEN_LIFETIME_S
    counts: dict[str, int] = field(default_factory=dict)
    throttled: dict[str, int] = field(default_factory=dict)
    _count_lock: threading.Lock = field(default_factory=threading.Lock)

    def _count(self, op: str, *, throttled: bool = False) -> None:
        counts = self.throttled if throttled else self.counts
        with self._count_lock:
            counts[op] = counts.get(op, 0) + 1

    def allow(self, op: str) -> bool:
        """The request rate check; a refusal is counted as throttled."""
        if self.limiter is None or self.limiter.allow(op):
            return True
        self._count(op, throttled=True)
        return False

    def request_counts(self) -> dict[str, int]:
        """Requests received per operation (throttled ones included)."""
        with self._count_lock:
            return dict(self.counts)

    def throttled_counts(self) -> dict[str, int]:
        """Requests answered with ThrottlingException, per operation."""
        with self._count_lock:
            return dict(self.throttled)

    # --- dispatch --------------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes, client_id: str | None = None) -> Reply | None:
        """The reply to one request, or None if the topic is not a request we serve.

        ``client_id``: the requester's MQTT client ID, from the broker's tag on the request."""
        if m := SPLIT_RE.fullmatch(topic):
            self._count("split")
            return self._split(m.group(1), client_id)
        if m := CREATE_RE.fullmatch(topic):
            fmt = m.group(1)
            return self._guard("create", topic, fmt, lambda: self._create(fmt, payload, topic))
        if m := CSR_RE.fullmatch(topic):
            fmt = m.group(1)
            return self._guard("create-from-csr", topic, fmt, lambda: self._create_from_csr(fmt, payload, topic))
        if m := REGISTER_RE.fullmatch(topic):
            name, fmt = m.group(1), m.group(2)
            return self._guard("register", topic, fmt,
                               lambda: self._register(name, fmt, payload, topic, client_id or ""))
        return None

    def _guard(self, op: str, topic: str, fmt: str, fn: Callable[[], Reply]) -> Reply:
        self._count(op)
        try:
            if not self.allow(op):
                # The error shape of AWS's throttled API calls; its use on the MQTT API's rejected
                # topic is our assumption (unconfirmed).
                raise Rejection(429, "ThrottlingException", "Rate exceeded.")
            return fn()
        except Rejection as rej:
            log.info("rejected %s: %s", topic, rej)
            body = {"statusCode": rej.status, "errorCode": rej.code, "errorMessage": rej.message}
            return Reply([(f"{topic}/rejected", encode(fmt, body))])
        except Exception:  # a responder bug must still answer, as AWS answers 500
            log.exception("responder failed on %s", topic)
            body = {"statusCode": 500, "errorCode": "InternalFailure", "errorMessage": "Internal error."}
            return Reply([(f"{topic}/rejected", encode(fmt, body))])

    # --- split workaround: the product handler ---------------------------------------------------

    def _split(self, topic_id: str, client_id: str | None) -> Reply | None:
        if client_id is None:  # the broker tags every request; without it there is no rule event
            log.error("split request for %s came without the requester's client id: not answered", topic_id[:128])
            return None
        messages = self.host.split(topic_id, client_id)
        if not messages:
            return None
        return Reply(messages, sequential=self.host.split_order != "parallel")

    # --- Fleet Provisioning ----------------------------------------------------------------------

    def _new_pending(self, cert_cn: str, public_key: pki.PublicKey, operation: str) -> tuple[Any, str, str]:
        cert = self.ca.issue(public_key, cert_cn)
        cert_id = pki.certificate_id(cert)
        token = pki.new_token()
        now = self.clock()
        with self.registry.transaction() as data:
            self.registry.add_certificate(
                data, certificate_id=cert_id, common_name=cert_cn, serial=cert.serial_number,
                status=PENDING, operation=operation, created_at=now, pem=pki.cert_to_pem(cert).decode(),
            )
            self.registry.add_token(data, token, cert_id, now)
        # Before the reply leaves: the pending cert goes on hold in the CRL (AWS refuses it until
        # RegisterThing) and its CN gets an ACL section that denies the split topics.
        self.policy_changed()
        return cert, cert_id, token

    def _create(self, fmt: str, payload: bytes, topic: str) -> Reply:
        decode(fmt, payload, empty_ok=True)  # AWS docs: empty; the Python SDK sends {} [iotidentity.py]
        key = self.keys.take()
        cert, cert_id, token = self._new_pending(f"cert-{uuid.uuid4().hex}", key.public_key(), "create")
        body = {
            "certificateId": cert_id,
            "certificatePem": pki.cert_to_pem(cert).decode(),
            "privateKey": pki.key_to_pem(key).decode(),
            "certificateOwnershipToken": token,
        }
        return Reply([(f"{topic}/accepted", encode(fmt, body))])

    def _create_from_csr(self, fmt: str, payload: bytes, topic: str) -> Reply:
        req = decode(fmt, payload)
        pem = req.get("certificateSigningRequest")
        if not isinstance(pem, str) or not pem:
            raise Rejection(400, "InvalidParameters", "certificateSigningRequest is missing or empty.")
        try:
            csr = pki.load_csr(pem)
        except pki.CsrInvalid as exc:
            # AWS's exact code here is unconfirmed; InvalidCSR is what the Go SDK's tests use.
            raise Rejection(400, "InvalidCSR", f"The certificate signing request is invalid: {exc.reason}") from exc
        pub = csr.public_key()
        assert isinstance(pub, pki.ec.EllipticCurvePublicKey | pki.rsa.RSAPublicKey)  # load_csr checked
        cert, cert_id, token = self._new_pending(f"cert-{uuid.uuid4().hex}", pub, "create-from-csr")
        body = {
            "certificateOwnershipToken": token,
            "certificateId": cert_id,
            "certificatePem": pki.cert_to_pem(cert).decode(),
        }
        return Reply([(f"{topic}/accepted", encode(fmt, body))])

    def _register(self, name: str, fmt: str, payload: bytes, topic: str, client_id: str) -> Reply:
        req = decode(fmt, payload)
        try:
            body = templates.load(self.state_dir, name, device_policy=DEVICE_POLICY)
        except templates.TemplateNotFound as exc:
            raise Rejection(404, "ResourceNotFound", str(exc)) from exc
        token = req.get("certificateOwnershipToken")
        if not isinstance(token, str) or not token:
            raise Rejection(400, "InvalidCertificateOwnershipToken", "Certificate ownership token cannot be empty.")
        params = req.get("parameters", {})
        if params is None:
            params = {}
        if not isinstance(params, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= templates.MAX_PARAM_KEY
            and len(v) <= templates.MAX_PARAM_VALUE
            for k, v in params.items()
        ):
            raise Rejection(400, "InvalidParameters", "parameters must be a map of strings to strings.")
        cert_id = self._check_token(self.registry.snapshot(), token)
        outcome = self._evaluate(body, params, cert_id)  # a request that cannot work fails before the hook
        if self.hook:
            # The hook's parameterOverrides join the request's parameters [pre-provisioning-hook].
            if overrides := self._hook(name, cert_id, client_id, params):
                outcome = self._evaluate(body, {**params, **overrides}, cert_id)
        policies = [DEVICE_POLICY if p is None else p for p in outcome.policies]
        if unknown := [p for p in policies if p != DEVICE_POLICY]:
            raise Rejection(404, "ResourceNotFound", f"Policy {unknown[0]} does not exist.")
        now = self.clock()
        with self.registry.transaction() as data:
            cert_id = self._check_token(data, token)  # again: the hook ran outside this transaction
            thing = Registry.thing(data, outcome.thing_name) or Registry.create_thing(data, outcome.thing_name, now)
            if outcome.attributes:
                merged = {**thing["attributes"], **outcome.attributes}
                if len(merged) > MAX_THING_ATTRIBUTES:
                    raise Rejection(400, "InvalidParameters",
                                    f"A thing without a thing type has at most {MAX_THING_ATTRIBUTES} attributes.")
                thing["attributes"], thing["version"] = merged, int(thing["version"]) + 1
            entry = data["certificates"][cert_id]
            entry["status"] = outcome.certificate_status
            self.registry.use_token(data, token)
            Registry.attach_thing(data, outcome.thing_name, cert_id)
            attached = Registry.attached_policies(entry)
            attached += [p for p in dict.fromkeys(policies) if p not in attached]
        # Before the reply leaves: the certificate is out of the CRL and its thing's topics are granted.
        self.policy_changed()
        reply = {"deviceConfiguration": outcome.device_configuration, "thingName": outcome.thing_name}
        return Reply([(f"{topic}/accepted", encode(fmt, reply))])

    @staticmethod
    def _evaluate(body: dict[str, Any], params: dict[str, str], cert_id: str) -> templates.Outcome:
        try:
            outcome = templates.evaluate(body, params, cert_id)
        except templates.TemplateError as exc:
            raise Rejection(400, "InvalidParameters", str(exc)) from exc
        if not acl.valid_name(outcome.thing_name):
            raise Rejection(400, "InvalidParameters", f"Thing name {outcome.thing_name!r} is not valid.")
        return outcome

    def _check_token(self, data: dict[str, Any], token: str) -> str:
        try:
            return self.registry.check_token(data, token, self.clock(), lifetime=self.token_lifetime)
        except TokenProblem as exc:
            raise Rejection(400, "InvalidCertificateOwnershipToken", exc.reason) from exc

    def _hook(self, template: str, cert_id: str, client_id: str, params: dict[str, str]) -> dict[str, str]:
        """Run the pre-provisioning hook; its parameter overrides, or Rejection when it refuses."""
        entry = self.registry.snapshot()["certificates"].get(cert_id, {})
        event = {"claimCertificateId": self.claim_certificate_id, "certificateId": cert_id,
                 "certificatePem": entry.get("pem") or "", "templateArn": template_arn(template),
                 "clientId": client_id, "parameters": dict(params)}
        answer = self.host.pre_provisioning(event)
        if not answer.allowed:
            # AWS fails the request when the hook refuses or fails [AWS IoT developer guide,
            # pre-provisioning-hook]; the exact error code on the MQTT API is unconfirmed.
            raise Rejection(403, "AccessDenied", f"Provisioning refused: {answer.reason}.")
        return answer.parameter_overrides
