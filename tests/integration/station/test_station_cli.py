"""``nrfprov ports`` and ``nrfprov station`` as processes: discovery on the simulator's ptys, Ctrl-C mid-run.

The simulators run in the test process; the station is a real ``nrfprov`` process that gets a real
SIGINT. Every wait is on an event (a line on the station's stdout, a command reaching a simulator),
bounded by a timeout that only detects a hang.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from benchrig import TAG, Bench

from nrfprov.provisioning import plan
from nrfprov.provisioning.journal import Journal
from nrfprov.station import Station, StationOptions

pytestmark = pytest.mark.integration

HANG_S = 120.0  # a hang detector, not a speed check


def nrfprov(*args: str) -> list[str]:
    return [sys.executable, "-m", "nrfprov", *args]


def test_ports_probes_the_simulators_ptys(bench_factory: Callable[..., Bench]) -> None:
    bench = bench_factory(3)
    out = subprocess.run(nrfprov("ports", "--port", bench.pattern, "--json"), capture_output=True, text=True,
                         timeout=HANG_S)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert [(p["port"], p["status"], p["imei"]) for p in found] == [
        (str(bench.root / f"nrf91-{n}"), "modem", s.identity.imei) for n, s in enumerate(bench.sims)]
    assert all(p["firmware"].startswith("mfw_nrf91") for p in found), found
    text = subprocess.run(nrfprov("ports", "--port", bench.pattern), capture_output=True, text=True, timeout=HANG_S)
    assert text.returncode == 0 and bench.sims[2].identity.imei in text.stdout


def test_ctrl_c_finishes_or_journals_every_device_and_leaves_no_modem_offline(
        bench_factory: Callable[..., Bench]) -> None:
    bench = bench_factory(6)
    conf = bench.conf_file()
    proc = subprocess.Popen(
        nrfprov("station", "--conf", str(conf), "--port", bench.pattern, "--state", str(bench.journals),
                "--report", str(bench.report), "--json"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    released = threading.Event()  # the station announced it is stopping
    events: list[dict[str, Any]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            events.append(json.loads(line))
            if events[-1]["event"] == "stopping":
                released.set()
        released.set()  # the process ended: release whatever still waits

    # Modem 0 is in the write phase (its credentials are issued: it must finish) when Ctrl-C comes;
    # modem 1 is still bringing LTE up (nothing requested: it must stop there, its mode restored).
    def ctrl_c_in_the_write_phase(text: str) -> None:
        if text.upper().startswith(f"AT%CMNG=0,{TAG},"):
            bench.sims[0].on_command = None
            proc.send_signal(signal.SIGINT)

    def slow_lte_up(text: str) -> None:
        if text.upper().startswith("AT+CFUN=1"):
            bench.sims[1].on_command = None
            released.wait(HANG_S)  # the modem answers once the station has begun stopping

    bench.sims[0].on_command = ctrl_c_in_the_write_phase
    bench.sims[1].on_command = slow_lte_up
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        rc = proc.wait(HANG_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(HANG_S)
        assert proc.stderr is not None
        stderr = proc.stderr.read()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    assert rc == 130, stderr
    assert "Traceback" not in stderr and "station stopped (SIGINT)" in stderr
    summary = events[-1]
    assert summary["event"] == "summary" and summary["stopped_by"] == "SIGINT"
    rows = {r["imei"]: r for r in bench.report_rows()}
    imei = [s.identity.imei for s in bench.sims]
    assert rows[imei[0]]["result"] == "provisioned"  # issued credentials are never left waiting
    assert rows[imei[1]]["result"] == "interrupted" and rows[imei[1]]["exit_code"] == 130
    # No modem offline, whatever step it was at.
    cfun = {s.identity.imei: s.cfun for s in bench.sims}
    assert 4 not in cfun.values(), cfun
    assert cfun[imei[1]] == 0  # its mode before the run, restored
    # Every device that started is finished or journaled so that a rerun needs no second certificate.
    for s in bench.sims:
        row = rows.get(s.identity.imei)
        if row is None:
            continue  # never started: the modem was not touched
        assert row["result"] in ("provisioned", "interrupted"), row
        state = plan.journal_state(Journal(bench.journals / s.identity.imei).load())
        assert state in ((plan.PROVEN,) if row["result"] == "provisioned" else
                         (plan.NO_JOURNAL, plan.FRESH, plan.RESUMABLE)), (row, state)
    issued_before = {c.certificate_id for c in bench.cloud.certificates()}

    again = Station(bench.settings(), StationOptions(patterns=(bench.pattern,), state_root=bench.journals,
                                                     report=bench.report), comports=lambda: []).run()
    assert again.exit_code == 0 and again.done == 6, again.as_dict()
    issued = {c.certificate_id for c in bench.cloud.certificates()}
    assert issued_before <= issued and len(issued) == 6  # one certificate per modem, none lost or doubled


def test_watch_as_a_process_takes_a_modem_plugged_in_and_ends_on_ctrl_c(bench_factory: Callable[..., Bench]) -> None:
    bench = bench_factory(1)
    proc = subprocess.Popen(
        nrfprov("station", "--conf", str(bench.conf_file()), "--port", bench.pattern, "--state",
                str(bench.journals), "--report", str(bench.report), "--watch", "--poll-s", "0.1", "--json"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    results: list[dict[str, Any]] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # each line is an event; the loop ends when the process closes stdout
            event = json.loads(line)
            if event["event"] == "result":
                results.append(event)
                if len(results) == 1:
                    bench.add_modem()  # plugged in while the station watches
                else:
                    proc.send_signal(signal.SIGINT)
        rc = proc.wait(HANG_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr = proc.stderr.read() if proc.stderr is not None else ""
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    assert rc == 130 and "Traceback" not in stderr, stderr
    assert [r["result"] for r in results] == ["provisioned", "provisioned"]
    assert {r["imei"] for r in results} == {s.identity.imei for s in bench.sims}
