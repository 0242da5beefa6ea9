"""Packaging: an sdist of this tree builds the extension in a fresh venv, and it imports and parses.

Copies the working tree (without venvs, build output or the built extension), builds an sdist with
setuptools' PEP 517 backend, creates a brand-new venv and ``pip install``s the sdist there with
build isolation (pip fetches setuptools/wheel/cffi for the build, as on a user's machine). Runtime
dependencies other than cffi are skipped (``--no-deps``) to keep this quick; the import of
``nrfprov.extractor`` needs only cffi's backend.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from build_tree import copy_build_tree

SMOKE = """
from nrfprov.extractor import extract_message, native_version, state_size
import nrfprov._native as n, pathlib
assert 'site-packages' in n.__file__, n.__file__
msg = extract_message(b'{"certificateId":"ab","privateKey":"k\\\\n"}', "json")
assert msg.certificate_id == "ab" and msg.private_key == "k\\n", msg
assert extract_message(bytes.fromhex("a16a737461747573436f64651901f4"), "cbor").status_code == 500
print("ok", native_version(), state_size())
"""


@pytest.mark.slow
def test_sdist_builds_and_imports_in_a_fresh_venv(tmp_path: Path) -> None:
    src = copy_build_tree(tmp_path / "src-tree")  # only what an sdist is made of
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-c", f"from setuptools import build_meta as b; b.build_sdist({str(dist)!r})"],
        cwd=src, check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    (sdist,) = dist.glob("nrfprov-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {Path(*Path(n).parts[1:]).as_posix() for n in tar.getnames()}
    for needed in ("setup.py", "native/build_ffi.py", "native/include/nrfprov_core.h", "native/src/nrfprov_core.c",
                   "src/nrfprov/data/AmazonRootCA1.pem", "src/nrfprov/data/AmazonRootCA3.pem"):
        assert needed in names, f"sdist lacks {needed} (check MANIFEST.in)"

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "cffi>=1.16"], check=True, timeout=300)
    build = subprocess.run([*pip, "--no-deps", str(sdist)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    smoke = subprocess.run([str(py), "-c", SMOKE], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert smoke.returncode == 0, smoke.stderr[-3000:]
    assert smoke.stdout.startswith("ok 1.2.0 ")
