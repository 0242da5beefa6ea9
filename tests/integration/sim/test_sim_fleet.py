"""``nrfprov sim --count N``: one process, N modems, each with its own pty, link, IMEI and state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.sim import RawPort
from nrfprov.sim import fleet
from nrfprov.sim.store import luhn_valid

pytestmark = pytest.mark.integration

FIRST_IMEI = "490154203237518"


def test_fleet_naming_helpers(tmp_path: Path) -> None:
    assert fleet.numbered(Path("/tmp/nrf91-{n}"), 7, 10) == Path("/tmp/nrf91-7")
    assert fleet.numbered(Path("/tmp/nrf91"), 7, 10) == Path("/tmp/nrf91-7")
    assert fleet.numbered(Path("/tmp/nrf91"), 0, 1) == Path("/tmp/nrf91")
    assert fleet.state_dir(tmp_path, 3, 100) == tmp_path / "modem-003"
    assert fleet.state_dir(tmp_path, 0, 1) == tmp_path
    imeis = [fleet.imei(FIRST_IMEI, n) for n in range(12)]
    assert imeis[0] == FIRST_IMEI and len(set(imeis)) == 12
    assert all(i is not None and luhn_valid(i) for i in imeis)
    with pytest.raises(ValueError):
        fleet.imei("490154203237519", 1)


def test_sim_count_serves_independent_modems_from_one_process(tmp_path: Path) -> None:
    state = tmp_path / "bench"
    count = 4
    proc = subprocess.Popen(
        [sys.executable, "-m", "nrfprov", "sim", "--count", str(count), "--baud", "0", "--state", str(state),
         "--link", str(tmp_path / "nrf91-{n}"), "--imei", FIRST_IMEI],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    ports: list[RawPort] = []
    try:
        assert proc.stdout is not None
        ptys = [proc.stdout.readline().strip() for _ in range(count)]
        assert len(set(ptys)) == count and all(p.startswith("/dev/pts/") for p in ptys)
        for n, pty in enumerate(ptys):
            assert os.path.realpath(tmp_path / f"nrf91-{n}") == pty
            ports.append(RawPort(str(tmp_path / f"nrf91-{n}"), b"\r"))
        assert [p.ok("AT+CGSN")[0] for p in ports] == [fleet.imei(FIRST_IMEI, n) for n in range(count)]
        # Each modem has its own state: a credential written to modem 0 is not in modem 1.
        ports[0].ok("AT+CFUN=4")
        ports[0].ok('AT%CMNG=0,7,3,"0011"')
        assert ports[0].ok("AT%CMNG=1") == ['%CMNG: 7,3,"' + _sha("0011") + '"']
        assert ports[1].ok("AT%CMNG=1") == []
        ports[2].ok("AT+CFUN=1")  # and its own functional mode
        assert ports[3].ok("AT+CFUN?") == ["+CFUN: 0"]
        for p in ports:
            p.close()
        ports.clear()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        for p in ports:
            p.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    dirs = sorted(d.name for d in state.iterdir())
    assert dirs == [f"modem-{n:03d}" for n in range(count)]
    assert json.loads((state / "modem-000" / "stats.json").read_text())["commands"] == 4
    assert not any((tmp_path / f"nrf91-{n}").exists() for n in range(count))


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest().upper()
