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
import hashlib
import json
from collections import deque
from dataclasses import replace

from nrfprov.errors import (
    CloudRejected,
    CredentialBundleError,
    CredentialVerifyError,
    NrfprovError,
    ReplyConflict,
    ResponseTimeout,
    ThingNameUnknown,
)
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
    MessageIgnored,
    MessageReceived,
    ProbeFailed,
    Publish,
    Published,
    ReplySaved,
    RequestIntent,
    Resumed,
    SaveBundle,
    SaveIntent,
    SaveReply,
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
from nrfprov.provisioning.table import (
    _AWAITS,
    _BUFFERED_LIMIT,
    _SELF_COMPLETING,
    _TRANSITIONS,
    Plan,
    ProvisioningStateError,
    check_plan,
)

S = State

# The events and effects are re-exported: a driver or a test needs only this module.
__all__ = [
    "ClearSubscriptions", "ConnectMqtt", "Connected", "CredentialDeleted", "CredentialWritten", "DeleteCredential",
    "Disconnect", "Disconnected", "Effect", "EraseKeyMaterial", "Event", "FunctionalModeSet", "GenerateKey",
    "Identity", "KeyGenerated", "LteRegistered", "MessageIgnored", "MessageReceived", "Plan", "ProbeFailed",
    "ProvisioningMachine", "ProvisioningStateError", "Publish", "Published", "ReplySaved", "RequestIntent", "Resumed",
    "SaveBundle", "SaveIntent", "SaveReply", "SetFunctionalMode", "Started", "State", "StepFinished", "Subscribe",
    "Subscribed", "SubscriptionsCleared", "WaitForRegistration", "WriteCredential", "check_plan",
]


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
        self._csr_spki: bytes | None = plan.csr_public_key
        self._expected_sha: dict[int, str] = {}
        self._utc: _dt.datetime | None = None
        # Raw replies: the one being journaled, and the digests of those journaled / used.
        self._saving: MessageReceived | None = None
        self._saved: set[str] = set()
        self._used_reply = ""
        # Probe (RegisterThing in doubt): candidates left, the one in flight, how the others failed.
        self._candidates: deque[str] = deque()
        self._probing = ""
        self._probe_failures: list[ProbeFailed] = []
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
            hint = ("no credentials were written; but if the request reached the cloud, it may have issued "
                    f"{self._probably_issued()} whose reply never came: `--resume` names it; "
                    "running again requests another certificate")
        else:
            what = f"RegisterThing reply for template {self.plan.template!r}"
            hint = ("the registration may have happened without its reply arriving; the credentials are in "
                    "the journal: `--resume` settles it by trying the new identity, then registers if needed")
        exc = ResponseTimeout(what, self.plan.response_timeout, hint=hint)
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
            if isinstance(event, ProbeFailed):
                self._probe_failed(event, now)
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

    def _intent(self, req: flows.Request) -> RequestIntent:
        p = self.plan
        spki = self._csr_spki.hex() if req.operation == "create-from-csr" and self._csr_spki else ""
        return RequestIntent(req.operation, req.topic, p.client_id, p.template if p.registers else "",
                             tuple(sorted(p.parameters.items())) if p.registers else (), spki)

    def _probably_issued(self) -> str:
        if self.plan.flow == "split":
            return f"an ACTIVE certificate for thing {self.plan.client_id}"
        return "a PENDING_ACTIVATION certificate (it lapses with its ownership token)"

    def _on_event(self, event: Event, now: float) -> None:
        if isinstance(event, Started | Resumed):
            if isinstance(event, Resumed) != self.plan.resumes:
                raise ProvisioningStateError("Resumed starts a run with a journaled bundle, Started any other")
            self._utc = event.utc
            if self.plan.journaled_replies and self.bundle is None:
                self._bundle_from_journaled_replies()
            self._advance(type(event), now)
        elif isinstance(event, KeyGenerated):
            self._csr_pem, self._csr_spki = flows.csr_der_to_pem(event.csr_der)
        elif isinstance(event, ReplySaved):
            msg, self._saving = self._saving, None
            assert msg is not None
            self._saved.add(_digest(msg.payload))
            self._feed_credentials(msg, now)
            self._replay(now)
        elif isinstance(event, CredentialWritten):
            expected = self._expected_sha.get(event.cred_type)
            if event.sec_tag != self.plan.provisioned_sec_tag or expected is None:
                raise ProvisioningStateError(f"unexpected write report for {event.sec_tag}/{event.cred_type}")
            if event.sha256.upper() != expected:
                raise CredentialVerifyError(event.sec_tag, event.cred_type, expected, event.sha256)
        elif isinstance(event, Published) and self.state is State.RECONNECT:
            # PUBACK with the new identity: the write is verified and the reconnect proved it.
            self._emit(EraseKeyMaterial())
        elif isinstance(event, Disconnected) and self.state is State.PROBE_IDENTITY and not self._awaiting:
            self._probe_proven(now)

    def _on_message(self, event: MessageReceived, now: float) -> None:
        if self.state in (State.REQUEST_CREDENTIALS, State.REQUEST_REGISTRATION):
            if len(self._buffered) >= _BUFFERED_LIMIT:
                raise ProvisioningStateError(f"more than {_BUFFERED_LIMIT} messages before the PUBACK")
            self._buffered.append(event)
            return
        if event.retained:
            # AWS never retains a reply; a retained message was stored before this subscription.
            self._emit(MessageIgnored(event.topic, "delivered as retained: stored before this request was sent"))
            return
        if self.state is State.AWAIT_CREDENTIALS:
            if event.topic in self._request().replies and _digest(event.payload) not in self._saved:
                self._saving = event
                self._emit(SaveReply(event.topic, event.payload))
                return
            self._feed_credentials(event, now)
        elif self.state is State.AWAIT_REGISTRATION:
            if not self.plan.resumes and event.topic in self._request().replies:
                self._second_reply(event)
                return
            assert self._register is not None
            try:
                reg = self._register.feed(event.topic, event.payload)
            except CloudRejected as exc:
                if self.plan.register_in_doubt and exc.error_code == "InvalidCertificateOwnershipToken":
                    raise self._thing_unknown(exc) from exc
                exc.hint = ("the issued credentials stay in the journal: fix the cause (a thing that already has an "
                            "active certificate needs an operator's permission for another, e.g. `nrfprov aws "
                            "reprovision THING`), then finish with --resume; no new certificate is requested")
                raise
            if reg is not None:
                assert self.bundle is not None
                self.bundle = replace(self.bundle, thing_name=reg.thing_name)
                self._emit(SaveBundle(self.bundle), StepFinished(self.state, f"thing {reg.thing_name}"))
                self._advance(MessageReceived, now)

    def _replay(self, now: float) -> None:
        """Feed messages buffered before the PUBACK, one at a time: one may start a journal write."""
        while self._buffered and self.state in _AWAITS and not self._awaiting:
            self._on_message(self._buffered.pop(0), now)

    def _feed_credentials(self, event: MessageReceived, now: float) -> None:
        assert self._collector is not None
        issued = self._collector.feed(event.topic, event.payload)
        if issued is None:
            return
        if self._csr_spki is not None and flows.certificate_spki(issued.certificate_pem) != self._csr_spki:
            # Provably not this modem's reply: its certificate carries another key than our CSR.
            self._emit(MessageIgnored(event.topic, "a certificate for another key than this modem's CSR"))
            return
        self._used_reply = _digest(event.payload)
        self._credentials_received(issued, event.utc, now)

    def _second_reply(self, event: MessageReceived) -> None:
        """A credential reply after the one this run took: a repeat is harmless, another is a conflict."""
        if _digest(event.payload) in self._saved | {self._used_reply}:
            self._emit(MessageIgnored(event.topic, "a repeated delivery of the reply already taken"))
            return
        other = "an unparsable one"
        try:
            issued = self._make_collector().feed(event.topic, event.payload)
        except NrfprovError:
            issued = None
        if issued is not None:
            if self._csr_spki is not None and flows.certificate_spki(issued.certificate_pem) != self._csr_spki:
                self._emit(MessageIgnored(event.topic, "a certificate for another key than this modem's CSR"))
                return
            other = issued.certificate_id or "?"
        assert self.bundle is not None
        first = self.bundle.certificate_id
        raise ReplyConflict(
            f"a second accepted reply arrived on {event.topic} for one request: certificate {first} (taken "
            f"and journaled) and certificate {other}; one of them is another device's, so neither is used",
            certificate_ids=(first, other),
            hint="nothing was written to the modem; revoke both (aws iot update-certificate --certificate-id "
            "ID --new-status REVOKED), then move the journal away and run again",
        )

    def _bundle_from_journaled_replies(self) -> None:
        collector = self._make_collector()
        issued: flows.IssuedCredentials | None = None
        for topic, payload in self.plan.journaled_replies:
            found = collector.feed(topic, payload)
            if found is not None and (self._csr_spki is None
                                      or flows.certificate_spki(found.certificate_pem) == self._csr_spki):
                issued = found
        if issued is None:
            raise CredentialBundleError(
                "the journal holds only part of the reply (a crash came between its messages)",
                hint="the certificate was probably issued; run again without --resume to request another")
        assert self._utc is not None
        self.bundle = self._checked_bundle(issued, self._utc)
        detail = f"certificate {self.bundle.certificate_id[:12]} from the journal"
        self._emit(SaveBundle(self.bundle), StepFinished(S.AWAIT_CREDENTIALS, detail))

    def _checked_bundle(self, issued: flows.IssuedCredentials, utc: _dt.datetime) -> CredentialBundle:
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
        return bundle

    def _credentials_received(self, issued: flows.IssuedCredentials, utc: _dt.datetime, now: float) -> None:
        bundle = self._checked_bundle(issued, utc)
        self.bundle = bundle
        # The journal gets the bundle before any further step: a crash from here on loses nothing.
        self._emit(SaveBundle(bundle), StepFinished(self.state, f"certificate {bundle.certificate_id[:12]}"))
        self._advance(MessageReceived, now)

    # --- probe: RegisterThing in doubt ----------------------------------------------------------

    def _probe_next(self) -> None:
        assert self.bundle is not None
        self._probing = self._candidates.popleft()
        self._emit(ConnectMqtt(Identity.PROVISIONED, self._probing, self.plan.provisioned_sec_tag, self.bundle,
                               probe=True),
                   Publish(_shadow_topic(self._probing), self._proof(), 1, probe=True), Disconnect())

    def _probe_failed(self, event: ProbeFailed, now: float) -> None:
        if self.state is not State.PROBE_IDENTITY or not self._probing:
            raise ProvisioningStateError(f"ProbeFailed without a probe in step {self.state.name}")
        # The rest of this candidate's effects are void; the driver has closed what it opened.
        self._effects.clear()
        self._awaiting.clear()
        self._probe_failures.append(event)
        self._probing = ""
        if self._candidates:
            self._probe_next()
            return
        if any(f.stage == "publish" for f in self._probe_failures):
            # The broker took the identity: the certificate is active, so RegisterThing happened.
            raise self._thing_unknown(None)
        # No candidate even connected: most likely not registered yet. The journaled token says for sure.
        self._emit(StepFinished(S.PROBE_IDENTITY, "new identity not accepted yet: registering now"))
        self._advance(ProbeFailed, now)

    def _probe_proven(self, now: float) -> None:
        assert self.bundle is not None
        self.bundle = replace(self.bundle, thing_name=self._probing)
        self._emit(SaveBundle(self.bundle), EraseKeyMaterial(),
                   StepFinished(S.PROBE_IDENTITY, f"registered earlier: thing {self._probing} proven"))
        self._jump(S.DONE, Disconnected, now)

    def _thing_unknown(self, cause: CloudRejected | None) -> ThingNameUnknown:
        assert self.bundle is not None
        cert = self.bundle.certificate_id
        how = ("its ownership token was already used" if cause is not None
               else "AWS accepted the identity but refused every candidate thing's topic")
        return ThingNameUnknown(cert, self.plan.thing_candidates, hint=(
            f"{how}; find the thing with `aws iot list-principal-things --principal "
            f"arn:aws:iot:<region>:<account>:cert/{cert}`, then finish with `nrfprov provision --resume "
            "--thing NAME`"))

    def _proof(self) -> bytes:
        assert self.bundle is not None
        return json.dumps({"state": {"reported": {"nrfprov": {
            "provisioned": True, "certificateId": self.bundle.certificate_id}}}}).encode()

    # --- steps ----------------------------------------------------------------------------------

    def _complete(self, by: type[Event], now: float) -> None:
        detail = ""
        if self.state is State.WRITE_CREDENTIALS:
            detail = f"sec tag {self.plan.provisioned_sec_tag} verified by SHA-256"
        self._emit(StepFinished(self.state, detail))
        self._advance(by, now)

    def _advance(self, by: type[Event], now: float) -> None:
        nxt = self._steps[self._steps.index(self.state) + 1]
        self._jump(nxt, by, now)

    def _jump(self, nxt: State, by: type[Event], now: float) -> None:
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
        elif state is S.REQUEST_CREDENTIALS or state is S.REQUEST_REGISTRATION:
            req = self._request() if state is S.REQUEST_CREDENTIALS else self._register_request()
            if state is S.REQUEST_CREDENTIALS:
                self._collector = self._make_collector()
            # Durable intent first: from here a crash leaves "requested, reply lost", never "nothing".
            self._emit(SaveIntent(self._intent(req)),
                       Publish(req.topic, req.payload, req.qos, discard_queued=req.subscribe))
        elif state is S.AWAIT_CREDENTIALS or state is S.AWAIT_REGISTRATION:
            self._deadline = now + p.response_timeout
            if state is S.AWAIT_REGISTRATION:
                self._register = flows.RegisterCollector(p.template, p.payload_format)
            self._replay(now)
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
        elif state is S.PROBE_IDENTITY:
            self._candidates = deque(p.thing_candidates)
            if not self._candidates:
                raise ProvisioningStateError("RegisterThing in doubt but no thing name to try")
            self._probe_next()
        elif state is S.RECONNECT:
            assert self.bundle is not None
            thing = self.reconnect_client_id
            # Proof: a QoS 1 publish that only the new identity may make; PUBACK is the answer.
            self._emit(ConnectMqtt(Identity.PROVISIONED, thing, tag, self.bundle),
                       Publish(_shadow_topic(thing), self._proof(), 1), Disconnect())
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


def _digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _shadow_topic(thing: str) -> str:
    return f"$aws/things/{thing}/shadow/update"


