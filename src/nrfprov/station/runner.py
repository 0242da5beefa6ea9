"""``Station``: the provisioning chain on every selected modem at once, one thread per device.

Why threads: a device spends its run waiting on a 115200-baud UART, the radio and the cloud, inside
the blocking ``Modem``/``Driver`` API that ``nrfprov provision`` uses; each wait releases the GIL
(pyserial's select/read, socket I/O, the MQTT pump). A thread per device reuses that code as it is,
shares one process's imports, limiter and report, and costs a few hundred KB of stack actually
touched. Processes would each pay an interpreter start (the CPU of a whole ``nrfprov provision``)
and need IPC for the station-wide rate limit. benchmarks/RESULTS.md (P6) has the measured CPU and
memory per device.

The one hard limit of one process is ``select()``: pyserial's ``read`` and paho's network loop pass
their descriptors to ``select()``, which refuses any descriptor >= FD_SETSIZE, 1024 on Linux [Linux
``select(2)``; CPython selectmodule.c]. An open device holds 7 descriptors (the port, pyserial's two
abort pipes, its port and journal locks) and an MQTT session 4-5 more (two socketpairs, a TCP socket
for the host backends). So at most ``MAX_JOBS`` devices run at once and at most ``CLOUD_SESSIONS`` of
them hold a broker session (more would only queue for request tokens anyway): 100 x 7 + 32 x 5 plus
the process's own stays below 1024. A larger bench runs one station per 100 ports (``--port``
patterns split them).

Stopping: ``Ctrl-C``/SIGTERM/SIGHUP reach the main thread as ``Interrupted`` (``nrfprov.interrupts``)
while it waits in :meth:`Station.run`; the station then stops starting devices and every device thread
ends as worker.py says (journaled, modem restored, or finished); ``run`` returns after all of them.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nrfprov.config import Settings
from nrfprov.errors import Interrupted
from nrfprov.names import Flow, PayloadFormat
from nrfprov.station import ports
from nrfprov.station.limiter import RequestLimiter
from nrfprov.station.report import DONE_RESULTS, Report, proven_certificates
from nrfprov.station.worker import STOP_POLL_S, DeviceStatus, StationContext, run_device

log = logging.getLogger(__name__)

#: Devices run at once by one station (select()'s FD_SETSIZE, see the module docstring).
MAX_JOBS = 100
#: Broker sessions open at once (descriptors; the request rate bounds the useful number anyway).
CLOUD_SESSIONS = 32
#: Exit statuses of failed devices, most severe first: a journal at risk, a bug, then the chain's own
#: order (the later a step fails, the more was done). The station exits with the first one present.
SEVERITY = (8, 1, 7, 6, 5, 4, 3, 2)


@dataclass(frozen=True)
class StationOptions:
    patterns: tuple[str, ...] = ()
    serial_numbers: tuple[str, ...] = ()
    jobs: int = MAX_JOBS
    watch: bool = False
    poll_s: float = 1.0
    state_root: Path | None = None
    flow: Flow | None = None
    payload_format: PayloadFormat | None = None
    force: bool = False
    baud: int = 115200
    rtscts: bool = False
    report: Path | None = None
    cloud_sessions: int = CLOUD_SESSIONS


@dataclass
class StationSummary:
    devices: int = 0
    provisioned: int = 0
    resumed: int = 0
    skipped: int = 0
    failed: int = 0
    busy: int = 0
    interrupted: int = 0
    not_started: int = 0
    seconds: float = 0.0
    devices_per_min: float = 0.0
    #: (port, result, error class, exit status) of every device that is not done.
    problems: list[tuple[str, str, str, int]] = field(default_factory=list)
    stopped_by: int | None = None
    report_errors: list[str] = field(default_factory=list)
    exit_code: int = 0

    @property
    def done(self) -> int:
        return self.provisioned + self.resumed + self.skipped

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": "summary", "devices": self.devices, "done": self.done, "provisioned": self.provisioned,
            "resumed": self.resumed, "skipped": self.skipped, "failed": self.failed, "busy": self.busy,
            "interrupted": self.interrupted, "not_started": self.not_started, "seconds": round(self.seconds, 3),
            "devices_per_min": round(self.devices_per_min, 2),
            "failed_ports": [{"port": p, "result": r, "error_class": e, "exit_code": x}
                             for p, r, e, x in self.problems],
            "stopped_by": signal.Signals(self.stopped_by).name if self.stopped_by else None,
            "report_errors": list(self.report_errors), "exit_code": self.exit_code,
        }


class Station:
    def __init__(self, settings: Settings, options: StationOptions, *,
                 emit: Callable[[dict[str, Any]], None] | None = None,
                 comports: Callable[[], Sequence[Any]] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from nrfprov import __version__

        if not 1 <= options.jobs <= MAX_JOBS:
            raise ValueError(f"jobs must be 1..{MAX_JOBS}")
        self.settings = settings
        self.options = options
        self._comports = comports or ports.default_comports
        self._clock = clock
        self._emit_lock = threading.RLock()  # an output callback may call stop(), which emits
        self._user_emit = emit
        self._jobs = threading.BoundedSemaphore(options.jobs)
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._devices: list[DeviceStatus] = []  # every device attempt, in the order found
        self._threads: dict[str, threading.Thread] = {}  # by port key: the attempt on a port now
        self._rows: list[dict[str, Any]] = []
        self.started: float | None = None
        self.ended: float | None = None
        report = Report(options.report)
        self.ctx = StationContext(
            settings=settings,
            limiter=RequestLimiter(settings.station_request_rate, settings.station_request_burst, clock=clock),
            cloud_gate=threading.BoundedSemaphore(max(1, options.cloud_sessions)),
            report=report, emit=self._emit, flow=options.flow, payload_format=options.payload_format,
            force=options.force, state_root=options.state_root, baud=options.baud, rtscts=options.rtscts,
            proven=proven_certificates(options.report), hostname=socket.gethostname(), version=__version__,
            clock=clock,
        )

    # --- what the live view reads ------------------------------------------------------------------

    def devices(self) -> list[DeviceStatus]:
        with self._lock:
            return list(self._devices)

    def rows(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._rows)

    def now(self) -> float:
        """The station's clock (the live view's elapsed times)."""
        return self._clock()

    @property
    def stopping(self) -> bool:
        return self.ctx.stop.is_set()

    def summary(self) -> StationSummary:
        now = self.ended if self.ended is not None else self._clock()
        s = StationSummary(seconds=now - (self.started or now), stopped_by=self.ctx.stop_signum if self.stopping
                           else None, report_errors=list(self.ctx.report_errors))
        for d in self.devices():
            s.devices += 1
            if not d.result:
                s.not_started += d.started is None
                continue
            if d.result in ("provisioned", "resumed", "skipped", "failed", "busy", "interrupted"):
                setattr(s, d.result, getattr(s, d.result) + 1)
        for row in self.rows():
            if row["result"] not in DONE_RESULTS:
                s.problems.append((row["port"], row["result"], row["error_class"], int(row["exit_code"])))
        finished = s.done + s.failed + s.busy + s.interrupted
        s.devices_per_min = finished / (s.seconds / 60.0) if s.seconds > 0 else 0.0
        s.exit_code = self._exit_code(s)
        return s

    @staticmethod
    def _exit_code(s: StationSummary) -> int:
        if s.stopped_by:
            return 128 + s.stopped_by
        codes = {x for _, _, _, x in s.problems} | ({2} if s.report_errors else set())
        for code in SEVERITY:
            if code in codes:
                return code
        return max(codes) if codes else 0

    # --- running -------------------------------------------------------------------------------------

    def _emit(self, event: dict[str, Any]) -> None:
        if event.get("event") == "result":
            with self._lock:
                self._rows.append({k: v for k, v in event.items() if k != "event"})
        if self._user_emit is not None:
            with self._emit_lock:
                try:
                    self._user_emit(event)
                except Exception:  # a broken output must not kill a device's thread
                    log.exception("station: event output failed")

    def run(self) -> StationSummary:
        """Provision what ``options`` selects; with ``watch``, keep going until stopped. Blocks."""
        self.started = self._clock()
        try:
            self._scan()
            while not self.stopping:
                if not self.options.watch and self._all_ended():
                    break
                self._wake.wait(self.options.poll_s if self.options.watch else STOP_POLL_S)
                self._wake.clear()
                if self.options.watch:
                    self._scan()
        except KeyboardInterrupt as exc:  # Interrupted (SIGINT, SIGTERM, SIGHUP) or a plain Ctrl-C
            self.stop(exc.signum if isinstance(exc, Interrupted) else signal.SIGINT)
        finally:
            self._join_all()
            self.ended = self._clock()
        summary = self.summary()
        self._emit(summary.as_dict())
        return summary

    def stop(self, signum: int = signal.SIGINT) -> None:
        """Start no more devices; those running end as worker.py describes. Any thread may call it."""
        if not self.stopping:
            self.ctx.stop_signum = int(signum)
            self.ctx.stop.set()
            self._wake.set()
            self._emit({"event": "stopping", "signal": signal.Signals(int(signum)).name})

    def _all_ended(self) -> bool:
        with self._lock:
            return all(not t.is_alive() for t in self._threads.values())

    def _join_all(self) -> None:
        while True:
            with self._lock:
                alive = [t for t in self._threads.values() if t.is_alive()]
            if not alive:
                return
            for t in alive:
                t.join(STOP_POLL_S)

    def _scan(self) -> None:
        """Start a thread for each candidate not seen yet; forget ended devices whose port is gone, so
        plugging a modem in again is a new device."""
        found = ports.find_candidates(self.options.patterns, self.options.serial_numbers, comports=self._comports)
        present = {c.key for c in found}
        with self._lock:
            for key in [k for k, t in self._threads.items() if k not in present and not t.is_alive()]:
                del self._threads[key]
        for c in found:
            with self._lock:
                if c.key in self._threads or self.stopping:
                    continue
                status = DeviceStatus(c.port, c.board, c.usb_serial)
                t = threading.Thread(target=self._work, args=(c, status), name=f"station-{c.port}", daemon=True)
                self._devices.append(status)
                self._threads[c.key] = t
            self._emit({"event": "found", "port": c.port, "board": c.board, "usb_serial": c.usb_serial})
            t.start()

    def _work(self, c: ports.Candidate, status: DeviceStatus) -> None:
        try:
            while not self._jobs.acquire(timeout=STOP_POLL_S):
                if self.stopping:
                    return  # never started: nothing to journal, no modem touched
            try:
                if not self.stopping:
                    run_device(c, status, self.ctx)
            finally:
                self._jobs.release()
        finally:
            self._wake.set()
