"""Network profiles: the radio between the simulated modem and the internet, as delay and rate.

A profile gives the round-trip time (one-way delay = RTT/2 each way), an uplink and a downlink rate
and the time from ``AT+CFUN=1`` to registration (+CEREG: 1). The modem's sockets (plain TCP and the
modem-offloaded TLS sockets alike) pass every byte through a :class:`Link`: each chunk occupies its
direction for ``8 * len / rate`` seconds after the previous one, then travels ``RTT / 2`` more.

Default figures, per radio access technology (typical, not worst case; every one can be overridden):

* ``lte-m`` — RTT 150 ms, uplink 375 kbit/s, downlink 300 kbit/s, attach 2 s. The rates are the
  nRF9160's LTE-M (Cat-M1, half-duplex FDD) peak throughput in Nordic's nRF9160 product specification
  (3GPP TS 36.306 UE category M1); GSMA CLP.29 "LTE-M Deployment Guide" (2018) puts LTE-M radio latency
  at 10-15 ms, end-to-end RTTs through an operator core are typically 100-200 ms.
* ``nb-iot`` — RTT 1.6 s, uplink 62.5 kbit/s, downlink 26 kbit/s, attach 5 s. Rates: Cat-NB1 peak
  (3GPP TS 36.306 UE category NB1: 62.5 kbit/s multi-tone UL, ~26 kbit/s DL with one HARQ process).
  Latency: 3GPP TR 45.820 targets under 10 s for 99 % of exception reports; measured NB-IoT latencies
  are ~0.8-2 s (Ugwuanyi et al., Electronics 10 (2021) 2224: 837 ms one-way at 264 bit/s; Basu et al.,
  "Experimental Performance Evaluation of NB-IoT", WiMob 2019: RTTs of 1-2 s and more in poor coverage).
  NB-IoT attach takes seconds (GSMA CLP.28 "NB-IoT Deployment Guide", 2017).
* ``ideal`` — no delay, no rate limit, attach at once: the default, so tests measure the UART only.

Time is read from a clock function; the link itself is arithmetic (``Link.schedule``), and one
scheduler thread per process delivers what is due, so 100 simulated modems cost one thread here.

DNS: a host name given to ``#XCONNECT`` or ``#XGETADDRINFO`` is looked up over the radio, one round
trip per lookup (a query up, the answer down; over UDP, so not in the TCP byte counters). Whether the
modem caches answers is not documented by Nordic, so the simulator does not cache: every lookup of a
name costs its round trip, and a client that wants to save it reuses the address itself.

What crosses the radio can be watched: ``Link.observer`` (any callable) receives an :class:`AirEvent`
for every DNS lookup, TCP connect, chunk sent or received and socket close, timed at the modem's end of
the radio. The benchmarks count round trips from these events (benchmarks/airtime.py).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NetworkProfile:
    name: str
    rtt_s: float = 0.0
    up_bps: float = 0.0  # 0 = unlimited
    down_bps: float = 0.0
    attach_s: float = 0.0

    @property
    def ideal(self) -> bool:
        return self.rtt_s <= 0 and self.up_bps <= 0 and self.down_bps <= 0

    def with_overrides(
        self,
        *,
        rtt_ms: float | None = None,
        up_kbps: float | None = None,
        down_kbps: float | None = None,
        attach_s: float | None = None,
    ) -> NetworkProfile:
        p = self
        if rtt_ms is not None:
            p = replace(p, rtt_s=rtt_ms / 1000)
        if up_kbps is not None:
            p = replace(p, up_bps=up_kbps * 1000)
        if down_kbps is not None:
            p = replace(p, down_bps=down_kbps * 1000)
        if attach_s is not None:
            p = replace(p, attach_s=attach_s)
        if p != self:
            p = replace(p, name=f"{self.name}+custom")
        for value in (p.rtt_s, p.up_bps, p.down_bps, p.attach_s):
            if value < 0:
                raise ValueError("network figures must not be negative")
        return p


PROFILES = {
    "ideal": NetworkProfile("ideal"),
    "lte-m": NetworkProfile("lte-m", rtt_s=0.150, up_bps=375_000, down_bps=300_000, attach_s=2.0),
    "nb-iot": NetworkProfile("nb-iot", rtt_s=1.6, up_bps=62_500, down_bps=26_000, attach_s=5.0),
}


def profile(name_or_profile: str | NetworkProfile | None) -> NetworkProfile:
    if name_or_profile is None:
        return PROFILES["ideal"]
    if isinstance(name_or_profile, NetworkProfile):
        return name_or_profile
    try:
        return PROFILES[name_or_profile]
    except KeyError:
        raise ValueError(f"network must be one of {sorted(PROFILES)}, not {name_or_profile!r}") from None


class Direction:
    """One direction of the radio link: serialisation at ``bps`` back to back, then ``delay`` seconds."""

    def __init__(self, bps: float, delay: float) -> None:
        self.bps = bps
        self.delay = delay
        self.next_free = 0.0
        self.lock = threading.Lock()

    def schedule(self, n: int, now: float) -> float:
        """When the last of ``n`` bytes handed over at ``now`` arrives at the far end."""
        with self.lock:
            start = max(now, self.next_free)
            done = start + (n * 8 / self.bps if self.bps > 0 else 0.0)
            self.next_free = done
            return done + self.delay


AirKind = Literal["dns", "connect", "up", "down", "close"]


@dataclass(frozen=True)
class AirEvent:
    """One thing that crossed (or started to cross) the radio, at the modem's end of it.

    ``connect``: the SYN leaves (the SYN-ACK is one round trip later); ``up``: a chunk handed to the
    radio; ``down``: a chunk that has arrived; ``close``: the modem closed the socket; ``dns``: a
    lookup (one round trip). ``conn`` numbers the link's connections (0 for DNS).
    """

    t: float
    conn: int
    kind: AirKind
    nbytes: int = 0


# A DNS query is a 12-byte header, the name as labels (one length byte per label plus a root byte) and
# 4 bytes of type and class; the answer repeats it and adds one A record of 16 bytes with a name pointer
# [RFC 1035 §4.1]. Only their serialisation time matters here (UDP is not in the TCP byte counters).
def dns_sizes(name: str) -> tuple[int, int]:
    query = 12 + len(name.strip(".")) + 2 + 4
    return query, query + 16


class Link:
    """The modem's radio link, shared by all its sockets (they share one radio)."""

    def __init__(self, p: NetworkProfile) -> None:
        self.profile = p
        self.up = Direction(p.up_bps, p.rtt_s / 2)
        self.down = Direction(p.down_bps, p.rtt_s / 2)
        # Set by whoever watches the radio (benchmarks); called on the thread where the event happens.
        self.observer: Callable[[AirEvent], None] | None = None
        self._conns = itertools.count(1)
        self._conns_lock = threading.Lock()

    def new_connection(self) -> int:
        with self._conns_lock:
            return next(self._conns)

    def note(self, conn: int, kind: AirKind, nbytes: int = 0, t: float | None = None) -> None:
        observer = self.observer
        if observer is not None:
            observer(AirEvent(time.monotonic() if t is None else t, conn, kind, nbytes))

    def dns_lookup(self, name: str, wait: Callable[[float], object]) -> None:
        """One DNS round trip for ``name`` over this link; ``wait(seconds)`` sleeps (stoppably)."""
        now = time.monotonic()
        self.note(0, "dns", t=now)
        if self.profile.ideal:
            return
        query, answer = dns_sizes(name)
        at_server = self.up.schedule(query, now)
        done = self.down.schedule(answer, at_server)
        wait(max(0.0, done - now))


class Scheduler:
    """Runs callables at their due time (monotonic), in due order, on one daemon thread per process."""

    _instance: Scheduler | None = None
    _instance_lock = threading.Lock()

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="sim-network", daemon=True)
        self._thread.start()

    @classmethod
    def shared(cls) -> Scheduler:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def at(self, when: float, fn: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._seq), fn))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > self._clock():
                    timeout = None if not self._heap else self._heap[0][0] - self._clock()
                    self._cond.wait(timeout)
                _, _, fn = heapq.heappop(self._heap)
            try:
                fn()
            except Exception:  # one socket's bug must not stop every other modem's network
                log.exception("simulated network delivery failed")
