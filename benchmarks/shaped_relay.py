"""The counting relay with a radio in it: the simulator's network profile applied to any client.

P7 runs our client on the simulated nRF91, whose sockets cross the radio of its network profile
(``nrfprov.sim.network``). A client that runs on the host (awsiotsdk) gets the same radio here: the
same ``Link`` arithmetic and the same profile figures, one link shared by all connections (one radio).

- up (client → broker): a chunk the client sent at ``t`` reaches the broker at ``link.up.schedule(n, t)``
  (serialisation at the uplink rate after the previous chunk, then RTT/2);
- down (broker → client): likewise on the downlink;
- TCP: the client's kernel finished its handshake with the relay at once, so the relay holds the
  client's first bytes until one RTT after the accept (SYN → SYN-ACK over the radio) before they
  start crossing; with ``dns_per_run`` the first connection after ``reset()`` waits one more RTT,
  the lookup a client makes before its first connect (awscrt's host resolver then caches the
  address for the reconnect [aws-c-io host_resolver.h]).

Every event is also recorded as a ``nrfprov.sim.network.AirEvent`` timed at the client's end of the
radio (up when the client sent it, down when it reached the client), the same events the simulator
reports, so benchmarks/airtime.py counts round trips the same way for both.

Only 127.0.0.1 is ever bound or dialled (CountingRelay).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

from relay import ConnectionCount, CountingRelay

from nrfprov.sim.network import AirEvent, AirKind, Link, NetworkProfile, Scheduler, dns_sizes

#: The name whose lookup ``dns_per_run`` charges (its size only sets the query's serialisation time).
DNS_NAME = "xxxxxxxxxxxxxx-ats.iot.eu-west-1.amazonaws.com"


@dataclass
class _Conn:
    number: int
    ready_at: float  # the client's bytes cannot start crossing before this (TCP, maybe DNS)
    last_due: float = 0.0
    closed: threading.Event = field(default_factory=threading.Event)


class ShapedRelay(CountingRelay):
    """``CountingRelay`` that delays and rate-limits both directions like the profile's radio."""

    def __init__(self, target_host: str, target_port: int, profile: NetworkProfile, *,
                 dns_per_run: bool = False, trace: bool = False) -> None:
        super().__init__(target_host, target_port, trace=trace)
        self.profile = profile
        self.link = Link(profile)
        self.dns_per_run = dns_per_run
        self._air: list[AirEvent] = []
        self._air_lock = threading.Lock()
        self._conns: dict[int, _Conn] = {}  # id(ConnectionCount) -> state
        self._next_number = 1
        self._dns_due = dns_per_run

    # -- what the suites read -------------------------------------------------------------------

    def reset(self) -> None:
        super().reset()
        with self._air_lock:
            self._air = []
            self._dns_due = self.dns_per_run

    def air_events(self) -> list[AirEvent]:
        with self._air_lock:
            return list(self._air)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        if not super().wait_idle(timeout):
            return False
        with self._air_lock:
            conns = list(self._conns.values())
        return all(c.closed.wait(timeout) for c in conns)

    # -- shaping --------------------------------------------------------------------------------

    def _note(self, conn: int, kind: AirKind, nbytes: int, t: float) -> None:
        with self._air_lock:
            self._air.append(AirEvent(t, conn, kind, nbytes))

    def _accepted(self, count: ConnectionCount) -> None:
        now = time.monotonic()
        rtt = self.profile.rtt_s
        with self._air_lock:
            number = self._next_number
            self._next_number += 1
            dns, self._dns_due = self._dns_due, False
        start = now
        if dns:
            self._note(0, "dns", 0, now)
            query, answer = dns_sizes(DNS_NAME)
            start = self.link.down.schedule(answer, self.link.up.schedule(query, now))
        self._note(number, "connect", 0, start)
        conn = _Conn(number, ready_at=start + rtt)
        with self._air_lock:
            self._conns[id(count)] = conn

    def _conn(self, count: ConnectionCount) -> _Conn:
        with self._air_lock:
            return self._conns[id(count)]

    def _forward(self, dst: socket.socket, data: bytes, up: bool, count: ConnectionCount) -> bool:
        conn = self._conn(count)
        now = time.monotonic()
        if up:
            self._note(conn.number, "up", len(data), now)
            due = self.link.up.schedule(len(data), max(now, conn.ready_at))
        else:
            due = self.link.down.schedule(len(data), now)
        conn.last_due = max(conn.last_due, due)

        def deliver() -> None:
            if not up:
                self._note(conn.number, "down", len(data), time.monotonic())
            try:
                dst.sendall(data)
            except OSError:
                pass  # the other side is gone; its own EOF ends the connection

        Scheduler.shared().at(due, deliver)
        return True

    def _forward_eof(self, dst: socket.socket, up: bool, count: ConnectionCount) -> None:
        conn = self._conn(count)
        now = time.monotonic()
        if up:
            self._note(conn.number, "close", 0, now)
        direction = self.link.up if up else self.link.down
        due = direction.schedule(0, max(now, conn.ready_at) if up else now)
        conn.last_due = max(conn.last_due, due)
        Scheduler.shared().at(due, lambda: super(ShapedRelay, self)._forward_eof(dst, up, count))

    def _finish(self, client: socket.socket, upstream: socket.socket, count: ConnectionCount) -> None:
        # Both directions ended here, but their last bytes may still be on the (simulated) radio.
        conn = self._conn(count)

        def close() -> None:
            super(ShapedRelay, self)._finish(client, upstream, count)
            conn.closed.set()

        Scheduler.shared().at(max(conn.last_due, time.monotonic()), close)
