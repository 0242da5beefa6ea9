"""Packaging: ``pip wheel .`` makes a wheel that, installed in a fresh venv away from the checkout,
runs ``nrfprov`` and finds its built-in Amazon Root CA 1 + 3 (shipped as package data).

Built from a copy of the packaging inputs (see build_tree.py) with build isolation, as on a user's
machine; installed with its dependencies, because ``nrfprov config show`` goes through the
provisioning package. Every command runs with the working directory outside the checkout, so
nothing can be found there by accident.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from build_tree import ROOT, copy_build_tree

CAS = ("AmazonRootCA1.pem", "AmazonRootCA3.pem")

# Run inside the fresh venv: the CA the provisioning run would write, parsed by an independent reader.
CHECK_CA = """
import sys
from cryptography import x509
from nrfprov.config import load_settings
from nrfprov.provisioning.cas import read_ca
pem = read_ca(load_settings(overrides=["CONFIG_NRFPROV_CERTS_DIR=" + sys.argv[1]]))
certs = x509.load_pem_x509_certificates(pem.encode())
print("|".join(c.subject.rfc4514_string() for c in certs))
"""


@pytest.mark.slow
def test_wheel_installs_outside_the_checkout_and_finds_the_amazon_root_cas(tmp_path: Path) -> None:
    src = copy_build_tree(tmp_path / "src-tree")
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps", "-w", str(dist),
         "."], cwd=src, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = dist.glob("nrfprov-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for name in CAS:
        assert f"nrfprov/data/{name}" in names, f"the wheel lacks nrfprov/data/{name} (package-data)"

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py, nrfprov = venv / "bin" / "python", venv / "bin" / "nrfprov"
    install = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    away = tmp_path / "elsewhere"
    (away / "certs").mkdir(parents=True)  # an empty certs folder: the lookup falls through to the built-ins

    version = subprocess.run([str(nrfprov), "--version"], cwd=away, capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.strip() == "nrfprov 0.1.0", version.stderr
    show = subprocess.run([str(nrfprov), "config", "show", "--json"], cwd=away, capture_output=True, text=True,
                          timeout=60)
    assert show.returncode == 0, show.stderr
    where = json.loads(show.stdout)["provisioned_ca"]
    assert where.startswith("built-in Amazon Root CA 1 + 3: "), where
    paths = [Path(p) for p in where.split(": ", 1)[1].split(", ")]
    assert [p.name for p in paths] == list(CAS)
    for p in paths:
        assert p.is_file() and "site-packages" in p.parts and ROOT not in p.parents, p
    subjects = subprocess.run([str(py), "-c", CHECK_CA, str(away / "certs")], cwd=away, capture_output=True,
                              text=True, timeout=60)
    assert subjects.returncode == 0, subjects.stderr[-3000:]
    assert subjects.stdout.strip() == "CN=Amazon Root CA 1,O=Amazon,C=US|CN=Amazon Root CA 3,O=Amazon,C=US"
