"""100 SIGKILLs at random moments of real ``nrfprov provision`` runs, each followed by the rerun a user
would make (docs/reliability.md). The moments are uniform over the length of an uninterrupted run of
the same flow (measured first, process start included); a moment after the run had ended kills
nothing and is drawn again (that run is still audited). The seed is in the figures' detail.

``make reliability`` only (marker ``reliability``); ``make test`` runs three (one per flow).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest
from cases import SCENARIOS, Tally, after_delay, clean_run, run_case
from figures import write_rows

from fixtures.crashrig import Lab

pytestmark = pytest.mark.integration

KILLS = int(os.environ.get("NRFPROV_RANDOM_KILLS", "100"))
SEED = int(os.environ.get("NRFPROV_RANDOM_SEED", "11"))


@pytest.fixture(scope="module")
def tally() -> Iterator[Tally]:
    t = Tally(f"random kills + rerun, seed {SEED}")
    yield t
    write_rows("random-kills", t.rows())


def _kill_at_random(lab: Lab, tally: Tally, kills: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    lengths = {}
    for sc in SCENARIOS:
        _, seconds, windows = clean_run(lab, sc)
        lengths[sc] = seconds
        tally.extra_windows.setdefault(sc.flow, []).extend(windows)
    failed = []
    killed = attempts = 0
    # A moment after the end of a run kills nothing: draw again until ``kills`` kills landed.
    while killed < kills and attempts < 3 * kills:
        sc = SCENARIOS[attempts % len(SCENARIOS)]
        attempts += 1
        delay = rng.uniform(0.0, lengths[sc])
        case = run_case(lab, sc, f"random-{attempts}-{delay:.3f}s", after_delay(delay))
        tally.add(case)
        killed += case.killed
        a = case.audit
        if not (a.finished and a.cfun == 1 and not a.unreported and not a.key_leaks and not a.tracebacks
                and not a.problems):
            failed.append(f"{sc.name} at {delay:.3f} s: {a}")
    assert killed == kills, f"only {killed} of {attempts} random moments landed inside a run"
    return failed


def test_random_kills_smoke(lab: Lab, tally: Tally) -> None:
    assert not _kill_at_random(lab, tally, 3, SEED)


@pytest.mark.reliability
@pytest.mark.timeout(900)
def test_random_kills(lab: Lab, tally: Tally) -> None:
    assert not _kill_at_random(lab, tally, KILLS, SEED)
