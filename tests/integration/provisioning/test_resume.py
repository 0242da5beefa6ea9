"""Kill the real process after the credentials arrived and before the write; --resume finishes it.

A real ``nrfprov provision`` subprocess talks to the simulated modem's pty. The simulator holds the
run's first ``AT+CFUN=4`` (step 8, right after the claim disconnect) for a few seconds, so when the
progress line of step 7 appears the process is provably between "credentials journaled" and "first
modem write"; the test SIGKILLs it there. Witnesses: the stand-in saw one request and issued one
certificate; sec tag 50 is empty; after --resume it holds that same certificate, and the stand-in
still saw only one request.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from provrig import TAG, Rig

from nrfprov.provisioning.bundle import normalize_pem

pytestmark = pytest.mark.integration

HOLD_CFUN4_S = 2.0  # long enough for the kill to land first; short enough not to slow the resume


def _provision(rig: Rig, conf: Path, *extra: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "nrfprov", "provision", "--port", rig.sim.port_url, "--conf", str(conf),
           "--state", str(rig.state), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.parametrize(("flow", "backend", "dialect"), [("combined", "native", "slm"), ("split", "offload", "slm")])
def test_kill_before_the_write_then_resume(rig_factory: Callable[..., Rig], tmp_path: Path, flow: str,
                                           backend: str, dialect: str) -> None:
    rig = rig_factory(dialect, claim_tag=backend == "offload")
    rig.modem.close()  # the subprocess owns the port
    conf = rig.conf_file(tmp_path / "prj.conf", backend=backend, flow=flow, fmt="cbor", client_id="dev-kill")
    rig.sim.delay_command("AT+CFUN=4", HOLD_CFUN4_S, times=1)
    proc = _provision(rig, conf)
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line.strip())
            if line.startswith("step disconnect"):
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, (seen, err)
    assert any(s.startswith("step receive") for s in seen)

    journal = json.loads((rig.state / "provisioning.json").read_text())
    assert journal["status"] == "in_progress" and journal["bundle"]["private_key_pem"]
    issued_id = journal["bundle"]["certificate_id"]
    assert rig.sim.stored(TAG) == {}, "the kill landed after a modem write"
    kind = "create" if flow == "combined" else "split"
    assert rig.cloud.request_counts()[kind] == 1 and len(rig.cloud.certificates()) == 1

    # A fresh run would request a second certificate and orphan the first: refused (exit 2).
    fresh = _provision(rig, conf)
    _, err = fresh.communicate(timeout=60)
    assert fresh.returncode == 2 and "--resume" in err

    done = _provision(rig, conf, "--resume", "--json")
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    summary = json.loads(out)
    assert summary["ok"] and summary["resumed"] and summary["certificate_id"] == issued_id
    assert next(s["step"] for s in summary["steps"]) in ("CFUN=4", "LTE up")
    # No second request reached the stand-in; the certificate in sec tag 50 is the journaled one.
    counts = rig.cloud.request_counts()
    assert counts[kind] == 1 and counts["register"] == (1 if flow == "combined" else 0)
    certs = rig.cloud.certificates()
    assert len(certs) == 1 and certs[0].certificate_id == issued_id and certs[0].status == "ACTIVE"
    assert normalize_pem(rig.sim.stored(TAG)[1]) == normalize_pem(journal["bundle"]["certificate_pem"])
    final = json.loads((rig.state / "provisioning.json").read_text())
    assert final["status"] == "done" and final["key_erased"] and final["bundle"]["private_key_pem"] is None
