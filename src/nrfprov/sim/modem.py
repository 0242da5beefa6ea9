"""SimulatedModem: the pty, one worker thread that executes AT commands, timers, URCs and faults.

Threads: the UART reader (throttled host bytes → ``_events``), the UART writer (throttled modem
bytes → pty), one worker (framing, commands, timers; the only thread that touches the Framer and
the modem state), and one pump per connected socket (TCP → socket buffer, then ``on_socket_event``).

Commands run one at a time on the worker, like the real SLM host, so a blocking ``#XRECV`` or a
TLS handshake inside ``#XCONNECT`` holds later commands in the input queue exactly as hardware does.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from nrfprov.sim import commands, keygen, sockets_at
from nrfprov.sim.framing import Command, Data, DataEnd, Framer, GrammarError, Line, parse_command
from nrfprov.sim.network import Link, NetworkProfile
from nrfprov.sim.network import profile as network_profile
from nrfprov.sim.replies import AtFail, DataSink
from nrfprov.sim.store import CredentialStore, Identity
from nrfprov.sim.uart import PtyUart, Stats

log = logging.getLogger(__name__)

DIALECTS = ("sm", "slm")
# Default AT command terminator: Serial Modem CONFIG_SM_CR_TERMINATION (ncs-serial-modem app/Kconfig),
# legacy SLM CONFIG_SLM_CR_LF_TERMINATION (sdk-nrf serial_lte_modem app/Kconfig).
DEFAULT_TERMINATION = {"sm": "cr", "slm": "crlf"}
# Host bytes the modem may hold before it stops reading the UART. The SLM stops UART RX when its
# buffers fill (HWFC: RTS deasserted [SLM slm_data_mode.rst]); a 4096-byte data-mode buffer plus one
# 4096-byte command is the most it ever needs at once. The pty then pushes back on the host.
RX_BACKLOG_LIMIT = 8192
# SM buffers URCs while in data mode [ncs-serial-modem sm_data_mode.rst]; the buffer size is undocumented, this is our
# own bound (oldest dropped first).
HELD_URC_LIMIT = 64
COMMAND_LOG_LIMIT = 10000  # our bound on the command log (a provisioning run sends ~100 commands)


@dataclass
class _Fault:
    prefix: str
    times: int | None  # None = every match
    cme: int | None = None
    seconds: float = 0.0


class SimulatedModem:
    """A simulated nRF91 on a pty. Use as a context manager, or call start()/stop()."""

    def __init__(
        self,
        state_dir: Path,
        *,
        dialect: str = "sm",
        baud: int = 115200,
        attach_delay: float | None = None,
        imei: str | None = None,
        terminator: str = "+++",
        link: Path | None = None,
        csr_null_quirk: bool = True,
        resolve: Mapping[str, str] | None = None,
        allow_remote: bool = False,
        datamode_idle: float | None = None,
        signing_key: str = "production",
        at_termination: str | None = None,
        network: str | NetworkProfile | None = None,
    ) -> None:
        if dialect not in DIALECTS:
            raise ValueError(f"dialect must be one of {DIALECTS}, not {dialect!r}")
        if not terminator:
            raise ValueError("the data-mode terminator must not be empty")
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.dialect = dialect
        self.baud = baud
        # The radio (network.py): delay and rate on every socket, and the attach time after CFUN=1
        # unless attach_delay says otherwise.
        self.network = network_profile(network)
        self.link = Link(self.network)
        self.attach_delay = attach_delay if attach_delay is not None else self.network.attach_s
        self.terminator = terminator.encode("latin-1")
        if signing_key not in keygen.KEY_TYPES:
            raise ValueError(f"signing_key must be one of {sorted(keygen.KEY_TYPES)}, not {signing_key!r}")
        # Which Nordic key the modem's COSE signatures name: production devices sign with the base
        # production key (-4), R&D samples with the R&D key (-5); the simulator signs with its own key.
        self.signing_key_type = keygen.KEY_TYPES[signing_key]
        self.csr_null_quirk = csr_null_quirk
        self.resolve: dict[str, str] = dict(resolve or {})
        self.allow_remote = allow_remote
        # SLM's data-mode send timer (AT#XDATACTRL; ≈ 32 ms at 115200 [SLM slm_data_mode.rst]); it must outlast
        # our UART step (64 bytes) or a throttled stream would look idle between steps.
        step_time = 64 * 10 / baud if baud > 0 else 0.0
        self.datamode_idle = datamode_idle if datamode_idle is not None else max(0.05, 4 * step_time)
        self.stats = Stats()
        # The commands executed, for counting UART turnarounds by command; cut before the first quote
        # so no credential content (a PEM private key in AT%CMNG) is ever kept here.
        self.command_log: collections.deque[str] = collections.deque(maxlen=COMMAND_LOG_LIMIT)
        self.store = CredentialStore(self.state_dir)
        self.identity = Identity(self.state_dir, imei)
        # modem state (worker thread)
        self.cmee = 0
        self.cfun = 0
        self.cereg_n = 0
        self.reg_stat = 0
        self._attach_gen = 0
        self._stop = threading.Event()
        self._events: queue.Queue[object] = queue.Queue()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._out_lock = threading.Lock()
        self._in_datamode = False
        self._held_urcs: list[str] = []
        self._sink: DataSink | None = None
        self._last_rx = 0.0
        self._faults: list[_Fault] = []
        self._delays: list[_Fault] = []
        self._fault_lock = threading.Lock()
        # AT command terminator: the firmware's Kconfig default unless told otherwise (framing.py).
        self.at_termination = at_termination or DEFAULT_TERMINATION[dialect]
        self._framer = Framer(self.at_termination)
        self._backlog = 0  # bytes handed over by the UART but not yet consumed by the framer
        self._backlog_cond = threading.Condition()
        self.basic = commands.ModemCommands(self)
        self.sockets = sockets_at.SocketCommands(self)
        self._uart = PtyUart(baud, self._on_rx, self.stats, link=link)
        self.port_url = self._uart.port_url
        self._worker = threading.Thread(target=self._work, name="sim-modem", daemon=True)
        self._started = False

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> SimulatedModem:
        self._started = True
        self._uart.start()
        self._worker.start()
        self._write(b"\r\nReady\r\n")  # boot banner (SM always; SLM unless CONFIG_SLM_SKIP_READY_MSG)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._events.put(None)
        if self._started:
            self._worker.join(10)
        self.sockets.close_all()
        self._uart.stop()

    def __enter__(self) -> SimulatedModem:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def link_alive(self) -> bool:
        return self._uart.alive

    @property
    def line_time(self) -> tuple[float, float]:
        """Seconds of UART line time so far: (host→modem, modem→host). 0 if unthrottled."""
        _rx, _tx, rx_s, tx_s = self.stats.uart_snapshot()
        return rx_s, tx_s

    # --- test / fault API (any thread) ---------------------------------------------------------

    def fail_command(self, prefix: str, cme: int | None = 518, times: int | None = 1) -> None:
        """Answer the next ``times`` commands starting with ``prefix`` with +CME ERROR (None: ERROR)."""
        with self._fault_lock:
            self._faults.append(_Fault(prefix.upper(), times, cme=cme))

    def delay_command(self, prefix: str, seconds: float, times: int | None = None) -> None:
        """Hold commands starting with ``prefix`` for ``seconds`` before executing them."""
        with self._fault_lock:
            self._delays.append(_Fault(prefix.upper(), times, seconds=seconds))

    def drop_link_after(self, nbytes: int) -> None:
        """The UART link dies after ``nbytes`` more bytes (either direction); the host sees EIO."""
        self._uart.drop_after(nbytes)

    def stored(self, sec_tag: int) -> dict[int, str]:
        """Witness view of one sec tag: type → content exactly as stored."""
        return self.store.tag(sec_tag)

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the worker thread (modem state is only touched there)."""
        self._events.put(fn)

    # --- output --------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        self._uart.write(data)

    def respond(self, data: bytes) -> None:
        with self._out_lock:
            self._write(data)

    def urc(self, line: str) -> None:
        """Emit an unsolicited line. In data mode SM buffers it, legacy SLM drops it
        [sdk-nrf slm_at_host.c; ncs-serial-modem sm_data_mode.rst]."""
        with self._out_lock:
            if self._in_datamode:
                if self.dialect == "sm":
                    self._held_urcs.append(line)
                    del self._held_urcs[:-HELD_URC_LIMIT]
                return
            self._write(f"\r\n{line}\r\n".encode("latin-1"))

    @property
    def in_datamode(self) -> bool:
        return self._in_datamode

    def fail_reply(self, cme: int | None) -> bytes:
        if cme is not None and self.cmee:
            return f"\r\n+CME ERROR: {cme}\r\n".encode()
        return b"\r\nERROR\r\n"

    # --- data mode (worker) --------------------------------------------------------------------

    def enter_datamode(self, sink: DataSink, reply: bytes, *, count: int | None) -> None:
        """Send ``reply`` (OK) and switch the input to data mode atomically."""
        with self._out_lock:
            self._write(reply)
            self._in_datamode = True
        self._sink = sink
        if count is None:
            self._framer.start_terminated(self.terminator)
        else:
            self._framer.start_counted(count)

    def _end_datamode(self) -> None:
        sink, self._sink = self._sink, None
        status = sink.end() if sink is not None else 0
        with self._out_lock:
            self._in_datamode = False
            self._write(f"\r\n#XDATAMODE: {status}\r\n".encode())
            held, self._held_urcs = self._held_urcs, []
            for line in held:
                self._write(f"\r\n{line}\r\n".encode("latin-1"))
        self.sockets.poll_all()  # socket events the modem deferred while in data mode

    # --- timers (worker) -----------------------------------------------------------------------

    def schedule(self, delay: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), fn))

    # --- worker --------------------------------------------------------------------------------

    def _on_rx(self, data: bytes) -> None:
        """UART reader thread: hand bytes to the worker, waiting while the worker is behind."""
        with self._backlog_cond:
            while self._backlog >= RX_BACKLOG_LIMIT and not self._stop.is_set():
                self._backlog_cond.wait(0.5)
            self._backlog += len(data)
        self._events.put(bytes(data))

    def _took(self, n: int) -> None:
        with self._backlog_cond:
            self._backlog -= n
            self._backlog_cond.notify_all()

    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                timeout: float | None = None
                if self._timers:
                    timeout = max(0.0, self._timers[0][0] - now)
                if self._sink is not None and self._framer.in_data_mode:
                    idle_at = self._last_rx + self.datamode_idle
                    timeout = max(0.0, idle_at - now) if timeout is None else min(timeout, max(0.0, idle_at - now))
                try:
                    ev = self._events.get(timeout=timeout)
                except queue.Empty:
                    ev = None
                if self._stop.is_set():
                    break
                if isinstance(ev, bytes):
                    self._framer.feed(ev)
                    self._took(len(ev))
                    self._last_rx = time.monotonic()
                elif callable(ev):
                    self._guarded(ev)
                self._run_timers()
                if (
                    self._sink is not None
                    and self._framer.in_data_mode
                    and time.monotonic() - self._last_rx >= self.datamode_idle
                ):
                    part = self._framer.flush_partial()
                    if part is not None:
                        self._sink.data(part.payload)
                    self._sink.idle()
                    self._last_rx = time.monotonic()
                self._drain_framer()
        except Exception:
            log.exception("simulated modem worker crashed")
            raise

    def _run_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, fn = heapq.heappop(self._timers)
            self._guarded(fn)

    @staticmethod
    def _guarded(fn: Callable[[], None]) -> None:
        """Deferred work must not kill the worker: a bug is logged and the modem keeps answering."""
        try:
            fn()
        except Exception:
            log.exception("simulator deferred task failed")

    def _drain_framer(self) -> None:
        while not self._stop.is_set():
            item = self._framer.next_item()
            if item is None:
                return
            if isinstance(item, Data):
                if self._sink is not None and item.payload:
                    self._sink.data(item.payload)
            elif isinstance(item, DataEnd):
                self._end_datamode()
            elif isinstance(item, Line):
                self._execute(item)

    def _execute(self, line: Line) -> None:
        self.stats.add("commands", 1)
        if line.overflow:
            self.respond(b"\r\nERROR\r\n")  # SLM: "AT command buffer overflow" → ERROR
            return
        try:
            cmd = parse_command(line.text)
        except GrammarError:
            self.respond(b"\r\nERROR\r\n")
            return
        self.command_log.append(cmd.text.split('"', 1)[0][:48])
        self._apply_delay(cmd)
        cme = self._take_fault(cmd)
        if cme is not False:
            self.respond(self.fail_reply(cme if isinstance(cme, int) else None))
            return
        try:
            reply = self.dispatch(cmd)
        except AtFail as exc:
            log.debug("sim: %s -> %s", cmd.name, exc)
            self.respond(self.fail_reply(exc.cme))
            return
        except Exception:  # a simulator bug: say so loudly, answer like a confused modem, keep running
            log.exception("simulator failed executing %s", cmd.name)
            self.respond(b"\r\nERROR\r\n")
            return
        if reply is not None:
            self.respond(reply)

    def dispatch(self, cmd: Command) -> bytes | None:
        handler = self.basic.handler(cmd.name) or self.sockets.handler(cmd.name)
        if handler is None:
            raise AtFail(None, f"unknown command {cmd.name}")
        return handler(cmd)

    def _apply_delay(self, cmd: Command) -> None:
        text = cmd.text.upper()
        with self._fault_lock:
            seconds = 0.0
            for d in self._delays:
                if text.startswith(d.prefix) and (d.times is None or d.times > 0):
                    seconds = max(seconds, d.seconds)
                    if d.times is not None:
                        d.times -= 1
            self._delays = [d for d in self._delays if d.times is None or d.times > 0]
        if seconds > 0:
            self._stop.wait(seconds)

    def _take_fault(self, cmd: Command) -> int | bool | None:
        """The CME code (or None for plain ERROR) of a matching injected failure, else False."""
        text = cmd.text.upper()
        with self._fault_lock:
            for f in self._faults:
                if text.startswith(f.prefix) and (f.times is None or f.times > 0):
                    if f.times is not None:
                        f.times -= 1
                    self._faults = [x for x in self._faults if x.times is None or x.times > 0]
                    return f.cme
        return False

