"""Fault control file for ``nrfprov sim --faults FILE``: JSON lines, applied once each as they appear."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nrfprov.sim.modem import SimulatedModem

log = logging.getLogger(__name__)


def apply_fault(sim: SimulatedModem, spec: dict[str, Any]) -> None:
    """Apply one fault object; raise ValueError when it is not understood."""
    if "fail" in spec:
        cme = spec.get("cme", 518)
        times = spec.get("times", 1)
        sim.fail_command(str(spec["fail"]), cme=None if cme is None else int(cme), times=times)
    elif "delay" in spec:
        sim.delay_command(str(spec["delay"]), float(spec["seconds"]), spec.get("times"))
    elif "drop_link_after" in spec:
        sim.drop_link_after(int(spec["drop_link_after"]))
    else:
        raise ValueError(f"unknown fault {spec!r}: expected fail / delay / drop_link_after")


class FaultFile:
    """Re-reads the file when its size or mtime changes and applies lines not seen before."""

    def __init__(self, path: Path, sim: SimulatedModem) -> None:
        self.path = path
        self.sim = sim
        self._applied = 0
        self._sig: tuple[float, int] | None = None

    def poll(self) -> int:
        """Apply new lines; returns how many were applied now."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return 0
        sig = (st.st_mtime, st.st_size)
        if sig == self._sig:
            return 0
        self._sig = sig
        lines = [ln for ln in self.path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        if len(lines) < self._applied:  # file was truncated/rewritten: start over
            self._applied = 0
        done = 0
        for ln in lines[self._applied :]:
            if not ln.endswith("}"):
                break  # a line still being written; pick it up on the next change
            try:
                apply_fault(self.sim, json.loads(ln))
                log.info("fault applied: %s", ln)
            except (ValueError, KeyError, TypeError) as exc:
                log.error("ignoring fault line %r: %s", ln, exc)
            self._applied += 1
            done += 1
        return done
