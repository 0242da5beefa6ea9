"""The #XAPOLL readiness check cannot interleave with an #XRECV that drains and re-arms (no stale POLLIN).

A pump thread's ``check_poll`` used to read the socket's readiness before taking the poll lock. An
``#XRECV`` on the worker could drain the data and re-arm POLLIN in that window, and the pump then
announced POLLIN for bytes that were already gone. The test runs exactly that interleaving, with
events instead of sleeps: the readiness read starts a real ``#XRECV`` on another thread and waits
until that read has either finished or is blocked on the poll lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from nrfprov.sim.framing import parse_command
from nrfprov.sim.netsock import POLLIN, SimSocket
from nrfprov.sim.sockets_at import SocketCommands
from nrfprov.sim.uart import Stats


class _Modem:
    """Just what SocketCommands touches: dialect, stats, URC sink, deferred calls, stop event."""

    dialect = "sm"

    def __init__(self) -> None:
        self.stats = Stats()
        self._stop = threading.Event()
        self.urcs: list[tuple[str, bool]] = []  # (line, socket had data when it was emitted)
        self.sock: SimSocket | None = None
        self.state_dir = Path("/nonexistent")

    def urc(self, line: str) -> None:
        assert self.sock is not None
        self.urcs.append((line, self.sock.recv_pending()))

    in_datamode = False

    def respond(self, data: bytes) -> None:
        raise AssertionError(f"nothing is pushed without #XRECVCFG: {data!r}")

    def call_soon(self, fn: Callable[[], None]) -> None:
        pass  # the test calls check_poll itself


class _WatchedLock:
    """A Lock that says when a second thread starts waiting for it."""

    def __init__(self, contended: threading.Event) -> None:
        self._lock = threading.Lock()
        self._contended = contended

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(blocking=False):
            return True
        self._contended.set()
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    __enter__ = acquire

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_check_poll_never_announces_pollin_for_data_an_xrecv_already_took() -> None:
    modem = _Modem()
    cmds = SocketCommands(modem)  # type: ignore[arg-type]
    contended = threading.Event()
    cmds._lock = _WatchedLock(contended)  # type: ignore[assignment]
    cmds._changed = threading.Condition(cmds._lock)  # type: ignore[arg-type]
    s = SimSocket(0, tls=False, sec_tag=None, peer_verify=0, stats=modem.stats, on_event=cmds.on_event)
    s.connected = True
    modem.sock = s
    cmds.socks[0] = s
    cmds._apoll[0] = POLLIN
    cmds._in_armed.add(0)  # POLLIN armed: the last #XRECV re-armed it
    with s._cond:
        s._rx += b"payload"  # what the pump just appended

    replies: list[bytes | None] = []
    read_done = threading.Event()
    progressed = threading.Condition()
    real_readiness = s.readiness

    def xrecv() -> None:
        replies.append(cmds.xrecv(parse_command(b"AT#XRECV=0,0,64,0")))
        read_done.set()
        with progressed:
            progressed.notify_all()

    def readiness_then_let_xrecv_run() -> int:
        ready = real_readiness()
        t = threading.Thread(target=xrecv)
        t.start()
        with progressed:  # until the read finished or is stuck behind the poll lock
            progressed.wait_for(lambda: read_done.is_set() or contended.is_set())
        threads.append(t)
        return ready

    def on_contention() -> None:
        contended.wait()
        with progressed:
            progressed.notify_all()

    threads: list[threading.Thread] = [threading.Thread(target=on_contention, daemon=True)]
    threads[0].start()
    s.readiness = readiness_then_let_xrecv_run  # type: ignore[method-assign]
    cmds.check_poll(s)  # the pump thread's check, interleaved with the #XRECV
    s.readiness = real_readiness  # type: ignore[method-assign]
    for t in threads[1:]:
        t.join(10)
    contended.set()
    threads[0].join(10)

    assert replies and replies[0] is not None and b"payload" in replies[0]
    announced = [(line, had_data) for line, had_data in modem.urcs if line.startswith("#XAPOLL: 0,")]
    assert all(had_data for _, had_data in announced), f"stale POLLIN announced: {modem.urcs}"
