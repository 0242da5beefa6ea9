"""The stand-in's Lambda: runs ``nrfprov.aws.handler`` -- the code ``nrfprov aws deploy`` deploys -- as AWS
runs it, over the stand-in's IoT clients (iot_api.py).

- Split workaround. The deployed topic rule is ``SELECT clientid() AS deviceId, topic(2) AS topicId FROM
  'certificate/+/create'`` (SQL 2016-03-23); the event it sends the function is built here the same way:
  the client ID from the broker's tag on the request (routing.py), the second topic level from the topic.
  The handler issues through ``StandInIot`` and publishes through ``StandInIotData``; its messages then go
  out in the stand-in's configured order (``split_order``) and repeats (``split_duplicates``): the
  handler publishes the key, then the certificate, and a device must accept either arrival order and
  QoS 1 duplicates, which these options let tests force.
- Pre-provisioning hook. RegisterThing sends the hook ``{"claimCertificateId", "certificateId",
  "certificatePem", "templateArn", "clientId", "parameters"}`` and provisions only if it answers
  ``{"allowProvisioning": true}``; a hook that fails or answers late refuses the request [AWS IoT developer
  guide, pre-provisioning-hook: the function has 5 seconds]. The call runs on a thread of its own so the
  limit holds whatever the handler does; a late hook keeps running, as a Lambda would.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import nrfprov.aws.handler as handler
from nrfprov.cloud.iot_api import StandInIot, StandInIotData
from nrfprov.cloud.registry import Registry
from nrfprov.errors import UsageError

log = logging.getLogger(__name__)

SPLIT_ORDERS = ("parallel", "key-first", "cert-first")
#: AWS IoT gives a pre-provisioning hook 5 s to answer [AWS IoT developer guide, pre-provisioning-hook].
HOOK_TIMEOUT_S = 5.0
#: Handler calls remembered for ``LocalAwsIot.handler_calls()`` (oldest dropped beyond this).
_MAX_CALLS = 10_000


@dataclass(frozen=True)
class HandlerCall:
    """One run of the product handler: which caller, and what it returned (never key material)."""

    caller: str  # "split" (the rule) or "hook" (RegisterThing's pre-provisioning hook)
    event: dict[str, Any]
    result: dict[str, Any]


@dataclass(frozen=True)
class HookAnswer:
    allowed: bool
    parameter_overrides: dict[str, str]
    reason: str  # why not allowed ("" when allowed)


class LambdaHost:
    def __init__(self, iot: StandInIot, config: handler.Config, clock: Callable[[], float], *,
                 split_order: str = "parallel", split_duplicates: int = 0, hook_timeout: float = HOOK_TIMEOUT_S,
                 rng: random.Random | None = None) -> None:
        if split_order not in SPLIT_ORDERS:
            raise ValueError(f"split_order must be one of {', '.join(SPLIT_ORDERS)}")
        if split_duplicates < 0:
            raise ValueError("split_duplicates must be >= 0")
        if not 0 < hook_timeout <= HOOK_TIMEOUT_S:
            raise ValueError(f"hook_timeout must be > 0 and at most AWS's {HOOK_TIMEOUT_S:g} s")
        self.iot = iot
        self.config = config
        self.clock = clock
        self.split_order = split_order
        self.split_duplicates = split_duplicates
        self.hook_timeout = hook_timeout
        self.rng = rng or random.Random()
        # The handler raises its logger to INFO for Lambda, where every line goes to CloudWatch. Here the
        # program hosting the stand-in decides, as a Lambda function's log-level setting would: `cloud up -v`
        # shows every issue and refusal, a demo table stays clean.
        logging.getLogger(handler.log.name).setLevel(logging.NOTSET)
        self._calls: list[HandlerCall] = []
        self._lock = threading.Lock()

    def calls(self) -> list[HandlerCall]:
        with self._lock:
            return list(self._calls)

    def _record(self, caller: str, event: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        # The hook event carries the new certificate's PEM: public, but bulky; keep the ids only.
        kept = {k: v for k, v in event.items() if k != "certificatePem"}
        with self._lock:
            if len(self._calls) >= _MAX_CALLS:
                del self._calls[: _MAX_CALLS // 2]
            self._calls.append(HandlerCall(caller, kept, dict(result)))

    # --- split workaround ------------------------------------------------------------------------

    def split(self, topic_id: str, client_id: str) -> list[tuple[str, bytes]]:
        """Run the rule's event through the handler; the messages it published, arranged for delivery."""
        data = StandInIotData()
        issuer = handler.Issuer(self.iot, data, self.config, clock=self.clock)
        event = {"deviceId": client_id, "topicId": topic_id}
        try:
            result = handler.dispatch(event, issuer)
        except Exception as exc:
            # A Lambda error: AWS logs it and publishes nothing more; what was published stays published.
            log.exception("split handler failed for device %s", client_id[:128])
            result = {"deviceId": client_id, "issued": False, "errorCode": f"Unhandled:{type(exc).__name__}"}
        self._record("split", event, result)
        return self._arrange(data.messages)

    def _arrange(self, messages: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        order = self.split_order
        if order == "parallel":
            # As if the two publishes raced (AWS does not order separate Publish calls for a subscriber).
            order = self.rng.choice(["key-first", "cert-first"])
        first = "/accepted/key" if order == "key-first" else "/accepted/cert"
        arranged = sorted(messages, key=lambda m: 0 if m[0].endswith(first) else 1)  # stable
        return arranged * (1 + self.split_duplicates)

    # --- pre-provisioning hook -------------------------------------------------------------------

    def pre_provisioning(self, event: dict[str, Any]) -> HookAnswer:
        issuer = handler.Issuer(self.iot, None, self.config, clock=self.clock)
        done = threading.Event()
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["answer"] = handler.dispatch(event, issuer)
            except Exception as exc:
                log.exception("pre-provisioning hook failed for certificate %s", event.get("certificateId"))
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=run, name="cloud-hook", daemon=True).start()
        if not done.wait(self.hook_timeout):
            answer = HookAnswer(False, {}, f"the pre-provisioning hook did not answer within {self.hook_timeout:g} s")
            self._record("hook", event, {"timeout": True})
            return answer
        result = box.get("answer")
        if "error" in box or not isinstance(result, Mapping):
            self._record("hook", event, {"error": type(box.get("error")).__name__})
            return HookAnswer(False, {}, "the pre-provisioning hook failed")
        self._record("hook", event, result)
        if result.get("allowProvisioning") is not True:
            return HookAnswer(False, {}, "the pre-provisioning hook did not allow provisioning")
        overrides = result.get("parameterOverrides") or {}
        if not isinstance(overrides, Mapping):
            return HookAnswer(False, {}, "the pre-provisioning hook returned invalid parameterOverrides")
        return HookAnswer(True, {str(k): str(v) for k, v in overrides.items()}, "")


def allow_reprovision(registry: Registry, thing: str, *, hours: float, now: float) -> float:
    """Record an operator's permission for one more certificate for ``thing``, the way ``nrfprov aws
    reprovision`` records it on AWS (the thing attribute the handler reads); returns the expiry."""
    if handler.THING_NAME_RE.fullmatch(thing) is None:
        raise UsageError(f"{thing!r} is not a thing name", hint="1-128 characters of a-z A-Z 0-9 : _ -")
    if not 0 < hours <= 24 * 30:
        raise UsageError("--hours must be more than 0 and at most 720 (30 days)")
    with registry.transaction() as data:
        entry = Registry.thing(data, thing)
        if entry is None:
            raise UsageError(f"there is no thing {thing} in the stand-in",
                             hint="a device's first provisioning needs no permission")
        expires = int(now + hours * 3600)
        entry["attributes"][handler.REPROVISION_ATTRIBUTE] = str(expires)
        entry["version"] = int(entry["version"]) + 1
    return float(expires)
