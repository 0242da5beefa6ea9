"""nrfprov.interrupts: SIGINT/SIGTERM/SIGHUP become Interrupted, held inside an AT exchange, raised once."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from nrfprov.errors import EXIT_HANGUP, EXIT_INTERRUPTED, EXIT_TERMINATED, Interrupted
from nrfprov.interrupts import critical, install, interrupted


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, EXIT_INTERRUPTED), (signal.SIGTERM, EXIT_TERMINATED),
                                           (signal.SIGHUP, EXIT_HANGUP)])
def test_each_signal_is_one_keyboard_interrupt_with_its_exit_code(sig: signal.Signals, code: int) -> None:
    with install(), pytest.raises(Interrupted) as info:
        os.kill(os.getpid(), sig)
        signal.sigtimedwait([], 0)  # a bytecode boundary: the handler has run by now
    assert isinstance(info.value, KeyboardInterrupt)
    assert info.value.exit_code == code and info.value.signum == sig


def test_a_signal_inside_a_critical_section_is_held_until_it_ends() -> None:
    done: list[str] = []
    with install(), pytest.raises(Interrupted):
        with critical():
            os.kill(os.getpid(), signal.SIGTERM)
            with critical():  # nested: still held
                done.append("inner")
            done.append("outer")  # the exchange finishes
            assert interrupted()
        done.append("after")  # never reached: raised when the outermost section ended
    assert done == ["inner", "outer"]


def test_after_the_first_interrupt_later_signals_are_only_reported(capfd: pytest.CaptureFixture[str]) -> None:
    cleanup: list[str] = []
    with install():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            signal.sigtimedwait([], 0)
        except Interrupted:
            os.kill(os.getpid(), signal.SIGTERM)  # a second Ctrl-C / kill during the cleanup
            signal.sigtimedwait([], 0)
            cleanup.append("restored the modem")
    assert cleanup == ["restored the modem"]
    assert "already stopping" in capfd.readouterr().err


def test_handlers_come_back_and_other_threads_are_untouched() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    ran: list[bool] = []

    def other() -> None:
        with install(), critical():  # no-ops outside the main thread
            ran.append(True)

    t = threading.Thread(target=other)
    t.start()
    t.join(10)
    with install():
        pass
    assert ran == [True]
    assert {s: signal.getsignal(s) for s in before} == before
