"""What the stand-in answers to each request: the split workaround and the Fleet Provisioning MQTT API.

Topics, field names and the error shape are AWS's exactly [fleet-provision-api], so an AWS client
(paho by hand, or the AWS IoT Device SDK v2 ``iotidentity`` client) works unchanged. The split flow
follows ``coderbyheart/aws-iot-device-credentials-workaround`` (``lambda/createCertificates.ts``).

This module decides; ``responder.py`` carries the bytes. Time comes from a ``clock`` parameter.
"""

from __future__ import annotations

import json
import logging
import random
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
from nrfprov.cloud.registry import ACTIVE, PENDING, TOKEN_LIFETIME_S, Registry, TokenProblem

log = logging.getLogger(__name__)

SPLIT_ORDERS = ("parallel", "key-first", "cert-first")
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
    grant: Callable[[str, str], None]  # (thing_name, cn): the "AttachPolicy" step, reloads the broker
    policy_changed: Callable[[], None]  # rewrite ACL + CRL from the registry and reload the broker
    clock: Callable[[], float]
    reserved_names: frozenset[str]
    split_order: str = "parallel"
    split_duplicates: int = 0
    limiter: RateLimiter | None = None
    token_lifetime: float = TOKEN_LIFETIME_S
    rng: random.Random = field(default_factory=random.Random)
    counts: dict[str, int] = field(default_factory=dict)
    throttled: dict[str, int] = field(default_factory=dict)
    _count_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.split_order not in SPLIT_ORDERS:
            raise ValueError(f"split_order must be one of {', '.join(SPLIT_ORDERS)}")
        if self.split_duplicates < 0:
            raise ValueError("split_duplicates must be >= 0")

    def _count(self, op: str, *, throttled: bool = False) -> None:
        counts = self.throttled if throttled else self.counts
        with self._count_lock:
            counts[op] = counts.get(op, 0) + 1

    def request_counts(self) -> dict[str, int]:
        """Requests received per operation (throttled ones included)."""
        with self._count_lock:
            return dict(self.counts)

    def throttled_counts(self) -> dict[str, int]:
        """Requests answered with ThrottlingException, per operation."""
        with self._count_lock:
            return dict(self.throttled)

    # --- dispatch --------------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> Reply | None:
        """The reply to one request, or None if the topic is not a request we serve."""
        if m := SPLIT_RE.fullmatch(topic):
            device_id = m.group(1)
            return self._guard("split", topic, "json", lambda: self._split(device_id, topic))
        if m := CREATE_RE.fullmatch(topic):
            fmt = m.group(1)
            return self._guard("create", topic, fmt, lambda: self._create(fmt, payload, topic))
        if m := CSR_RE.fullmatch(topic):
            fmt = m.group(1)
            return self._guard("create-from-csr", topic, fmt, lambda: self._create_from_csr(fmt, payload, topic))
        if m := REGISTER_RE.fullmatch(topic):
            name, fmt = m.group(1), m.group(2)
            return self._guard("register", topic, fmt, lambda: self._register(name, fmt, payload, topic))
        return None

    def _guard(self, op: str, topic: str, fmt: str, fn: Callable[[], Reply]) -> Reply:
        self._count(op)
        try:
            if self.limiter is not None and not self.limiter.allow(op):
                self._count(op, throttled=True)
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

    # --- split workaround ------------------------------------------------------------------------

    def _split(self, device_id: str, topic: str) -> Reply:
        # The ACL's `certificate/%c/create` makes the topic segment equal the client ID, which is
        # what the workaround's rule projects with clientid() [workaround, FleetProvisioningStack.ts].
        if not acl.valid_name(device_id):
            raise Rejection(400, "InvalidParameters", f"Device ID {device_id!r} is not a valid thing name.")
        if device_id in self.reserved_names:
            raise Rejection(403, "Forbidden", f"Device ID {device_id!r} is reserved.")
        key = self.keys.take()
        cert = self.ca.issue(key.public_key(), device_id)
        cert_id = pki.certificate_id(cert)
        now = self.clock()
        with self.registry.transaction() as data:
            self.registry.add_certificate(
                data, certificate_id=cert_id, common_name=device_id, serial=cert.serial_number,
                status=ACTIVE, operation="split", created_at=now, thing_name=device_id,
            )
            self.registry.upsert_thing(data, device_id, cert_id, now, {})
        # Grant before the credentials leave, so a device reconnecting at once already has rights.
        self.grant(device_id, device_id)
        key_msg = (f"{topic}/accepted/key", pki.key_to_pem(key))
        cert_msg = (f"{topic}/accepted/cert", pki.cert_to_pem(cert))
        order = self.split_order
        if order == "parallel":
            # AWS publishes both in parallel from a Lambda: the arrival order is not guaranteed.
            order = self.rng.choice(["key-first", "cert-first"])
        pair = [key_msg, cert_msg] if order == "key-first" else [cert_msg, key_msg]
        messages = pair * (1 + self.split_duplicates)
        return Reply(messages, sequential=self.split_order != "parallel")

    # --- Fleet Provisioning ----------------------------------------------------------------------

    def _new_pending(self, cert_cn: str, public_key: pki.PublicKey, operation: str) -> tuple[Any, str, str]:
        cert = self.ca.issue(public_key, cert_cn)
        cert_id = pki.certificate_id(cert)
        token = pki.new_token()
        now = self.clock()
        with self.registry.transaction() as data:
            self.registry.add_certificate(
                data, certificate_id=cert_id, common_name=cert_cn, serial=cert.serial_number,
                status=PENDING, operation=operation, created_at=now,
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

    def _register(self, name: str, fmt: str, payload: bytes, topic: str) -> Reply:
        req = decode(fmt, payload)
        try:
            body = templates.load(self.state_dir, name)
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
        now = self.clock()
        with self.registry.transaction() as data:
            try:
                cert_id = self.registry.check_token(data, token, now, lifetime=self.token_lifetime)
            except TokenProblem as exc:
                raise Rejection(400, "InvalidCertificateOwnershipToken", exc.reason) from exc
            try:
                outcome = templates.evaluate(body, params, cert_id)
            except templates.TemplateError as exc:
                raise Rejection(400, "InvalidParameters", str(exc)) from exc
            if not acl.valid_name(outcome.thing_name):
                raise Rejection(400, "InvalidParameters", f"Thing name {outcome.thing_name!r} is not valid.")
            if outcome.thing_name in self.reserved_names:
                raise Rejection(403, "Forbidden", f"Thing name {outcome.thing_name!r} is reserved.")
            entry = data["certificates"][cert_id]
            entry["status"] = outcome.certificate_status
            entry["thing_name"] = outcome.thing_name
            cn = str(entry["common_name"])
            self.registry.use_token(data, token)
            self.registry.upsert_thing(data, outcome.thing_name, cert_id, now, outcome.attributes)
        if outcome.certificate_status == ACTIVE:
            self.grant(outcome.thing_name, cn)
        else:
            self.policy_changed()
        reply = {"deviceConfiguration": outcome.device_configuration, "thingName": outcome.thing_name}
        return Reply([(f"{topic}/accepted", encode(fmt, reply))])
