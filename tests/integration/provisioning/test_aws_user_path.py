"""The README's real-device path, minus AWS: an ``aws claim`` folder, then ``nrfprov provision --overlay aws.conf``.

``nrfprov aws claim --out DIR --port PORT`` writes ``ca-cert.pem``, ``client-cert.pem``, ``private-key.pem``
and ``aws.conf`` and copies the claim identity into the modem's sec tag 43. Here the folder is written by
the same code (``kconfig_fragment``, ``_write_to_modem``) with the stand-in's endpoint, CA and claim
identity instead of AWS's, and ``nrfprov provision`` runs as a user runs it, as a subprocess on a
simulated nRF91. The stand-in answers with the product handler, so the refusals are the deployed ones:
a second board with the same device id gets ``AlreadyProvisioned`` on ``.../rejected`` and the run stops
with exit 5 (the rejected message ends it: the response timeout is an hour), until the operator's
``nrfprov cloud reprovision`` (``nrfprov aws reprovision`` on AWS).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from provrig import TAG, Rig

from nrfprov.aws.claim import CONF_FILE, ClaimResult, kconfig_fragment
from nrfprov.cli.aws import _write_to_modem
from nrfprov.cli.demo import combinations, run_one
from nrfprov.cloud import LocalAwsIot
from nrfprov.cloud.pki import certificate_id
from nrfprov.errors import CloudRejected
from nrfprov.modem import Modem
from nrfprov.provisioning.bundle import normalize_pem
from nrfprov.provisioning.driver import Driver
from nrfprov.sim import SimulatedModem

pytestmark = pytest.mark.integration

CLAIM_TAG = 43
#: Far beyond any test's patience: the refused run can only end because the rejected reply arrived.
AN_HOUR = "3600"


def claim_folder(cloud: LocalAwsIot, out: Path, flow: str) -> ClaimResult:
    """What ``nrfprov aws claim --out DIR`` writes, pointing at the stand-in."""
    cloud.write_certs_folder(out)  # ca-cert.pem (the stand-in's root for Amazon's), client-cert.pem, private-key.pem
    cert_pem = (out / "client-cert.pem").read_text()
    cert_id = certificate_id(x509.load_pem_x509_certificate(cert_pem.encode()))
    conf = kconfig_fragment(stack="nrfprov", region="local", certificate_id=cert_id, endpoint=cloud.server_name,
                            port=cloud.port, sec_tag=CLAIM_TAG, certs_dir=out, flow=flow, template_name="nrfprov")
    (out / CONF_FILE).write_text(conf)
    return ClaimResult(cert_id, out, cloud.server_name, (), flow, (out / "ca-cert.pem").read_text(), cert_pem,
                       (out / "private-key.pem").read_text())


def board(sim_factory: Callable[..., SimulatedModem], claim: ClaimResult) -> SimulatedModem:
    """A simulated nRF91 after ``aws claim --port``: the claim identity in sec tag 43."""
    sim = sim_factory(dialect="sm", baud=0)
    modem = Modem.open(sim.port_url, dialect="sm")
    try:
        assert _write_to_modem(modem, CLAIM_TAG, claim)
    finally:
        modem.close()
    return sim


def provision(sim: SimulatedModem, conf: Path, state: Path, device: str,
              *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "nrfprov", "provision", "--port", sim.port_url, "--overlay", str(conf),
           "--set", f"CONFIG_AWS_IOT_CLIENT_ID_STATIC={device}", "--state", str(state), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.parametrize(("deployed", "request_kind"), [("split", "split"), ("fleet", "create-from-csr")])
def test_claim_folder_then_provision_then_a_second_board_needs_reprovision(
    local_aws_factory: Callable[..., LocalAwsIot], sim_factory: Callable[..., SimulatedModem], tmp_path: Path,
    deployed: str, request_kind: str,
) -> None:
    # Each `nrfprov provision` is a new process, so AWS's one CONNECT per second per client id
    # (test_cloud_quotas.py) would refuse the second board right after the first board's proof.
    local_aws = local_aws_factory(connect_interval=0)
    claim = claim_folder(local_aws, tmp_path / "claim", deployed)
    conf = tmp_path / "claim" / CONF_FILE
    first = board(sim_factory, claim)
    device = f"nrf-{first.identity.imei}"

    done = provision(first, conf, tmp_path / "state-1", device)
    assert done.returncode == 0, done.stderr
    [issued] = local_aws.certificates()
    assert (issued.status, issued.thing_name) == ("ACTIVE", device)
    stored = first.stored(TAG)
    assert normalize_pem(stored[0]) == normalize_pem(claim.ca_pem)
    assert certificate_id(x509.load_pem_x509_certificate(stored[1].encode())) == issued.certificate_id
    caller = "split" if deployed == "split" else "hook"
    assert [c.caller for c in local_aws.handler_calls()] == [caller]  # the product handler decided

    # A replaced board with the same device id: refused by the handler, exit 5, at once.
    second = board(sim_factory, claim)
    refused = provision(second, conf, tmp_path / "state-2", device, "--set",
                        f"CONFIG_NRFPROV_RESPONSE_TIMEOUT_S={AN_HOUR}")
    assert refused.returncode == 5, refused.stderr
    assert "AlreadyProvisioned" in refused.stderr if deployed == "split" else "AccessDenied" in refused.stderr
    journal = json.loads((tmp_path / "state-2" / "provisioning.json").read_text())
    assert "CloudRejected" in journal["error"]
    if deployed == "split":
        assert journal["bundle"] is None  # nothing was issued
    else:  # CreateCertificateFromCsr signed the modem's key; RegisterThing (the hook) refused to activate it
        assert journal["bundle"]["private_key_pem"] is None
    assert 1 not in second.stored(TAG)  # no certificate written (csr: %KEYGEN's key is already there)
    assert [c.status for c in local_aws.certificates() if c.operation == request_kind] in (
        ["ACTIVE"], ["ACTIVE", "PENDING_ACTIVATION"])  # CSR: signed, never activated

    # The operator allows it; the same command then provisions the new board and retires the old one.
    allowed = subprocess.run([sys.executable, "-m", "nrfprov", "cloud", "reprovision", device, "--state",
                              str(local_aws.state_dir)], capture_output=True, text=True, timeout=60)
    assert allowed.returncode == 0, allowed.stderr
    # Fleet: the journal holds the signed, never activated certificate; --resume registers it again.
    again = provision(second, conf, tmp_path / "state-2", device, *(() if deployed == "split" else ("--resume",)))
    assert again.returncode == 0, again.stderr
    status = {c.certificate_id: c.status for c in local_aws.certificates() if c.status != "PENDING_ACTIVATION"}
    assert status.pop(issued.certificate_id) == "INACTIVE" and list(status.values()) == ["ACTIVE"]
    assert certificate_id(x509.load_pem_x509_certificate(second.stored(TAG)[1].encode())) in status


@pytest.mark.parametrize("backend", ["offload", "native"])
def test_a_rejected_split_request_stops_the_run_at_once_with_exit_5(rig_factory: Callable[..., Rig],
                                                                    backend: str) -> None:
    """The device subscribes to ``certificate/<id>/create/rejected`` and fails on the refusal itself.

    With an hour's response timeout, the run can only have ended because the reply arrived: a timeout
    would raise ResponseTimeout (exit 4) after an hour; CloudRejected is raised by the reply collector.
    """
    rig = rig_factory("sm", claim_tag=backend == "offload")
    device = "IOT-Responder"  # the stand-in's own identity, reserved case-insensitively
    settings = rig.settings(backend=backend, flow="split", client_id=device,
                            extra=(f"CONFIG_NRFPROV_RESPONSE_TIMEOUT_S={AN_HOUR}",))
    steps: list[str] = []
    with pytest.raises(CloudRejected) as info:
        Driver(settings, rig.modem, state_dir=rig.state, progress=lambda r: steps.append(r.state.value)).run()
    err = info.value
    assert (err.topic, err.status_code, err.error_code) == (f"certificate/{device}/create/rejected", 403,
                                                           "ReservedDeviceId")
    assert err.exit_code == 5
    assert steps == ["LTE up", "claim connect", "subscribe", "request"]  # ended waiting for the reply
    journal = json.loads((rig.state / "provisioning.json").read_text())
    assert journal["bundle"] is None and "CloudRejected" in journal["error"]
    assert rig.sim.stored(TAG) == {}
    [call] = rig.cloud.handler_calls()
    assert (call.event, call.result["errorCode"]) == ({"deviceId": device, "topicId": device}, "ReservedDeviceId")
    assert rig.cloud.certificates() == []


def test_the_demos_split_rows_are_served_by_the_product_handler(local_aws: LocalAwsIot, tmp_path: Path) -> None:
    """What `make demo` runs for each split row, with the demo's own code: each run is one handler call
    that issued the certificate the row's modem now holds."""
    certs = local_aws.write_certs_folder(tmp_path / "certs")
    combos = combinations("split")
    assert {c.backend for c in combos} == {"native", "offload", "host"}
    for combo in combos:
        before = len(local_aws.handler_calls())
        row = run_one(local_aws, certs, tmp_path, combo, baud=0)
        assert row.ok and row.certificates == 1, row.error
        [call] = local_aws.handler_calls()[before:]
        assert call.caller == "split" and call.event["deviceId"] == combo.client_id and call.result["issued"]
        [rec] = [r for r in local_aws.certificates() if r.thing_name == combo.client_id]
        assert rec.certificate_id == call.result["certificateId"] and rec.operation == "split"
    assert local_aws.request_counts()["split"] == len(combos) == len(local_aws.handler_calls())
