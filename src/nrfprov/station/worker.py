"""One device's run inside a station: open, identify, fresh run or resume, provision, one report row.

Each device runs on its own thread with the blocking ``Modem`` and ``Driver`` of ``nrfprov provision``;
nothing here re-implements a step. The thread holds the device's port lock (``Modem.open``) and its
journal-folder lock (``Journal.lock``) from the first byte to the report row, so no other nrfprov
touches the modem or its journal meanwhile.

Decisions, in the order they are made:

- **fresh or resume** — ``plan.journal_state`` on the device's journal (``<state>/<IMEI>``): issued,
  unproven credentials are resumed (no new request), anything else is a fresh run;
- **already done** — a fresh run on a modem whose provisioned sec tag holds a client certificate stops
  before the cloud is contacted (``AlreadyProvisioned``, the single-device rule); the station counts it
  ``skipped`` when the journal proved that certificate, or an earlier row of the report did, and
  ``failed`` otherwise (someone else's certificate: ``--force`` replaces it);
- **throttled** — a request the cloud answered with ``ThrottlingException`` issued nothing (the journal
  marks it rejected); the run is repeated after a jittered backoff, and the station's bucket pauses;
- **stopping** (Ctrl-C, SIGTERM, SIGHUP) — a run that has not yet asked for credentials ends before its
  next step, journaled, its modem's functional mode restored (``Driver``); a run whose credentials are
  requested or issued finishes, so no issued key waits on a resume.

The hook the driver calls before each effect (``_Gate``) is where the station's limits apply: MQTT
sessions open at once (file descriptors: see runner.py), request tokens, and the stop.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nrfprov.config import Settings
from nrfprov.errors import AlreadyProvisioned, CloudRejected, Interrupted, LockHeld, NrfprovError
from nrfprov.names import Flow, PayloadFormat
from nrfprov.provisioning import machine as m
from nrfprov.provisioning import plan
from nrfprov.provisioning.driver import Driver
from nrfprov.provisioning.journal import Journal
from nrfprov.provisioning.results import RunResult, StepReport
from nrfprov.station.limiter import RequestLimiter, backoff_delay
from nrfprov.station.ports import Candidate, identify
from nrfprov.station.report import Report

log = logging.getLogger(__name__)

#: Throttled attempts before a device is reported failed (exit 5); with the backoff cap this is
#: minutes of trying, long after the bucket should have settled.
THROTTLE_ATTEMPTS = 8
#: How often a waiting thread looks whether the station is stopping (a session slot wait).
STOP_POLL_S = 0.25


@dataclass
class DeviceStatus:
    """One device as the live view shows it; written by its worker thread only."""

    port: str
    board: str = ""
    usb_serial: str = ""
    imei: str = ""
    firmware: str = ""
    phase: str = "queued"
    step_index: int = 0
    step_total: int = 0
    started: float | None = None
    ended: float | None = None
    result: str = ""
    error_class: str = ""
    attempts: int = 0
    uart_bytes: Callable[[], int] = field(default=lambda: 0, repr=False)

    def as_event(self, now: float) -> dict[str, Any]:
        start = self.started if self.started is not None else now
        return {"event": "device", "port": self.port, "imei": self.imei, "phase": self.phase,
                "step": self.step_index, "steps": self.step_total,
                "elapsed": round((self.ended or now) - start, 3), "uart_bytes": self.uart_bytes(),
                "result": self.result}


@dataclass
class StationContext:
    """What every device's thread shares."""

    settings: Settings
    limiter: RequestLimiter
    cloud_gate: threading.BoundedSemaphore
    report: Report
    emit: Callable[[dict[str, Any]], None]
    stop: threading.Event = field(default_factory=threading.Event)
    stop_signum: int = 2  # SIGINT unless a SIGTERM / SIGHUP stopped the station
    flow: Flow | None = None
    payload_format: PayloadFormat | None = None
    force: bool = False
    state_root: Path | None = None
    baud: int = 115200
    rtscts: bool = False
    proven: dict[str, set[str]] = field(default_factory=dict)
    hostname: str = ""
    version: str = ""
    clock: Callable[[], float] = time.monotonic
    #: Rows the report could not take (disk full ...): the station's exit status says so.
    report_errors: list[str] = field(default_factory=list)

    def state_dir(self, imei: str) -> Path:
        """One journal folder per IMEI, the same one ``nrfprov provision`` uses by default."""
        if self.state_root is not None:
            return self.state_root / imei
        from nrfprov.paths import default_state_dir

        return default_state_dir(imei)


def _sleep_through(seconds: float) -> bool:
    """A wait a stop does not cut short (credentials are on their way); False = not stopped."""
    time.sleep(seconds)
    return False


class _Gate:
    """Called by the driver before each effect: session slots, request tokens, the stop."""

    def __init__(self, ctx: StationContext, status: DeviceStatus, *, committed: bool) -> None:
        self.ctx = ctx
        self.status = status
        #: Credentials are requested or issued: the run finishes even when the station stops.
        self.committed = committed
        self.holding = False
        self._release_next = False
        self.operation = "split"

    def __call__(self, eff: m.Effect) -> None:
        ctx = self.ctx
        if self._release_next:
            self.release()
        if ctx.stop.is_set() and not self.committed:
            raise Interrupted(ctx.stop_signum)
        if isinstance(eff, m.ConnectMqtt) and not self.holding:
            self.status.phase = "waiting for a cloud session slot"
            while not ctx.cloud_gate.acquire(timeout=STOP_POLL_S):
                if ctx.stop.is_set() and not self.committed:
                    raise Interrupted(ctx.stop_signum)
            self.holding = True
        elif isinstance(eff, m.Disconnect):
            self._release_next = True  # the session closes in this effect; the slot is free after it
        elif isinstance(eff, m.SaveIntent):
            self.operation = eff.intent.operation
            self.status.phase = "waiting for a request token"
            wait = _sleep_through if self.committed else ctx.stop.wait
            if not ctx.limiter.acquire(eff.intent.operation, wait):
                raise Interrupted(ctx.stop_signum)
            self.committed = True  # the intent is journaled next, then the request goes out

    def release(self) -> None:
        self._release_next = False
        if self.holding:
            self.holding = False
            self.ctx.cloud_gate.release()


def _throttled(exc: CloudRejected) -> bool:
    return exc.error_code == "ThrottlingException" or exc.status_code == 429


def run_device(c: Candidate, status: DeviceStatus, ctx: StationContext) -> dict[str, Any]:
    """Provision the modem on ``c``; always returns the report row (never raises but for a bug)."""
    from nrfprov.modem import Modem

    status.started = ctx.clock()
    status.phase = "identify"
    ctx.emit(status.as_event(status.started))
    acc = _Accumulated()
    modem: Modem | None = None
    journal_lock = None
    try:
        modem = Modem.open(c.port, baud=ctx.baud, dialect=ctx.settings.modem_dialect,
                           slm_terminator=ctx.settings.slm_terminator, rtscts=ctx.rtscts or c.hwfc)
        live = modem
        status.uart_bytes = lambda: live.uart_bytes_sent + live.uart_bytes_received
        ident = identify(modem)
        status.imei, status.firmware = ident.imei, ident.firmware
        journal = Journal(ctx.state_dir(ident.imei))
        journal_lock = journal.lock().acquire()
        return _provision(modem, journal, c, status, ctx, acc)
    except LockHeld as exc:
        return _finish(ctx, c, status, acc, "busy", exc)
    except NrfprovError as exc:
        return _finish(ctx, c, status, acc, "failed", exc)
    except Interrupted as exc:
        return _finish(ctx, c, status, acc, "interrupted", exc)
    except Exception as exc:  # a bug: this device is reported, the others go on
        log.exception("station: unexpected failure on %s", c.port)
        return _finish(ctx, c, status, acc, "failed", exc)
    finally:
        if modem is not None:
            acc.uart = status.uart_bytes()
            status.uart_bytes = lambda: acc.uart
            try:
                modem.close()
            except NrfprovError as exc:
                log.warning("closing %s: %s", c.port, exc)
        if journal_lock is not None:
            journal_lock.release()


@dataclass
class _Accumulated:
    """What the attempts of one device add up to."""

    air: int = 0
    uart: int = 0
    last: RunResult | None = None
    thing: str = ""
    certificate: str = ""
    sec_tag: int | None = None


def _provision(modem: Any, journal: Journal, c: Candidate, status: DeviceStatus, ctx: StationContext,
               acc: _Accumulated) -> dict[str, Any]:
    attempt = 0
    while True:
        attempt += 1
        status.attempts = attempt
        resume = plan.journal_state(journal.load()) == plan.RESUMABLE
        gate = _Gate(ctx, status, committed=resume)
        steps = _Steps(ctx, status)
        driver = Driver(ctx.settings, modem, state_dir=journal.dir, flow=ctx.flow, payload_format=ctx.payload_format,
                        resume=resume, force=ctx.force, progress=steps, before_effect=gate)
        steps.driver = driver
        try:
            result = driver.run()
            _take(acc, driver)
            acc.thing, acc.certificate = result.thing_name, result.certificate_id
            return _finish(ctx, c, status, acc, "resumed" if resume else "provisioned", None)
        except AlreadyProvisioned as exc:
            _take(acc, driver)
            # A thing name is only named when this device's journal proved the certificate (plan._identify);
            # otherwise an earlier report row must have proven exactly this certificate id.
            proven = bool(exc.thing_name) or exc.certificate_id in ctx.proven.get(status.imei, set())
            if not proven:
                raise
            acc.thing, acc.certificate = exc.thing_name, exc.certificate_id
            return _finish(ctx, c, status, acc, "skipped", None)
        except CloudRejected as exc:
            _take(acc, driver)
            if not _throttled(exc) or attempt >= THROTTLE_ATTEMPTS:
                raise
            delay = backoff_delay(attempt)
            ctx.limiter.throttled(gate.operation, delay)
            status.phase = f"throttled; again in {delay:.1f} s"
            ctx.emit(status.as_event(ctx.clock()))
            log.info("%s: %s throttled (attempt %d); again in %.1f s", c.port, gate.operation, attempt, delay)
            if ctx.stop.wait(delay):  # nothing was issued: stopping here loses nothing
                raise Interrupted(ctx.stop_signum) from exc
        except BaseException:
            _take(acc, driver)
            raise
        finally:
            gate.release()


class _Steps:
    """The driver's progress callback: "step k of n" of this run's chain (a resume has fewer steps)."""

    def __init__(self, ctx: StationContext, status: DeviceStatus) -> None:
        self.ctx = ctx
        self.status = status
        self.driver: Driver | None = None

    def __call__(self, report: StepReport) -> None:
        machine = self.driver.machine if self.driver is not None else None
        steps = [s for s in (machine.steps if machine is not None else []) if s not in (m.State.IDLE, m.State.DONE)]
        self.status.phase = report.state.value
        self.status.step_total = len(steps)
        if report.state in steps:
            self.status.step_index = steps.index(report.state) + 1
        self.ctx.emit(self.status.as_event(self.ctx.clock()))


def _take(acc: _Accumulated, driver: Driver) -> None:
    """Add one attempt's figures (the driver keeps its RunResult whether it returned or raised)."""
    if driver.result is not None and driver.result is not acc.last:
        acc.last = driver.result
        acc.air += driver.result.socket_bytes
    if driver.machine is not None:
        acc.sec_tag = driver.machine.plan.provisioned_sec_tag


def _finish(ctx: StationContext, c: Candidate, status: DeviceStatus, acc: _Accumulated, result: str,
            exc: BaseException | None) -> dict[str, Any]:
    now = ctx.clock()
    status.ended = now
    status.result = result
    status.phase = result
    run = acc.last
    exit_code = 0
    if isinstance(exc, NrfprovError | Interrupted):
        exit_code = exc.exit_code
    elif exc is not None:
        exit_code = 1
    status.error_class = type(exc).__name__ if exc is not None else ""
    row = {
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "station": ctx.hostname, "port": c.port, "usb_serial": c.usb_serial, "imei": status.imei,
        "thing_name": acc.thing, "certificate_id": acc.certificate,
        "flow": run.flow if run else (ctx.flow or ctx.settings.flow),
        "format": run.payload_format if run else (ctx.payload_format or ctx.settings.payload_format),
        "backend": run.backend if run else ctx.settings.tls_backend,
        "sec_tag": acc.sec_tag if acc.sec_tag is not None else ctx.settings.provisioned_sec_tag,
        "seconds": round(now - (status.started or now), 3),
        "uart_bytes": status.uart_bytes(), "air_bytes": acc.air,
        "result": result, "error_class": status.error_class, "exit_code": exit_code,
        "nrfprov_version": ctx.version, "attempts": status.attempts,
        "error": "" if exc is None else (str(exc) if isinstance(exc, NrfprovError) else f"{type(exc).__name__}: {exc}"),
    }
    try:
        row = ctx.report.append(row)
    except NrfprovError as rexc:  # the device's outcome stands; the station reports the lost row
        log.error("%s: %s", c.port, rexc)
        ctx.report_errors.append(str(rexc))
    ctx.emit({"event": "result", **row})
    return row
