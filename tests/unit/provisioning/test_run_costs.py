"""What one provisioning run costs on the host: one private-key load, fsyncs only where they matter.

benchmarks/notes.md (finding 4) measured both as the largest host-side costs of a run: the full
RSA-2048 key check holds the GIL for ~42-165 ms per load, and every journal fsync is a disk flush.
These tests drive the real machine and the real journal (files in tmp_path, real ``os.fsync``); the
only additions are counters wrapped around the real calls.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from provpki import NOW, Pki

from nrfprov.errors import CredentialBundleError
from nrfprov.provisioning import bundle as bundle_mod
from nrfprov.provisioning import machine as m
from nrfprov.provisioning.bundle import CredentialBundle, check_bundle, sha256_hex
from nrfprov.provisioning.journal import Journal, JournalRecord


class CountingFsync:
    """Calls the real ``os.fsync`` and records whether it flushed a file or a directory."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, fd: int) -> None:
        self.calls.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        os.fsync(fd)

    def take(self) -> list[str]:
        out, self.calls = self.calls, []
        return out


@pytest.fixture
def key_loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts calls of the real ``_load_key`` (the full, validating load) made by ``check_bundle``."""
    calls: list[int] = []
    real = bundle_mod._load_key

    def counting(pem: str) -> object:
        calls.append(1)
        return real(pem)

    monkeypatch.setattr(bundle_mod, "_load_key", counting)
    return calls


def _combined_cloud(pki: Pki):  # type: ignore[no-untyped-def]
    def reply(eff: m.Publish) -> list[tuple[str, bytes]]:
        if eff.topic == "$aws/certificates/create/json":
            cert, key = pki.issue(rsa_key=True)  # the key AWS issues: RSA-2048, the costly check
            doc = {"certificateId": "cd" * 32, "certificatePem": cert, "privateKey": key,
                   "certificateOwnershipToken": "tok-9"}
            return [(eff.topic + "/accepted", json.dumps(doc).encode())]
        if eff.topic == "$aws/provisioning-templates/nrfprov/provision/json":
            return [(eff.topic + "/accepted", json.dumps({"deviceConfiguration": {}, "thingName": "SN-9"}).encode())]
        return []  # the reconnect proof: answered by its PUBACK only
    return reply


def test_combined_run_loads_the_key_once_and_saves_the_bundle_durably(
    pki: Pki, tmp_path: Path, key_loads: list[int]
) -> None:
    """The whole combined chain (receive check, RegisterThing copy of the bundle, pre-write check),
    with the journal effects executed the way the driver executes them."""
    fsync = CountingFsync()
    journal = Journal(tmp_path / "state", fsync=fsync)
    rec = journal.begin(JournalRecord(flow="combined", client_id="dev-9", provisioned_sec_tag=50))
    assert fsync.take() == []  # nothing issued yet: nothing to lose
    plan = m.Plan(flow="combined", client_id="dev-9", provisioned_sec_tag=50, ca_pem=pki.ca_pem,
                  claim_sec_tag=43, template="nrfprov", parameters={"SerialNumber": "9"})
    machine = m.ProvisioningMachine(plan)
    cloud = _combined_cloud(pki)
    inbox: list[tuple[str, bytes]] = []
    trail: list[tuple[str, list[str]]] = []  # (effect, fsyncs it caused)

    machine.receive_event(m.Started(NOW), 0.0)
    while True:  # the driver's loop: effects first, then finished, then wait for a message
        eff = machine.next_effect()
        if eff is None:
            if machine.finished:
                break
            topic, payload = inbox.pop(0)  # every request here is answered at once
            machine.receive_event(m.MessageReceived(topic, payload, NOW), 0.0)
            continue
        ev: m.Event | None = None
        if isinstance(eff, m.SaveIntent):
            journal.record_request(rec, {"operation": eff.intent.operation})
        elif isinstance(eff, m.SaveReply):
            assert journal.save_reply(rec, eff.topic, eff.payload)
            ev = m.ReplySaved()
        elif isinstance(eff, m.SaveBundle):
            journal.save_bundle(rec, eff.bundle)
        elif isinstance(eff, m.StepFinished):
            journal.record_step(rec, eff.state.value, eff.detail)
        elif isinstance(eff, m.EraseKeyMaterial):
            journal.erase_key_material(rec)
        elif isinstance(eff, m.SetFunctionalMode):
            ev = m.FunctionalModeSet(eff.mode)
        elif isinstance(eff, m.WaitForRegistration):
            ev = m.LteRegistered()
        elif isinstance(eff, m.DeleteCredential):
            ev = m.CredentialDeleted(eff.sec_tag, eff.cred_type)
        elif isinstance(eff, m.WriteCredential):
            ev = m.CredentialWritten(eff.sec_tag, eff.cred_type, sha256_hex(eff.content))
        elif isinstance(eff, m.ConnectMqtt):
            ev = m.Connected()
        elif isinstance(eff, m.Subscribe):
            ev = m.Subscribed()
        elif isinstance(eff, m.Publish):
            inbox += cloud(eff)
            ev = m.Published()
        elif isinstance(eff, m.Disconnect):
            ev = m.Disconnected()
        elif isinstance(eff, m.ClearSubscriptions):
            ev = m.SubscriptionsCleared()
        trail.append((type(eff).__name__, fsync.take()))
        if ev is not None:
            machine.receive_event(ev, 0.0)
    journal.finish(rec)
    trail.append(("finish", fsync.take()))

    assert machine.state is m.State.DONE
    # Checked on receipt and again before the write (on a copy carrying the thing name): loaded once.
    assert sum(key_loads) == 1
    names = [name for name, _ in trail]
    first_write = names.index("WriteCredential")
    saves = [i for i, name in enumerate(names) if name == "SaveBundle"]
    assert len(saves) == 2 and saves[0] < first_write
    for i in saves:  # durable: the file's data, then the rename in its directory
        assert trail[i][1] == ["file", "dir"]
    erase = names.index("EraseKeyMaterial")
    assert trail[erase][1] == ["file", "dir"]
    # The raw reply is durable before it is parsed; each request's intent before it is published.
    reply = names.index("SaveReply")
    assert reply < saves[0] and trail[reply][1] == ["file", "dir"]
    intents = [i for i, name in enumerate(names) if name == "SaveIntent"]
    assert len(intents) == 2 and all(trail[i][1] == ["file", "dir"] and names[i + 1] == "Publish" for i in intents)
    for i, (name, calls) in enumerate(trail):
        if name in ("SaveBundle", "EraseKeyMaterial", "SaveReply", "SaveIntent"):
            continue
        assert "dir" not in calls, f"{name} is a progress record and must not wait for a directory flush"
        # While the key is journaled its file is flushed before the rename (a torn rename must not
        # destroy the saved bundle); before the reply and after the erase nothing is flushed.
        assert calls == (["file"] if name == "StepFinished" and reply < i < erase else []), (i, name, calls)
    doc = json.loads(journal.path.read_text())
    assert doc["status"] == "done" and doc["key_erased"] and doc["bundle"]["private_key_pem"] is None
    assert stat.S_IMODE(os.stat(journal.path).st_mode) == 0o600


def test_remembered_key_still_has_to_match_the_certificate(pki: Pki, key_loads: list[int]) -> None:
    cert, key = pki.issue(rsa_key=True)
    good = CredentialBundle(cert, pki.ca_pem, key).normalized()
    check_bundle(good, sec_tag=50, now=NOW)
    check_bundle(replace(good, thing_name="SN-1"), sec_tag=50, now=NOW)
    assert sum(key_loads) == 1
    other_cert, _ = pki.issue("dev-2")
    with pytest.raises(CredentialBundleError, match="does not match"):
        check_bundle(replace(good, certificate_pem=other_cert), sec_tag=50, now=NOW)


def test_a_refused_key_is_not_remembered(pki: Pki, key_loads: list[int]) -> None:
    cert, key = pki.issue()
    broken = key.replace(key.splitlines()[2], "A" * len(key.splitlines()[2]))
    bad = CredentialBundle(cert, pki.ca_pem, broken)
    for _ in range(2):
        with pytest.raises(CredentialBundleError, match="not an unencrypted PEM key"):
            check_bundle(bad, sec_tag=50, now=NOW)
    assert sum(key_loads) == 2


def test_lost_done_after_the_erase_leaves_nothing_to_resume(pki: Pki, tmp_path: Path) -> None:
    """``finish`` is not fsync'd; a crash may leave ``in_progress`` after the (durable) erase."""
    journal = Journal(tmp_path)
    rec = journal.begin(JournalRecord())
    cert, key = pki.issue()
    journal.save_bundle(rec, CredentialBundle(cert, pki.ca_pem, key).normalized())
    journal.erase_key_material(rec)
    loaded = journal.load()
    assert loaded is not None and loaded.status == "in_progress" and loaded.pending_bundle() is None


def test_split_pairing_and_bundle_check_share_one_key_load(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    """The split collector pairs key and certificate by public key; the bundle check later needs the
    same public key. One validating load must serve both (each RSA-2048 load costs ~50 ms). Counted at
    cryptography's own loader, which every path in nrfprov goes through."""
    from cryptography.hazmat.primitives import serialization

    from nrfprov.provisioning import flows

    cert, key = pki.issue("dev-7", rsa_key=True)
    loads: list[int] = []
    real = serialization.load_pem_private_key

    def counting(data: bytes, *args: object, **kwargs: object) -> object:
        loads.append(1)
        return real(data, *args, **kwargs)

    monkeypatch.setattr(serialization, "load_pem_private_key", counting)
    collector = flows.SplitCollector("dev-7")
    assert collector.feed("certificate/dev-7/create/accepted/key", key.encode()) is None
    issued = collector.feed("certificate/dev-7/create/accepted/cert", cert.encode())
    assert issued is not None
    check_bundle(CredentialBundle(cert, pki.ca_pem, private_key_pem=key), sec_tag=50, now=NOW)
    assert loads == [1]
