"""Interrupt harness: SIGINT, SIGTERM and SIGHUP sent to the real ``nrfprov`` at chosen moments.

Each trial runs the real console script (``nrfprov -vv provision`` or ``nrfprov -vv creds write``)
on a simulated nRF91 (pty) against the local AWS IoT stand-in, reads the process's own debug log,
and sends the signal the moment a chosen line appears: the n-th AT command in flight (``→ ...``) at a
random n, or, specifically, a ``%CMNG`` write (the simulator holds each write a little, so the signal
lands while the modem executes it). Witnesses afterwards:

- the simulator's functional mode (``sim.cfun``) is the one the modem had before the run;
- the exit status is 128 + the signal (or 0 when the run had already finished);
- a provisioning run journaled the interruption and finishes when run again as a user would
  (``--resume`` when the journal holds issued credentials, else a plain run), ending with the
  journaled certificate in the modem at CFUN=1;
- ``creds write`` left the sec tag holding either the old content or the new one, never a mix.

Figures go to ``$NRFPROV_RELIABILITY_OUT`` (default: a temporary folder) as JSON rows
``{"figure", "value", "goal", "detail"}``. The full randomised run is marked ``reliability``; the
bounded subset below it runs in ``make test``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from integration.cli.clirun import run, start
from integration.provisioning.provrig import CLAIM_TAG, TAG, fragment
from nrfprov.cli.demo import SLM_TERMINATOR, write_claim_tag
from nrfprov.cloud import LocalAwsIot
from nrfprov.modem import Modem
from nrfprov.provisioning.bundle import normalize_pem
from nrfprov.sim import SimulatedModem

pytestmark = pytest.mark.integration

SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGHUP": signal.SIGHUP}
#: The log line each kind of moment waits for (the n-th one): a %CMNG write, %KEYGEN or any AT command
#: going out.
NEEDLES = {"write": "→ AT%CMNG=0", "keygen": "→ AT%KEYGEN", "command": "→ AT"}
WRITE_HOLD_S = 0.4  # the simulator holds each %CMNG write and %KEYGEN this long: the signal lands inside it
SCRATCH_TAG = 424243
FIGURE = "modem left at CFUN=4 after SIGINT/SIGTERM/SIGHUP"


@dataclass
class Trial:
    command: str  # "provision" or "creds write"
    sig: str
    moment: str  # "write" or "command N"
    initial_cfun: int
    exit_code: int | None = None
    final_cfun: int | None = None
    finished_after_rerun: bool | None = None
    notes: list[str] = field(default_factory=list)
    rerun_error: str = ""
    stderr_tail: str = field(default="", repr=False)

    @property
    def interrupted(self) -> bool:
        return self.exit_code == 128 + SIGNALS[self.sig]

    @property
    def cfun_wrong(self) -> bool:
        return self.final_cfun != (1 if self.exit_code == 0 and self.command == "provision" else self.initial_cfun)


# --- one trial ----------------------------------------------------------------------------------


def _signal_when(proc: object, sig: signal.Signals, needle: str, nth: int) -> bool:
    """Read the process's stderr until the ``nth`` line containing ``needle``, then signal it. False if
    the process ended first."""
    import subprocess

    assert isinstance(proc, subprocess.Popen) and proc.stderr is not None
    seen = 0
    for line in proc.stderr:
        if needle in line:
            seen += 1
            if seen == nth:
                proc.send_signal(sig)
                return True
    return False


def _set_cfun(sim: SimulatedModem, mode: int, *, claim: LocalAwsIot | None = None) -> None:
    with Modem.open(sim.port_url) as m:
        if claim is not None:
            write_claim_tag(m, claim, CLAIM_TAG)
        m.set_cfun(mode)


def provision_trial(cloud: LocalAwsIot, sim: SimulatedModem, work: Path, sig: str, moment: str, nth: int,
                    initial_cfun: int, flow: str, backend: str) -> Trial:
    trial = Trial("provision", sig, f"{moment} {nth}", initial_cfun)
    _set_cfun(sim, initial_cfun, claim=cloud)
    certs = cloud.write_certs_folder(work / "certs")
    conf = work / "prj.conf"
    lines = fragment(cloud, certs, backend=backend, flow=flow, fmt="json", dialect=sim.dialect,
                     client_id=f"irq-{work.name}")
    conf.write_text("\n".join(_quoted(line) for line in lines) + "\n")
    state = work / "journal"
    sim.delay_command("AT%CMNG=0", WRITE_HOLD_S)
    sim.delay_command("AT%KEYGEN", WRITE_HOLD_S)
    proc = start("-vv", "provision", "--port", sim.port_url, "--conf", str(conf), "--state", str(state))
    try:
        _signal_when(proc, SIGNALS[sig], NEEDLES[moment], nth)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    trial.exit_code = proc.returncode
    trial.final_cfun = sim.cfun
    trial.stderr_tail = (err or "")[-4000:]
    if "Traceback" in (err or ""):
        trial.notes.append("traceback: " + (err or "").strip().splitlines()[-1][:200])
    journal_path = state / "provisioning.json"
    journal = json.loads(journal_path.read_text()) if journal_path.exists() else None
    if trial.interrupted and journal is not None and "Interrupted" not in journal.get("error", ""):
        trial.notes.append(f"interruption not journaled: {journal.get('status')} {journal.get('error')!r}")
    # Run again as a user would.
    if trial.exit_code != 0:
        pending = journal is not None and journal.get("bundle") and not journal.get("key_erased")
        again = run("provision", "--port", sim.port_url, "--conf", str(conf), "--state", str(state),
                    *(["--resume"] if pending else []), timeout=300)
        trial.finished_after_rerun = again.returncode == 0
        if again.returncode != 0:
            trial.rerun_error = f"exit {again.returncode}: {again.stderr.strip()[-300:]}"
    else:
        trial.finished_after_rerun = True
    if trial.finished_after_rerun:
        final = json.loads(journal_path.read_text())
        if not (final["status"] == "done" and final["key_erased"]):
            trial.notes.append(f"journal not done after the run: {final['status']}")
        if normalize_pem(sim.stored(TAG).get(1, "")) != normalize_pem(final["bundle"]["certificate_pem"]):
            trial.notes.append("the modem does not hold the journaled certificate")
        if sim.cfun != 1:
            trial.notes.append(f"finished at CFUN={sim.cfun}")
    return trial


def creds_trial(sim: SimulatedModem, work: Path, pem_old: str, pem_new: Path, sig: str, moment: str, nth: int,
                initial_cfun: int) -> Trial:
    trial = Trial("creds write", sig, f"{moment} {nth}", initial_cfun)
    with Modem.open(sim.port_url) as m:
        m.write_credential(SCRATCH_TAG, 0, pem_old)
        m.set_cfun(initial_cfun)
    sim.delay_command("AT%CMNG=0", WRITE_HOLD_S)
    proc = start("-vv", "creds", "write", "--port", sim.port_url, str(SCRATCH_TAG), "ca", str(pem_new))
    try:
        _signal_when(proc, SIGNALS[sig], NEEDLES[moment], nth)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    trial.exit_code = proc.returncode
    trial.final_cfun = sim.cfun
    if "Traceback" in (err or ""):
        trial.notes.append("traceback: " + (err or "").strip().splitlines()[-1][:200])
    stored = normalize_pem(sim.stored(SCRATCH_TAG).get(0, ""))
    if stored not in (normalize_pem(pem_old), normalize_pem(pem_new.read_text())):
        trial.notes.append("sec tag holds neither the old nor the new content")
    trial.finished_after_rerun = True
    return trial


# --- the figures --------------------------------------------------------------------------------


def _out_dir() -> Path:
    d = os.environ.get("NRFPROV_RELIABILITY_OUT")
    path = Path(d) if d else Path(tempfile.gettempdir()) / f"nrfprov-reliability-{os.getuid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def report(trials: list[Trial], name: str) -> list[dict[str, object]]:
    wrong = [t for t in trials if t.cfun_wrong]
    interrupted = [t for t in trials if t.interrupted]
    by_sig = Counter(t.sig for t in interrupted)
    in_write = [t for t in interrupted if t.moment.startswith("write")]
    per_signal = []
    for sig in SIGNALS:
        mine = [t for t in trials if t.sig == sig]
        writes = [t for t in mine if t.moment.startswith("write")]
        per_signal.append(f"{sig}: {sum(t.cfun_wrong for t in mine)} of {len(mine)} "
                          f"({sum(t.cfun_wrong for t in writes)} of {len(writes)} in a %CMNG write)")
    rows: list[dict[str, object]] = [
        {"figure": FIGURE, "value": f"{len(wrong)} of {len(trials)}", "goal": "0",
         "detail": f"not back at the CFUN it had: {'; '.join(per_signal)}. {len(interrupted)} runs ended by the "
                   f"signal ({', '.join(f'{k} {v}' for k, v in sorted(by_sig.items()))}), the others had finished "
                   f"or died of it; {len(in_write)} interrupted inside a %CMNG write"},
        {"figure": "interrupted runs that cannot finish when run again", "goal": "0",
         "value": f"{sum(1 for t in trials if not t.finished_after_rerun)} of {len(trials)}",
         "detail": "provision: --resume when the journal holds credentials, else a plain run; "
                   + ("; ".join(f"{t.sig}/{t.moment}: {t.rerun_error}" for t in trials if t.rerun_error)[:600]
                      or "all finished")},
        {"figure": "interrupt trials with a traceback or another defect", "goal": "0",
         "value": f"{sum(1 for t in trials if t.notes)} of {len(trials)}",
         "detail": "; ".join(f"{t.command}/{t.sig}/{t.moment}: {', '.join(t.notes)}" for t in trials if t.notes)[:800]
         or "none"},
    ]
    (_out_dir() / f"{name}.json").write_text(json.dumps(rows, indent=1) + "\n")
    return rows


def _assert_clean(trials: list[Trial], *, reruns: bool = True) -> None:
    wrong = [t for t in trials if t.cfun_wrong]
    assert wrong == [], "\n\n".join(f"{t}\n{_log_tail(t.stderr_tail)}" for t in wrong)
    assert [t for t in trials if t.notes] == []
    if reruns:
        assert all(t.finished_after_rerun for t in trials), [t.rerun_error for t in trials if t.rerun_error]
    assert all(t.exit_code in (0, 128 + SIGNALS[t.sig]) for t in trials), [(t.sig, t.exit_code) for t in trials]


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def cloud(local_aws_factory: Callable[..., LocalAwsIot]) -> LocalAwsIot:
    # Reruns follow interrupted runs within a second; AWS's 1 CONNECT/s per client ID is not what
    # this harness measures.
    return local_aws_factory(connect_interval=0)


@pytest.fixture
def modem_sim(sim_factory: Callable[..., SimulatedModem]) -> Callable[[str], SimulatedModem]:
    """A simulated nRF91 of a dialect, built like provrig's (legacy SLM with the long terminator the
    fragment names)."""
    def make(dialect: str) -> SimulatedModem:
        return sim_factory(dialect=dialect, baud=0, terminator=SLM_TERMINATOR if dialect == "slm" else "+++")

    return make


@pytest.fixture
def pems(tmp_path: Path, cloud: LocalAwsIot) -> tuple[str, Path]:
    new = tmp_path / "new-ca.pem"
    new.write_text(cloud.ca_path.read_text())
    old = (Path(__file__).resolve().parents[2] / "src" / "nrfprov" / "data" / "AmazonRootCA1.pem").read_text()
    return old, new


@pytest.fixture
def trial_dirs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    def make(name: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        return d

    yield make


# --- the bounded subset (make test) -------------------------------------------------------------


def test_interrupts_bounded(cloud: LocalAwsIot, modem_sim: Callable[[str], SimulatedModem], pems: tuple[str, Path],
                            trial_dirs: Callable[[str], Path]) -> None:
    """Each signal once, two inside a %CMNG write, one inside %KEYGEN: a few seconds, in every
    ``make test``."""
    trials = [
        provision_trial(cloud, modem_sim("sm"), trial_dirs("p-int"), "SIGINT", "write", 2, 1,
                        "combined", "native"),
        creds_trial(modem_sim("sm"), trial_dirs("c-term"), *pems, "SIGTERM", "write", 1, 1),
        provision_trial(cloud, modem_sim("slm"), trial_dirs("p-hup"), "SIGHUP", "command", 12, 1,
                        "split", "offload"),
        # csr from CFUN=0: the run went offline for %KEYGEN and must end where it started, not online
        provision_trial(cloud, modem_sim("sm"), trial_dirs("p-term"), "SIGTERM", "keygen", 1, 0, "csr", "offload"),
    ]
    rows = report(trials, "interrupts-bounded")
    _assert_clean(trials)
    assert all(t.interrupted for t in trials), [(t.sig, t.moment, t.exit_code) for t in trials]
    assert rows[0]["value"] == "0 of 4"


# --- the full randomised run (make reliability) ------------------------------------------------

FULL_SEED = int(os.environ.get("NRFPROV_RELIABILITY_SEED", "11"))


@pytest.mark.reliability
def test_interrupts_full(cloud: LocalAwsIot, modem_sim: Callable[[str], SimulatedModem], pems: tuple[str, Path],
                         trial_dirs: Callable[[str], Path]) -> None:
    """Every signal, 8 times inside a %CMNG write and 4 times at a random AT command of a provisioning
    run, and 4 times in ``creds write``: 48 trials; initial CFUN 1 mostly, sometimes 0 or 4."""
    rng = random.Random(FULL_SEED)
    trials: list[Trial] = []
    combos = [("combined", "native", "sm"), ("split", "offload", "slm"), ("csr", "offload", "sm"),
              ("split", "offload", "sm")]
    n = 0
    for sig in SIGNALS:
        plan = [("write", rng.randint(1, 3)) for _ in range(8)] + [("command", rng.randint(1, 70)) for _ in range(4)]
        for moment, nth in plan:
            flow, backend, dialect = combos[n % len(combos)]
            initial = rng.choice([1, 1, 1, 0, 4])
            n += 1
            trials.append(provision_trial(cloud, modem_sim(dialect), trial_dirs(f"p{n}"), sig,
                                          moment, nth, initial, flow, backend))
        for i in range(4):
            moment, nth = ("write", 1) if i < 2 else ("command", rng.randint(1, 8))
            n += 1
            trials.append(creds_trial(modem_sim(rng.choice(["sm", "slm"])), trial_dirs(f"c{n}"),
                                      *pems, sig, moment, nth, rng.choice([1, 1, 0])))
    report(trials, "interrupts")
    # A signal between the RegisterThing request and its reply leaves the registration in doubt; a
    # rerun settling that is the provisioning journal's part (resume), reported here, asserted there.
    _assert_clean(trials, reruns=False)


def _log_tail(stderr: str) -> str:
    """The lines of a -vv log that tell what happened: warnings, errors and the last AT exchanges."""
    lines = stderr.splitlines()
    keep = [ln for ln in lines if not ln.startswith("DEBUG") or "modem.channel" in ln]
    return "\n".join(keep[-40:])


def _quoted(line: str) -> str:
    name, _, value = line.partition("=")
    return f"{name}={value}" if value.lstrip("-").isdigit() else f'{name}="{value}"'
