"""The journal: private from birth, atomic, and it keeps the key until the reconnect proved it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from provpki import Pki

from nrfprov.errors import JournalError
from nrfprov.provisioning.bundle import CredentialBundle
from nrfprov.provisioning.journal import JOURNAL_NAME, Journal, JournalRecord


def _bundle(pki: Pki) -> CredentialBundle:
    cert, key = pki.issue()
    return CredentialBundle(cert, pki.ca_pem, key, "ab" * 32, "token").normalized()


def test_round_trip_and_permissions(tmp_path: Path, pki: Pki) -> None:
    j = Journal(tmp_path / "state")
    assert j.load() is None
    rec = j.begin(JournalRecord(flow="split", client_id="dev-1", provisioned_sec_tag=50))
    b = _bundle(pki)
    j.save_bundle(rec, b)
    j.record_step(rec, "receive", "certificate abab")
    assert stat.S_IMODE(os.stat(j.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(j.dir).st_mode) == 0o700
    again = j.load()
    assert again is not None and again.pending_bundle() == b
    assert again.step_names() == ["receive"] and again.status == "in_progress"
    assert [p.name for p in j.dir.iterdir()] == [JOURNAL_NAME]  # no temp file left behind


def test_key_is_erased_only_when_asked_and_done_has_nothing_to_resume(tmp_path: Path, pki: Pki) -> None:
    j = Journal(tmp_path)
    rec = j.begin(JournalRecord())
    j.save_bundle(rec, _bundle(pki))
    j.fail(rec, RuntimeError("link lost"))
    loaded = j.load()
    assert loaded is not None and loaded.status == "in_progress" and "link lost" in loaded.error
    assert loaded.pending_bundle() is not None and loaded.pending_bundle().private_key_pem  # type: ignore[union-attr]
    j.erase_key_material(rec)
    j.finish(rec)
    text = j.path.read_text()
    assert "PRIVATE KEY" not in text and "token" not in text.replace("ownership_token", "")
    done = j.load()
    assert done is not None and done.pending_bundle() is None and done.key_erased
    assert done.bundle is not None and done.bundle["certificate_id"] == "ab" * 32


def test_damaged_journal_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / JOURNAL_NAME).write_text("{not json")
    with pytest.raises(JournalError, match="damaged"):
        Journal(tmp_path).load()
    (tmp_path / JOURNAL_NAME).write_text('{"version": 99}')
    with pytest.raises(JournalError, match="version 99"):
        Journal(tmp_path).load()


def test_unwritable_state_dir_is_a_typed_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(JournalError, match="cannot write"):
        Journal(blocker / "state").begin(JournalRecord())


def test_a_failure_after_the_proof_leaves_nothing_to_resume(tmp_path: Path, pki: Pki) -> None:
    j = Journal(tmp_path)
    rec = j.begin(JournalRecord())
    j.save_bundle(rec, _bundle(pki))
    j.erase_key_material(rec)
    j.fail(rec, RuntimeError("disconnect failed"))
    loaded = j.load()
    assert loaded is not None and loaded.pending_bundle() is None and loaded.status == "done"


# --- leftovers of a killed run: no file but the journal keeps key material ----------------------------


def _leftover(j: Journal, rec: JournalRecord, *, pid: int = 4242, cut: int | None = None) -> Path:
    """What a kill between writing the temp file and its rename leaves behind (or mid-write: ``cut``)."""
    import json
    from dataclasses import asdict

    data = json.dumps(asdict(rec), indent=1).encode()
    path = j.dir / f".{JOURNAL_NAME}.{pid}.tmp"
    path.write_bytes(data if cut is None else data[:cut])
    os.chmod(path, 0o600)
    return path


def test_a_complete_newer_temp_file_of_the_same_run_is_adopted(tmp_path: Path, pki: Pki) -> None:
    j = Journal(tmp_path)
    rec = j.begin(JournalRecord(flow="combined", client_id="dev-1", provisioned_sec_tag=50))
    newer = JournalRecord(**{**rec.__dict__, "seq": rec.seq + 1})
    newer.bundle = _bundle_dict(pki)
    left = _leftover(j, newer)
    loaded = Journal(tmp_path).load()
    assert loaded is not None and loaded.pending_bundle() is not None  # the key is not lost ...
    assert not left.exists() and sorted(p.name for p in tmp_path.iterdir()) == [JOURNAL_NAME]  # ... nor copied


def test_a_temp_file_cut_short_or_older_is_removed(tmp_path: Path, pki: Pki) -> None:
    j = Journal(tmp_path)
    rec = j.begin(JournalRecord(flow="split", client_id="dev-1", provisioned_sec_tag=50))
    j.save_bundle(rec, _bundle(pki))
    partial = JournalRecord(**{**rec.__dict__, "seq": rec.seq + 1})
    cut = _leftover(j, partial, pid=1, cut=400)  # a kill mid-write: a prefix, maybe with key text in it
    older = _leftover(j, JournalRecord(**{**rec.__dict__, "seq": 1}), pid=2)
    fresh = Journal(tmp_path)
    loaded = fresh.load()
    assert loaded is not None and loaded.seq == rec.seq and not cut.exists() and not older.exists()
    assert len(fresh.recovered) == 2 and all("removed" in r for r in fresh.recovered)


def test_a_leftover_from_an_earlier_run_holding_a_key_is_named_as_an_orphan(tmp_path: Path, pki: Pki) -> None:
    j = Journal(tmp_path)
    old = JournalRecord(run_id="old", seq=5, started_at="2026-01-01T00:00:00.000+00:00", status="in_progress",
                        bundle=_bundle_dict(pki, "cd" * 32))
    left = _leftover(j, old)
    rec = j.begin(JournalRecord(flow="split", client_id="dev-1", started_at="2026-02-01T00:00:00.000+00:00"))
    loaded = Journal(tmp_path).load()
    assert loaded is not None and loaded.run_id == rec.run_id and not left.exists()
    assert loaded.orphans[0]["certificate_id"] == "cd" * 32 and "PRIVATE KEY" not in j.path.read_text()


def _bundle_dict(pki: Pki, cert_id: str = "ab" * 32) -> dict[str, object]:
    from dataclasses import asdict, replace

    return asdict(replace(_bundle(pki), certificate_id=cert_id))


def test_raw_replies_are_durable_key_material_until_the_erase(tmp_path: Path) -> None:
    from nrfprov.provisioning.journal import REPLIES_KEPT, REPLY_JOURNAL_LIMIT

    synced: list[int] = []

    def fsync(fd: int) -> None:
        synced.append(fd)
        os.fsync(fd)

    j = Journal(tmp_path, fsync=fsync)
    rec = j.begin(JournalRecord())
    synced.clear()
    j.record_request(rec, {"operation": "create", "topic": "$aws/certificates/create/json"})
    assert len(synced) == 2  # file and directory: durable before the request is published
    assert j.save_reply(rec, "t/accepted", b"-----BEGIN RSA PRIVATE KEY-----")
    assert j.load() is not None and j.load().raw_replies() == [("t/accepted", b"-----BEGIN RSA PRIVATE KEY-----")]
    assert not j.save_reply(rec, "t/accepted", b"x" * (REPLY_JOURNAL_LIMIT + 1))
    while len(rec.replies) < REPLIES_KEPT:
        j.save_reply(rec, "t/accepted", b"y")
    assert not j.save_reply(rec, "t/accepted", b"z")
    j.erase_key_material(rec)
    assert rec.replies == [] and "PRIVATE KEY" not in j.path.read_text() and rec.proven_at


def test_a_failure_after_the_request_stays_in_progress(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    rec = j.begin(JournalRecord())
    j.record_request(rec, {"operation": "split"})
    j.fail(rec, RuntimeError("link lost"))
    assert j.load().status == "in_progress"  # type: ignore[union-attr]  # requested: resume must report it


def test_failpoints_are_parsed_strictly() -> None:
    from nrfprov.provisioning.journal import _parse_failpoints

    assert _parse_failpoints("journal:3, journal@reply, journal-tmp@bundle:2, journal, bogus:1, journal@x:y") == {
        "journal": 3, "journal@reply": 1, "journal-tmp@bundle": 2}
    assert _parse_failpoints("") == {}


def test_a_version_1_journal_still_loads(tmp_path: Path) -> None:
    (tmp_path / JOURNAL_NAME).write_text('{"version": 1, "status": "done", "flow": "split", "key_erased": true}')
    rec = Journal(tmp_path).load()
    assert rec is not None and rec.proven and rec.requests == []
