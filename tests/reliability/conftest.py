"""Fixtures of the reliability harnesses (docs/reliability.md).

Convention every harness here follows (``figures.py``): it writes its figures as JSON rows
``{"figure", "value", "goal", "detail"}`` into the directory named by ``$NRFPROV_RELIABILITY_OUT``;
``tests/reliability/report.py DIR`` prints them as one table. ``make reliability`` runs
the long harnesses (marker ``reliability``) and then the report; ``make test`` runs a bounded subset
of each, which writes its rows too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fixtures.crashrig import Lab, open_lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One local stand-in (with hooks) for a harness module; each case gets its own simulated modem."""
    root = tmp_path_factory.mktemp("lab")
    lab = open_lab(root)
    try:
        yield lab
    finally:
        lab.close()
        lab.cloud.stop()
