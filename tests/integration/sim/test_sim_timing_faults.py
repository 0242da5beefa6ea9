"""UART throttling, fault injection and the ``nrfprov sim`` CLI in the foreground."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from fixtures.sim import RawPort

pytestmark = pytest.mark.integration


def test_uart_is_throttled_both_ways(sim_factory, raw_port_factory, pki) -> None:
    baud = 19200
    sim = sim_factory(baud=baud)
    p = raw_port_factory(sim)
    p.ok("AT+CFUN=4")
    rx0, tx0, _, _ = sim.stats.uart_snapshot()
    cmd = f'AT%CMNG=0,9,0,"{pki.ca_pem}"'.encode() + b"\r\n"
    t0 = time.monotonic()
    p.write(cmd)
    assert p.final() == ([], "OK")
    # Host→modem: the command cannot be complete before len*10/baud seconds (8N1). Only a lower
    # bound: how much later it completes depends on the machine's load, not on the simulator.
    assert time.monotonic() - t0 >= len(cmd) * 10 / baud
    t0 = time.monotonic()
    p.send("AT%CMNG=2,9,0")
    lines, final = p.final()
    reply = len(lines[0]) + 4 + 6  # CR LF around the line, then CR LF OK CR LF
    assert final == "OK" and time.monotonic() - t0 >= reply * 10 / baud
    # The simulator accounts for every byte at exactly 10 bit times; bytes and line time are read in
    # one snapshot, and a byte the host has read is always counted already.
    rx, tx, rx_busy, tx_busy = sim.stats.uart_snapshot()
    assert rx_busy == pytest.approx(rx * 10 / baud)
    assert tx_busy == pytest.approx(tx * 10 / baud)
    assert rx - rx0 == len(cmd) + len("AT%CMNG=2,9,0") + len(p.term)
    assert tx - tx0 == len("\r\nOK\r\n") + reply


def test_fail_and_delay_commands(sim_factory, raw_port_factory) -> None:
    sim = sim_factory(baud=0)
    p = raw_port_factory(sim)
    sim.fail_command("AT+CFUN=4", cme=518, times=1)
    assert p.cmd("AT+CFUN=4")[1] == "ERROR"  # CMEE=0: a CME error shows as plain ERROR
    assert p.cmd("AT+CFUN=4")[1] == "OK"  # times=1: only the first one
    p.ok("AT+CMEE=1")
    sim.fail_command("at%cmng", cme=515, times=2)
    assert p.cmd("AT%CMNG=1")[1] == "+CME ERROR: 515"
    assert p.cmd("AT%CMNG=1,5")[1] == "+CME ERROR: 515"
    assert p.cmd("AT%CMNG=1")[1] == "OK"
    sim.fail_command("AT#XSOCKET", cme=None)
    assert p.cmd("AT#XSOCKET=1,1,0")[1] == "ERROR"
    sim.delay_command("AT+CGSN", 0.4, times=1)
    t0 = time.monotonic()
    p.ok("AT+CGSN")
    assert time.monotonic() - t0 >= 0.4
    assert sim.stats.commands == 8


def test_drop_link_gives_the_host_eio(sim_factory, raw_port_factory) -> None:
    sim = sim_factory(baud=0)
    p = raw_port_factory(sim)
    p.ok("AT")
    sim.drop_link_after(len("AT+CGSN") + len(p.term) + 1)  # the command, 1 byte of the answer, then dead
    p.send("AT+CGSN")
    # pyserial reports it as SerialException from read() or as the raw EIO from its in_waiting ioctl,
    # depending on which call meets the hang-up first; both are OSError.
    with pytest.raises(OSError) as info:
        p.read_until(b"OK", timeout=5)
    assert isinstance(info.value, serial.SerialException) or info.value.errno == 5
    assert not sim.link_alive
    assert bytes(p.buf) in (b"", b"\r")


def test_cli_foreground_faults_and_stats(tmp_path: Path) -> None:
    state = tmp_path / "state"
    faults = tmp_path / "faults.jsonl"
    link = tmp_path / "nrf91"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nrfprov", "-v", "sim", "--dialect", "slm", "--baud", "0", "--state", str(state),
         "--faults", str(faults), "--link", str(link), "--fail", "AT+CGMM=ERROR"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    port = None
    try:
        assert proc.stdout is not None and proc.stderr is not None
        pty_path = proc.stdout.readline().strip()
        assert pty_path.startswith("/dev/pts/") and os.path.realpath(link) == pty_path
        port = RawPort(str(link))
        assert port.ok("AT#XSLMVER")[0].startswith("#XSLMVER:")
        assert port.cmd("AT+CGMM")[1] == "ERROR"  # --fail flag, once
        assert port.ok("AT+CGMM") == ["nRF9160-SICA"]
        port.ok("AT+CMEE=1")
        faults.write_text('{"fail": "AT+CGMR", "cme": 514, "times": 1}\n')
        while "fault applied" not in proc.stderr.readline():
            pass
        assert port.cmd("AT+CGMR")[1] == "+CME ERROR: 514"
        assert port.ok("AT+CGMR")[0].startswith("mfw_")
        port.close()
        port = None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if port is not None:
            port.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stats = json.loads((state / "stats.json").read_text())
    assert stats["commands"] == 6 and stats["uart_rx"] > 0 and stats["uart_tx"] > 0
    assert not link.exists()
    assert oct((state / "attest_key.pem").stat().st_mode)[-3:] == "600"  # key material is 0600


def test_start_stop_leaks_no_fds_or_threads(tmp_path: Path) -> None:
    import threading

    from nrfprov.sim import SimulatedModem

    fds0, threads0 = len(os.listdir("/proc/self/fd")), threading.active_count()
    for i in range(10):
        SimulatedModem(tmp_path / str(i), baud=0).stop()  # never started
        with SimulatedModem(tmp_path / str(i), baud=0, link=tmp_path / "lnk") as sim:
            port = RawPort(sim.port_url)
            port.ok("AT")
            port.close()
        assert not (tmp_path / "lnk").exists()
    assert len(os.listdir("/proc/self/fd")) == fds0
    assert threading.active_count() == threads0
