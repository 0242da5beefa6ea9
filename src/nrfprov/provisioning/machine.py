"""Nordic's aws_iot_provisioning sample's 12-step chain as a sans-IO state machine.

Events (past tense) go in through ``receive_event(event, now)``; effects (imperatives) come out of
``next_effect()`` for a driver to execute on the modem, transport and MQTT layers. Each command effect
is answered by exactly one event of the type it names (``completed_by``); *notes* (journal saves,
finished steps, erase key material) need no answer and must be executed in order, which is what
puts the issued bundle on disk before the first modem write.

Which steps a run takes is its ``plan`` (it depends on the flow, on a template, on a resume); whether
a step may follow another and which events a step accepts is ``_TRANSITIONS``. An event a state does
not accept, or a plan the table does not allow, raises ``ProvisioningStateError`` and the machine
stays ``FAILED``. Time is a parameter: ``handle_timer(now)`` / ``next_deadline()``.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from nrfprov.errors import CredentialVerifyError, LocalProtocolError, NrfprovError, ResponseTimeout
from nrfprov.names import FLOWS, FORMATS, Flow, PayloadFormat
from nrfprov.provisioning import flows
from nrfprov.provisioning.bundle import TYPE_CA, TYPE_CERT, TYPE_KEY, CredentialBundle, check_bundle, sha256_hex
from nrfprov.provisioning.events import (
    ClearSubscriptions,
    Connected,
    ConnectMqtt,
    CredentialDeleted,
    CredentialWritten,
    DeleteCredential,
    Disconnect,
    Disconnected,
    Effect,
    EraseKeyMaterial,
    Event,
    FunctionalModeSet,
    GenerateKey,
    Identity,
    KeyGenerated,
    LteRegistered,
    MessageReceived,
    Publish,
    Published,
    Resumed,
    SaveBundle,
    SetFunctionalMode,
    Started,
    State,
    StepFinished,
    Subscribe,
    Subscribed,
    SubscriptionsCleared,
    WaitForRegistration,
    WriteCredential,
)


class ProvisioningStateError(LocalProtocolError):
    """An event arrived that the current step does not accept (a driver bug, never a user error)."""


# --- the table ----------------------------------------------------------------------------------

S = State
# state → {event type accepted → the states that may follow once the step is complete}.
_TRANSITIONS: dict[State, dict[type[Event], tuple[State, ...]]] = {
    S.IDLE: {Started: (S.GENERATE_KEY, S.ATTACH_LTE), Resumed: (S.ATTACH_LTE, S.GO_OFFLINE)},
    S.GENERATE_KEY: {FunctionalModeSet: (S.ATTACH_LTE,), CredentialDeleted: (S.ATTACH_LTE,),
                     KeyGenerated: (S.ATTACH_LTE,)},
    S.ATTACH_LTE: {FunctionalModeSet: (S.CONNECT_CLAIM,), LteRegistered: (S.CONNECT_CLAIM,)},
    S.CONNECT_CLAIM: {Connected: (S.SUBSCRIBE,)},
    S.SUBSCRIBE: {Subscribed: (S.REQUEST_CREDENTIALS, S.REQUEST_REGISTRATION)},
    # Replies may overtake the PUBACK (ordering is not guaranteed [AWS IoT developer guide, mqtt]): buffered.
    S.REQUEST_CREDENTIALS: {Published: (S.AWAIT_CREDENTIALS,), MessageReceived: (S.AWAIT_CREDENTIALS,)},
    S.AWAIT_CREDENTIALS: {MessageReceived: (S.REQUEST_REGISTRATION, S.DISCONNECT_CLAIM)},
    S.REQUEST_REGISTRATION: {Published: (S.AWAIT_REGISTRATION,), MessageReceived: (S.AWAIT_REGISTRATION,)},
    S.AWAIT_REGISTRATION: {MessageReceived: (S.DISCONNECT_CLAIM,)},
    S.DISCONNECT_CLAIM: {Disconnected: (S.GO_OFFLINE,)},
    S.GO_OFFLINE: {FunctionalModeSet: (S.WRITE_CREDENTIALS,)},
    S.WRITE_CREDENTIALS: {CredentialDeleted: (S.CLEAR_SUBSCRIPTIONS,), CredentialWritten: (S.CLEAR_SUBSCRIPTIONS,)},
    S.CLEAR_SUBSCRIPTIONS: {SubscriptionsCleared: (S.GO_ONLINE,)},
    S.GO_ONLINE: {FunctionalModeSet: (S.RECONNECT,), LteRegistered: (S.RECONNECT,)},
    S.RECONNECT: {Connected: (S.DONE,), Published: (S.DONE,), Disconnected: (S.DONE,)},
    S.DONE: {},
    S.FAILED: {},
}

_CHAIN_TAIL = [S.GO_OFFLINE, S.WRITE_CREDENTIALS, S.CLEAR_SUBSCRIPTIONS, S.GO_ONLINE, S.RECONNECT, S.DONE]


@dataclass(frozen=True)
class Plan:
    """Everything a run needs to know up front (the driver builds it from Settings + the modem)."""

    flow: Flow
    client_id: str
    provisioned_sec_tag: int
    ca_pem: str
    claim_sec_tag: int | None = None
    payload_format: PayloadFormat = "json"
    template: str = ""
    parameters: Mapping[str, str] = field(default_factory=dict)
    response_timeout: float = 60.0
    lte_timeout: float = 300.0
    #: A journaled bundle to continue with instead of requesting credentials (``--resume``).
    resume: CredentialBundle | None = None

    def __post_init__(self) -> None:
        if self.flow not in FLOWS:
            raise ValueError(f"unknown flow {self.flow!r}")
        if self.payload_format not in FORMATS:
            raise ValueError(f"unknown payload format {self.payload_format!r}")

    @property
    def registers(self) -> bool:
        return bool(self.template) and self.flow != "split"

    def steps(self) -> list[State]:
        """The states this run visits, in order."""
        if self.resume is not None:
            if self.registers and not self.resume.thing_name:
                return [S.IDLE, S.ATTACH_LTE, S.CONNECT_CLAIM, S.SUBSCRIBE, S.REQUEST_REGISTRATION,
                        S.AWAIT_REGISTRATION, S.DISCONNECT_CLAIM, *_CHAIN_TAIL]
            return [S.IDLE, *_CHAIN_TAIL]
        head = [S.IDLE] + ([S.GENERATE_KEY] if self.flow == "csr" else [])
        middle = [S.ATTACH_LTE, S.CONNECT_CLAIM, S.SUBSCRIBE, S.REQUEST_CREDENTIALS, S.AWAIT_CREDENTIALS]
        register = [S.REQUEST_REGISTRATION, S.AWAIT_REGISTRATION] if self.registers else []
        return head + middle + register + [S.DISCONNECT_CLAIM, *_CHAIN_TAIL]


def check_plan(steps: list[State]) -> None:
    """Every consecutive pair must be allowed by ``_TRANSITIONS`` (used at start and in tests)."""
    for a, b in itertools.pairwise(steps):
        if not any(b in nxt for nxt in _TRANSITIONS[a].values()):
            raise ProvisioningStateError(f"the chain cannot go from {a.name} to {b.name}")


class ProvisioningMachine:
    """One provisioning run. Create it, ``receive_event(Started(...) or Resumed(...), now)``, then loop."""

    def __init__(self, plan: Plan, *, extractor: flows.ExtractorFactory = flows.native_extractor) -> None:
        self.plan = plan
        self._extractor = extractor
        self.state = State.IDLE
        self._steps = plan.steps()
        check_plan(self._steps)
        self._effects: deque[Effect] = deque()
        self._awaiting: deque[type[Event]] = deque()
        self._deadline: float | None = None
        self._buffered: list[MessageReceived] = []
        self._collector: flows.Collector | None = None
        self._register: flows.RegisterCollector | None = None
        self._csr_pem = ""
        self._csr_spki: bytes | None = None
        self._expected_sha: dict[int, str] = {}
        self._utc: _dt.datetime | None = None
        self.bundle: CredentialBundle | None = plan.resume
        self.error: BaseException | None = None

    # --- the verbs ------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.state in (State.DONE, State.FAILED)

    @property
    def steps(self) -> list[State]:
        return list(self._steps)

    @property
    def reconnect_client_id(self) -> str:
        """Split: the client id. With RegisterThing: the thing name (AWS policy binds them)."""
        if self.bundle is not None and self.bundle.thing_name:
            return self.bundle.thing_name
        return self.plan.client_id

    def next_effect(self) -> Effect | None:
        """The next thing to do, or None when the machine waits for messages, a timer, or is done."""
        return self._effects.popleft() if self._effects else None

    def next_deadline(self) -> float | None:
        return self._deadline

    def handle_timer(self, now: float) -> None:
        if self._deadline is None or now < self._deadline or self.finished:
            return
        if self.state is State.AWAIT_CREDENTIALS:
            got = self._collector.explain_incomplete() if isinstance(self._collector, flows.SplitCollector) else ""
            what = f"credentials on {self._request().subscribe[0]}" + (f" (got {got})" if got else "")
        else:
            what = f"RegisterThing reply for template {self.plan.template!r}"
        exc = ResponseTimeout(what, self.plan.response_timeout, hint="check the claim policy and the provisioning "
                              "service; the request can be repeated safely (no credentials were written)")
        self._fail(exc)
        raise exc

    def receive_event(self, event: Event, now: float) -> None:
        if self.state is State.FAILED:
            raise ProvisioningStateError(f"the machine failed earlier ({self.error}); start a new run")
        try:
            if type(event) not in _TRANSITIONS[self.state]:
                raise ProvisioningStateError(f"{type(event).__name__} is not accepted in step {self.state.name}")
            if isinstance(event, MessageReceived):
                self._utc = event.utc
                self._on_message(event, now)
                return
            if self._awaiting:
                expected = self._awaiting[0]
                if type(event) is not expected:
                    raise ProvisioningStateError(
                        f"step {self.state.name} expected {expected.__name__}, got {type(event).__name__}")
                self._awaiting.popleft()
            elif self.state is not State.IDLE:
                raise ProvisioningStateError(f"step {self.state.name} is not waiting for {type(event).__name__}")
            self._on_event(event, now)
            if not self._awaiting and self.state in _SELF_COMPLETING:
                self._complete(type(event), now)
        except NrfprovError as exc:
            if self.state is not State.FAILED:
                self._fail(exc)
            raise

    # --- internals ------------------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        """The machine is dead from here on; the caller raises ``exc``."""
        self.state = State.FAILED
        self.error = exc
        self._effects.clear()
        self._awaiting.clear()
        self._deadline = None

    def _emit(self, *effects: Effect) -> None:
        for e in effects:
            self._effects.append(e)
            if e.completed_by is not None:
                self._awaiting.append(e.completed_by)

    def _request(self) -> flows.Request:
        p = self.plan
        if p.flow == "split":
            return flows.split_request(p.client_id)
        if p.flow == "combined":
            return flows.combined_request(p.payload_format)
        return flows.csr_request(p.payload_format, self._csr_pem)

    def _register_request(self) -> flows.Request:
        assert self.bundle is not None
        p = self.plan
        return flows.register_request(p.template, p.payload_format, self.bundle.ownership_token, p.parameters)

    def _on_event(self, event: Event, now: float) -> None:
        if isinstance(event, Started | Resumed):
            if isinstance(event, Resumed) != (self.plan.resume is not None):
                raise ProvisioningStateError("Resumed starts a run with a journaled bundle, Started any other")
            self._utc = event.utc
            self._advance(type(event), now)
        elif isinstance(event, KeyGenerated):
            self._csr_pem, self._csr_spki = flows.csr_der_to_pem(event.csr_der)
        elif isinstance(event, CredentialWritten):
            expected = self._expected_sha.get(event.cred_type)
            if event.sec_tag != self.plan.provisioned_sec_tag or expected is None:
                raise ProvisioningStateError(f"unexpected write report for {event.sec_tag}/{event.cred_type}")
            if event.sha256.upper() != expected:
                raise CredentialVerifyError(event.sec_tag, event.cred_type, expected, event.sha256)
        elif isinstance(event, Published) and self.state is State.RECONNECT:
            # PUBACK with the new identity: the write is verified and the reconnect proved it.
            self._emit(EraseKeyMaterial())

    def _on_message(self, event: MessageReceived, now: float) -> None:
        if self.state in (State.REQUEST_CREDENTIALS, State.REQUEST_REGISTRATION):
            if len(self._buffered) >= _BUFFERED_LIMIT:
                raise ProvisioningStateError(f"more than {_BUFFERED_LIMIT} messages before the PUBACK")
            self._buffered.append(event)
            return
        if self.state is State.AWAIT_CREDENTIALS:
            assert self._collector is not None
            issued = self._collector.feed(event.topic, event.payload)
            if issued is not None:
                self._credentials_received(issued, event.utc, now)
        elif self.state is State.AWAIT_REGISTRATION:
            assert self._register is not None
            reg = self._register.feed(event.topic, event.payload)
            if reg is not None:
                assert self.bundle is not None
                self.bundle = replace(self.bundle, thing_name=reg.thing_name)
                self._emit(SaveBundle(self.bundle), StepFinished(self.state, f"thing {reg.thing_name}"))
                self._advance(MessageReceived, now)

    def _credentials_received(self, issued: flows.IssuedCredentials, utc: _dt.datetime, now: float) -> None:
        bundle = CredentialBundle(
            certificate_pem=issued.certificate_pem,
            ca_pem=self.plan.ca_pem,
            private_key_pem=issued.private_key_pem,
            certificate_id=issued.certificate_id,
            ownership_token=issued.ownership_token,
        ).normalized()
        if not bundle.certificate_id:
            bundle = replace(bundle, certificate_id=bundle.fingerprint())
        check_bundle(bundle, sec_tag=self.plan.provisioned_sec_tag, now=utc, csr_public_key_der=self._csr_spki)
        self.bundle = bundle
        # The journal gets the bundle before any further step: a crash from here on loses nothing.
        self._emit(SaveBundle(bundle), StepFinished(self.state, f"certificate {bundle.certificate_id[:12]}"))
        self._advance(MessageReceived, now)

    def _complete(self, by: type[Event], now: float) -> None:
        detail = ""
        if self.state is State.WRITE_CREDENTIALS:
            detail = f"sec tag {self.plan.provisioned_sec_tag} verified by SHA-256"
        self._emit(StepFinished(self.state, detail))
        self._advance(by, now)

    def _advance(self, by: type[Event], now: float) -> None:
        nxt = self._steps[self._steps.index(self.state) + 1]
        if nxt not in _TRANSITIONS[self.state].get(by, ()):
            raise ProvisioningStateError(f"{by.__name__} cannot take step {self.state.name} to {nxt.name}")
        self._enter(nxt, now)

    def _enter(self, state: State, now: float) -> None:
        self.state = state
        self._deadline = None
        p = self.plan
        tag = p.provisioned_sec_tag
        if state is S.GENERATE_KEY:
            # %KEYGEN needs the modem offline [Nordic AT reference, %KEYGEN]; old CA/cert in the tag would not match.
            self._emit(SetFunctionalMode(4), *(DeleteCredential(tag, t) for t in (TYPE_CA, TYPE_CERT, TYPE_KEY)),
                       GenerateKey(tag))
        elif state is S.ATTACH_LTE:
            self._emit(SetFunctionalMode(1), WaitForRegistration(p.lte_timeout))
        elif state is S.CONNECT_CLAIM:
            self._emit(ConnectMqtt(Identity.CLAIM, p.client_id, p.claim_sec_tag))
        elif state is S.SUBSCRIBE:
            topics: tuple[str, ...] = ()
            if self._steps[self._steps.index(state) + 1] is S.REQUEST_CREDENTIALS:
                topics += self._request().subscribe
            if p.registers:
                topics += flows.register_topics(p.template, p.payload_format)[1:]
            self._emit(Subscribe(topics))
        elif state is S.REQUEST_CREDENTIALS:
            req = self._request()
            self._collector = self._make_collector()
            self._emit(Publish(req.topic, req.payload, req.qos))
        elif state is S.AWAIT_CREDENTIALS or state is S.AWAIT_REGISTRATION:
            self._deadline = now + p.response_timeout
            if state is S.AWAIT_REGISTRATION:
                self._register = flows.RegisterCollector(p.template, p.payload_format)
            pending, self._buffered = self._buffered, []
            for msg in pending:
                if self.state is state:
                    self._on_message(msg, now)
        elif state is S.REQUEST_REGISTRATION:
            req = self._register_request()
            self._emit(Publish(req.topic, req.payload, req.qos))
        elif state is S.DISCONNECT_CLAIM:
            self._emit(Disconnect())
        elif state is S.GO_OFFLINE:
            self._emit(SetFunctionalMode(4))
        elif state is S.WRITE_CREDENTIALS:
            self._enter_write(now)
        elif state is S.CLEAR_SUBSCRIPTIONS:
            self._emit(ClearSubscriptions())
        elif state is S.GO_ONLINE:
            self._emit(SetFunctionalMode(1), WaitForRegistration(p.lte_timeout))
        elif state is S.RECONNECT:
            assert self.bundle is not None
            thing = self.reconnect_client_id
            # Proof: a QoS 1 publish that only the new identity may make; PUBACK is the answer.
            proof = json.dumps({"state": {"reported": {"nrfprov": {
                "provisioned": True, "certificateId": self.bundle.certificate_id}}}}).encode()
            self._emit(ConnectMqtt(Identity.PROVISIONED, thing, tag, self.bundle),
                       Publish(f"$aws/things/{thing}/shadow/update", proof, 1), Disconnect())
        elif state is S.DONE:
            self._emit(StepFinished(S.DONE, f"connected as {self.reconnect_client_id}"))

    def _enter_write(self, now: float) -> None:
        assert self.bundle is not None and self._utc is not None
        # Checked again here: on --resume the journaled bundle may have aged since it was issued.
        check_bundle(self.bundle, sec_tag=self.plan.provisioned_sec_tag, now=self._utc)
        tag = self.plan.provisioned_sec_tag
        writes = self.bundle.writes()
        # csr: the key was generated in the tag and must survive; delete only what we rewrite.
        self._emit(*(DeleteCredential(tag, t) for t, _ in writes))
        for t, content in writes:
            self._expected_sha[t] = sha256_hex(content)
            self._emit(WriteCredential(tag, t, content))

    def _make_collector(self) -> flows.Collector:
        p = self.plan
        if p.flow == "split":
            return flows.SplitCollector(p.client_id)
        if p.flow == "combined":
            return flows.combined_collector(p.payload_format, self._extractor)
        return flows.csr_collector(p.payload_format, self._extractor)


# Steps that finish when their last effect is answered (the await steps finish on a reply instead).
_SELF_COMPLETING = frozenset({
    S.GENERATE_KEY, S.ATTACH_LTE, S.CONNECT_CLAIM, S.SUBSCRIBE, S.REQUEST_CREDENTIALS, S.REQUEST_REGISTRATION,
    S.DISCONNECT_CLAIM, S.GO_OFFLINE, S.WRITE_CREDENTIALS, S.CLEAR_SUBSCRIPTIONS, S.GO_ONLINE, S.RECONNECT,
})
#: Replies that may overtake a PUBACK; a request has one or two (split), so 16 is generous.
_BUFFERED_LIMIT = 16
