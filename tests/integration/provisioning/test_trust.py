"""An issued identity is never lost or shared: the real ``nrfprov provision`` against the simulator and
the stand-in, killed and rerun, fed replies that are not its own, asked to provision twice.

Each test reproduces one finding of the reliability review (docs/reliability.md) and fails on the
code before it: RegisterThing in doubt, replies that are not this run's, reply lost after the request,
a rerun that silently re-provisions.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from paho.mqtt.enums import CallbackAPIVersion

from fixtures.crashrig import TAG, Device, Lab, Scenario, _cert_id, audit, finish_as_user, kill, open_lab

pytestmark = pytest.mark.integration

SPLIT = Scenario("split", "offload")
COMBINED = Scenario("combined", "native")
CSR = Scenario("csr", "offload")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = open_lab(tmp_path_factory.mktemp("trust"))
    try:
        yield lab
    finally:
        lab.close()
        lab.cloud.stop()


def _kill_when(lab: Lab, dev: Device, which: str, op: str) -> None:
    """Start a run and SIGKILL it when the stand-in reaches ``which`` (before/after_handle) for ``op``."""
    holder: dict[str, Any] = {}

    def hook(seen: str) -> None:
        if seen == op and "proc" in holder:
            kill(holder.pop("proc"))

    setattr(lab.cloud, which, hook)
    try:
        proc = dev.start()
        holder["proc"] = proc
        first = dev.wait(proc)
    finally:
        setattr(lab.cloud, which, None)
    assert first.returncode == -9, first.stderr


@pytest.mark.parametrize("sc", [COMBINED, CSR], ids=["combined-native", "csr-offload"])
def test_register_thing_in_doubt_is_settled_by_the_new_identity(lab: Lab, sc: Scenario) -> None:
    """Killed after RegisterThing was processed, before its reply reached the journal: --resume tries
    the new identity, proves the registration and finishes with the same certificate."""
    dev = lab.device(sc, f"doubt-{sc.flow}")
    before = {c.certificate_id for c in lab.cloud.certificates()}
    _kill_when(lab, dev, "after_handle", "register")
    counts = lab.cloud.request_counts()
    journal = json.loads((dev.state / "provisioning.json").read_text())
    assert journal["bundle"]["thing_name"] == "" and journal["requests"][-1]["operation"] == "register"

    done = dev.run("--resume")
    assert done.returncode == 0, done.stderr
    steps = {s["step"]: s["detail"] for s in done.summary["steps"]}
    assert "registered earlier" in steps["try new identity"]
    assert lab.cloud.request_counts() == counts  # nothing asked of the cloud again
    keys, tokens = lab.cloud.secrets()
    a = audit(dev, lab.cloud, before, keys, tokens)
    assert a.ok and a.in_modem == journal["bundle"]["certificate_id"], a
    assert done.summary["thing_name"] == dev.sim.identity.imei


def _retained(lab: Lab, topic_payloads: list[tuple[str, bytes]]) -> None:
    """Publish retained messages with the stand-in's privileged identity (a stale reply on the topics)."""
    c = lab.cloud
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="stale-publisher", protocol=mqtt.MQTTv5)
    ctx = ssl.create_default_context(cafile=str(c.ca_path))
    ctx.load_cert_chain(str(c.paths.responder_cert), str(c.paths.responder_key))
    client.tls_set_context(ctx)
    client.connect(c.host, c.port)
    client.loop_start()
    try:
        for topic, payload in topic_payloads:
            client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_reply_that_was_there_before_the_request_is_ignored(lab: Lab, tmp_path: Path) -> None:
    """A stale, valid key+cert pair retained on the device's split reply topics arrives on SUBSCRIBE,
    before the request is published: it must not become this device's identity."""
    client_id = "dev-stale-reply"
    cert_path, key_path = lab.cloud.issue_identity("someone-else", key_type="ec")
    base = f"certificate/{client_id}/create/accepted"
    _retained(lab, [(f"{base}/key", key_path.read_bytes()), (f"{base}/cert", cert_path.read_bytes())])
    try:
        dev = lab.device(SPLIT, "stale", client_id=client_id)
        out = dev.run()
        assert out.returncode == 0, out.stderr
        assert "ignored a message on" in out.stderr
        held = _cert_id(dev.sim.stored(TAG)[1])
        assert held == out.summary["certificate_id"] != _cert_id(cert_path.read_text())
    finally:
        _retained(lab, [(f"{base}/key", b""), (f"{base}/cert", b"")])  # an empty retained message clears it


def _answer_twice(topic: str, payload: bytes, handle: Any) -> Any:
    """The stand-in misbehaving: one CreateKeysAndCertificate request answered by two certificates."""
    reply = handle(topic, payload)
    if reply is not None and topic.startswith("$aws/certificates/create/"):
        second = handle(topic, payload)
        return type(reply)(reply.messages + second.messages, sequential=True)
    return reply


def test_a_second_accepted_reply_is_a_conflict_and_nothing_is_used(lab: Lab) -> None:
    dev = lab.device(COMBINED, "double-accept")
    lab.cloud.wrap_handle = _answer_twice
    try:
        out = dev.run()
    finally:
        lab.cloud.wrap_handle = None
    assert out.returncode == 6, out.stderr
    assert "ReplyConflict" in out.summary["error_type"]
    issued = [c.certificate_id for c in lab.cloud.certificates()][-2:]
    assert all(cid in out.stderr for cid in issued)  # both named, for revocation
    assert dev.sim.stored(TAG) == {}  # nothing written
    journal = json.loads((dev.state / "provisioning.json").read_text())
    assert journal["bundle"]["private_key_pem"] and journal["conflict"]  # the first kept, never used
    again = dev.run("--resume")
    assert again.returncode == 2 and "reply conflict" in again.stderr


def test_requested_reply_lost_is_named_and_a_plain_run_finishes(lab: Lab) -> None:
    """Killed when the certificate was issued but before its reply left the cloud: --resume says what
    was probably issued and how to find it, the plain run it advises finishes and keeps the note."""
    dev = lab.device(SPLIT, "reply-lost")
    before = {c.certificate_id for c in lab.cloud.certificates()}
    _kill_when(lab, dev, "after_handle", "split")
    resumed = dev.run("--resume")
    assert resumed.returncode == 2
    client_id = f"nrf-{dev.sim.identity.imei}"
    assert f"probably issued an ACTIVE certificate for thing {client_id}" in resumed.stderr
    assert f"aws iot list-thing-principals --thing-name {client_id}" in resumed.stderr
    assert "run without --resume" in resumed.stderr
    # The deployed handler issues one active certificate per thing: the rerun is refused until an
    # operator allows another, as the messages say; then it finishes.
    assert f"nrfprov aws reprovision {client_id}" in resumed.stderr
    final = finish_as_user(dev, operator=lambda thing: lab.cloud.allow_reprovision(thing))
    assert final.returncode == 0 and final.summary["orphans"][0]["thing_name"] == client_id
    assert dev.operator_steps == 1
    keys, tokens = lab.cloud.secrets()
    a = audit(dev, lab.cloud, before, keys, tokens)
    assert a.ok and len(a.key_nowhere) == 1, a  # the lost one, named


def test_a_rerun_on_a_provisioned_modem_stops_and_force_replaces_naming_the_old(lab: Lab) -> None:
    dev = lab.device(COMBINED, "rerun")
    first = dev.run()
    assert first.returncode == 0, first.stderr
    old_id, thing = first.summary["certificate_id"], first.summary["thing_name"]
    counts = lab.cloud.request_counts()

    again = dev.run()
    assert again.returncode == 2 and again.summary["error_type"] == "AlreadyProvisioned"
    assert old_id in again.stderr and f"thing {thing}" in again.stderr and "--force" in again.stderr
    assert lab.cloud.request_counts() == counts  # nothing requested
    assert _cert_id(dev.sim.stored(TAG)[1]) == old_id

    # Without the journal, any client certificate in the tag stops the run; its id read from the modem.
    (dev.state / "provisioning.json").rename(dev.state / "moved-away.json")
    orphaned = dev.run()
    assert orphaned.returncode == 2 and old_id in orphaned.stderr
    (dev.state / "moved-away.json").unlink()

    assert f"nrfprov aws reprovision {thing}" in again.stderr
    lab.cloud.allow_reprovision(thing)  # the operator's permission the deployed handler requires
    forced = dev.run("--force")
    assert forced.returncode == 0, forced.stderr
    assert forced.summary["replaced"]["certificate_id"] == old_id and old_id in forced.stderr
    assert _cert_id(dev.sim.stored(TAG)[1]) == forced.summary["certificate_id"] != old_id


def test_csr_a_certificate_for_another_key_is_not_this_modems(lab: Lab) -> None:
    """Before the real reply, the stand-in sends an accepted reply whose certificate carries another
    key than the modem's CSR: provably another device's, it is ignored and the run takes its own."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509 import CertificateSigningRequestBuilder, Name, NameAttribute
    from cryptography.x509.oid import NameOID

    other = CertificateSigningRequestBuilder().subject_name(Name([NameAttribute(NameOID.COMMON_NAME, "other")])) \
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def foreign_first(topic: str, payload: bytes, handle: Any) -> Any:
        reply = handle(topic, payload)
        if reply is not None and topic.startswith("$aws/certificates/create-from-csr/json"):
            foreign = handle(topic, json.dumps({"certificateSigningRequest": other.decode()}).encode())
            return type(reply)(foreign.messages + reply.messages, sequential=True)
        return reply

    dev = lab.device(CSR, "csr-foreign")
    lab.cloud.wrap_handle = foreign_first
    try:
        out = dev.run()
    finally:
        lab.cloud.wrap_handle = None
    assert out.returncode == 0, out.stderr
    assert "a certificate for another key than this modem's CSR" in out.stderr
    stored = dev.sim.stored(TAG)
    key = serialization.load_pem_private_key(stored[2].encode(), password=None)
    cert = x509.load_pem_x509_certificate(stored[1].encode())
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(serialization.Encoding.DER, spki) == \
        cert.public_key().public_bytes(serialization.Encoding.DER, spki)
