"""Round trips on the air, counted from what crossed the radio.

Input: ``nrfprov.sim.network.AirEvent`` records timed at the device's end of the radio, from the
simulator's link (our client on the simulated nRF91) or from shaped_relay.py (a client on the host
behind the same radio). Both report the same kinds: ``dns`` (a lookup), ``connect`` (SYN out),
``up`` (a chunk handed to the radio), ``down`` (a chunk that arrived), ``close``.

Definition of a round trip (RESULTS.md states it with the protocol minimum): the device sends, then
must wait for the network before it can continue.

- every DNS lookup: the query goes out, the device waits for the answer;
- every TCP connect: SYN out, the device waits for the SYN-ACK before it may send [RFC 9293 §3.5];
- on each connection: the device sends (its first chunk since it last got an answer), and a chunk
  arrives at least one RTT later (0.9 RTT, for rounding): an answer, which cannot come sooner than
  one RTT after the data that caused it. The next send starts the next round trip. So TLS flights and
  MQTT exchanges count one each, and exchanges the device overlaps (packets sent back to back without
  waiting) share one; a chunk that arrives sooner than that after a send (the second half of a reply
  already on its way when the device acknowledged the first) is no new round trip;
- an answer counts only if the device sends again on that connection afterwards: data it never waits
  for (a server's close_notify or FIN after the DISCONNECT) is not a round trip.

``server_wait`` (the P1 honest floor) reads the relay's server-side trace on the ideal profile: the
time from the device's last up chunk to the first down chunk of each flight it waited for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nrfprov.sim.network import AirEvent


@dataclass(frozen=True)
class Flight:
    up: bool
    first: float
    last: float
    nbytes: int


@dataclass(frozen=True)
class AirCount:
    """What one provisioning run did on the air."""

    dns: int
    tcp: int
    exchanges: int  # down flights the device waited for (TLS flights, MQTT exchanges)
    up_bytes: int  # TCP payload, TLS included (DNS runs over UDP and is not in here)
    down_bytes: int
    connections: int
    waited_until: float | None  # arrival of the last flight the device waited for (the proof's PUBACK)

    @property
    def round_trips(self) -> int:
        return self.dns + self.tcp + self.exchanges


def flights(events: Iterable[tuple[float, bool, int]]) -> list[Flight]:
    """Group (time, up?, bytes) chunks of one connection, in time order, into flights."""
    out: list[Flight] = []
    for t, up, n in sorted(events, key=lambda e: e[0]):
        if out and out[-1].up == up:
            f = out[-1]
            out[-1] = Flight(up, f.first, t, f.nbytes + n)
        else:
            out.append(Flight(up, t, t, n))
    return out


def waited(fl: Sequence[Flight]) -> list[int]:
    """Indexes of the down flights that lie between two up flights."""
    ups = [i for i, f in enumerate(fl) if f.up]
    if not ups:
        return []
    return [i for i, f in enumerate(fl) if not f.up and ups[0] < i < ups[-1]]


#: An answer cannot arrive sooner than one RTT after the data that caused it; 0.9 allows for rounding.
RTT_FRACTION = 0.9


def count(events: Iterable[AirEvent], rtt: float) -> AirCount:
    """Round trips, bytes and connections of one run; ``rtt`` is the profile's round-trip time (> 0)."""
    if rtt <= 0:
        raise ValueError("round trips are counted on a profile with a round-trip time")
    evs = sorted(events, key=lambda e: e.t)
    dns = sum(1 for e in evs if e.kind == "dns")
    conns = sorted({e.conn for e in evs if e.kind == "connect"})
    per_conn: dict[int, list[AirEvent]] = {}
    for e in evs:
        if e.kind in ("up", "down") and e.nbytes:
            per_conn.setdefault(e.conn, []).append(e)
    exchanges = 0
    last: float | None = None
    for chunks in per_conn.values():
        answers: list[float] = []
        sent_at: float | None = None  # the device's first send since its last answer
        for e in chunks:
            if e.kind == "up":
                if sent_at is None:
                    sent_at = e.t
            elif sent_at is not None and e.t >= sent_at + RTT_FRACTION * rtt:
                answers.append(e.t)
                sent_at = None
        last_up = max((e.t for e in chunks if e.kind == "up"), default=None)
        waited_for = [t for t in answers if last_up is not None and t < last_up]
        exchanges += len(waited_for)
        if waited_for:
            last = waited_for[-1] if last is None else max(last, waited_for[-1])
    return AirCount(
        dns=dns, tcp=len(conns), exchanges=exchanges,
        up_bytes=sum(e.nbytes for e in evs if e.kind == "up"),
        down_bytes=sum(e.nbytes for e in evs if e.kind == "down"),
        connections=len(conns), waited_until=last,
    )


def server_wait(traces: Iterable[Sequence[tuple[float, str, int]]]) -> float:
    """Seconds the device waited on the server side: for every flight it waited for (as ``waited``), the
    gap from the end of its last up flight to the first byte of the answer, as the relay in front of the
    broker saw them (``ConnectionCount.trace``: time, "up"/"down", bytes)."""
    total = 0.0
    for trace in traces:
        fl = flights((t, d == "up", n) for t, d, n in trace)
        for i in waited(fl):
            total += max(0.0, fl[i].first - fl[i - 1].last)
    return total


#: AWS IoT allows one CONNECT per second per client ID [AWS IoT Core quotas]; the stand-in enforces it.
CONNECT_INTERVAL_S = 1.0


def quota_floor(samples: Sequence[tuple[AirEvent, float]], start: float, end: float) -> float | None:
    """The shortest run the one-CONNECT-per-second quota allows when the reconnect reuses the claim's
    client ID: the UART line time up to the claim's MQTT CONNECT, the quota's second, and the line time
    from the reconnect's CONNECT to the end. ``samples`` pair each AirEvent with the UART line time
    (seconds, both directions) at that moment; ``start`` / ``end`` are the line times of the run's ends.

    A connection's MQTT CONNECT is its third up flight (after ClientHello and the client's TLS 1.2
    flight). None when the run had fewer than two connections through the modem.
    """
    connects: list[float] = []
    by_conn: dict[int, list[tuple[AirEvent, float]]] = {}
    for e, line in samples:
        if e.kind in ("up", "down") and e.nbytes:
            by_conn.setdefault(e.conn, []).append((e, line))
    for conn in sorted(by_conn):
        ups = 0
        last_up = False
        for e, line in by_conn[conn]:
            if e.kind == "up" and not last_up:
                ups += 1
                if ups == 3:
                    connects.append(line)
                    break
            last_up = e.kind == "up"
    if len(connects) < 2:
        return None
    return (connects[0] - start) + CONNECT_INTERVAL_S + (end - connects[-1])
