"""The round-trip savings change nothing but the round trips: with each of them on or off, a run writes the
same kind of credentials (the certificate the stand-in issued for this run, its CA, a key that matches)
and proves them with the same publish, and the stand-in sees one request and one active certificate.

Options (docs/provisioning.md, "Round trips"): CONFIG_NRFPROV_MQTT_PIPELINE (packets right behind
CONNECT), CONFIG_NRFPROV_PUBLISH_BEFORE_SUBACK (the request right behind its SUBSCRIBE),
CONFIG_NRFPROV_DNS_REUSE_S (the broker's address looked up once per run).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from provrig import TAG, Rig

from nrfprov.provisioning.bundle import normalize_pem
from nrfprov.provisioning.driver import Driver

pytestmark = pytest.mark.integration

REQUEST_KIND = {"split": "split", "combined": "create", "csr": "create-from-csr"}
OFF = ("CONFIG_NRFPROV_MQTT_PIPELINE=n", "CONFIG_NRFPROV_PUBLISH_BEFORE_SUBACK=n", "CONFIG_NRFPROV_DNS_REUSE_S=0")
OPTIONS = {
    "all-off": OFF,
    "defaults": (),
    "all-on": ("CONFIG_NRFPROV_PUBLISH_BEFORE_SUBACK=y",),
}
CASES = [("split", "json", "offload"), ("combined", "cbor", "native"), ("csr", "json", "offload")]


def _spki(obj: object) -> bytes:
    return obj.public_key().public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("options", list(OPTIONS), ids=list(OPTIONS))
@pytest.mark.parametrize(("flow", "fmt", "backend"), CASES, ids=["-".join(c) for c in CASES])
def test_each_option_writes_and_proves_the_same_credentials(rig_factory: Callable[..., Rig], options: str,
                                                            flow: str, fmt: str, backend: str) -> None:
    rig = rig_factory("sm", claim_tag=backend == "offload")
    settings = rig.settings(backend=backend, flow=flow, fmt=fmt, client_id=f"rt-{flow}-{options}",
                            extra=OPTIONS[options])
    result = Driver(settings, rig.modem, state_dir=rig.state).run()
    assert result.ok and result.steps[-1].state.value == "done"  # the proof publish was PUBACKed

    counts = rig.cloud.request_counts()
    assert counts[REQUEST_KIND[flow]] == 1 and counts["register"] == (0 if flow == "split" else 1)
    [issued] = rig.cloud.certificates()
    assert issued.certificate_id == result.certificate_id and issued.status == "ACTIVE"
    stored = rig.sim.stored(TAG)
    assert normalize_pem(stored[0]) == normalize_pem(rig.cloud.ca_path.read_text())
    cert = x509.load_pem_x509_certificate(stored[1].encode())
    key = serialization.load_pem_private_key(stored[2].encode(), password=None)
    assert _spki(key) == _spki(cert)
    # One lookup of the broker's name per run with reuse (the reconnect dials the address), one per
    # connection without.
    assert rig.sim.stats.dns == (2 if "CONFIG_NRFPROV_DNS_REUSE_S=0" in OPTIONS[options] else 1)
