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
                           backend=s.tls_backend, resume=resume)


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
