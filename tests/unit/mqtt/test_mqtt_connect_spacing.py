"""CONNECT spacing per client ID (AWS IoT: one CONNECT per second per client ID), on a fake clock."""

from __future__ import annotations

import threading

import pytest

from nrfprov.mqtt.session import CONNECT_INTERVAL_S, CONNECT_MARGIN_S, CONNECT_SPACER, ConnectSpacer


def test_connect_spacer_with_a_fake_clock() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    spacer = ConnectSpacer(1.1, clock=lambda: now[0], sleep=sleep)
    assert spacer.wait_turn("a") == 0
    now[0] += 0.4
    assert spacer.wait_turn("a") == pytest.approx(0.7)  # 1.1 s after the first
    assert spacer.wait_turn("b") == 0  # per client ID
    assert spacer.wait_turn("a") == pytest.approx(1.1)  # queued behind the reserved slot
    now[0] += 5
    assert spacer.wait_turn("a") == 0
    assert slept == pytest.approx([0.7, 1.1])


def test_concurrent_sessions_with_one_client_id_queue_up() -> None:
    now = [0.0]
    slept: list[float] = []
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            slept.append(seconds)

    spacer = ConnectSpacer(1.0, clock=lambda: now[0], sleep=sleep)
    threads = [threading.Thread(target=spacer.wait_turn, args=("same",)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(slept) == [1.0, 2.0, 3.0]  # one slot per interval, none shared


def test_the_shared_spacer_uses_aws_interval_plus_margin() -> None:
    assert CONNECT_INTERVAL_S == 1.0 and 0 < CONNECT_MARGIN_S <= 0.2
    assert CONNECT_SPACER.interval == CONNECT_INTERVAL_S + CONNECT_MARGIN_S


def test_the_next_connect_may_leave_one_quota_after_the_connack() -> None:
    """The previous CONNECT reached the broker before its CONNACK left: one second after the CONNACK
    came, a new CONNECT cannot arrive too soon, so the margin is not needed then."""
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    spacer = ConnectSpacer(1.1, clock=lambda: now[0], sleep=sleep, quota=1.0)
    spacer.wait_turn("a")  # CONNECT sent at 100.0
    now[0] += 0.02
    spacer.acknowledged("a")  # CONNACK at 100.02
    now[0] += 0.48
    assert spacer.wait_turn("a") == pytest.approx(0.52)  # until 101.02, not 101.1
    now[0] += 1.5  # a CONNACK that came late (a slow path): the send time plus the interval decides
    spacer.acknowledged("a")  # at 102.52, for the CONNECT sent at 101.02
    assert spacer.wait_turn("a") == 0.0  # 102.52 > 101.02 + 1.1
    spacer.acknowledged("b")  # a CONNACK for a client ID that sent nothing here is ignored
    assert spacer.wait_turn("b") == 0.0
    assert slept == pytest.approx([0.52])
