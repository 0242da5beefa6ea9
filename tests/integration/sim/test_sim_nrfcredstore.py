"""Nordic's own credential tool (nrfcredstore, unmodified, as a subprocess) against the simulator.

nrfcredstore opens the port with its defaults (115200, rtscts=True: works on a pty, no
--rtscts-off needed) but only accepts a port that pyserial's comports() lists, which never
includes /dev/pts/N. As root we bind-mount the pty at /dev/ttyACM-nrfsim-… (nrfprov.sim.ttyalias),
so the tool runs with no change at all. Without mount rights we fall back to a sitecustomize shim
that only adds the pty to comports(); the AT conversation is the tool's own either way.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sim_peers import normalise_csr

from nrfprov.errors import UsageError
from nrfprov.sim import SimulatedModem
from nrfprov.sim.ttyalias import TtyAlias

pytestmark = pytest.mark.integration

NRFCREDSTORE = Path(sys.executable).with_name("nrfcredstore")
SHIM = '''
import os
import serial.tools.list_ports_linux as lpl
_orig = lpl.comports
def comports(include_links=False):
    extra = [lpl.SysFS(p) for p in os.environ.get("NRFSIM_EXTRA_PORTS", "").split(":") if p]
    return _orig(include_links) + extra
lpl.comports = comports
'''


@pytest.fixture(scope="module")
def credstore_env() -> None:
    if not NRFCREDSTORE.exists():
        pytest.fail(f"nrfcredstore is not installed in {NRFCREDSTORE.parent}: pip install -e '.[dev]'")


@pytest.fixture
def cred_sim(
    request: pytest.FixtureRequest, sim_factory: Callable[..., SimulatedModem], tmp_path: Path, credstore_env: None
) -> Iterator[tuple[SimulatedModem, Callable[..., subprocess.CompletedProcess[str]]]]:
    dialect, method = getattr(request, "param", ("sm", "auto"))
    sim = sim_factory(dialect=dialect, baud=115200)
    env = dict(os.environ)
    alias: TtyAlias | None = TtyAlias(Path(sim.port_url), Path(f"/dev/ttyACM-nrfsim-{os.getpid()}"))
    try:
        if method == "shim":
            raise UsageError("shim requested")
        assert alias is not None
        dev = str(alias.__enter__())
    except (UsageError, PermissionError, FileNotFoundError):
        alias = None
        shim = tmp_path / "shim"
        shim.mkdir()
        (shim / "sitecustomize.py").write_text(SHIM)
        env["PYTHONPATH"] = str(shim)
        env["NRFSIM_EXTRA_PORTS"] = sim.port_url
        dev = sim.port_url

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(NRFCREDSTORE), dev, *args], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path
        )
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    try:
        yield sim, run
    finally:
        if alias is not None:
            alias.__exit__(None, None, None)


def test_nrfcredstore_imei_write_list_delete_generate(cred_sim, pki, tmp_path: Path) -> None:
    sim, run = cred_sim
    assert run("imei").stdout.strip() == f"IMEI: {sim.identity.imei}"
    ca = tmp_path / "ca.pem"
    shutil.copy(pki.ca_file, ca)
    cert = tmp_path / "cert.pem"
    cert.write_text(pki.client_cert_pem)
    key = tmp_path / "key.pem"
    key.write_text(pki.client_key_pem)
    run("write", "123", "ROOT_CA_CERT", str(ca))
    run("write", "123", "CLIENT_CERT", str(cert))
    run("write", "123", "CLIENT_KEY", str(key))
    # nrfcredstore sends the file text with trailing whitespace stripped; the list shows its SHA-256.
    sha = {n: hashlib.sha256(p.read_text().rstrip().encode()).hexdigest().upper() for n, p in
           (("ROOT_CA_CERT", ca), ("CLIENT_CERT", cert), ("CLIENT_KEY", key))}
    rows = [ln.split() for ln in run("list", "--tag", "123").stdout.splitlines()[1:]]
    assert rows == [["123", name, sha[name]] for name in ("ROOT_CA_CERT", "CLIENT_CERT", "CLIENT_KEY")]
    assert sim.stored(123) == {0: ca.read_text().rstrip(), 1: cert.read_text().rstrip(), 2: key.read_text().rstrip()}
    # (nrfcredstore 2.1.0 never prints its "deleted" line: CredStore.delete returns None.)
    run("delete", "123", "CLIENT_KEY")
    assert sorted(sim.stored(123)) == [0, 1]
    # %KEYGEN through the tool: a DER CSR (with the mfw NULL quirk) for a key that stays inside.
    out = tmp_path / "csr.der"
    assert "New private key generated in secure tag 124" in run("generate", "124", str(out)).stdout
    csr = x509.load_der_x509_csr(normalise_csr(out.read_bytes()))
    assert csr.is_signature_valid
    stored_key = serialization.load_pem_private_key(sim.stored(124)[2].encode(), None)
    assert stored_key.public_key().public_numbers() == csr.public_key().public_numbers()  # type: ignore[union-attr]
    rows = [ln.split() for ln in run("list").stdout.splitlines()[1:]]
    assert [r[:2] for r in rows] == [["123", "ROOT_CA_CERT"], ["123", "CLIENT_CERT"], ["124", "CLIENT_KEY"]]
    assert run("attoken").stdout.startswith("Attestation token: ")
    assert sim.cfun == 4  # nrfcredstore always sets CFUN=4 and leaves it there


@pytest.mark.parametrize("cred_sim", [("slm", "shim")], indirect=True)
def test_nrfcredstore_through_comports_shim(cred_sim) -> None:
    """The fallback path (no root): only port enumeration is patched; legacy SLM dialect."""
    sim, run = cred_sim
    assert run("imei").stdout.strip() == f"IMEI: {sim.identity.imei}"
    assert run("list").stdout.splitlines()[1:] == []
