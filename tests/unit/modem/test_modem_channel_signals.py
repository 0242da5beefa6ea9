"""A signal that lands while the AT channel waits for its bytes to leave the UART must not kill the link.

pyserial's ``flush()`` is ``termios.tcdrain``, and Linux answers it with EINTR whenever a signal is
pending when the wait ends (``tty_ioctl``, TCSBRK); Python's termios does not retry (PEP 475 covers
``os``). The interrupt harness caught it: a SIGTERM held during a ``%CMNG`` write became
"cannot write to /dev/pts/N: (4, 'Interrupted system call')", the channel died, and the modem could
not be put back online. Here a real pty and a storm of real signals (SIGALRM every 100 µs) hit it.
"""

from __future__ import annotations

import os
import pty
import signal
import termios
import threading
from collections.abc import Iterator

import pytest
import serial

from nrfprov.modem.channel import AtChannel

WRITES = 5000


@pytest.fixture
def signal_storm() -> Iterator[list[int]]:
    fired = [0]

    def count(*_: object) -> None:
        fired[0] += 1

    previous = signal.signal(signal.SIGALRM, count)
    signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)
    try:
        yield fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_the_storm_really_interrupts_tcdrain(signal_storm: list[int]) -> None:
    # The condition is real, not assumed: bare tcdrain on a pty fails with EINTR under this storm.
    master, slave = pty.openpty()
    try:
        eintr = 0
        for _ in range(20 * WRITES):
            try:
                termios.tcdrain(slave)
            except termios.error:
                eintr += 1
            if eintr:
                break
        assert eintr, f"no EINTR in {20 * WRITES} tcdrains under {signal_storm[0]} signals"
    finally:
        os.close(master)
        os.close(slave)


def test_writes_survive_a_signal_storm(signal_storm: list[int]) -> None:
    master, slave = pty.openpty()
    port = serial.Serial(os.ttyname(slave), timeout=None)
    ch = AtChannel(port, name="pty")
    stop = threading.Event()

    def modem_side() -> None:  # read what the host writes, so the pty never fills
        while not stop.is_set():
            try:
                if not os.read(master, 65536):
                    return
            except OSError:
                return

    reader = threading.Thread(target=modem_side, daemon=True)
    reader.start()
    try:
        for _ in range(WRITES):
            ch.write_raw(b"\r")  # an empty line: the modem skips it
        assert ch.bytes_sent == WRITES
        assert signal_storm[0] > 50  # the writes really ran under the storm
    finally:
        stop.set()
        ch.close()
        os.close(master)  # the modem side's read ends with EIO/EOF
        os.close(slave)
        reader.join(5)
