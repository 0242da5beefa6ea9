"""Fixture: a stand-in, a simulated modem and settings pointing at both (see provrig.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from provrig import BAUD, CLAIM_TAG, Rig

from nrfprov.cli.demo import SLM_TERMINATOR, write_claim_tag
from nrfprov.cloud import LocalAwsIot
from nrfprov.modem import Modem
from nrfprov.sim import SimulatedModem


@pytest.fixture
def rig_factory(local_aws: LocalAwsIot, sim_factory: Callable[..., SimulatedModem],
                tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    opened: list[Modem] = []
    certs = local_aws.write_certs_folder(tmp_path / "certs")

    def make(dialect: str, *, claim_tag: bool = True, open_modem: bool = True, **sim_options: Any) -> Rig:
        terminator = SLM_TERMINATOR if dialect == "slm" else "+++"
        sim = sim_factory(dialect=dialect, baud=BAUD, terminator=terminator, **sim_options)
        modem: Any = None
        if open_modem:
            modem = Modem.open(sim.port_url, dialect=dialect, slm_terminator=terminator)
            opened.append(modem)
            if claim_tag:
                write_claim_tag(modem, local_aws, CLAIM_TAG)
        return Rig(local_aws, sim, modem, certs, tmp_path / f"journal-{len(opened)}", dialect)

    yield make
    for m in opened:
        m.close()
