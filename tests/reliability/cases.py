"""One kill case, the moments to kill at, and the tally that turns cases into figures.

A case: a fresh simulated modem, the real ``nrfprov provision`` started against it and the module's
stand-in, a SIGKILL at one moment (an *arm* decides which and how it is observed), then the rerun a
user would make (``crashrig.finish_as_user``) and the audit (``crashrig.audit``).
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fixtures.crashrig import Audit, Device, Lab, Scenario, audit, failpoint_env, finish_as_user, kill

Killer = Callable[[], None]
#: An arm sets up the moment of the kill for one case: (environment for nrfprov, undo).
Arm = Callable[[Lab, Device, Killer], tuple[dict[str, str], Callable[[], None]]]

RUNS: list[Device] = []  # every device of this process, for a look after a failure
SCENARIOS = (Scenario("split", "offload"), Scenario("combined", "native"), Scenario("csr", "offload"))
COMBINED_NATIVE = SCENARIOS[1]
REQUEST_OP = {"split": "split", "combined": "create", "csr": "create-from-csr"}


def _nothing() -> None:
    return None


def failpoint(spec: str) -> Arm:
    """A journal transition, reached with the documented ``NRFPROV_FAILPOINT`` (docs/reliability.md)."""
    def arm(lab: Lab, dev: Device, killer: Killer) -> tuple[dict[str, str], Callable[[], None]]:
        return failpoint_env(spec), _nothing
    return arm


def cloud_moment(which: str, op: str) -> Arm:
    """``before_handle``: the request reached the cloud; ``after_handle``: issued, reply not yet sent."""
    def arm(lab: Lab, dev: Device, killer: Killer) -> tuple[dict[str, str], Callable[[], None]]:
        def hook(seen: str) -> None:
            if seen == op:
                killer()
        setattr(lab.cloud, which, hook)
        return {}, lambda: setattr(lab.cloud, which, None)
    return arm


def sim_command(prefix: str, nth: int = 1) -> Arm:
    """Before the modem executes the ``nth`` command starting with ``prefix`` (a %CMNG write ...)."""
    def arm(lab: Lab, dev: Device, killer: Killer) -> tuple[dict[str, str], Callable[[], None]]:
        seen = [0]

        def hook(text: str) -> None:
            if text.upper().startswith(prefix):
                seen[0] += 1
                if seen[0] == nth:
                    killer()
        dev.sim.on_command = hook
        return {}, lambda: setattr(dev.sim, "on_command", None)
    return arm


def after_reply(op: str) -> Arm:
    """The reply is on its way: the cloud issued and sent it, the host read from its socket
    (``AT#XRECV``, or the modem pushed it: ``#XRECVCFG`` auto-receive) and went on; kill before the
    modem executes the host's next command."""
    def arm(lab: Lab, dev: Device, killer: Killer) -> tuple[dict[str, str], Callable[[], None]]:
        state = {"issued": False, "read": False}

        def issued(seen: str) -> None:
            if seen == op:
                state["issued"] = True

        def command(text: str) -> None:
            if not state["issued"]:
                return
            if state["read"]:
                state["issued"] = False
                killer()
            elif text.upper().startswith("AT#XRECV"):
                state["read"] = True

        def pushed(data: bytes) -> None:
            if state["issued"] and data.startswith(b"\r\n#XRECV:"):
                state["read"] = True
        lab.cloud.after_handle = issued
        dev.sim.on_command = command
        dev.sim.on_respond = pushed

        def undo() -> None:
            lab.cloud.after_handle = None
            dev.sim.on_command = None
            dev.sim.on_respond = None
        return {}, undo
    return arm


def after_delay(seconds: float) -> Arm:
    """A random moment: the kill lands ``seconds`` after the start, wherever the run is then."""
    def arm(lab: Lab, dev: Device, killer: Killer) -> tuple[dict[str, str], Callable[[], None]]:
        timer = threading.Timer(seconds, killer)
        timer.daemon = True
        timer.start()
        return {}, timer.cancel
    return arm


@dataclass
class CaseResult:
    scenario: Scenario
    point: str
    killed: bool
    audit: Audit
    key_windows: list[float]
    operator_steps: int = 0
    power_cycles: int = 0
    last_words: str = ""  # the last line the last run wrote to stderr


def run_case(lab: Lab, sc: Scenario, point: str, arm: Arm) -> CaseResult:
    dev = lab.device(sc, f"{sc.flow}-{point}".replace(":", "-").replace("@", "-").replace("/", "-"))
    before = {c.certificate_id for c in lab.cloud.certificates()}
    started = threading.Event()
    holder: dict[str, Any] = {}

    def killer() -> None:
        started.wait(30)
        proc = holder.pop("proc", None)
        if proc is not None:
            kill(proc)

    env, undo = arm(lab, dev, killer)
    try:
        proc = dev.start(env=env)
        holder["proc"] = proc
        started.set()
        first = dev.wait(proc)
    finally:
        undo()
        holder.pop("proc", None)
    killed = first.returncode == -9
    if first.returncode != 0:
        finish_as_user(dev, operator=lambda thing: lab.cloud.allow_reprovision(thing), power_cycle=lab.power_cycle)
    keys, tokens = lab.cloud.secrets()
    result = audit(dev, lab.cloud, before, keys, tokens)
    windows = [float(o.summary["key_window_ms"]) for o in dev.runs
               if o.summary.get("key_window_ms") is not None]
    RUNS.append(dev)
    last = dev.runs[-1].stderr.strip().splitlines()[-1:] if dev.runs else []
    return CaseResult(sc, point, killed, result, windows, dev.operator_steps, dev.power_cycles,
                      last[0][:160] if last else "")


def clean_run(lab: Lab, sc: Scenario) -> tuple[int, float, list[float]]:
    """One uninterrupted run: (journal writes it made, seconds, key windows in ms)."""
    import json
    import time

    dev = lab.device(sc, f"{sc.flow}-clean-{len(lab.cloud.certificates())}")
    t0 = time.monotonic()
    out = dev.run()
    seconds = time.monotonic() - t0
    assert out.returncode == 0, out.stderr
    doc = json.loads((dev.state / "provisioning.json").read_text())
    window = out.summary.get("key_window_ms")
    return int(doc["seq"]), seconds, [float(window)] if window is not None else []


@dataclass
class Tally:
    """Cases → the figures of the issue's goals table (docs/reliability.md)."""

    label: str
    cases: list[CaseResult] = field(default_factory=list)
    extra_windows: dict[str, list[float]] = field(default_factory=dict)

    def add(self, case: CaseResult) -> None:
        self.cases.append(case)

    def rows(self) -> list[dict[str, Any]]:
        n = len(self.cases)
        if not n:
            return []
        killed = sum(c.killed for c in self.cases)
        unfinished = [c for c in self.cases if not c.audit.finished]
        not_online = [c for c in self.cases if c.audit.cfun != 1]
        issued = sum(len(c.audit.issued) for c in self.cases)
        nowhere = sum(len(c.audit.key_nowhere) for c in self.cases)
        unnamed = [c for c in self.cases if c.audit.unreported]
        leaks = [c for c in self.cases if c.audit.key_leaks]
        crashes = sum(c.audit.tracebacks for c in self.cases)
        problems = [c for c in self.cases if c.audit.problems]

        def names(cs: list[CaseResult], *, why: bool = False) -> str:
            return ", ".join(f"{c.scenario.name} {c.point}" + (f" ({c.last_words})" if why else "")
                             for c in cs[:6]) or "-"

        by_flow = ", ".join(f"{sc.name} {sum(c.scenario == sc for c in self.cases)}"
                            for sc in dict.fromkeys(c.scenario for c in self.cases))
        missed = n - killed
        also = f" (+{missed} runs the moment missed, audited too)" if missed else ""
        rows = [
            {"figure": f"runs that cannot finish after a kill ({self.label})",
             "value": f"{len(unfinished)} of {killed}", "goal": "0",
             "detail": f"{killed} kills{also}; cases per flow: {by_flow}; unfinished: {names(unfinished, why=True)}"},
            {"figure": f"issued certificates with the key nowhere ({self.label})",
             "value": f"{nowhere} of {issued}", "goal": "only inside the unavoidable window, each one named",
             "detail": f"not named to the user: {sum(len(c.audit.unreported) for c in unnamed)} ({names(unnamed)})"},
            {"figure": f"modem not at CFUN=1 after kill + rerun ({self.label})", "value": f"{len(not_online)} of {n}",
             "goal": "0", "detail": names(not_online)},
            {"figure": f"key material outside the journal ({self.label})", "value": f"{len(leaks)} of {n}",
             "goal": "0", "detail": "; ".join(f"{c.point}: {c.audit.key_leaks}" for c in leaks[:4]) or "-"},
            {"figure": f"tracebacks or hangs ({self.label})", "value": str(crashes), "goal": "0",
             "detail": f"other problems: {names(problems)}"},
            {"figure": f"reruns that needed a modem reset ({self.label})",
             "value": f"{sum(c.power_cycles > 0 for c in self.cases)} of {n}", "goal": "0",
             "detail": "the kill left the serial modem in data mode and nrfprov said the modem does not answer "
             "AT; the user's power cycle, then --resume: "
             + names([c for c in self.cases if c.power_cycles], why=False)},
            {"figure": f"reruns that needed an operator's permission ({self.label})",
             "value": f"{sum(c.operator_steps > 0 for c in self.cases)} of {n}", "goal": "only after a lost reply",
             "detail": "nrfprov aws reprovision THING, as nrfprov's message says: the deployed handler issues one "
             "active certificate per thing"},
        ]
        windows: dict[str, list[float]] = {k: list(v) for k, v in self.extra_windows.items()}
        for c in self.cases:
            windows.setdefault(c.scenario.flow, []).extend(c.key_windows)
        for flow in ("split", "combined", "csr"):
            w = windows.get(flow, [])
            if flow == "csr":
                value, detail = "none", "the key is generated in the modem and never leaves it"
            elif not w:
                continue
            else:
                value = f"p50 {statistics.median(w):.1f}, max {max(w):.1f}"
                detail = f"{len(w)} runs; paho decoded the reply → durable journal write (fsync file + dir)"
            rows.append({"figure": f"key-loss window, ms ({flow}, {self.label})", "value": value,
                         "goal": "as small as the flow allows", "detail": detail})
        return rows
