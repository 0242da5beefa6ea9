"""Suite-wide options: ``--port`` switches hardware tests on; everything else runs on stand-ins."""

from __future__ import annotations

import pytest

# Shared fixtures, one plugin module per stand-in / room (tests/fixtures/<name>.py).
pytest_plugins: list[str] = ["fixtures.cloud", "fixtures.sim"]


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("nrfprov hardware")
    g.addoption("--port", default=None, help="serial URL of a real nRF91 (e.g. /dev/ttyACM0); enables -m hardware")
    g.addoption("--baud", type=int, default=115200, help="baud rate for --port")
    g.addoption("--endpoint", default=None, help="real AWS IoT ATS endpoint host for hardware cloud tests")
    g.addoption("--claim-sec-tag", type=int, default=None, help="sec tag holding claim credentials on the real modem")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--port"):
        return
    reason = "needs a real nRF91: pass --port /dev/ttyACM0 (README: 'Running the tests on real hardware')"
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)
