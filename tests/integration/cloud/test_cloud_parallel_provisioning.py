"""Ten simulated nRF91s provisioned at once, combined flow, native TLS, one stand-in.

AWS IoT returns Fleet Provisioning results "through the same MQTT connection used to publish the API
request" [AWS IoT developer guide, fleet-provision-api]. A stand-in that hands every
``$aws/certificates/create/<fmt>/accepted`` to every subscribed claim connection lets devices take each
other's key and certificate. Witnesses: each simulator's sec tag (what the modem really holds) and the
stand-in's registry (which certificate belongs to which thing).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nrfprov.cloud import LocalAwsIot
from nrfprov.config import load_settings
from nrfprov.errors import NrfprovError
from nrfprov.modem import Modem
from nrfprov.provisioning.driver import Driver
from nrfprov.provisioning.results import RunResult
from nrfprov.sim import SimulatedModem

pytestmark = pytest.mark.integration

DEVICES = 10
TAG = 50


def _cert_id(pem: str) -> str:
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def _settings(cloud: LocalAwsIot, certs: Path, client_id: str) -> object:
    return load_settings(overrides=[
        "CONFIG_AWS_IOT_BROKER_HOST_NAME=localhost",
        f"CONFIG_AWS_IOT_PORT={cloud.port}",
        f"CONFIG_AWS_IOT_CLIENT_ID_STATIC={client_id}",
        f"CONFIG_NRFPROV_PROVISIONED_SEC_TAG={TAG}",
        "CONFIG_NRFPROV_TLS_BACKEND=native",
        "CONFIG_NRFPROV_FLOW=combined",
        "CONFIG_NRFPROV_PAYLOAD_FORMAT=json",
        f"CONFIG_NRFPROV_CERTS_DIR={certs}",
        f"CONFIG_NRFPROV_CA_FILE={cloud.ca_path}",
        "CONFIG_NRFPROV_TEMPLATE_NAME=nrfprov",
        "CONFIG_NRFPROV_TEMPLATE_PARAMETERS=SerialNumber={imei}",
        "CONFIG_NRFPROV_MODEM_DIALECT=sm",
        # Ten modems and their host-side TLS share two cores with the broker and the responder.
        "CONFIG_NRFPROV_RESPONSE_TIMEOUT_S=60",
        "CONFIG_NRFPROV_LTE_TIMEOUT_S=60",
    ])


def test_ten_modems_at_once_each_get_their_own_identity(
    local_aws: LocalAwsIot, sim_factory: Callable[..., SimulatedModem], tmp_path: Path
) -> None:
    certs = local_aws.write_certs_folder(tmp_path / "certs")
    sims = [sim_factory(dialect="sm", baud=0) for _ in range(DEVICES)]
    modems = [Modem.open(sim.port_url, dialect="sm") for sim in sims]
    results: dict[int, RunResult | NrfprovError] = {}
    start = threading.Barrier(DEVICES)

    def run(i: int) -> None:
        settings = _settings(local_aws, certs, f"par-{i}")
        start.wait()  # every claim connection is up at about the same moment
        try:
            results[i] = Driver(settings, modems[i], state_dir=tmp_path / f"journal-{i}").run()  # type: ignore[arg-type]
        except NrfprovError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), name=f"par-{i}") for i in range(DEVICES)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for m in modems:
            m.close()

    failed = {i: repr(r) for i, r in results.items() if not isinstance(r, RunResult) or not r.ok}
    held = {i: _cert_id(sim.stored(TAG)[1]) for i, sim in enumerate(sims) if 1 in sim.stored(TAG)}
    registry = {r.thing_name: r for r in local_aws.certificates()}
    print(f"\nparallel combined/native: {DEVICES - len(failed)}/{DEVICES} succeeded, "
          f"{len(set(held.values()))} distinct certificates on {len(held)} modems, "
          f"{len(registry)} things in the registry")
    assert not failed, failed
    assert len(held) == DEVICES and len(set(held.values())) == DEVICES

    # The registry agrees: each modem's IMEI is a thing whose ACTIVE certificate is the one it holds.
    for i, sim in enumerate(sims):
        res = results[i]
        assert isinstance(res, RunResult)
        rec = registry[sim.identity.imei]
        assert rec.status == "ACTIVE" and rec.certificate_id == res.certificate_id == held[i]
    assert local_aws.request_counts()["create"] == DEVICES
