"""The modem facade cases of tests/integration/modem/modem_cases.py against a real nRF91.

Run: ``pytest tests/hardware/test_modem_hw.py --port /dev/ttyACM0 [--baud 115200]``. Without
``--port`` every test here is skipped (tests/conftest.py). The credential tests use a scratch sec
tag (2147483000) and delete what they wrote; the modem's functional mode is restored. Socket
cases need echo servers the modem can reach over LTE, which this suite does not provide: they skip
with that reason.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from integration.modem.modem_cases import *  # noqa: F403 - the shared cases, collected here
from integration.modem.modem_peers import Pki, Target, make_pki
from nrfprov.modem import Modem

pytestmark = pytest.mark.hardware

SCRATCH_TAG = 2147483000  # high, unlikely to hold anything real; below the modem-reserved range


@pytest.fixture(scope="module")
def hw_pki() -> Pki:
    return make_pki("broker.test")


@pytest.fixture
def target(request: pytest.FixtureRequest, hw_pki: Pki) -> Target:
    port = request.config.getoption("--port")
    return Target(port, None, SCRATCH_TAG, None, None, hw_pki)


@pytest.fixture
def modem(target: Target, request: pytest.FixtureRequest) -> Iterator[Modem]:
    baud = request.config.getoption("--baud")
    with Modem.open(target.port_url, baud=baud, rtscts=True) as m:
        mode = m.cfun()
        yield m
        if m.cfun() != mode:
            m.set_cfun(mode)
