"""A host program killed in the middle of an AT exchange: the next session still finds the modem.

The killed program is a real process on the simulator's pty: it opens the port with nrfprov, leaves
the modem in a data mode (or with a command still running) and is SIGKILLed there. Then the real
``nrfprov`` console script must get the modem's answers, in step, on its first try.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from integration.cli.clirun import run
from integration.modem.modem_peers import EchoServer
from nrfprov.modem import Modem
from nrfprov.sim import SimulatedModem

pytestmark = pytest.mark.integration

# Opens a TCP socket through the modem, starts a send that enters data mode, writes part of it and
# waits to be killed. argv: port, dialect, echo port, mode ("counted" / "open" / "slm").
KILLED_IN_DATA_MODE = """
import sys
from nrfprov.at import LengthData, TerminatedData, command
from nrfprov.modem import Modem

port, dialect, echo, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
m = Modem.open(port, dialect=dialect)
m.set_cfun(1)
m.wait_registered(10)
sock = m.open_tcp("127.0.0.1", echo)
ch = m._ch
if mode == "counted":    # Serial Modem AT#XSEND=<h>,2,0,<len>: the modem counts <len> bytes
    cmd = command(f"AT#XSEND={sock.handle},2,0,4000", data_mode=LengthData(4000))
elif mode == "open":     # Serial Modem without <len>: open-ended, ends with the terminator
    cmd = command(f"AT#XSEND={sock.handle},2,0", data_mode=TerminatedData(b"+++"))
else:                    # legacy SLM: AT#XSEND, data mode until the terminator
    cmd = command("AT#XSEND", data_mode=TerminatedData(b"+++"))
ch.execute(cmd)          # OK: the modem is in data mode now
ch._write(b"x" * 10)     # part of the payload, then this host dies
print("in data mode", flush=True)
sys.stdin.read()
"""

# Sends a command the simulator holds, and waits to be killed before the answer comes.
KILLED_WITH_A_COMMAND_RUNNING = """
import sys
from nrfprov.modem import Modem

m = Modem.open(sys.argv[1])
m._ch.write_raw(b"AT+CFUN=4\\r\\n")
print("sent", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.stop()


def _kill_after(script: str, line: str, *args: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        got = proc.stdout.readline().strip()
        assert got == line, proc.communicate(timeout=30)[1]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
        proc.communicate(timeout=30)


@pytest.mark.parametrize(("dialect", "mode"), [("sm", "counted"), ("sm", "open"), ("slm", "slm")])
def test_a_host_killed_in_data_mode_does_not_lock_out_the_next_session(
    sim_factory: Callable[..., SimulatedModem], echo: EchoServer, dialect: str, mode: str
) -> None:
    sim = sim_factory(dialect=dialect, baud=115200)
    _kill_after(KILLED_IN_DATA_MODE, "in data mode", sim.port_url, dialect, str(echo.port), mode)
    assert sim.in_datamode
    done = run("at", "--port", sim.port_url, "AT+CFUN?", "AT+CGSN", timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["+CFUN: 1", sim.identity.imei]
    assert "the modem was in data mode" in done.stderr
    assert not sim.in_datamode


def test_an_answer_owed_to_a_killed_host_is_not_taken_for_ours(
    sim_factory: Callable[..., SimulatedModem]
) -> None:
    sim = sim_factory(dialect="sm", baud=115200)
    with Modem.open(sim.port_url) as m:
        m.set_cfun(1)
    # The killed host's AT+CFUN=4 runs for 3 s: its OK comes while the next session says hello.
    sim.delay_command("AT+CFUN=4", 3.0, times=1)
    _kill_after(KILLED_WITH_A_COMMAND_RUNNING, "sent", sim.port_url)
    done = run("at", "--port", sim.port_url, "AT+CGSN", "AT+CFUN?", timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [sim.identity.imei, "+CFUN: 4"]


def test_the_dead_port_hint_says_what_was_tried(tmp_path: object, sim_factory: Callable[..., SimulatedModem]) -> None:
    # A pty nobody answers on: the error names the data-mode attempt, so the user knows it was not that.
    import os
    import pty

    master, slave = pty.openpty()
    try:
        done = run("at", "--port", os.ttyname(slave), "AT", timeout=120)
    finally:
        os.close(master)
        os.close(slave)
    assert done.returncode == 3
    assert "does not answer AT" in done.stderr and "no data mode was found" in done.stderr
