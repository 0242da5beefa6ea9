"""The chain as a table: every flow driven through the sans-IO machine by a scripted peer.

The peer below answers each effect the way a modem / broker would; it has no knowledge of the
machine's internals, so the assertions are on the effects the machine asks for, in order.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator

import cbor2
import pytest
from provpki import NOW, Pki

from nrfprov.errors import (
    CloudRejected,
    CredentialBundleError,
    CredentialVerifyError,
    ReplyConflict,
    ResponseTimeout,
    ThingNameUnknown,
)
from nrfprov.provisioning import machine as m
from nrfprov.provisioning.bundle import TYPE_CA, TYPE_CERT, TYPE_KEY, CredentialBundle, sha256_hex

Reply = Callable[[m.Effect], list[tuple[str, bytes]]]


class Peer:
    """Answers effects; ``on_publish`` returns the messages the cloud sends back for a publish."""

    def __init__(self, on_publish: Reply, *, csr_der: bytes = b"") -> None:
        self.on_publish = on_publish
        self.csr_der = csr_der
        self.log: list[m.Effect] = []
        self.inbox: list[tuple[str, bytes]] = []
        self.now = 0.0
        self.sha_override: dict[int, str] = {}

    def answer(self, eff: m.Effect) -> m.Event | None:
        self.log.append(eff)
        match eff:
            case m.SetFunctionalMode(mode=mode):
                return m.FunctionalModeSet(mode)
            case m.WaitForRegistration():
                return m.LteRegistered()
            case m.DeleteCredential(sec_tag=tag, cred_type=t):
                return m.CredentialDeleted(tag, t)
            case m.GenerateKey():
                return m.KeyGenerated(self.csr_der)
            case m.WriteCredential(sec_tag=tag, cred_type=t, content=c):
                return m.CredentialWritten(tag, t, self.sha_override.get(t, sha256_hex(c)))
            case m.ConnectMqtt():
                return m.Connected()
            case m.Subscribe():
                return m.Subscribed()
            case m.Publish():
                self.inbox += self.on_publish(eff)
                return m.Published()
            case m.Disconnect():
                return m.Disconnected()
            case m.ClearSubscriptions():
                return m.SubscriptionsCleared()
            case m.SaveReply():
                return m.ReplySaved()
        return None  # notes


def run(machine: m.ProvisioningMachine, peer: Peer, *, resume: bool = False, max_wait: float = 1e9) -> None:
    machine.receive_event((m.Resumed if resume else m.Started)(NOW), peer.now)
    while True:
        eff = machine.next_effect()
        if eff is not None:
            ev = peer.answer(eff)
            if ev is not None:
                machine.receive_event(ev, peer.now)
            continue
        if machine.finished:
            return
        if peer.inbox:
            topic, payload = peer.inbox.pop(0)
            machine.receive_event(m.MessageReceived(topic, payload, NOW), peer.now)
            continue
        deadline = machine.next_deadline()
        assert deadline is not None, f"machine waits forever in {machine.state}"
        peer.now = deadline
        machine.handle_timer(peer.now)


def plan(pki: Pki, **kw: object) -> m.Plan:
    base: dict[str, object] = {"flow": "split", "client_id": "dev-1", "provisioned_sec_tag": 50,
                               "ca_pem": pki.ca_pem, "claim_sec_tag": 43}
    base.update(kw)
    return m.Plan(**base)  # type: ignore[arg-type]


def split_cloud(pki: Pki, order: str = "key-cert", extra: Iterator[tuple[str, bytes]] | None = None) -> Reply:
    def reply(eff: m.Effect) -> list[tuple[str, bytes]]:
        assert isinstance(eff, m.Publish)
        if eff.topic.startswith("certificate/"):
            cert, key = pki.issue("dev-1")
            parts = {"key": (eff.topic + "/accepted/key", key.encode()),
                     "cert": (eff.topic + "/accepted/cert", cert.encode())}
            return [*(extra or ()), *(parts[p] for p in order.split("-"))]
        return []
    return reply


def kinds(log: list[m.Effect]) -> list[str]:
    return [type(e).__name__ for e in log]


def test_split_chain_is_the_samples_twelve_steps(pki: Pki) -> None:
    machine = m.ProvisioningMachine(plan(pki))
    peer = Peer(split_cloud(pki))
    run(machine, peer)
    assert machine.state is m.State.DONE
    commands = [e for e in peer.log if e.completed_by is not None and not isinstance(e, m.SaveReply)]
    assert kinds(commands) == [
        "SetFunctionalMode", "WaitForRegistration",  # 1 LTE
        "ConnectMqtt",  # 2 claim
        "Subscribe",  # 3
        "Publish",  # 4 empty request
        "Disconnect",  # 7
        "SetFunctionalMode",  # 8 CFUN=4
        "DeleteCredential", "DeleteCredential", "DeleteCredential",
        "WriteCredential", "WriteCredential", "WriteCredential",  # 9 CA, cert, key
        "ClearSubscriptions",  # 10
        "SetFunctionalMode", "WaitForRegistration",  # 11
        "ConnectMqtt", "Publish", "Disconnect",  # 12 + proof
    ]
    sub = commands[3]
    assert isinstance(sub, m.Subscribe) and sub.topics[0] == "certificate/dev-1/create/accepted/+"
    req = commands[4]
    assert isinstance(req, m.Publish) and (req.topic, req.payload) == ("certificate/dev-1/create", b"")
    assert [c.mode for c in commands if isinstance(c, m.SetFunctionalMode)] == [1, 4, 1]
    writes = [c for c in commands if isinstance(c, m.WriteCredential)]
    assert [(w.sec_tag, w.cred_type) for w in writes] == [(50, TYPE_CA), (50, TYPE_CERT), (50, TYPE_KEY)]
    reconnect = commands[-3]
    assert isinstance(reconnect, m.ConnectMqtt)
    assert (reconnect.identity, reconnect.client_id, reconnect.sec_tag) == (m.Identity.PROVISIONED, "dev-1", 50)
    proof = commands[-2]
    assert isinstance(proof, m.Publish) and proof.topic == "$aws/things/dev-1/shadow/update" and proof.qos == 1


def test_bundle_is_saved_before_anything_touches_the_modem_and_erased_only_after_proof(pki: Pki) -> None:
    machine = m.ProvisioningMachine(plan(pki))
    peer = Peer(split_cloud(pki, "cert-key"))
    run(machine, peer)
    names = kinds(peer.log)
    save = names.index("SaveBundle")
    assert save < names.index("Disconnect") < names.index("DeleteCredential")
    erase = names.index("EraseKeyMaterial")
    last_write = max(i for i, n in enumerate(names) if n == "WriteCredential")
    proof = max(i for i, n in enumerate(names) if n == "Publish")
    assert last_write < proof < erase
    finished = [e.state for e in peer.log if isinstance(e, m.StepFinished)]
    assert finished == [s for s in machine.steps if s is not m.State.IDLE]


def test_split_tolerates_duplicates_and_a_stale_part(pki: Pki) -> None:
    _stale_cert, stale_key = pki.issue("dev-1")
    extra = iter([("certificate/dev-1/create/accepted/key", stale_key.encode()),
                  ("certificate/dev-1/create/accepted/unrelated", b"x")])
    cloud = split_cloud(pki, "cert-cert-key-key", extra)
    machine = m.ProvisioningMachine(plan(pki))
    run(machine, Peer(cloud))
    assert machine.state is m.State.DONE
    assert machine.bundle is not None and machine.bundle.private_key_pem != stale_key.strip()


def test_split_times_out_cleanly_naming_the_missing_part(pki: Pki) -> None:
    def only_cert(eff: m.Effect) -> list[tuple[str, bytes]]:
        assert isinstance(eff, m.Publish)
        return [(eff.topic + "/accepted/cert", pki.issue()[0].encode())] if eff.topic.startswith("cert") else []

    machine = m.ProvisioningMachine(plan(pki, response_timeout=5))
    peer = Peer(only_cert)
    with pytest.raises(ResponseTimeout, match="got the certificate but no private key"):
        run(machine, peer)
    assert machine.state is m.State.FAILED
    assert peer.now == 5.0  # the deadline is relative to the PUBACK, not earlier
    assert not any(isinstance(e, m.WriteCredential | m.SaveBundle) for e in peer.log)
    with pytest.raises(m.ProvisioningStateError):
        machine.receive_event(m.Disconnected(), 6.0)


def test_illegal_event_kills_the_machine(pki: Pki) -> None:
    machine = m.ProvisioningMachine(plan(pki))
    machine.receive_event(m.Started(NOW), 0)
    with pytest.raises(m.ProvisioningStateError, match="not accepted in step ATTACH_LTE"):
        machine.receive_event(m.Connected(), 0)
    assert machine.state is m.State.FAILED and machine.next_effect() is None
    with pytest.raises(m.ProvisioningStateError, match="failed earlier"):
        machine.receive_event(m.FunctionalModeSet(1), 0)


def test_out_of_order_completion_is_refused(pki: Pki) -> None:
    machine = m.ProvisioningMachine(plan(pki))
    machine.receive_event(m.Started(NOW), 0)
    with pytest.raises(m.ProvisioningStateError, match="expected FunctionalModeSet"):
        machine.receive_event(m.LteRegistered(), 0)


def test_starting_twice_or_resuming_without_a_bundle_is_refused(pki: Pki) -> None:
    with pytest.raises(m.ProvisioningStateError):
        m.ProvisioningMachine(plan(pki)).receive_event(m.Resumed(NOW), 0)


def test_write_verify_mismatch_is_a_credential_error(pki: Pki) -> None:
    peer = Peer(split_cloud(pki))
    peer.sha_override[TYPE_CERT] = "00" * 32
    machine = m.ProvisioningMachine(plan(pki))
    with pytest.raises(CredentialVerifyError) as info:
        run(machine, peer)
    assert info.value.cred_type == TYPE_CERT and info.value.sec_tag == 50
    assert not any(isinstance(e, m.EraseKeyMaterial) for e in peer.log)


def test_mismatched_pair_never_completes(pki: Pki) -> None:
    def mismatched(eff: m.Effect) -> list[tuple[str, bytes]]:
        assert isinstance(eff, m.Publish)
        if not eff.topic.startswith("cert"):
            return []
        return [(eff.topic + "/accepted/key", pki.issue()[1].encode()),
                (eff.topic + "/accepted/cert", pki.issue()[0].encode())]

    with pytest.raises(ResponseTimeout, match="no matching pair"):
        run(m.ProvisioningMachine(plan(pki, response_timeout=1)), Peer(mismatched))


def _combined_cloud(pki: Pki, fmt: str, *, thing: str = "SN-42", reject: bool = False,
                    seen: list[dict[str, object]] | None = None) -> Reply:
    enc: Callable[[object], bytes] = (lambda d: json.dumps(d).encode()) if fmt == "json" else cbor2.dumps
    dec: Callable[[bytes], dict[str, object]] = json.loads if fmt == "json" else cbor2.loads

    def reply(eff: m.Effect) -> list[tuple[str, bytes]]:
        assert isinstance(eff, m.Publish)
        if "/shadow/" in eff.topic:
            return []  # the reconnect proof: always JSON, answered by a PUBACK only
        doc = dec(eff.payload) if eff.payload else {}
        if seen is not None:
            seen.append({"topic": eff.topic, **doc})
        if eff.topic == f"$aws/certificates/create/{fmt}":
            if reject:
                return [(eff.topic + "/rejected", enc({"statusCode": 403, "errorCode": "Forbidden",
                                                       "errorMessage": "claim revoked"}))]
            cert, key = pki.issue()
            return [(eff.topic + "/accepted", enc({"certificateId": "ab" * 32, "certificatePem": cert,
                                                   "privateKey": key, "certificateOwnershipToken": "tok-1"}))]
        if eff.topic == f"$aws/provisioning-templates/nrfprov/provision/{fmt}":
            return [(eff.topic + "/accepted", enc({"deviceConfiguration": {}, "thingName": thing}))]
        return []
    return reply


@pytest.mark.parametrize("fmt", ["json", "cbor"])
def test_combined_with_register_thing_reconnects_as_the_thing(pki: Pki, fmt: str) -> None:
    seen: list[dict[str, object]] = []
    p = plan(pki, flow="combined", payload_format=fmt, template="nrfprov", parameters={"SerialNumber": "42"})
    machine = m.ProvisioningMachine(p)
    peer = Peer(_combined_cloud(pki, fmt, seen=seen))
    run(machine, peer)
    assert machine.state is m.State.DONE
    sub = next(e for e in peer.log if isinstance(e, m.Subscribe))
    assert sub.topics == (f"$aws/certificates/create/{fmt}/accepted", f"$aws/certificates/create/{fmt}/rejected",
                          f"$aws/provisioning-templates/nrfprov/provision/{fmt}/accepted",
                          f"$aws/provisioning-templates/nrfprov/provision/{fmt}/rejected")
    assert seen[1] == {"topic": f"$aws/provisioning-templates/nrfprov/provision/{fmt}",
                       "certificateOwnershipToken": "tok-1", "parameters": {"SerialNumber": "42"}}
    reconnect = [e for e in peer.log if isinstance(e, m.ConnectMqtt)][-1]
    assert reconnect.client_id == "SN-42" and reconnect.bundle is not None
    assert reconnect.bundle.thing_name == "SN-42" and reconnect.bundle.certificate_id == "ab" * 32
    saves = [e.bundle.thing_name for e in peer.log if isinstance(e, m.SaveBundle)]
    assert saves == ["", "SN-42"]


def test_combined_rejected_is_typed(pki: Pki) -> None:
    machine = m.ProvisioningMachine(plan(pki, flow="combined"))
    with pytest.raises(CloudRejected) as info:
        run(machine, Peer(_combined_cloud(pki, "json", reject=True)))
    assert (info.value.status_code, info.value.error_code) == (403, "Forbidden")


def test_combined_without_template_keeps_the_client_id(pki: Pki) -> None:
    machine = m.ProvisioningMachine(plan(pki, flow="combined"))
    run(machine, Peer(_combined_cloud(pki, "json")))
    assert machine.reconnect_client_id == "dev-1"
    assert m.State.REQUEST_REGISTRATION not in machine.steps


def test_reply_overtaking_the_puback_is_buffered(pki: Pki) -> None:
    p = plan(pki, flow="combined")
    machine = m.ProvisioningMachine(p)
    cloud = _combined_cloud(pki, "json")
    machine.receive_event(m.Started(NOW), 0)
    while True:
        eff = machine.next_effect()
        assert eff is not None
        if isinstance(eff, m.Publish):
            break
        ev = Peer(cloud).answer(eff)
        if ev:
            machine.receive_event(ev, 0)
    (topic, payload), = cloud(eff)
    machine.receive_event(m.MessageReceived(topic, payload, NOW), 0)  # before the PUBACK
    machine.receive_event(m.Published(), 0)
    save = machine.next_effect()
    while isinstance(save, m.StepFinished):
        save = machine.next_effect()
    # The raw reply goes to the journal before it is parsed.
    assert isinstance(save, m.SaveReply) and save.payload == payload and machine.state is m.State.AWAIT_CREDENTIALS
    machine.receive_event(m.ReplySaved(), 0)
    assert machine.state is m.State.DISCONNECT_CLAIM


@pytest.mark.parametrize("fmt", ["json", "cbor"])
def test_csr_flow_generates_in_the_modem_and_never_deletes_its_key(pki: Pki, fmt: str) -> None:
    from cryptography import x509

    der, _ = pki.csr()
    enc: Callable[[object], bytes] = (lambda d: json.dumps(d).encode()) if fmt == "json" else cbor2.dumps

    def cloud(eff: m.Effect) -> list[tuple[str, bytes]]:
        assert isinstance(eff, m.Publish)
        if "create-from-csr" not in eff.topic:
            return []
        doc = json.loads(eff.payload) if fmt == "json" else cbor2.loads(eff.payload)
        csr = x509.load_pem_x509_csr(doc["certificateSigningRequest"].encode())
        cert, _ = pki.issue(public_key=csr.public_key())
        return [(eff.topic + "/accepted", enc({"certificateId": "cd" * 32, "certificatePem": cert,
                                               "certificateOwnershipToken": "tok"}))]

    machine = m.ProvisioningMachine(plan(pki, flow="csr", payload_format=fmt))
    peer = Peer(cloud, csr_der=der)
    run(machine, peer)
    commands = [e for e in peer.log if e.completed_by is not None]
    assert kinds(commands[:5]) == ["SetFunctionalMode", "DeleteCredential", "DeleteCredential",
                                   "DeleteCredential", "GenerateKey"]
    after_keygen = commands[5:]
    assert not any(isinstance(e, m.DeleteCredential) and e.cred_type == TYPE_KEY for e in after_keygen)
    assert [e.cred_type for e in after_keygen if isinstance(e, m.WriteCredential)] == [TYPE_CA, TYPE_CERT]
    reconnect = [e for e in commands if isinstance(e, m.ConnectMqtt)][-1]
    assert reconnect.bundle is not None and reconnect.bundle.private_key_pem is None


def test_csr_certificate_for_another_key_is_ignored(pki: Pki) -> None:
    der, _ = pki.csr()

    def cloud(eff: m.Effect) -> list[tuple[str, bytes]]:
        assert isinstance(eff, m.Publish)
        cert, _ = pki.issue()  # wrong key: not the CSR's
        return [(eff.topic + "/accepted", json.dumps({"certificateId": "x", "certificatePem": cert,
                                                      "certificateOwnershipToken": "t"}).encode())]

    peer = Peer(cloud, csr_der=der)
    # Provably not this modem's reply: ignored (said so), and the run waits for its own until the timeout.
    with pytest.raises(ResponseTimeout):
        run(m.ProvisioningMachine(plan(pki, flow="csr")), peer)
    assert not any(isinstance(e, m.SaveBundle) for e in peer.log)
    ignored = [e for e in peer.log if isinstance(e, m.MessageIgnored)]
    assert len(ignored) == 1 and "another key" in ignored[0].reason


def _issued_bundle(pki: Pki, thing: str = "") -> CredentialBundle:
    cert, key = pki.issue()
    return CredentialBundle(cert, pki.ca_pem, key, "ef" * 32, "tok", thing).normalized()


def test_resume_goes_straight_to_the_write_without_a_request(pki: Pki) -> None:
    peer = Peer(lambda eff: pytest.fail("resume must not publish a request"))  # type: ignore[arg-type, return-value]
    peer.on_publish = lambda eff: []
    machine = m.ProvisioningMachine(plan(pki, resume=_issued_bundle(pki)))
    run(machine, peer, resume=True)
    assert machine.state is m.State.DONE
    publishes = [e for e in peer.log if isinstance(e, m.Publish)]
    assert [p.topic for p in publishes] == ["$aws/things/dev-1/shadow/update"]
    assert kinds(peer.log)[0] == "SetFunctionalMode"


def test_resume_before_register_thing_registers_but_does_not_request(pki: Pki) -> None:
    seen: list[dict[str, object]] = []
    p = plan(pki, flow="combined", template="nrfprov", resume=_issued_bundle(pki))
    machine = m.ProvisioningMachine(p)
    run(machine, Peer(_combined_cloud(pki, "json", seen=seen)), resume=True)
    assert [s["topic"] for s in seen] == ["$aws/provisioning-templates/nrfprov/provision/json"]
    assert machine.reconnect_client_id == "SN-42"


def test_resume_rechecks_an_aged_bundle(pki: Pki) -> None:
    cert, key = pki.issue(not_after=NOW - dt.timedelta(minutes=1))
    old = CredentialBundle(cert, pki.ca_pem, key, "id")
    peer = Peer(lambda eff: [])
    with pytest.raises(CredentialBundleError, match="expired"):
        run(m.ProvisioningMachine(plan(pki, resume=old)), peer, resume=True)
    assert not any(isinstance(e, m.WriteCredential | m.DeleteCredential) for e in peer.log)


@pytest.mark.parametrize("flow", ["split", "combined", "csr"])
@pytest.mark.parametrize("template", ["", "nrfprov"])
@pytest.mark.parametrize("resume", [False, True])
def test_every_plan_is_allowed_by_the_table(pki: Pki, flow: str, template: str, resume: bool) -> None:
    p = plan(pki, flow=flow, template=template, resume=_issued_bundle(pki) if resume else None)
    steps = p.steps()
    m.check_plan(steps)
    assert steps[0] is m.State.IDLE and steps[-1] is m.State.DONE
    assert steps.index(m.State.WRITE_CREDENTIALS) < steps.index(m.State.RECONNECT)


def test_table_refuses_a_shortcut() -> None:
    with pytest.raises(m.ProvisioningStateError):
        m.check_plan([m.State.IDLE, m.State.WRITE_CREDENTIALS])
    assert all(state in m._TRANSITIONS for state in m.State)


# --- replies that are not this run's ----------------------------------------------------------------


def _combined_with(pki: Pki, extra_after_reply: Callable[[], list[tuple[str, bytes]]]) -> Reply:
    base = _combined_cloud(pki, "json")

    def reply(eff: m.Effect) -> list[tuple[str, bytes]]:
        out = base(eff)
        assert isinstance(eff, m.Publish)
        if eff.topic == "$aws/certificates/create/json":
            out = out + extra_after_reply()
        return out
    return reply


def test_a_second_different_accepted_reply_is_a_conflict_before_anything_is_written(pki: Pki) -> None:
    def another() -> list[tuple[str, bytes]]:
        cert, key = pki.issue()
        return [("$aws/certificates/create/json/accepted", json.dumps({
            "certificateId": "99" * 32, "certificatePem": cert, "privateKey": key,
            "certificateOwnershipToken": "tok-2"}).encode())]

    peer = Peer(_combined_with(pki, another))
    machine = m.ProvisioningMachine(plan(pki, flow="combined", template="nrfprov"))
    with pytest.raises(ReplyConflict) as info:
        run(machine, peer)
    assert info.value.certificate_ids == ("ab" * 32, "99" * 32)
    names = kinds(peer.log)
    assert "SaveBundle" in names  # the first is journaled and kept ...
    assert not any(isinstance(e, m.WriteCredential | m.SetFunctionalMode) and getattr(e, "mode", 4) == 4
                   for e in peer.log[names.index("SaveBundle"):])  # ... and nothing reaches the modem


def test_a_repeated_delivery_of_the_same_reply_is_harmless(pki: Pki) -> None:
    sent: list[tuple[str, bytes]] = []
    base = _combined_cloud(pki, "json")

    def cloud(eff: m.Effect) -> list[tuple[str, bytes]]:
        out = base(eff)
        assert isinstance(eff, m.Publish)
        if eff.topic == "$aws/certificates/create/json":
            sent.extend(out)
            return out + out  # QoS 1 redelivery: the very same message twice
        return out

    peer = Peer(cloud)
    machine = m.ProvisioningMachine(plan(pki, flow="combined", template="nrfprov"))
    run(machine, peer)
    assert machine.state is m.State.DONE
    assert any(isinstance(e, m.MessageIgnored) and "repeated" in e.reason for e in peer.log)
    assert sum(isinstance(e, m.SaveReply) for e in peer.log) == 1


def test_a_retained_message_is_not_a_reply(pki: Pki) -> None:
    machine = m.ProvisioningMachine(plan(pki))
    peer = Peer(split_cloud(pki))
    stale_cert, stale_key = pki.issue("dev-1")
    machine.receive_event(m.Started(NOW), 0)
    while not isinstance(eff := machine.next_effect(), m.Publish):
        assert eff is not None
        ev = peer.answer(eff)
        if ev is not None:
            machine.receive_event(ev, 0)
    assert eff.discard_queued == ("certificate/dev-1/create/accepted/+", "certificate/dev-1/create/rejected")
    peer.answer(eff)
    machine.receive_event(m.Published(), 0)
    for topic, payload in (("certificate/dev-1/create/accepted/key", stale_key.encode()),
                           ("certificate/dev-1/create/accepted/cert", stale_cert.encode())):
        machine.receive_event(m.MessageReceived(topic, payload, NOW, retained=True), 0)
    pending = []
    while (e := machine.next_effect()) is not None:
        pending.append(e)
    ignored = [e for e in pending if isinstance(e, m.MessageIgnored)]
    assert len(ignored) == 2 and not any(isinstance(e, m.SaveReply) for e in pending)
    assert machine.state is m.State.AWAIT_CREDENTIALS
    run_rest(machine, peer)
    assert machine.bundle is not None and machine.bundle.private_key_pem != stale_key.strip() + "\n"


def run_rest(machine: m.ProvisioningMachine, peer: Peer) -> None:
    while True:
        eff = machine.next_effect()
        if eff is not None:
            ev = peer.answer(eff)
            if ev is not None:
                machine.receive_event(ev, peer.now)
            continue
        if machine.finished:
            return
        topic, payload = peer.inbox.pop(0)
        machine.receive_event(m.MessageReceived(topic, payload, NOW), peer.now)


def test_every_request_is_journaled_as_an_intent_before_it_is_published(pki: Pki) -> None:
    peer = Peer(_combined_cloud(pki, "json"))
    run(m.ProvisioningMachine(plan(pki, flow="combined", template="nrfprov", parameters={"SerialNumber": "7"})),
        peer)
    intents = [(i, e) for i, e in enumerate(peer.log) if isinstance(e, m.SaveIntent)]
    assert [e.intent.operation for _, e in intents] == ["create", "register"]
    for i, e in intents:
        follower = peer.log[i + 1]
        assert isinstance(follower, m.Publish) and follower.topic == e.intent.topic
    assert intents[1][1].intent.parameters == (("SerialNumber", "7"),)
    assert "tok-1" not in repr(peer.log)  # the token is in no effect's repr (a -vv dump)


# --- RegisterThing in doubt -------------------------------------------------------------------------


class ProbePeer(Peer):
    """A peer whose cloud knows whether the certificate is active and under which thing."""

    def __init__(self, on_publish: Reply, *, active_thing: str | None) -> None:
        super().__init__(on_publish)
        self.active_thing = active_thing
        self.probed: list[str] = []

    def answer(self, eff: m.Effect) -> m.Event | None:
        if isinstance(eff, m.ConnectMqtt) and eff.probe:
            self.log.append(eff)
            self.probed.append(eff.client_id)
            if self.active_thing is None:
                return m.ProbeFailed("connect", "TLS handshake refused: certificate not active")
            return m.Connected()
        if isinstance(eff, m.Publish) and eff.probe:
            self.log.append(eff)
            ok = self.active_thing is not None and eff.topic == f"$aws/things/{self.active_thing}/shadow/update"
            return m.Published() if ok else m.ProbeFailed("publish", "PUBACK 0x87 not authorized")
        return super().answer(eff)


def _doubt_plan(pki: Pki, **kw: object) -> m.Plan:
    return plan(pki, flow="combined", template="nrfprov", resume=_issued_bundle(pki), register_in_doubt=True,
                thing_candidates=("dev-1", "SN-42"), **kw)


def test_doubt_settled_by_the_new_identity_when_registration_happened(pki: Pki) -> None:
    seen: list[dict[str, object]] = []
    peer = ProbePeer(_combined_cloud(pki, "json", seen=seen), active_thing="SN-42")
    machine = m.ProvisioningMachine(_doubt_plan(pki))
    run(machine, peer, resume=True)
    assert machine.state is m.State.DONE and machine.reconnect_client_id == "SN-42"
    assert peer.probed == ["dev-1", "SN-42"] and seen == []  # proven without asking the cloud again
    names = kinds(peer.log)
    assert names.index("WriteCredential") < names.index("EraseKeyMaterial")
    saves = [e.bundle.thing_name for e in peer.log if isinstance(e, m.SaveBundle)]
    assert saves == ["SN-42"]


def test_doubt_settled_by_registering_when_the_certificate_is_not_active(pki: Pki) -> None:
    seen: list[dict[str, object]] = []
    peer = ProbePeer(_combined_cloud(pki, "json", seen=seen), active_thing=None)
    machine = m.ProvisioningMachine(_doubt_plan(pki))
    run(machine, peer, resume=True)
    assert machine.state is m.State.DONE and machine.reconnect_client_id == "SN-42"
    assert [s["topic"] for s in seen] == ["$aws/provisioning-templates/nrfprov/provision/json"]
    writes = [e for e in peer.log if isinstance(e, m.WriteCredential)]
    assert len(writes) == 3  # written once, before the probe; the registration reuses them


def test_doubt_with_an_active_certificate_under_an_unknown_thing_is_a_typed_error(pki: Pki) -> None:
    peer = ProbePeer(_combined_cloud(pki, "json"), active_thing="Prefix-SN-42")
    machine = m.ProvisioningMachine(_doubt_plan(pki))
    with pytest.raises(ThingNameUnknown) as info:
        run(machine, peer, resume=True)
    assert info.value.tried == ("dev-1", "SN-42") and "list-principal-things" in str(info.value)
    assert "--thing" in str(info.value)
    assert not any(isinstance(e, m.EraseKeyMaterial) for e in peer.log)


def test_response_timeout_says_what_is_true(pki: Pki) -> None:
    with pytest.raises(ResponseTimeout) as info:
        run(m.ProvisioningMachine(plan(pki, response_timeout=5)), Peer(lambda eff: []))
    text = str(info.value)
    assert "repeated safely" not in text
    assert "may have issued an ACTIVE certificate for thing dev-1" in text and "--resume" in text
