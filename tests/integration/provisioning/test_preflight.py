"""Bad local input is found before anything is requested from the cloud or the modem's mode changes.

Each case reproduces a local input that used to fail only after the certificate was issued (losing
it) or after the modem went to CFUN=4 and back: the run now stops with exit 2 naming the file or the
setting, the stand-in saw no request, and the modem received no ``AT+CFUN`` at all.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from provrig import TAG, Rig

from nrfprov.config import Settings
from nrfprov.errors import NrfprovError
from nrfprov.provisioning.driver import Driver

pytestmark = pytest.mark.integration

NOTHING = {"split": 0, "create": 0, "create-from-csr": 0, "register": 0}


def _ca(cn: str, *, days: tuple[int, int] = (-1, 3650), rsa_key: bool = False) -> str:
    key = rsa.generate_private_key(65537, 2048) if rsa_key else ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now + dt.timedelta(days=days[0]))
            .not_valid_after(now + dt.timedelta(days=days[1]))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _refused_before_anything(rig: Rig, settings: Settings, needle: str) -> NrfprovError:
    with pytest.raises(NrfprovError) as info:
        Driver(settings, rig.modem, state_dir=rig.state).run()
    assert info.value.exit_code == 2, info.value
    assert needle in str(info.value), str(info.value)
    assert rig.cloud.request_counts() == NOTHING  # nothing was requested from the cloud
    assert not any(c.startswith("AT+CFUN=") for c in rig.sim.command_log)  # the modem never changed mode
    assert rig.sim.stored(TAG) == {}
    return info.value


def _ca_file(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "ca.pem"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_a_ca_bundle_too_large_for_one_cmng_command(rig_factory: Callable[..., Rig], tmp_path: Path) -> None:
    rig = rig_factory("sm")
    bundle = rig.cloud.ca_path.read_text()
    while len(bundle) < 4096:  # real, valid roots: only the size is wrong (the file had 4,243 bytes)
        bundle += _ca(f"extra root {len(bundle)}", rsa_key=True)
    path = _ca_file(tmp_path, bundle)
    s = rig.settings(backend="offload", flow="split", extra=(f"CONFIG_NRFPROV_CA_FILE={path}",))
    err = _refused_before_anything(rig, s, "4096-byte limit")
    assert str(path) in str(err)


@pytest.mark.parametrize(("content", "needle"), [
    ("this is not a certificate\n", "holds no PEM certificate"),
    ("", "holds no PEM certificate"),  # an empty file: the message names the file, not a folder
])
def test_a_ca_file_that_is_not_a_certificate(rig_factory: Callable[..., Rig], tmp_path: Path, content: str,
                                             needle: str) -> None:
    rig = rig_factory("sm")
    path = _ca_file(tmp_path, content)
    s = rig.settings(backend="offload", flow="split", extra=(f"CONFIG_NRFPROV_CA_FILE={path}",))
    err = _refused_before_anything(rig, s, needle)
    assert str(path) in str(err)


def test_dev_zero_as_the_ca_file(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory("sm")
    s = rig.settings(backend="offload", flow="split", extra=("CONFIG_NRFPROV_CA_FILE=/dev/zero",))
    err = _refused_before_anything(rig, s, "not a regular file")
    assert "/dev/zero" in str(err)


def test_a_bundle_holding_an_expired_ca(rig_factory: Callable[..., Rig], tmp_path: Path) -> None:
    rig = rig_factory("sm")
    path = _ca_file(tmp_path, rig.cloud.ca_path.read_text() + _ca("old root", days=(-400, -30)))
    s = rig.settings(backend="offload", flow="split", extra=(f"CONFIG_NRFPROV_CA_FILE={path}",))
    _refused_before_anything(rig, s, "CA certificate #2 expired")


@pytest.mark.parametrize("tag", [-1, 2**31])
def test_a_sec_tag_out_of_range_given_through_the_api(rig_factory: Callable[..., Rig], tag: int) -> None:
    # The fragments range-check their symbols; a program using the API hands Settings in directly.
    rig = rig_factory("sm")
    s = dataclasses.replace(rig.settings(backend="offload", flow="split"), provisioned_sec_tag=tag)
    _refused_before_anything(rig, s, "outside 0..2147483647")


def test_a_certs_folder_whose_key_is_not_the_certificates(rig_factory: Callable[..., Rig], tmp_path: Path) -> None:
    rig = rig_factory("sm", claim_tag=False)
    folder = tmp_path / "bad-certs"
    folder.mkdir()
    for name in ("ca-cert.pem", "client-cert.pem"):
        (folder / name).write_bytes((rig.certs / name).read_bytes())
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (folder / "private-key.pem").write_bytes(other)
    s = rig.settings(backend="native", flow="combined", extra=(f"CONFIG_NRFPROV_CERTS_DIR={folder}",))
    _refused_before_anything(rig, s, "private-key.pem does not belong to client-cert.pem")


def test_an_unknown_placeholder_in_the_template_parameters(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory("sm", claim_tag=False)
    s = rig.settings(backend="native", flow="combined",
                     extra=("CONFIG_NRFPROV_TEMPLATE_PARAMETERS=SerialNumber={serial}",))
    _refused_before_anything(rig, s, "unknown placeholder {serial}")
