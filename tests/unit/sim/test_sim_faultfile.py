"""The --faults control file: new complete JSON lines are applied once, in order."""

from __future__ import annotations

from pathlib import Path

from nrfprov.sim import SimulatedModem
from nrfprov.sim.faults import FaultFile


def test_fault_file_applies_new_lines_once(tmp_path: Path) -> None:
    sim = SimulatedModem(tmp_path / "s", baud=0)  # never started: only the fault tables are used
    try:
        path = tmp_path / "faults.jsonl"
        ff = FaultFile(path, sim)
        assert ff.poll() == 0  # no file yet
        path.write_text('{"fail": "AT+CGMR", "cme": 514}\n{"delay": "AT+CFUN", "seconds": 0.5}\n{"fail"')
        assert ff.poll() == 2  # the unfinished third line waits
        assert ff.poll() == 0  # unchanged file: nothing again
        path.write_text(path.read_text() + ': "AT", "cme": null, "times": 3}\n{"bogus": 1}\n')
        assert ff.poll() == 2  # the completed line, and the bad one (logged, skipped)
        assert [(f.prefix, f.cme, f.times) for f in sim._faults] == [("AT+CGMR", 514, 1), ("AT", None, 3)]
        assert [(d.prefix, d.seconds) for d in sim._delays] == [("AT+CFUN", 0.5)]
    finally:
        sim.stop()
