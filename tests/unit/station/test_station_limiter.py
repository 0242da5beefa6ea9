"""The station's token bucket and backoff, on a fake clock (no sleeping)."""

from __future__ import annotations

import pytest

from nrfprov.station.limiter import BACKOFF_CAP_S, RequestLimiter, TokenBucket, backoff_delay


def test_a_burst_then_the_rate() -> None:
    b = TokenBucket(rate=5, burst=5, now=0.0)
    assert [b.take(0.0) for _ in range(5)] == [0.0] * 5
    # Takers queue in order: the 6th waits 0.2 s, the 7th 0.4 s, ...
    assert [round(b.take(0.0), 3) for _ in range(3)] == [0.2, 0.4, 0.6]
    # Over any window, takes are bounded by burst + rate * window.
    b2 = TokenBucket(rate=2, burst=1, now=0.0)
    due = [b2.take(0.0) for _ in range(10)]
    assert due == sorted(due) and due[-1] == pytest.approx(4.5)


def test_hold_and_give_back() -> None:
    b = TokenBucket(rate=10, burst=10, now=0.0)
    b.hold(0.0, 3.0)  # the cloud throttled: nothing for 3 s
    assert b.take(0.0) == pytest.approx(3.1)
    b.give_back(0.0)  # that taker gave up (the station stopped)
    assert b.take(0.0) == pytest.approx(3.1)
    assert b.take(10.0) == 0.0  # refilled meanwhile, capped at the burst


def test_backoff_is_full_jitter_and_capped() -> None:
    assert backoff_delay(1, rng=lambda: 1.0) == 1.0
    assert backoff_delay(3, rng=lambda: 1.0) == 4.0
    assert backoff_delay(30, rng=lambda: 1.0) == BACKOFF_CAP_S
    assert backoff_delay(5, rng=lambda: 0.0) == 0.0


def test_limiter_waits_through_its_wait_function_and_returns_the_token_when_stopped() -> None:
    now = [0.0]
    lim = RequestLimiter(1, 1, clock=lambda: now[0])
    waits: list[float] = []
    assert lim.acquire("split", lambda s: waits.append(s) or False)  # type: ignore[func-returns-value]
    assert lim.acquire("split", lambda s: waits.append(s) or False)  # type: ignore[func-returns-value]
    assert waits == [1.0]
    assert not lim.acquire("split", lambda s: True)  # stopping while waiting: given back
    # RegisterThing draws from its own bucket.
    assert lim.acquire("register", lambda s: pytest.fail("the register bucket was full"))
