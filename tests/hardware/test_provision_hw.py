"""The provisioning chain on a real nRF91 and real AWS IoT (``-m hardware``).

    pytest -m hardware --port /dev/ttyACM0 --endpoint xxxx-ats.iot.eu-west-1.amazonaws.com \\
        --claim-sec-tag 43 tests/hardware/test_provision_hw.py

Optional: ``NRFPROV_HW_CONF=prj.conf`` (client id, template, certs folder, ... as for
``nrfprov provision``). Every test skips with the reason when what it needs is not given. These tests
change the modem: they write the provisioned sec tag (``CONFIG_NRFPROV_PROVISIONED_SEC_TAG``, default
50) and a scratch tag, and create one certificate per run on your AWS account. Each run replaces the
previous run's identity (``--force``); where the cloud issues one active certificate per thing
(nrfprov's deployed handler, docs/aws.md), set ``NRFPROV_HW_REPROVISION`` to the operator's command
that allows another (``nrfprov aws reprovision``, or ``nrfprov cloud reprovision --state DIR`` for
the local stand-in): the test runs it with each thing name the run may use.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nrfprov.config import Settings, load_settings
from nrfprov.errors import DialectError
from nrfprov.modem import Modem
from nrfprov.provisioning import flows, plan
from nrfprov.provisioning.bundle import CredentialBundle, check_bundle, sha256_hex
from nrfprov.provisioning.driver import Driver

pytestmark = pytest.mark.hardware

SCRATCH_TAG = 2147480050  # far from Nordic's aws_iot_provisioning sample's 43/50 and from modem-reserved tags


@pytest.fixture
def modem(request: pytest.FixtureRequest) -> Iterator[Modem]:
    port = request.config.getoption("--port")
    if not port:
        pytest.skip("needs a real nRF91: pass --port /dev/ttyACM0")
    conf = os.environ.get("NRFPROV_HW_CONF")
    s = load_settings(conf) if conf else Settings()
    m = Modem.open(port, baud=request.config.getoption("--baud"), dialect=s.modem_dialect,
                   slm_terminator=s.slm_terminator)
    try:
        yield m
    finally:
        m.close()


@pytest.fixture
def hw_settings(request: pytest.FixtureRequest) -> Settings:
    endpoint = request.config.getoption("--endpoint")
    if not endpoint:
        pytest.skip("needs a real AWS IoT endpoint: pass --endpoint <prefix>-ats.iot.<region>.amazonaws.com")
    overrides = [f"CONFIG_AWS_IOT_BROKER_HOST_NAME={endpoint}"]
    tag = request.config.getoption("--claim-sec-tag")
    if tag is not None:
        overrides.append(f"CONFIG_AWS_IOT_SEC_TAG={tag}")
    return load_settings(os.environ.get("NRFPROV_HW_CONF"), overrides=overrides)


def _self_signed() -> CredentialBundle:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nrfprov-hw-scratch")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return CredentialBundle(cert_pem, cert_pem, key_pem).normalized()


def test_write_step_on_the_real_modem(modem: Modem) -> None:
    """Steps 8-11 with a locally made bundle in a scratch tag: the modem's SHA-256 equals ours."""
    bundle = _self_signed()
    check_bundle(bundle, sec_tag=SCRATCH_TAG, now=dt.datetime.now(dt.UTC))
    before = modem.cfun()
    modem.set_cfun(4)
    try:
        for t, content in bundle.writes():
            assert modem.write_credential(SCRATCH_TAG, t, content) == sha256_hex(content)
        listed = {int(c.type): c.sha256 for c in modem.credentials(SCRATCH_TAG)}
        assert listed[0] == sha256_hex(bundle.ca_pem) and listed[1] == sha256_hex(bundle.certificate_pem)
        assert 2 in listed
    finally:
        for t in (0, 1, 2):
            modem.delete_credential(SCRATCH_TAG, t, missing_ok=True)
        modem.set_cfun(before)
    assert modem.credentials(SCRATCH_TAG) == []


@pytest.mark.parametrize(("flow", "backend"), [("split", "offload"), ("split", "native"),
                                               ("combined", "native"), ("csr", "offload")])
def test_chain_against_real_aws(modem: Modem, hw_settings: Settings, tmp_path: Path, flow: str,
                                backend: str) -> None:
    s = hw_settings
    if backend == "offload" and s.claim_sec_tag is None:
        pytest.skip("offload needs the claim credentials in a modem sec tag: pass --claim-sec-tag 43")
    if backend == "native" and not (Path(s.certs_dir) / "client-cert.pem").is_file():
        pytest.skip(f"native needs the claim pair in a certs folder ({s.certs_dir}/client-cert.pem, "
                    "private-key.pem): set CONFIG_NRFPROV_CERTS_DIR in NRFPROV_HW_CONF")
    if flow != "split" and not s.template_name:
        pytest.skip(f"{flow} needs a provisioning template: set CONFIG_NRFPROV_TEMPLATE_NAME in NRFPROV_HW_CONF")
    settings = load_settings(os.environ.get("NRFPROV_HW_CONF"), overrides=[
        f"CONFIG_AWS_IOT_BROKER_HOST_NAME={s.broker_host}",
        *([f"CONFIG_AWS_IOT_SEC_TAG={s.claim_sec_tag}"] if s.claim_sec_tag is not None else []),
        f"CONFIG_NRFPROV_TLS_BACKEND={backend}",
    ])
    if backend == "native":
        try:
            modem.check_raw_binary_safe()
        except DialectError as exc:  # names the firmware setting to change
            pytest.skip(f"native TLS cannot cross this modem's data mode: {exc}")
    allow_another_certificate(settings, modem.imei())
    result = Driver(settings, modem, state_dir=tmp_path / "journal", flow=flow, force=True).run()
    assert result.ok and result.certificate_id
    listed = {int(c.type): c.sha256 for c in modem.credentials(settings.provisioned_sec_tag)}
    assert {0, 1, 2} <= set(listed)
    journal = (tmp_path / "journal" / "provisioning.json").read_text()
    assert "PRIVATE KEY" not in journal


def allow_another_certificate(settings: Settings, imei: str) -> None:
    """The operator's step between two provisionings of one device, where the cloud requires it."""
    command = os.environ.get("NRFPROV_HW_REPROVISION")
    if not command:
        return
    client_id = settings.device_client_id(imei)
    params = flows.expand_parameters(settings.parameters(), imei=imei, client_id=client_id)
    for thing in plan.thing_candidates(client_id, params, None):
        # A thing that does not exist yet needs no permission: that refusal is expected and harmless.
        subprocess.run([*shlex.split(command), thing], capture_output=True, check=False, timeout=60)
