"""Each flow x TLS backend x dialect, end to end on the simulated nRF91 and the local stand-in.

Witnesses: the stand-in's registry (exactly one certificate per run, the one the client reports,
ACTIVE) and request counters; the simulator's credential store (what is really in sec tag 50).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from provrig import CLAIM_TAG, TAG, Rig

from nrfprov.cli.demo import write_claim_tag
from nrfprov.errors import CredentialError, DeviceLimitError, ModemTlsHandshakeError, ModemTlsLimitError, UsageError
from nrfprov.provisioning.bundle import normalize_pem
from nrfprov.provisioning.driver import Driver
from nrfprov.provisioning.results import StepReport

pytestmark = pytest.mark.integration

REQUEST_KIND = {"split": "split", "combined": "create", "csr": "create-from-csr"}

CASES = [
    # flow, format, backend, dialect
    ("split", "json", "native", "sm"),
    ("split", "json", "native", "slm"),
    ("split", "json", "offload", "sm"),
    ("split", "json", "offload", "slm"),
    ("split", "json", "host", "sm"),
    ("combined", "json", "native", "sm"),
    ("combined", "cbor", "native", "slm"),
    ("combined", "cbor", "host", "slm"),
    ("csr", "cbor", "native", "sm"),
    ("csr", "json", "native", "slm"),
    ("csr", "json", "offload", "sm"),
    ("csr", "cbor", "offload", "slm"),
    ("csr", "json", "host", "slm"),  # claim over the host's TCP, reconnect through the modem's TLS
]


def _spki(obj: x509.Certificate | object) -> bytes:
    return obj.public_key().public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize(("flow", "fmt", "backend", "dialect"), CASES)
def test_chain(rig_factory: Callable[..., Rig], flow: str, fmt: str, backend: str, dialect: str) -> None:
    rig = rig_factory(dialect, claim_tag=backend == "offload")
    settings = rig.settings(backend=backend, flow=flow, fmt=fmt, client_id=f"dev-{flow}-{backend}-{dialect}")
    steps: list[str] = []
    result = Driver(settings, rig.modem, state_dir=rig.state,
                    progress=lambda r: steps.append(r.state.value)).run()
    assert result.ok and steps[-1] == "done"

    # The stand-in's side: one request of this flow, one certificate, the one we wrote, and active.
    counts = rig.cloud.request_counts()
    assert counts[REQUEST_KIND[flow]] == 1
    assert sum(v for k, v in counts.items() if k != "register") == 1
    assert counts["register"] == (0 if flow == "split" else 1)
    certs = rig.cloud.certificates()
    assert len(certs) == 1 and certs[0].certificate_id == result.certificate_id
    assert certs[0].status == "ACTIVE"

    # The modem's side: sec tag 50 holds the CA and this certificate; the key matches it.
    stored = rig.sim.stored(TAG)
    assert normalize_pem(stored[0]) == normalize_pem(rig.cloud.ca_path.read_text())
    cert = x509.load_pem_x509_certificate(stored[1].encode())
    key = serialization.load_pem_private_key(stored[2].encode(), password=None)
    assert _spki(key) == _spki(cert)
    if flow == "csr":
        assert key.key_size == 256  # type: ignore[union-attr]  # P-256 made by %KEYGEN, never left the modem
    expected_client = result.thing_name
    assert expected_client == (settings.client_id if flow == "split" else rig.modem.imei())

    # The journal: private, finished, key material gone.
    journal = rig.state / "provisioning.json"
    assert stat.S_IMODE(os.stat(journal).st_mode) == 0o600
    text = journal.read_text()
    doc = json.loads(text)
    assert doc["status"] == "done" and doc["key_erased"] and "PRIVATE KEY" not in text
    assert doc["bundle"]["certificate_id"] == result.certificate_id


# The chain AWS presents on RSA suites: RSA-2048 leaf + intermediate below an RSA root
# [AWS IoT developer guide, server-authentication]; the modem's own TLS and the native bridge must
# both verify it (test_chain above runs against the default EC chain).
# One case per flow x modem backend keeps it cheap; the dialects only differ below TLS.
RSA_CHAIN_CASES = list({(c[0], c[2]): c for c in reversed(CASES) if c[2] in ("offload", "native")}.values())


@pytest.mark.parametrize("local_aws", [{"server_chain": "rsa"}], indirect=True, ids=["rsa-chain"])
@pytest.mark.parametrize(("flow", "fmt", "backend", "dialect"), RSA_CHAIN_CASES)
def test_chain_against_the_aws_shaped_rsa_server_chain(
    rig_factory: Callable[..., Rig], flow: str, fmt: str, backend: str, dialect: str
) -> None:
    rig = rig_factory(dialect, claim_tag=backend == "offload")
    assert rig.cloud.server_chain is not None and rig.cloud.server_chain.kind == "rsa"
    settings = rig.settings(backend=backend, flow=flow, fmt=fmt, client_id=f"rsa-{flow}-{backend}-{dialect}")
    result = Driver(settings, rig.modem, state_dir=rig.state).run()
    assert result.ok
    [cert] = rig.cloud.certificates()
    assert cert.certificate_id == result.certificate_id and cert.status == "ACTIVE"
    assert normalize_pem(rig.sim.stored(TAG)[0]) == normalize_pem(rig.cloud.ca_path.read_text())  # both roots


# A server chain over the modem's 4 KB limit (modem release notes, as quoted by Nordic on DevZone, thread
# 114031) breaks the modem's own handshake: provisioning over offloaded TLS fails with the typed error
# before anything is requested; the native bridge (host Mbed TLS) is not bound by it.
@pytest.mark.parametrize("local_aws", [{"server_chain": "rsa", "server_chain_min_bytes": 5 * 1024}], indirect=True,
                         ids=["5kb-chain"])
def test_a_server_chain_over_4_kb_fails_offload_naming_the_limit(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory("sm")
    assert rig.cloud.server_chain is not None and rig.cloud.server_chain.certificate_message_bytes > 5000
    settings = rig.settings(backend="offload", flow="split", client_id="big-chain-offload")
    with pytest.raises(ModemTlsHandshakeError) as info:
        Driver(settings, rig.modem, state_dir=rig.state).run()
    assert "4 KB" in str(info.value) and info.value.exit_code == 4
    assert rig.cloud.certificates() == [] and rig.sim.stored(TAG) == {}
    native = rig_factory("sm", claim_tag=False)
    result = Driver(rig.settings(backend="native", flow="split", client_id="big-chain-native"), native.modem,
                    state_dir=native.state).run()
    assert result.ok


@pytest.mark.parametrize("dialect", ["sm", "slm"])
def test_combined_over_offloaded_tls_fails_naming_the_way_out(rig_factory: Callable[..., Rig], dialect: str) -> None:
    rig = rig_factory(dialect)
    settings = rig.settings(backend="offload", flow="combined", client_id=f"dev-off-{dialect}")
    with pytest.raises(ModemTlsLimitError) as info:
        Driver(settings, rig.modem, state_dir=rig.state).run()
    assert "native" in str(info.value) and "split" in str(info.value)
    # Refused before anything is requested: a certificate the modem could never receive is never issued.
    assert "before anything is requested" in str(info.value)
    assert rig.cloud.request_counts().get("create", 0) == 0 and rig.cloud.certificates() == []
    assert rig.sim.stored(TAG) == {}  # nothing was written


@pytest.mark.parametrize("symbol", ["CONFIG_AWS_IOT_MQTT_PAYLOAD_BUFFER_LEN", "CONFIG_MQTT_HELPER_PAYLOAD_BUFFER_LEN"])
def test_device_mirror_payload_limit_names_the_symbol_that_set_it(rig_factory: Callable[..., Rig],
                                                                    symbol: str) -> None:
    # The ~3.5 KB CreateKeysAndCertificate reply against a 2048-byte MQTT payload buffer: the device
    # would drop it, and the error must name the line the user wrote (legacy or NCS >= 2.9 name).
    rig = rig_factory("sm", claim_tag=False)
    settings = rig.settings(backend="native", flow="combined", client_id="dev-mirror",
                            extra=("CONFIG_NRFPROV_MIRROR_DEVICE_LIMITS=y", f"{symbol}=2048"))
    with pytest.raises(DeviceLimitError) as info:
        Driver(settings, rig.modem, state_dir=rig.state).run()
    assert (info.value.symbol, info.value.limit) == (symbol, 2048) and info.value.needed > 2048
    assert f"raise {symbol} to at least" in str(info.value)


def test_refusals_before_any_io(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory("sm", claim_tag=False)
    no_template = rig.settings(backend="native", flow="combined", extra=("CONFIG_NRFPROV_TEMPLATE_NAME=",))
    with pytest.raises(UsageError, match="RegisterThing"):
        Driver(no_template, rig.modem, state_dir=rig.state).run()
    same_tag = rig.settings(backend="offload", flow="split", extra=("CONFIG_NRFPROV_PROVISIONED_SEC_TAG=43",))
    with pytest.raises(UsageError, match="destroy the claim"):
        Driver(same_tag, rig.modem, state_dir=rig.state).run()
    assert rig.cloud.request_counts() == {"split": 0, "create": 0, "create-from-csr": 0, "register": 0}


def test_unproven_credentials_block_a_fresh_run(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory("slm")
    s = rig.settings(backend="offload", flow="combined", client_id="dev-x")
    with pytest.raises(ModemTlsLimitError):
        Driver(s, rig.modem, state_dir=rig.state).run()
    # Nothing issued and kept: a fresh run may go ahead; --resume has nothing to do.
    with pytest.raises(UsageError, match="nothing to resume"):
        Driver(s, rig.modem, state_dir=rig.state, resume=True).run()


@pytest.mark.parametrize("backend", ["native", "offload"])
def test_reconnect_proof_fails_for_an_identity_without_rights(rig_factory: Callable[..., Rig], backend: str) -> None:
    """A valid, CA-signed certificate that AWS never attached to the thing: the PUBACK refuses it,
    the run fails, and the journal keeps the key (erased only after a successful proof)."""
    from nrfprov.errors import MqttError
    from nrfprov.provisioning.bundle import CredentialBundle
    from nrfprov.provisioning.journal import Journal, JournalRecord

    rig = rig_factory("slm", claim_tag=False)
    cert_path, key_path = rig.cloud.issue_identity("dev-norights", key_type="ec")  # ACTIVE, no grant
    bundle = CredentialBundle(cert_path.read_text(), rig.cloud.ca_path.read_text(), key_path.read_text(),
                              "ab" * 32).normalized()
    journal = Journal(rig.state)
    rec = journal.begin(JournalRecord(flow="split", payload_format="json", backend=backend,
                                      client_id="dev-norights", provisioned_sec_tag=TAG))
    journal.save_bundle(rec, bundle)
    settings = rig.settings(backend=backend, flow="split", client_id="dev-norights")
    with pytest.raises(MqttError, match="refused the PUBLISH"):
        Driver(settings, rig.modem, state_dir=rig.state, resume=True).run()
    assert rig.sim.stored(TAG)[1] == bundle.certificate_pem  # written and verified...
    doc = json.loads((rig.state / "provisioning.json").read_text())
    assert doc["status"] == "in_progress" and doc["bundle"]["private_key_pem"]  # ...but not proven: key kept
    assert rig.cloud.request_counts()["split"] == 0


def test_split_with_duplicates_and_cert_first_on_the_real_broker(
    local_aws_factory: Callable[..., object], sim_factory: Callable[..., object], tmp_path: Path
) -> None:
    """The stand-in sends the cert first and every part twice (QoS 1 redelivery): one run, one cert."""
    from nrfprov.cloud import LocalAwsIot
    from nrfprov.modem import Modem
    from nrfprov.sim import SimulatedModem

    cloud = local_aws_factory(split_order="cert-first", split_duplicates=1)
    assert isinstance(cloud, LocalAwsIot)
    sim = sim_factory(dialect="slm", baud=0)
    assert isinstance(sim, SimulatedModem)
    certs = cloud.write_certs_folder(tmp_path / "certs")
    rig = Rig(cloud, sim, Modem.open(sim.port_url, dialect="slm"), certs, tmp_path / "journal", "slm")
    try:
        write_claim_tag(rig.modem, cloud, CLAIM_TAG)
        result = Driver(rig.settings(backend="offload", flow="split", client_id="dev-dup"), rig.modem,
                        state_dir=rig.state).run()
    finally:
        rig.modem.close()
    assert result.ok and cloud.request_counts()["split"] == 1
    assert [c.certificate_id for c in cloud.certificates()] == [result.certificate_id]


def test_a_failed_write_brings_the_modem_back_online_and_stays_resumable(rig_factory: Callable[..., Rig]) -> None:
    """Nordic's own tools leave the modem in CFUN=4 after credential work; we never do, even on failure."""
    rig = rig_factory("sm")
    rig.modem.set_cfun(1)  # online, as a device in the field: a failed run puts back the mode it found
    settings = rig.settings(backend="offload", flow="split", client_id="dev-cme")
    rig.sim.fail_command("AT%CMNG=0", cme=515)  # memory full on the first write
    with pytest.raises(CredentialError):
        Driver(settings, rig.modem, state_dir=rig.state).run()
    assert rig.modem.cfun() == 1
    doc = json.loads((rig.state / "provisioning.json").read_text())
    assert doc["status"] == "in_progress" and doc["bundle"] is not None
    result = Driver(settings, rig.modem, state_dir=rig.state, resume=True).run()
    assert result.ok and rig.cloud.request_counts()["split"] == 1


def test_ctrl_c_while_offline_is_journaled_and_the_modem_comes_back(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory("sm")
    rig.modem.set_cfun(1)  # online, as a device in the field: an interrupted run puts back the mode it found
    settings = rig.settings(backend="offload", flow="split", client_id="dev-int")

    def interrupt(report: StepReport) -> None:
        if report.state.value == "write credentials":  # the modem is offline here
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Driver(settings, rig.modem, state_dir=rig.state, progress=interrupt).run()
    assert rig.modem.cfun() == 1
    doc = json.loads((rig.state / "provisioning.json").read_text())
    assert doc["status"] == "in_progress" and "KeyboardInterrupt" in doc["error"]
    assert Driver(settings, rig.modem, state_dir=rig.state, resume=True).run().ok
    assert rig.cloud.request_counts()["split"] == 1
