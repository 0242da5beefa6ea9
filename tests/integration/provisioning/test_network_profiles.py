"""A provisioning run under the simulator's nb-iot profile takes longer than under ideal, by at least
the attach times and round trips the chain cannot avoid (lower bound only; the machine may be slow)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from provrig import Rig

from nrfprov.provisioning.driver import Driver
from nrfprov.sim.network import PROFILES

pytestmark = pytest.mark.integration

# Sequential round trips every split-flow run over native TLS makes, at the least (benchmarks/RESULTS.md
# derives them): one DNS lookup; per connection one TCP connect and two for the TLS 1.2 full handshake;
# CONNECT with SUBSCRIBE right behind it, then the request once the SUBACK is in; CONNECT with the
# proof PUBLISH right behind it on the reconnect.
MIN_ROUND_TRIPS = 1 + 2 * (1 + 2) + 2 + 1
ATTACHES = 2  # CFUN=1 at the start and after the credentials are written


def _run(rig_factory: Callable[..., Rig], network: str) -> float:
    rig = rig_factory("sm", claim_tag=False, network=network)
    settings = rig.settings(backend="native", flow="split", client_id=f"dev-net-{network}")
    t0 = time.monotonic()
    result = Driver(settings, rig.modem, state_dir=rig.state).run()
    elapsed = time.monotonic() - t0
    assert result.ok
    return elapsed


def test_nb_iot_run_takes_its_round_trips_and_attach_times_longer(rig_factory: Callable[..., Rig]) -> None:
    ideal = _run(rig_factory, "ideal")
    nb = _run(rig_factory, "nb-iot")
    p = PROFILES["nb-iot"]
    expected_extra = ATTACHES * p.attach_s + MIN_ROUND_TRIPS * p.rtt_s
    print(f"ideal {ideal:.1f} s, nb-iot {nb:.1f} s, lower bound of the difference {expected_extra:.1f} s")
    assert nb - ideal >= 0.9 * expected_extra, (ideal, nb, expected_extra)
