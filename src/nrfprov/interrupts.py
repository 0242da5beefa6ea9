"""SIGINT, SIGTERM and SIGHUP end a run the same way: one exception, raised where it is safe.

Python raises ``KeyboardInterrupt`` for SIGINT at whatever bytecode the main thread is executing,
and by default dies of SIGTERM and SIGHUP without running any ``finally``. Either can stop nrfprov
between writing an AT command and reading its answer, leaving the AT session out of step and the
modem offline (CFUN=4). :func:`install` replaces the three handlers: each signal raises
:class:`~nrfprov.errors.Interrupted` (a ``KeyboardInterrupt`` with ``exit_code`` 128 + the signal)
in the main thread, so every ``except KeyboardInterrupt`` / ``finally`` path runs for all three.

The modem layer marks each AT command exchange as :func:`critical`. A signal that arrives inside one
is held until the modem's final result is in (every command has a timeout, the longest 60 s for a
TLS connect), then raised: the exchange is finished, never cut in half. After the first
``Interrupted`` is raised, later signals are only reported, so the cleanup it starts (restoring the
modem's functional mode, journaling the interruption) runs to the end; SIGKILL still stops
everything at once.

Only the main thread receives Python signal handlers [Python ``signal`` module docs], so only its
critical sections defer; a command another thread runs finishes under the AT channel's lock before
the main thread's cleanup gets the channel.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from nrfprov.errors import Interrupted

#: The signals that end a run: Ctrl-C, ``kill``, the terminal closing.
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _State:
    def __init__(self) -> None:
        self.depth = 0  # nesting of critical sections in the main thread
        self.pending: int | None = None  # a signal held until the critical section ends
        self.raised = False  # one Interrupted has been raised; later signals are only reported


_state = _State()


def _say(text: str) -> None:
    # os.write, not print: the handler may run while the main thread is inside a write to stderr,
    # and a buffered stream would raise "reentrant call" there.
    with contextlib.suppress(OSError):
        os.write(2, (text + "\n").encode())


def _name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state.raised or _state.pending is not None:
        _say(f"nrfprov: {_name(signum)}: already stopping (restoring the modem); SIGKILL stops at once "
             "but may leave the modem offline")
        return
    if _state.depth > 0:
        _state.pending = signum
        _say(f"nrfprov: {_name(signum)}: finishing the AT command in flight, then stopping")
        return
    _state.raised = True
    raise Interrupted(signum)


@contextlib.contextmanager
def install() -> Iterator[None]:
    """Route SIGINT/SIGTERM/SIGHUP to :class:`Interrupted` for the block (main thread only; elsewhere
    a no-op). The previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    global _state
    saved, _state = _state, _State()
    for s in SIGNALS:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _state = saved


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP for the block (an AT command and its answer); raise the held one
    when the outermost block ends. Cheap and re-entrant; a no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    state = _state
    state.depth += 1
    try:
        yield
    finally:
        state.depth -= 1
        if state.depth == 0 and state.pending is not None and not state.raised:
            signum, state.pending = state.pending, None
            state.raised = True
            raise Interrupted(signum)


def interrupted() -> bool:
    """True once a signal arrived in this :func:`install` block (raised or still held)."""
    return _state.raised or _state.pending is not None
