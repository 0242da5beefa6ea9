"""A short run of the AT core's fuzz harness in every test run (``make fuzz`` runs a million inputs)."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def test_short_fuzz_run(tmp_path: Path) -> None:
    if not (sys.platform == "linux" and platform.machine() == "x86_64"):
        pytest.skip("atheris wheels (dev extra) exist for Linux x86_64 only")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    run = subprocess.run(
        [sys.executable, str(HERE / "fuzz_at.py"), str(corpus), f"-dict={HERE / 'at.dict'}", "-runs=10000",
         "-max_len=4096", f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert "Done 10000 runs" in run.stderr
    assert not list(tmp_path.glob("crash-*"))
    # the programs reach the session's states, not just its line reader
    features = [int(x.split()[0]) for x in run.stderr.split(" ft: ")[1:]]
    assert features and max(features) > 200, run.stderr[-2000:]
