"""Decisions a run makes before it touches the modem: fresh or resumed, which CA, which combination."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
from provpki import Pki

from nrfprov.config import Settings, load_settings
from nrfprov.errors import ConfigError, JournalError, UsageError
from nrfprov.provisioning import cas, plan
from nrfprov.provisioning.bundle import CredentialBundle
from nrfprov.provisioning.journal import JournalRecord

JOURNAL = Path("/state/provisioning.json")


def _settings(*extra: str) -> Settings:
    return load_settings(overrides=["CONFIG_AWS_IOT_BROKER_HOST_NAME=h", "CONFIG_AWS_IOT_SEC_TAG=43", *extra])


def _pending(pki: Pki, **kw: object) -> JournalRecord:
    cert, key = pki.issue()
    bundle = CredentialBundle(cert, pki.ca_pem, key, "ab" * 32, "token").normalized()
    fields: dict[str, object] = {"status": "in_progress", "flow": "combined", "payload_format": "cbor",
                                 "backend": "native", "client_id": "journaled-id", "provisioned_sec_tag": 60}
    fields.update(kw)
    return JournalRecord(bundle=asdict(bundle), **fields)  # type: ignore[arg-type]  # test data


def _choose(s: Settings, existing: JournalRecord | None, *, resume: bool) -> plan.RunChoice:
    return plan.choose_run(s, existing, JOURNAL, flow=s.flow, payload_format=s.payload_format,
                           backend=s.tls_backend, resume=resume, imei="356938035643809")


def test_fresh_run_takes_the_configuration() -> None:
    s = _settings("CONFIG_AWS_IOT_CLIENT_ID_STATIC=dev-7")
    c = _choose(s, None, resume=False)
    assert (c.flow, c.client_id, c.provisioned_sec_tag, c.resume) == ("split", "dev-7", 50, None)
    assert c.record.client_id == "dev-7" and c.record.flow == "split"


def test_resume_takes_the_journal_not_todays_configuration(pki: Pki) -> None:
    s = _settings("CONFIG_NRFPROV_TEMPLATE_NAME=t")
    c = _choose(s, _pending(pki), resume=True)
    assert (c.flow, c.payload_format, c.client_id, c.provisioned_sec_tag) == ("combined", "cbor", "journaled-id", 60)
    assert c.resume is not None and c.resume.certificate_id == "ab" * 32
    p = plan.machine_plan(s, c, ca_pem="CA", imei="356938035643809")
    assert p.resume is c.resume and p.client_id == "journaled-id" and p.ca_pem == "CA"


def test_unproven_credentials_refuse_a_fresh_run_and_nothing_to_resume_is_refused(pki: Pki) -> None:
    with pytest.raises(UsageError, match="never proven"):
        _choose(_settings(), _pending(pki, flow="split"), resume=False)
    with pytest.raises(UsageError, match="nothing to resume"):
        _choose(_settings(), None, resume=True)
    finished = _choose(_settings(), _pending(pki, status="done"), resume=True)
    assert finished.finished and "already provisioned and proven" in finished.notices[0]


def test_a_journal_naming_an_unknown_flow_is_a_journal_error(pki: Pki) -> None:
    with pytest.raises(JournalError, match="unknown flow 'smoke'"):
        _choose(_settings(), _pending(pki, flow="smoke"), resume=True)


def test_ca_choice_order(tmp_path: Path, pki: Pki) -> None:
    own = tmp_path / "own.pem"
    own.write_text(pki.ca_pem)
    folder = tmp_path / "certs"
    folder.mkdir()
    assert cas.choose_ca(_settings(f"CONFIG_NRFPROV_CA_FILE={own}")).paths == (own,)
    (folder / "ca-cert.pem").write_text(pki.ca_pem)
    assert cas.choose_ca(_settings(f"CONFIG_NRFPROV_CERTS_DIR={folder}")).paths == (folder / "ca-cert.pem",)
    assert cas.read_ca(_settings(f"CONFIG_NRFPROV_CERTS_DIR={folder}")) == pki.ca_pem
    builtin = cas.choose_ca(_settings(f"CONFIG_NRFPROV_CERTS_DIR={tmp_path / 'empty'}"))
    assert [p.name for p in builtin.paths] == ["AmazonRootCA1.pem", "AmazonRootCA3.pem"]
    assert builtin.paths[0].parent.name == "data" and builtin.paths[0].parent.parent.name == "nrfprov"
    text = cas.read_ca(_settings(f"CONFIG_NRFPROV_CERTS_DIR={tmp_path / 'empty'}"))
    assert text.count("-----BEGIN CERTIFICATE-----") == 2 and text.endswith("-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match="cannot read the CA file"):
        cas.read_ca(_settings(f"CONFIG_NRFPROV_CA_FILE={tmp_path / 'missing.pem'}"))


# --- what the journal shows, told apart ------------------------------------------------------------


def test_a_fresh_run_takes_the_per_device_client_id() -> None:
    c = plan.choose_run(_settings(), None, JOURNAL, flow="split", payload_format="json", backend="offload",
                        resume=False, imei="356938035643809")
    assert c.client_id == "nrf-356938035643809" and c.record.client_id == "nrf-356938035643809"
    s = _settings("CONFIG_AWS_IOT_CLIENT_ID_STATIC=fleet-{imei}-x")
    c = plan.choose_run(s, None, JOURNAL, flow="split", payload_format="json", backend="offload",
                        resume=False, imei="356938035643809")
    assert c.client_id == "fleet-356938035643809-x"


def test_a_proven_key_erased_run_is_finished_even_without_done(pki: Pki) -> None:
    rec = _pending(pki, status="in_progress", key_erased=True, proven_at="2026-06-01T12:00:00+00:00")
    c = _choose(_settings(), rec, resume=True)
    assert c.finished and c.resume is None
    assert "already provisioned and proven" in c.notices[0] and "ab" * 32 in c.notices[0]


def _requested(op: str, **kw: object) -> JournalRecord:
    fields: dict[str, object] = {"status": "in_progress", "flow": "split" if op == "split" else "combined",
                                 "payload_format": "json", "backend": "offload", "client_id": "nrf-1",
                                 "provisioned_sec_tag": 50,
                                 "requests": [{"operation": op, "topic": "t", "client_id": "nrf-1",
                                               "at": "2026-06-01T12:00:00.000+00:00"}]}
    fields.update(kw)
    return JournalRecord(**fields)  # type: ignore[arg-type]  # test data


def test_requested_reply_lost_names_what_was_probably_issued() -> None:
    with pytest.raises(UsageError) as info:
        _choose(_settings(), _requested("split"), resume=True)
    text = str(info.value)
    assert "probably issued an ACTIVE certificate for thing nrf-1" in text
    assert "aws iot list-thing-principals --thing-name nrf-1" in text and "run without --resume" in text
    with pytest.raises(UsageError) as info:
        _choose(_settings("CONFIG_NRFPROV_TEMPLATE_NAME=t"), _requested("create"), resume=True)
    assert "PENDING_ACTIVATION" in str(info.value) and "2026-06-01T12:00:00" in str(info.value)
    # The plain run it advises goes ahead and carries the note on.
    fresh = plan.choose_run(_settings(), _requested("split"), JOURNAL, flow="split", payload_format="json",
                            backend="offload", resume=False, imei="356938035643809")
    assert fresh.record.orphans[0]["thing_name"] == "nrf-1" and "probably issued" in fresh.notices[0]


def test_nothing_requested_and_no_journal_are_told_apart() -> None:
    with pytest.raises(UsageError, match="no journal"):
        _choose(_settings(), None, resume=True)
    with pytest.raises(UsageError, match="stopped before it requested anything"):
        _choose(_settings(), JournalRecord(status="in_progress", flow="split", payload_format="json"), resume=True)


def test_journaled_raw_replies_are_resumed_and_block_a_fresh_run(pki: Pki) -> None:
    import base64

    cert, key = pki.issue("nrf-1")
    replies = [{"topic": "certificate/nrf-1/create/accepted/key", "payload": base64.b64encode(key.encode()).decode()},
               {"topic": "certificate/nrf-1/create/accepted/cert",
                "payload": base64.b64encode(cert.encode()).decode()}]
    rec = _requested("split", replies=replies)
    c = _choose(_settings(), rec, resume=True)
    assert [t for t, _ in c.replies] == [r["topic"] for r in replies] and c.resume is None
    with pytest.raises(UsageError, match="never proven"):
        _choose(_settings(), rec, resume=False)
    # Half a pair cannot make a bundle: it is a lost reply, and a fresh run may go ahead.
    half = _requested("split", replies=replies[:1])
    with pytest.raises(UsageError, match="only part of its reply"):
        _choose(_settings(), half, resume=True)
    assert _choose(_settings(), half, resume=False).record.orphans


def test_register_intent_without_a_thing_name_puts_the_registration_in_doubt(pki: Pki) -> None:
    rec = _pending(pki, requests=[{"operation": "create"}, {"operation": "register"}])
    s = _settings("CONFIG_NRFPROV_TEMPLATE_NAME=t", "CONFIG_NRFPROV_TEMPLATE_PARAMETERS=SerialNumber={imei}")
    c = _choose(s, rec, resume=True)
    assert c.register_in_doubt
    p = plan.machine_plan(s, c, ca_pem="CA", imei="356938035643809")
    assert p.thing_candidates == ("journaled-id", "356938035643809")
    p = plan.machine_plan(s, c, ca_pem="CA", imei="356938035643809", thing="from-aws")
    assert p.thing_candidates == ("from-aws",)
    assert not _choose(s, _pending(pki, requests=[{"operation": "create"}]), resume=True).register_in_doubt


def test_a_reply_conflict_is_never_resumed_nor_replaced(pki: Pki) -> None:
    rec = _pending(pki, conflict=["ab" * 32, "cd" * 32])
    for resume in (True, False):
        with pytest.raises(UsageError, match="reply conflict"):
            _choose(_settings("CONFIG_NRFPROV_TEMPLATE_NAME=t"), rec, resume=resume)


def test_a_client_certificate_in_the_tag_stops_a_fresh_run_unless_forced(pki: Pki) -> None:
    from nrfprov.errors import AlreadyProvisioned
    from nrfprov.provisioning.bundle import normalize_pem, sha256_hex

    done = _pending(pki, status="done", key_erased=True, flow="split")
    done.bundle["thing_name"] = "nrf-9"  # type: ignore[index]
    stored = plan.StoredCertificate(sha256_hex(normalize_pem(done.bundle["certificate_pem"])))  # type: ignore[index]
    kw = {"flow": "split", "payload_format": "json", "backend": "offload", "resume": False, "imei": "1" * 15}
    with pytest.raises(AlreadyProvisioned) as info:
        plan.choose_run(_settings(), done, JOURNAL, stored=stored, **kw)  # type: ignore[arg-type]
    assert (info.value.certificate_id, info.value.thing_name) == ("ab" * 32, "nrf-9") and info.value.exit_code == 2
    forced = plan.choose_run(_settings(), done, JOURNAL, stored=stored, force=True, **kw)  # type: ignore[arg-type]
    assert forced.replaced == {"certificate_id": "ab" * 32, "sha256": stored.sha256, "thing_name": "nrf-9"}
    assert "update-certificate --certificate-id " + "ab" * 32 in forced.notices[-1]
    # No journal: the certificate read from the modem names itself.
    cert, _ = pki.issue("someone")
    unknown = plan.StoredCertificate("00" * 32, cert)
    with pytest.raises(AlreadyProvisioned) as info:
        plan.choose_run(_settings(), None, JOURNAL, stored=unknown, **kw)  # type: ignore[arg-type]
    from nrfprov.provisioning.bundle import CredentialBundle as B
    assert info.value.certificate_id == B(cert, "").fingerprint()


def test_a_request_the_cloud_rejected_issued_nothing(pki: Pki) -> None:
    # A throttled (or refused) request: no orphan on the next fresh run, nothing to resume.
    rejected = _requested("split")
    rejected.requests[-1]["rejected"] = {"status_code": 429, "error_code": "ThrottlingException"}
    assert plan.journal_state(rejected) == plan.FRESH
    fresh = _choose(_settings(), rejected, resume=False)
    assert not fresh.record.orphans and not fresh.notices
    with pytest.raises(UsageError, match="the cloud rejected the request"):
        _choose(_settings(), rejected, resume=True)
    # A RegisterThing the cloud rejected registered nothing: resuming it is no registration in doubt.
    refused = {"status_code": 400, "error_code": "InvalidParameters"}
    rec = _pending(pki, requests=[{"operation": "create"}, {"operation": "register", "rejected": refused}])
    s = _settings("CONFIG_NRFPROV_TEMPLATE_NAME=t")
    assert not _choose(s, rec, resume=True).register_in_doubt
    assert plan.journal_state(rec) == plan.RESUMABLE


def test_journal_state_tells_a_station_which_run_to_make(pki: Pki) -> None:
    assert plan.journal_state(None) == plan.NO_JOURNAL
    assert plan.journal_state(_requested("split")) == plan.FRESH  # reply lost: a new request (an orphan)
    assert plan.journal_state(_pending(pki)) == plan.RESUMABLE
    assert plan.journal_state(_pending(pki, conflict=["ab" * 32])) == plan.CONFLICT
