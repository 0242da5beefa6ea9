"""The crash-point harness: SIGKILL the real ``nrfprov provision`` at each journal transition and inside
each wait, rerun as a user would, and check what is left (docs/reliability.md).

For split/offload, combined/native and csr/offload, the kill lands at every journal write (its final
name, and between its temp file and the rename), when the request reaches the stand-in, when the
certificate is issued but not yet sent, after the reply reached the host, before each ``%CMNG``
write and before ``CFUN=4``, and around RegisterThing. After each: the rerun finishes, the modem is
at CFUN=1, no key is outside the journal, and every certificate the stand-in issued is in the modem
or was named to the user.

``make test`` runs ``test_crash_point_subset`` (a dozen cases, the key windows first);
``make reliability`` runs ``test_crash_point_matrix``, every point of every flow, and writes the
figures (``crash-points.jsonl``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cases import (
    REQUEST_OP,
    SCENARIOS,
    Arm,
    Tally,
    after_reply,
    clean_run,
    cloud_moment,
    failpoint,
    run_case,
    sim_command,
)
from figures import write_rows

from fixtures.crashrig import Lab, Scenario

pytestmark = pytest.mark.integration

SPLIT, COMBINED, CSR = SCENARIOS


def _waits(sc: Scenario) -> list[tuple[str, Arm]]:
    """The moments inside each wait of a flow, observed from outside nrfprov."""
    op = REQUEST_OP[sc.flow]
    points: list[tuple[str, Arm]] = [
        ("request-received", cloud_moment("before_handle", op)),
        ("issued-not-sent", cloud_moment("after_handle", op)),
        ("reply-on-host", after_reply(op)),
        ("cfun4", sim_command("AT+CFUN=4")),
    ]
    for cred_type in (0, 1) if sc.flow == "csr" else (0, 1, 2):
        points.append((f"cmng-write-{cred_type}", sim_command(f"AT%CMNG=0,50,{cred_type}")))
    if sc.flow != "split":
        points += [("register-received", cloud_moment("before_handle", "register")),
                   ("registered-not-sent", cloud_moment("after_handle", "register"))]
    return points


SUBSET: list[tuple[Scenario, str, Arm]] = [
    # The key windows: the raw reply is the first durable copy of the key.
    (SPLIT, "journal@reply:1", failpoint("journal@reply:1")),
    (COMBINED, "journal@reply", failpoint("journal@reply")),
    (CSR, "journal@reply", failpoint("journal@reply")),
    # Requested, reply lost: what was probably issued is named.
    (SPLIT, "issued-not-sent", cloud_moment("after_handle", "split")),
    (COMBINED, "issued-not-sent", cloud_moment("after_handle", "create")),
    # During the write, and after the proof before done.
    (SPLIT, "cmng-write-2", sim_command("AT%CMNG=0,50,2")),
    (CSR, "cmng-write-1", sim_command("AT%CMNG=0,50,1")),
    (COMBINED, "journal@erase", failpoint("journal@erase")),
    # RegisterThing in doubt: sent and processed, reply lost; intent journaled, never sent.
    (COMBINED, "registered-not-sent", cloud_moment("after_handle", "register")),
    (CSR, "journal@request:2", failpoint("journal@request:2")),
    # A temp file left between write and rename, holding the key.
    (SPLIT, "journal-tmp@bundle", failpoint("journal-tmp@bundle")),
]


@pytest.fixture(scope="module")
def tally() -> Iterator[Tally]:
    t = Tally("crash points")
    yield t
    write_rows("crash-points", t.rows())


@pytest.mark.parametrize(("sc", "point", "arm"), SUBSET, ids=[f"{s.flow}-{p}" for s, p, _ in SUBSET])
def test_crash_point_subset(lab: Lab, tally: Tally, sc: Scenario, point: str, arm: Arm) -> None:
    case = run_case(lab, sc, point, arm)
    tally.add(case)
    a = case.audit
    assert case.killed, f"the kill at {point} never happened"
    assert a.finished, f"{sc.name} {point}: the rerun did not finish: {case}"
    assert a.cfun == 1 and not a.key_leaks and not a.tracebacks and not a.problems, a
    assert not a.unreported, f"issued and never named to the user: {a.unreported}"


@pytest.mark.reliability
@pytest.mark.timeout(900)
@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_crash_point_matrix(lab: Lab, tally: Tally, sc: Scenario) -> None:
    writes, _, windows = clean_run(lab, sc)
    tally.extra_windows.setdefault(sc.flow, []).extend(windows)
    points: list[tuple[str, Arm]] = [(f"journal:{n}", failpoint(f"journal:{n}")) for n in range(1, writes + 1)]
    points += [(f"journal-tmp:{n}", failpoint(f"journal-tmp:{n}")) for n in range(1, writes + 1)]
    points += _waits(sc)
    failed = []
    for point, arm in points:
        case = run_case(lab, sc, point, arm)
        tally.add(case)
        if not (case.killed and case.audit.ok):
            failed.append((point, case.killed, case.audit))
    assert not failed, failed
