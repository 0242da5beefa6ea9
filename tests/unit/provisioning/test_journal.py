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
