"""A pty that behaves like the nRF91's UART: throttled to the baud both ways, counted, killable.

pty rules learned the hard way (pyserial 3.5 and Linux ptys, measured on this project's loopback):
* raw mode on the slave, so CR/LF, XON/XOFF and ^C pass untouched whatever the host does;
* we keep our own slave fd open for the life of the sim: with no slave holder the master reports
  EIO and the pty would die between two host connections;
* only the reader thread closes the master, after the writer thread has ended, so a recycled fd
  number can never be written to or read from by a stale thread.

Timing: a byte is 10 bit times on the wire (8N1). ``Throttle`` schedules each chunk after the
previous one; threads sleep on an Event until the chunk's scheduled time (no busy-waiting).
"""

from __future__ import annotations

import errno
import logging
import os
import pty
import queue
import select
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

BITS_PER_BYTE = 10  # 8N1: start + 8 data + stop
# Bytes moved per scheduling step. The nRF91 SLM UART driver uses 256-byte RX buffers
# (slm_uart_handler.c UART_RX_LEN); 64 keeps the arrival pattern smooth at 115200 (5.6 ms/step).
STEP = 64
UNTHROTTLED_STEP = 4096


class Throttle:
    """Schedules chunks on a serial line of ``baud`` bits/s; pure arithmetic, clock passed in."""

    def __init__(self, baud: int) -> None:
        self.baud = baud
        self.next_free = 0.0

    def seconds(self, n: int) -> float:
        """Line time of ``n`` bytes (0 when unthrottled)."""
        return n * BITS_PER_BYTE / self.baud if self.baud > 0 else 0.0

    def schedule(self, n: int, now: float) -> float:
        """Return when the last of ``n`` bytes handed over at ``now`` has crossed the line."""
        if self.baud <= 0:
            return now
        self.next_free = max(now, self.next_free) + self.seconds(n)
        return self.next_free


@dataclass
class Stats:
    """Live counters (read them any time; they only grow)."""

    uart_rx: int = 0  # bytes host → modem
    uart_tx: int = 0  # bytes modem → host
    air_tx: int = 0  # TCP payload bytes sent by the modem (TLS records included)
    air_rx: int = 0  # TCP payload bytes received by the modem
    commands: int = 0
    dns: int = 0  # DNS lookups the modem made over the radio (network.py)
    uart_rx_s: float = 0.0  # line time of the bytes in uart_rx (10 bit times each; 0 unthrottled)
    uart_tx_s: float = 0.0  # line time of the bytes in uart_tx
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, n: int) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def add_uart(self, name: str, n: int, seconds: float) -> None:
        """``n`` bytes crossed the line (``uart_rx`` or ``uart_tx``) in ``seconds``: both counted at once,
        so a reader never sees a byte count without its line time or the other way round."""
        with self._lock:
            setattr(self, name, getattr(self, name) + n)
            setattr(self, name + "_s", getattr(self, name + "_s") + seconds)

    def uart_snapshot(self) -> tuple[int, int, float, float]:
        """(uart_rx, uart_tx, uart_rx_s, uart_tx_s), read together."""
        with self._lock:
            return self.uart_rx, self.uart_tx, self.uart_rx_s, self.uart_tx_s

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                "uart_rx": self.uart_rx,
                "uart_tx": self.uart_tx,
                "air_tx": self.air_tx,
                "air_rx": self.air_rx,
                "commands": self.commands,
                "dns": self.dns,
            }


_STOP = object()


class PtyUart:
    """The simulated UART. ``on_rx`` runs on the reader thread with throttled host bytes."""

    def __init__(
        self,
        baud: int,
        on_rx: Callable[[bytes], None],
        stats: Stats,
        *,
        link: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.baud = baud
        self._on_rx = on_rx
        self._stats = stats
        self._clock = clock
        self.rx_throttle = Throttle(baud)
        self.tx_throttle = Throttle(baud)
        self._master, self._slave = pty.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.port_url = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        self._fds_closed = False
        self._stop = threading.Event()
        self._dead = threading.Event()  # link dropped (fault) or stopped
        self._tx: queue.Queue[object] = queue.Queue()
        self._budget: int | None = None
        self._budget_lock = threading.Lock()
        self._link = link
        if link is not None:
            if link.is_symlink():  # a stale link from an earlier run; never delete a real file
                link.unlink()
            try:
                link.symlink_to(self.port_url)
            except OSError:
                for fd in (self._master, self._slave, self._wake_r, self._wake_w):
                    os.close(fd)
                raise
        self._writer = threading.Thread(target=self._write_loop, name="sim-uart-tx", daemon=True)
        self._reader = threading.Thread(target=self._read_loop, name="sim-uart-rx", daemon=True)

    # --- control -------------------------------------------------------------------------------

    def start(self) -> None:
        self._writer.start()
        self._reader.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._dead.set()
        self._tx.put(_STOP)
        self._wake()
        if self._reader.ident is not None:
            self._reader.join(timeout)
        elif not self._fds_closed:  # never started: nobody else will close the fds
            self._fds_closed = True
            for fd in (self._master, self._slave, self._wake_r, self._wake_w):
                os.close(fd)
        if self._link is not None and self._link.is_symlink():
            self._link.unlink()

    @property
    def alive(self) -> bool:
        return not self._dead.is_set()

    def drop_after(self, nbytes: int) -> None:
        """Kill the link after ``nbytes`` more bytes cross it (either direction)."""
        with self._budget_lock:
            self._budget = max(0, nbytes)
        if nbytes <= 0:
            self._hangup()

    def write(self, data: bytes) -> None:
        """Queue modem→host bytes; they leave at the baud rate, in order."""
        if data and not self._dead.is_set():
            self._tx.put(bytes(data))

    # --- internals -----------------------------------------------------------------------------

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _take_budget(self, n: int) -> int:
        """How many of ``n`` bytes may still cross before the fault hangs the link up."""
        with self._budget_lock:
            if self._budget is None:
                return n
            allowed = min(n, self._budget)
            self._budget -= allowed
            return allowed

    def _hangup(self) -> None:
        log.info("simulated UART link dropped")
        self._dead.set()
        self._tx.put(_STOP)
        self._wake()

    def _sleep_until(self, when: float) -> bool:
        """Wait for a scheduled time; False if we must stop instead."""
        delay = when - self._clock()
        if delay > 0:
            return not self._dead.wait(delay)
        return not self._dead.is_set()

    def _read_loop(self) -> None:
        step = STEP if self.baud > 0 else UNTHROTTLED_STEP
        try:
            while not self._dead.is_set():
                ready, _, _ = select.select([self._master, self._wake_r], [], [])
                if self._wake_r in ready:
                    os.read(self._wake_r, 64)
                    continue
                try:
                    data = os.read(self._master, step)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    if exc.errno == errno.EIO:  # cannot happen while we hold the slave, but be safe
                        continue
                    raise
                if not data:
                    continue
                allowed = self._take_budget(len(data))
                data = data[:allowed]
                if data:
                    done = self.rx_throttle.schedule(len(data), self._clock())
                    if not self._sleep_until(done):
                        break
                    self._stats.add_uart("uart_rx", len(data), self.rx_throttle.seconds(len(data)))
                    self._on_rx(data)
                if self._budget == 0:
                    self._hangup()
        except Exception:  # a bug here must not leave the pty half-open
            log.exception("simulated UART reader failed")
            self._dead.set()
        finally:
            self._tx.put(_STOP)
            self._writer.join()
            os.close(self._master)  # the host now sees EIO / hang-up
            self._close_rest()

    def _close_rest(self) -> None:
        # The slave stays open until stop() so the pty path keeps existing; on a fault hang-up the
        # master is already gone, which is what the host must observe.
        if not self._stop.is_set():
            self._stop.wait()
        for fd in (self._slave, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _write_loop(self) -> None:
        step = STEP if self.baud > 0 else UNTHROTTLED_STEP
        while True:
            item = self._tx.get()
            if item is _STOP or self._dead.is_set():
                return
            assert isinstance(item, bytes)
            for off in range(0, len(item), step):
                piece = item[off : off + step]
                allowed = self._take_budget(len(piece))
                piece = piece[:allowed]
                if piece:
                    done = self.tx_throttle.schedule(len(piece), self._clock())
                    if not self._sleep_until(done):
                        return
                    # Counted when they have crossed the line, before the host can read them: a host
                    # that saw a byte always finds it counted.
                    self._stats.add_uart("uart_tx", len(piece), self.tx_throttle.seconds(len(piece)))
                    if not self._write_all(piece):
                        return
                if self._budget == 0:
                    self._hangup()
                    return

    def _write_all(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            if self._dead.is_set():
                return False
            try:
                n = os.write(self._master, view)
                view = view[n:]
            except BlockingIOError:
                # Host is not reading and the pty buffer is full: wait for room (or a stop).
                select.select([self._wake_r], [self._master], [], 0.5)
        return True
