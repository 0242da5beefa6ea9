"""Station-wide limits on what the cloud is asked: a token bucket per request kind, jittered backoff.

AWS IoT throttles per account and region, not per device: a station that lets 100 modems request at
once meets ``ThrottlingException``. The published rates of the calls a provisioning request makes are
RegisterThing 10/s, CreateCertificateFromCsr 15/s, and for the split flow's function CreateThing,
AttachPolicy and AttachThingPrincipal 15/s each [AWS IoT developer guide, "AWS IoT Limits",
throttling limits table (awsdocs/aws-iot-docs doc_source/limits-iot.md)]; CreateKeysAndCertificate has
no published rate there. Every certificate request (split, CreateKeysAndCertificate,
CreateCertificateFromCsr) takes a token from the ``certificate`` bucket, every RegisterThing one from
the ``register`` bucket; both run at ``CONFIG_NRFPROV_STATION_REQUEST_RATE`` per second with bursts
of ``CONFIG_NRFPROV_STATION_REQUEST_BURST`` (defaults 5 and 5: half the lowest published rate, as
other clients of the account share it).

A throttled request issued nothing, so it is repeated, after a jittered exponential backoff ("full
jitter" [AWS Architecture Blog, "Exponential Backoff And Jitter", 2015]); the throttled bucket also
stops handing out tokens for that long, so the other devices slow down with it instead of meeting
the same refusal.

``TokenBucket`` is arithmetic with the time passed in; ``RequestLimiter`` owns the clock and waits.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

#: The bucket each request operation (the journal's intent ``operation``) draws from.
BUCKET_OF = {"split": "certificate", "create": "certificate", "create-from-csr": "certificate",
             "register": "register"}
#: Backoff after the n-th throttled attempt: uniform in [0, min(CAP, BASE * 2**n)] seconds.
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 30.0


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` stored. A taker always gets a token, possibly one
    from the future: ``take`` returns how long to wait for it, so takers queue in the order they came
    and the rate holds without anyone polling."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("the rate must be > 0 and the burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
            self._at = now

    def take(self, now: float) -> float:
        """Take one token; seconds until it is due (0: now)."""
        self._refill(now)
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def give_back(self, now: float) -> None:
        """A taker that gave up before its token was due returns it."""
        self._refill(now)
        self._tokens = min(float(self.burst), self._tokens + 1.0)

    def hold(self, now: float, seconds: float) -> None:
        """No token for ``seconds`` from now (after the cloud said the rate was too high)."""
        self._refill(now)
        self._tokens = min(self._tokens, -seconds * self.rate)


def backoff_delay(attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Full jitter after the ``attempt``-th throttled request (1, 2, ...)."""
    return rng() * min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(0, attempt - 1))


class RequestLimiter:
    """The station's buckets. Thread-safe; ``wait(seconds) -> bool`` sleeps and returns True when the
    station is stopping (a ``threading.Event.wait``), so no taker outlives a Ctrl-C by a full wait."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self._buckets = {name: TokenBucket(rate, burst, now) for name in set(BUCKET_OF.values())}
        self.waited_s = 0.0  # total seconds devices waited for tokens
        self.taken = 0

    def acquire(self, operation: str, wait: Callable[[float], bool]) -> bool:
        """Wait for a token for ``operation``; False if the station began stopping meanwhile (the
        token is given back and nothing may be requested)."""
        bucket = self._buckets[BUCKET_OF.get(operation, "certificate")]
        with self._lock:
            delay = bucket.take(self._clock())
            self.taken += 1
            self.waited_s += delay
        if delay > 0 and wait(delay):
            with self._lock:
                bucket.give_back(self._clock())
            return False
        return True

    def throttled(self, operation: str, seconds: float) -> None:
        """The cloud throttled ``operation``: hand out no token of its bucket for ``seconds``."""
        bucket = self._buckets[BUCKET_OF.get(operation, "certificate")]
        with self._lock:
            bucket.hold(self._clock(), seconds)
