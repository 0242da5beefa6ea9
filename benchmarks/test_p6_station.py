"""P6: one ``nrfprov station`` run over 100 simulated modems at 115200 baud against one stand-in.

Three processes, as on a bench: the modems (``nrfprov sim --count 100 --baud 115200``, each with its own
pty, IMEI and credential store holding the claim identity in sec tag 43, as a factory image would),
the stand-in (``nrfprov cloud up``, the session's), and the station (``nrfprov station --json``). The
station's CPU seconds and peak RSS are its own (``os.wait4`` on its PID), not the simulators' or the
stand-in's.

The single-device baseline: ``nrfprov provision`` on SINGLE fresh modems one after the other (same
stand-in, same baud); their mean wall time x the station's device count is the "one by one" time.
That is an extrapolation from SINGLE runs, said so in the report.

Keys lost: certificates the stand-in issued during the station run (its registry) that no modem
holds in sec tag 50 afterwards (read from the simulators' credential stores once they stopped).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

DEVICES = int(os.environ.get("NRFPROV_P6_DEVICES", "100"))
SINGLE = 3
BAUD = 115200
CLAIM_TAG = 43
TAG = 50
FIRST_IMEI = "490154203237518"
SINGLE_FIRST_IMEI = "490154203247517"  # FIRST_IMEI + 1000: no IMEI shared with the fleet
HANG_S = 1800.0  # hang detector for the whole station run, not a speed limit


def _conf(stand_in: Any, certs: Path, path: Path) -> Path:
    lines = {
        "CONFIG_AWS_IOT_BROKER_HOST_NAME": stand_in.server_name,
        "CONFIG_AWS_IOT_PORT": stand_in.port,
        "CONFIG_AWS_IOT_SEC_TAG": CLAIM_TAG,
        "CONFIG_NRFPROV_PROVISIONED_SEC_TAG": TAG,
        "CONFIG_NRFPROV_TLS_BACKEND": "offload",
        "CONFIG_NRFPROV_FLOW": "split",
        "CONFIG_NRFPROV_CERTS_DIR": str(certs),
        "CONFIG_NRFPROV_CA_FILE": str(stand_in.ca_path),
        "CONFIG_NRFPROV_RESPONSE_TIMEOUT_S": 120,
        "CONFIG_NRFPROV_LTE_TIMEOUT_S": 120,
    }
    path.write_text("".join(f"{k}={v}\n" if isinstance(v, int) else f'{k}="{v}"\n' for k, v in lines.items()))
    return path


class Fleet:
    """``nrfprov sim --count N`` with the claim identity pre-loaded in each modem's store."""

    def __init__(self, root: Path, count: int, first_imei: str, stand_in: Any) -> None:
        from nrfprov.sim import fleet
        from nrfprov.sim.store import CredentialStore

        self.root, self.count = root, count
        for n in range(count):
            store = CredentialStore(_mkdir(fleet.state_dir(root / "state", n, count)))
            for cred_type, p in ((0, stand_in.ca_path), (1, stand_in.claim_cert_path), (2, stand_in.claim_key_path)):
                store.put(CLAIM_TAG, cred_type, Path(p).read_text())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nrfprov", "sim", "--count", str(count), "--baud", str(BAUD), "--state",
             str(root / "state"), "--link", str(root / "nrf91-{n}"), "--imei", first_imei],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        self.ptys = [self.proc.stdout.readline().strip() for _ in range(count)]
        assert all(p.startswith("/dev/") for p in self.ptys), self.ptys

    def link(self, n: int) -> str:
        return str(self.root / f"nrf91-{n}" if self.count > 1 else self.root / "nrf91")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def held_certificates(self) -> set[str]:
        """AWS certificate ids (SHA-256 of the DER) of the client certificates in sec tag 50."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        from nrfprov.sim import fleet
        from nrfprov.sim.store import CredentialStore

        out = set()
        for n in range(self.count):
            pem = CredentialStore(fleet.state_dir(self.root / "state", n, self.count)).get(TAG, 1)
            if pem:
                der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
                out.add(hashlib.sha256(der).hexdigest())
        return out


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _issued(stand_in: Any) -> set[str]:
    from nrfprov.cloud.registry import Registry

    data = Registry(stand_in.state_dir).snapshot()
    return {cid for cid, e in data["certificates"].items()
            if not e.get("deleted") and Registry.record(e).operation == "split"}


def _hwm(pid: int) -> int:
    """The process's peak resident set (``VmHWM`` in /proc/PID/status [Linux proc(5)]), bytes; 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _run_measured(argv: list[str]) -> tuple[int, float, float, int, list[str]]:
    """(exit status, wall s, CPU s user+system, peak RSS bytes, stdout lines) of one child process.

    CPU comes from ``wait4`` (the child's own). The peak RSS does not: Linux carries ``ru_maxrss`` over
    from the forked copy of this (large) pytest process through ``exec``, so it is read from the
    child's ``VmHWM`` (reset by ``exec``) at each line of output, the last time just before it exits."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    lines, peak = [], 0
    for line in proc.stdout:  # until the child closes it (it exits)
        lines.append(line)
        peak = max(peak, _hwm(proc.pid))
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    return proc.returncode, wall, ru.ru_utime + ru.ru_stime, peak, lines


@pytest.mark.benchmark(group="p6-station")
def test_p6_station(benchmark: Any, stand_in: Any, tmp_path: Path) -> None:
    certs = stand_in.write_certs_folder(tmp_path / "certs")
    conf = _conf(stand_in, certs, tmp_path / "prj.conf")
    figures: dict[str, Any] = {}

    # The one-by-one baseline: `nrfprov provision` per modem, each a process of its own.
    single = Fleet(tmp_path / "single", SINGLE, SINGLE_FIRST_IMEI, stand_in)
    try:
        singles = []
        for n in range(SINGLE):
            rc, wall, cpu, rss, _ = _run_measured(
                [sys.executable, "-m", "nrfprov", "provision", "--port", single.link(n), "--conf", str(conf),
                 "--state", str(tmp_path / "single-journal" / str(n)), "--json"])
            assert rc == 0
            singles.append({"wall_s": wall, "cpu_s": cpu, "rss": rss})
    finally:
        single.stop()

    fleet = Fleet(tmp_path / "fleet", DEVICES, FIRST_IMEI, stand_in)
    before = _issued(stand_in)
    try:
        def run() -> None:
            rc, wall, cpu, rss, lines = _run_measured(
                [sys.executable, "-m", "nrfprov", "station", "--conf", str(conf), "--port",
                 str(tmp_path / "fleet" / "nrf91-*"), "--state", str(tmp_path / "journals"), "--report",
                 str(tmp_path / "batch.csv"), "--json"])
            figures.update(rc=rc, wall=wall, cpu=cpu, rss=rss, events=[json.loads(x) for x in lines])

        benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    finally:
        fleet.stop()
    issued = _issued(stand_in) - before
    held = fleet.held_certificates()
    summary = figures["events"][-1]
    rows = [e for e in figures["events"] if e["event"] == "result"]
    one_by_one = sum(s["wall_s"] for s in singles) / SINGLE * DEVICES
    info = {
        "suite": "p6", "devices": DEVICES, "baud": BAUD, "flow": "split", "backend": "offload",
        "provisioned": summary["provisioned"], "failed": summary["failed"] + summary["busy"],
        "exit_code": figures["rc"], "keys_lost": len(issued - held), "certificates_issued": len(issued),
        "wall_s": round(figures["wall"], 2),
        "devices_per_min": round(summary["done"] / figures["wall"] * 60, 2),
        "cpu_s": round(figures["cpu"], 2), "cpu_s_per_device": round(figures["cpu"] / DEVICES, 4),
        "peak_rss_mb": round(figures["rss"] / 2**20, 1),
        "rss_mb_per_device": round(figures["rss"] / 2**20 / DEVICES, 3),
        "device_seconds_median": sorted(r["seconds"] for r in rows)[len(rows) // 2] if rows else None,
        "throttle_retries": sum(max(0, int(r["attempts"]) - 1) for r in rows),
        "single_runs": len(singles),
        "single_wall_s": [round(s["wall_s"], 2) for s in singles],
        "single_cpu_s": [round(s["cpu_s"], 3) for s in singles],
        "single_peak_rss_mb": [round(s["rss"] / 2**20, 1) for s in singles],
        "one_by_one_s_extrapolated": round(one_by_one, 1),
        "station_vs_one_by_one": round(figures["wall"] / one_by_one, 4),
        "request_rate": 5, "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }
    benchmark.extra_info.update(info)
    print(json.dumps(info, indent=1))
    assert figures["rc"] == 0 and summary["provisioned"] == DEVICES, summary
    assert info["keys_lost"] == 0
