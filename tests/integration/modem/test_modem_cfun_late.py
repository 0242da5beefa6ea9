"""A CFUN change answered after nrfprov's timeout: the real mode is read back and acted on.

The simulator holds ``AT+CFUN=4`` one second longer than the 15 s nrfprov allows it, then executes it,
as a modem busy detaching from the network does. Before, ``creds write`` gave up (exit 3) and the
modem went offline a second after nrfprov had exited, with no warning. Now the late answer is
awaited, the write goes ahead, and the modem ends in the mode it had: CFUN=1.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from integration.cli.clirun import run
from nrfprov.at.commands import cfun_set
from nrfprov.modem import Modem
from nrfprov.provisioning.bundle import normalize_pem
from nrfprov.sim import SimulatedModem

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TAG = 424244


def test_creds_write_survives_a_cfun4_answered_late(sim_factory: Callable[..., SimulatedModem]) -> None:
    sim = sim_factory(dialect="sm", baud=0)
    with Modem.open(sim.port_url) as m:
        m.set_cfun(1)
    pem = Path(__file__).resolve().parents[3] / "src" / "nrfprov" / "data" / "AmazonRootCA1.pem"
    sim.delay_command("AT+CFUN=4", cfun_set(4).timeout + 1.0, times=1)
    done = run("creds", "write", "--port", sim.port_url, str(TAG), "ca", str(pem), timeout=180)
    assert done.returncode == 0, done.stderr
    assert "answered late" in done.stderr
    assert normalize_pem(sim.stored(TAG)[0]) == normalize_pem(pem.read_text())
    # Asked through the modem (it answers in order, after anything still running): online again.
    with Modem.open(sim.port_url) as m:
        assert m.cfun() == 1
