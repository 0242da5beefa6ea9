"""A reader that closes stdout early (``nrfprov ... | head -1``): a command that only prints ends quietly
with 141; a provisioning run goes on to its end (its modem is not left halfway) and its exit status."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from integration.cli.clirun import NRFPROV, env
from integration.cli.provconf import claim_modems, split_offload_conf
from nrfprov.cloud import LocalAwsIot
from nrfprov.modem import Modem
from nrfprov.sim import SimulatedModem

pytestmark = pytest.mark.integration


def test_closed_stdout_ends_quietly_with_141() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "nrfprov", "config", "show"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before nrfprov writes its first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert "Traceback" not in err


def test_provision_with_its_reader_gone_finishes_the_chain(
    sim_factory: Callable[..., SimulatedModem], local_aws: LocalAwsIot, tmp_path: Path
) -> None:
    sim = sim_factory(dialect="sm", baud=0)
    claim_modems(local_aws, sim)
    conf = split_offload_conf(local_aws, tmp_path, "dev-p")
    proc = subprocess.Popen([str(NRFPROV), "provision", "--port", sim.port_url, "--conf", str(conf), "--state",
                             str(tmp_path / "journal")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=env())
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()  # the first progress line, then the reader goes away (`| head -1`)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err
    with Modem.open(sim.port_url) as m:
        assert m.cfun() == 1
        assert [int(c.type) for c in m.credentials(50)] == [0, 1, 2]  # the chain wrote CA, cert and key
