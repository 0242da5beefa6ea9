"""MQTT over any ``ByteStream``: paho-mqtt 2.x behind a small, blocking, typed API.

Why a socketpair + pump thread and not a socket-like object wrapping the TLS stream [paho-mqtt client.py
``_create_socket``; eclipse/paho.mqtt.python issue #873]:
- the stream factory (TCP connect, modem socket, TLS handshake) runs inside ``connect()``, so a bad
  certificate or a refused client cert raises its typed error right there;
- the stream and the serial port stay on ONE thread (the pump), as python-mbedtls requires; with a
  wrapper paho's network thread would do blocking modem writes and stall keepalive during a 128 KB publish;
- the only private paho API used is ``Client._create_socket`` (see ``_paho.py``).

API (what the provisioning flow uses)::

    s = MqttSession(lambda: open_stream(settings, modem=m, credentials=creds), client_id,
                    keepalive=60, clean_session=True, mqtt_v5=False)
    s.connect(timeout=30)                              # CONNACK checked → MqttError on refusal
    s.subscribe([("a/#", 1)], timeout=10)              # waits for SUBACK, failure codes → MqttError
    s.publish("t", b"...", qos=1, timeout=10)          # QoS 1 waits for PUBACK; MQTT 5 reason ≥ 0x80 → MqttError
    body = s.request("req", b"{}", "req/accepted", "req/rejected", timeout=30, fmt="json")
                                                       # → payload, or CloudRejected / ResponseTimeout
    s.wait_message("a/+", timeout)  s.wait_any(["x/accepted", "x/rejected"], timeout)
    s.wait_messages(["a/key", "a/cert"], timeout)      # one message per filter, any order
    s.messages("a/#")                                  # take what is queued, no waiting
    s.counters()                                       # bytes per layer: MQTT, TLS plaintext, wire
    s.disconnect()                                     # also a context manager

Overlapping exchanges (each saves a round trip on the air; benchmarks/RESULTS.md counts them):

- ``pipeline`` (``CONFIG_NRFPROV_MQTT_PIPELINE``, on by default): ``connect()`` returns once CONNECT is
  sent, so the next SUBSCRIBE or PUBLISH leaves right behind it; the CONNACK is checked by every later
  wait, with the same errors ``connect()`` raises (refusal → ``MqttError``, a hang-up before CONNACK →
  ``ConnectThrottled``). MQTT allows it: "Clients are allowed to send further Control Packets
  immediately after sending a CONNECT Packet; Clients need not wait for a CONNACK Packet to arrive from
  the Server" [MQTT 3.1.1 §3.1.4; MQTT 5.0 §3.1.4], and a refused CONNECT makes the server discard them;
- ``suback_later`` (``CONFIG_NRFPROV_PUBLISH_BEFORE_SUBACK``, off by default): ``subscribe()`` returns once
  SUBSCRIBE is sent and the SUBACK is checked by the next wait, so a request can follow its SUBSCRIBE
  at once. MQTT orders nothing between a SUBSCRIBE and a later PUBLISH of the same client, and AWS IoT
  asks Fleet Provisioning clients to subscribe before publishing and warns that matching messages may
  start only some time after the SUBACK [AWS IoT developer guide, fleet-provision-api and mqtt]; whether
  a reply can be lost is AWS's behaviour, which we cannot verify here, hence off by default. A refused
  subscription then surfaces after the request has left.

CONNECT spacing: AWS IoT allows one CONNECT per second per client ID and hangs up on a faster one, and
the provisioning chain reconnects with the claim's client ID (split flow) right after the claim
session. Every session waits, after its stream is open and before its CONNECT, until
``CONNECT_INTERVAL_S`` (+ a margin for latency) has passed since this process's last CONNECT with
that client ID (``ConnectSpacer``; clock and sleep are injected). A hang-up before CONNACK raises
``ConnectThrottled``.

Errors: the stream's own typed errors (``CertificateVerifyError``, ``LinkClosed``, ``DeviceLimitError``,
``ModemTlsLimitError`` ...) surface from whichever call is waiting when the link dies.
Device-mirror mode: ``payload_limit`` fails any incoming PUBLISH whose payload exceeds the device's
MQTT payload buffer with ``DeviceLimitError`` (the device's MQTT library drops the connection then).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from paho.mqtt.client import MQTT_ERR_SUCCESS, topic_matches_sub

from nrfprov import iotcore
from nrfprov.config import Settings, default_symbol
from nrfprov.errors import (
    ConnectThrottled,
    DeviceLimitError,
    LinkClosed,
    MqttError,
    NrfprovError,
    PayloadTooLarge,
    ResponseTimeout,
    UsageError,
)
from nrfprov.iotcore import parse_rejected
from nrfprov.mqtt._paho import TunnelClient, make_client
from nrfprov.mqtt.tunnel import Tunnel
from nrfprov.names import PayloadFormat
from nrfprov.transport.base import ByteStream, LayerCounters, layer_counters

log = logging.getLogger(__name__)

#: Received messages kept until a caller takes them. Provisioning needs 2 (split flow) to a few;
#: beyond this the oldest is dropped with a warning, so a chatty wildcard cannot grow memory unbounded.
MAX_QUEUED = 256

#: AWS IoT Core: one MQTT CONNECT per second per client ID [AWS General Reference, AWS IoT Core quotas].
CONNECT_INTERVAL_S = 1.0
#: Added to the interval: the broker times CONNECTs on arrival, and two CONNECTs may travel different
#: paths (host TCP, modem) with different latency.
CONNECT_MARGIN_S = 0.1
#: MQTT 5 CONNACK reason 0x9F, connection rate exceeded [MQTT 5.0 §3.2.2.2].
CONNACK_RATE_EXCEEDED = 0x9F


class ConnectSpacer:
    """When this process last sent a CONNECT per client ID, and the wait before the next one.

    ``wait_turn`` reserves the slot under a lock before it sleeps, so concurrent sessions with one
    client ID queue up one interval apart. Entries older than the interval are forgotten.

    The broker counts CONNECTs as they arrive. The previous one arrived before its CONNACK left, so a
    CONNECT sent one ``quota`` after that CONNACK was received (``acknowledged``) cannot come too soon,
    whatever the latency of either path; without a CONNACK the send time plus ``interval`` (the quota
    and a margin) decides. The earlier of the two applies.
    """

    def __init__(self, interval: float = CONNECT_INTERVAL_S + CONNECT_MARGIN_S, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 quota: float = CONNECT_INTERVAL_S) -> None:
        self.interval = interval
        self.quota = min(quota, interval)
        self._clock = clock
        self._sleep = sleep
        self._last: dict[str, float] = {}
        self._acked: dict[str, float] = {}  # client ID -> when the CONNACK of its last CONNECT came
        self._lock = threading.Lock()

    def acknowledged(self, client_id: str) -> None:
        """The CONNACK for ``client_id``'s last CONNECT has just been received."""
        with self._lock:
            if client_id in self._last:
                self._acked[client_id] = self._clock()

    def wait_turn(self, client_id: str) -> float:
        """Sleep until ``client_id`` may CONNECT again, record the CONNECT as sent now; seconds waited."""
        with self._lock:
            now = self._clock()
            self._last = {cid: t for cid, t in self._last.items() if now - t < self.interval}
            self._acked = {cid: t for cid, t in self._acked.items() if cid in self._last}
            last = self._last.get(client_id)
            delay = 0.0
            if last is not None:
                earliest = last + self.interval
                acked = self._acked.get(client_id)
                if acked is not None and acked >= last:
                    earliest = min(earliest, acked + self.quota)
                delay = max(0.0, earliest - now)
            self._last[client_id] = now + delay
            self._acked.pop(client_id, None)
        if delay > 0:
            log.debug("waiting %.3f s before CONNECT as %s (one CONNECT per second per client ID)", delay, client_id)
            self._sleep(delay)
        return delay


#: Shared by every session of this process.
CONNECT_SPACER = ConnectSpacer()


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    #: ``time.monotonic()`` when paho handed over the complete PUBLISH (how long a reply waited).
    received_at: float = 0.0


class MqttSession:
    def __init__(
        self,
        stream_factory: Callable[[], ByteStream],
        client_id: str,
        *,
        keepalive: int = 60,
        clean_session: bool = True,
        mqtt_v5: bool = False,
        payload_limit: int | None = None,
        payload_symbol: str = default_symbol("mqtt_payload_buffer_len"),
        spacer: ConnectSpacer | None = None,
        max_queued: int = MAX_QUEUED,
        pipeline: bool = False,
        suback_later: bool = False,
    ) -> None:
        if not client_id or len(client_id.encode()) > iotcore.CLIENT_ID_LIMIT:
            raise UsageError(f"MQTT client ID must be 1..{iotcore.CLIENT_ID_LIMIT} bytes, got {client_id!r}")
        self._factory = stream_factory
        self._spacer = spacer if spacer is not None else CONNECT_SPACER
        self.client_id = client_id
        self.keepalive = keepalive
        self.clean_session = clean_session
        self.mqtt_v5 = mqtt_v5
        self._payload_limit = payload_limit
        self._payload_symbol = payload_symbol
        self._cond = threading.Condition()
        self._queue: deque[Message] = deque(maxlen=max_queued)
        self._connack: Any = None
        self._subacks: dict[int, list[Any]] = {}
        self._pubacks: dict[int, Any] = {}
        self._dead: NrfprovError | None = None
        self._closing = False
        self._subscribed: set[str] = set()
        self.pipeline = pipeline
        self.suback_later = suback_later
        self._unchecked_subacks: dict[int, list[str]] = {}  # mid -> filters (suback_later)
        self._tunnel: Tunnel | None = None
        self._client: TunnelClient | None = None

    @classmethod
    def from_settings(cls, settings: Settings, stream_factory: Callable[[], ByteStream],
                      client_id: str | None = None, *, mqtt_v5: bool | None = None) -> MqttSession:
        """Keepalive, clean session, MQTT version (unless ``mqtt_v5`` overrides it) and, in device-mirror
        mode, the payload limit with the symbol that set it, from Settings."""
        lim = settings.device_limits()
        return cls(
            stream_factory, client_id or settings.client_id, keepalive=settings.keepalive,
            clean_session=settings.clean_session, mqtt_v5=settings.mqtt_v5 if mqtt_v5 is None else mqtt_v5,
            payload_limit=lim.payload_len if lim is not None else None,
            payload_symbol=settings.symbol("mqtt_payload_buffer_len"),
            pipeline=settings.mqtt_pipeline, suback_later=settings.publish_before_suback,
        )

    # -- lifecycle -------------------------------------------------------------------------------

    def connect(self, timeout: float = 30.0) -> None:
        """Open the stream (handshake included), send CONNECT, wait for a successful CONNACK."""
        if self._client is not None:
            raise UsageError("this MqttSession is already connected; make a new one to reconnect")
        client = make_client(self._open_tunnel, self.client_id, mqtt_v5=self.mqtt_v5,
                             clean_session=self.clean_session)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        # paho calls these when it queues a packet and once it has written it to the tunnel: the pump
        # then sends it at once instead of after its poll timeout (tunnel.py, modem streams). Both,
        # because paho's thread may write a packet before the queueing thread has registered it, and
        # then the "written" edge is skipped [paho-mqtt client.py, _packet_queue / loop_write].
        client.on_socket_register_write = self._on_written
        client.on_socket_unregister_write = self._on_written
        self._client = client
        kwargs: dict[str, Any] = {"keepalive": self.keepalive}
        if self.mqtt_v5:
            kwargs["clean_start"] = self.clean_session
        # host/port are labels only: the "socket" is the tunnel [paho-mqtt client.py, _create_socket].
        try:
            rc = client.connect("nrfprov-tunnel", 1, **kwargs)
        except NrfprovError:
            self._close_tunnel()
            raise
        except OSError as exc:
            self._close_tunnel()
            raise LinkClosed(f"sending MQTT CONNECT failed: {exc}") from exc
        if rc != MQTT_ERR_SUCCESS:
            self._close_tunnel()
            raise MqttError(f"sending MQTT CONNECT failed: {rc}", reason_code=int(rc))
        client.loop_start()
        if self.pipeline:
            log.debug("MQTT CONNECT sent as %s; CONNACK is checked by the next wait", self.client_id)
            return
        try:
            self._wait(lambda: self._connack is not None and not self._connack.is_failure, timeout, "CONNACK")
        except BaseException:
            self.disconnect()  # no thread or stream outlives a failed connect()
            raise
        log.debug("MQTT connected as %s", self.client_id)

    def _connack_problem(self) -> NrfprovError | None:
        """Condition held: the error a refused or unanswered CONNECT stands for, else None."""
        if self._connack is None:
            if isinstance(self._dead, LinkClosed):
                throttled = ConnectThrottled(self.client_id)  # hung up on our CONNECT
                throttled.__cause__ = self._dead
                return throttled
            return self._dead
        if self._connack.is_failure:
            code = int(self._connack.value)
            if code == CONNACK_RATE_EXCEEDED:
                return ConnectThrottled(self.client_id, reason_code=code)
            return MqttError(f"broker refused the MQTT connection: {self._connack}", reason_code=code,
                             hint="check the client ID and the certificate's policy")
        return None

    def _suback_problem(self) -> MqttError | None:
        """Condition held (suback_later): a refusal among the SUBACKs that came since the last check."""
        for mid in [m for m in self._unchecked_subacks if m in self._subacks]:
            topics = self._unchecked_subacks.pop(mid)
            for topic, code in zip(topics, self._subacks.pop(mid), strict=False):
                if code.is_failure:
                    return MqttError(f"broker refused the subscription to {topic!r}: {code}",
                                     reason_code=int(code.value), hint="check the policy/ACL for this topic")
        return None

    def disconnect(self) -> None:
        """Send DISCONNECT (if still connected), stop paho's thread and the tunnel. Idempotent."""
        self._closing = True
        client = self._client
        if client is not None:
            if self._dead is None:
                client.disconnect()
            client.loop_stop()
        self._close_tunnel()
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> MqttSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    # -- operations ------------------------------------------------------------------------------

    def subscribe(self, subscriptions: Sequence[tuple[str, int]], timeout: float = 30.0) -> list[int]:
        """Subscribe and wait for SUBACK; return the granted QoS per filter."""
        client = self._live_client()
        granted: list[int] = []
        for i in range(0, len(subscriptions), iotcore.SUBSCRIPTIONS_PER_PACKET):
            batch = list(subscriptions[i : i + iotcore.SUBSCRIPTIONS_PER_PACKET])
            rc, sub_mid = client.subscribe(batch)
            self._check_rc(rc, "SUBSCRIBE")
            mid = int(sub_mid or 0)
            if self.suback_later:
                with self._cond:
                    self._unchecked_subacks[mid] = [topic for topic, _ in batch]
                granted += [q for _, q in batch]  # as asked; the SUBACK is checked by the next wait
                self._subscribed.update(topic for topic, _ in batch)
                continue
            self._wait(partial(self._subacks.__contains__, mid), timeout, "SUBACK")
            with self._cond:
                codes = self._subacks.pop(mid)
            for (topic, _qos), code in zip(batch, codes, strict=False):
                if code.is_failure:
                    raise MqttError(f"broker refused the subscription to {topic!r}: {code}",
                                    reason_code=int(code.value), hint="check the policy/ACL for this topic")
                granted.append(int(code.value))
            self._subscribed.update(topic for topic, _ in batch)
        return granted

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout: float = 30.0) -> None:
        """Publish; QoS 1 waits for PUBACK and checks its reason code (MQTT 5)."""
        if len(payload) > iotcore.PAYLOAD_LIMIT:
            raise PayloadTooLarge(f"PUBLISH payload to {topic}", len(payload), iotcore.PAYLOAD_LIMIT,
                                  hint="AWS IoT Core rejects messages over 128 KB")
        if qos not in (0, 1):
            raise UsageError(f"QoS {qos} is not supported; AWS IoT Core takes QoS 0 and 1")
        client = self._live_client()
        info = client.publish(topic, payload, qos)
        self._check_rc(info.rc, "PUBLISH")
        mid = int(info.mid)
        self._wait(lambda: mid in self._pubacks, timeout, "PUBACK" if qos else "PUBLISH sent")
        with self._cond:
            code = self._pubacks.pop(mid)
        if code is not None and code.is_failure:
            raise MqttError(f"broker refused the PUBLISH to {topic!r}: {code}", reason_code=int(code.value),
                            hint="check the policy/ACL: the identity may not publish here")

    def request(self, topic: str, payload: bytes, accepted: str, rejected: str, timeout: float = 30.0,
                fmt: PayloadFormat = "json", qos: int = 1) -> bytes:
        """Subscribe to ``accepted`` + ``rejected``, publish, and wait for the first answer.

        Returns the accepted payload; a rejected answer raises ``CloudRejected`` parsed from its
        JSON or CBOR body (``fmt``); silence raises ``ResponseTimeout``.
        """
        deadline = time.monotonic() + timeout
        missing = [(f, 1) for f in (accepted, rejected) if f not in self._subscribed]
        if missing:
            self.subscribe(missing, timeout)
        self.publish(topic, payload, qos, max(0.0, deadline - time.monotonic()))
        msg = self._wait_any([rejected, accepted], deadline, f"reply on {accepted} or {rejected}", timeout)
        if topic_matches_sub(rejected, msg.topic):
            raise parse_rejected(msg.topic, msg.payload, fmt)
        return msg.payload

    def wait_message(self, topic_filter: str, timeout: float = 30.0) -> Message:
        """The oldest received message matching ``topic_filter`` (waits up to ``timeout``)."""
        return self._wait_any([topic_filter], time.monotonic() + timeout, f"message on {topic_filter}", timeout)

    def wait_any(self, topic_filters: Sequence[str], timeout: float = 30.0) -> Message:
        """The oldest received message matching any of ``topic_filters`` (a reply on one of several topics)."""
        filters = list(topic_filters)
        return self._wait_any(filters, time.monotonic() + timeout, f"message on {', '.join(filters)}", timeout)

    def wait_messages(self, topic_filters: Iterable[str], timeout: float = 30.0) -> dict[str, Message]:
        """One message per filter, in whatever order they arrive (the split flow's key and cert)."""
        deadline = time.monotonic() + timeout
        wanted = list(dict.fromkeys(topic_filters))
        got: dict[str, Message] = {}
        while len(got) < len(wanted):
            left = [f for f in wanted if f not in got]
            msg = self._wait_any(left, deadline, f"messages on {', '.join(left)}", timeout)
            for f in left:
                if topic_matches_sub(f, msg.topic):
                    got[f] = msg
                    break
        return got

    def messages(self, topic_filter: str = "#") -> list[Message]:
        """Take every queued message matching ``topic_filter`` without waiting."""
        with self._cond:
            hits = [m for m in self._queue if topic_matches_sub(topic_filter, m.topic)]
            for m in hits:
                self._queue.remove(m)
        return hits

    # -- counters --------------------------------------------------------------------------------

    @property
    def stream(self) -> ByteStream | None:
        return self._tunnel.stream if self._tunnel is not None else None

    @property
    def bytes_sent(self) -> int:
        return self.stream.bytes_sent if self.stream is not None else 0

    @property
    def bytes_received(self) -> int:
        return self.stream.bytes_received if self.stream is not None else 0

    def counters(self) -> list[LayerCounters]:
        """Bytes per layer, outermost first (MQTT bytes = the first stream's payload)."""
        return layer_counters(self.stream) if self.stream is not None else []

    # -- internals -------------------------------------------------------------------------------

    def _open_tunnel(self) -> Any:
        stream = self._factory()  # may raise the transport's typed error: it leaves connect() as is
        # paho sends CONNECT as soon as this returns; the TLS handshake above overlaps the wait.
        self._spacer.wait_turn(self.client_id)
        self._tunnel = Tunnel(stream, name=f"nrfprov-tunnel-{self.client_id}")
        return self._tunnel.start()

    def _close_tunnel(self) -> None:
        if self._tunnel is not None:
            self._tunnel.close()

    def _live_client(self) -> TunnelClient:
        with self._cond:
            problem = self._problem() or self._dead
        if problem is not None:
            raise problem
        if self._client is None or (self._connack is None and not self.pipeline) or self._closing:
            raise UsageError("the MQTT session is not connected; call connect() first")
        return self._client

    def _problem(self) -> NrfprovError | None:
        """Condition held: a refused or unanswered CONNECT, or a refused subscription (``suback_later``),
        else None. Sticky: the session is dead from then on."""
        problem = self._connack_problem() if self._connack is None or self._connack.is_failure else None
        if problem is None and self._unchecked_subacks:
            problem = self._suback_problem()
        if problem is not None and self._dead is None:
            self._dead = problem
        return problem

    def _check_rc(self, rc: int, what: str) -> None:
        if rc != MQTT_ERR_SUCCESS:
            with self._cond:
                problem = self._problem() or self._dead
            if problem is not None:
                raise problem
            down = LinkClosed(f"cannot send {what}: the MQTT connection is down (paho rc {rc})")
            if self._connack is None:
                # paho saw the hang-up before our reader recorded it: with no CONNACK yet this is the
                # same refused CONNECT that _connack_problem reports once the reader has caught up.
                throttled = ConnectThrottled(self.client_id)
                throttled.__cause__ = down
                raise throttled
            raise down

    def _raise_problem(self) -> None:
        """Condition held: raise a CONNACK / SUBACK problem (closing the session first when the CONNECT
        failed, as ``connect()`` does)."""
        problem = self._problem()
        if problem is None:
            return
        if self._connack is None or self._connack.is_failure:
            self._cond.release()  # disconnect() joins paho's thread, whose callbacks take this condition
            try:
                self.disconnect()
            finally:
                self._cond.acquire()
        raise problem

    def _wait(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                self._raise_problem()
                if ready():
                    return
                if self._dead is not None:
                    raise self._dead
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ResponseTimeout(self._still_missing(what), timeout)
                self._cond.wait(left)

    def _still_missing(self, what: str) -> str:
        """Condition held: what a timed-out wait lacked (a pipelined session may still lack its CONNACK)."""
        return what if self._connack is not None else f"CONNACK (and then {what})"

    def _wait_any(self, filters: Sequence[str], deadline: float, what: str, timeout: float) -> Message:
        with self._cond:
            while True:
                self._raise_problem()
                for m in self._queue:
                    if any(topic_matches_sub(f, m.topic) for f in filters):
                        self._queue.remove(m)
                        return m
                if self._dead is not None:
                    raise self._dead
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ResponseTimeout(self._still_missing(what), timeout)
                self._cond.wait(left)

    # paho callbacks (paho's network thread) ------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._spacer.acknowledged(self.client_id)
        with self._cond:
            self._connack = reason_code
            self._cond.notify_all()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        with self._cond:
            if not self._closing and self._dead is None:
                tunnel_error = self._tunnel.error if self._tunnel is not None else None
                if tunnel_error is None and self._tunnel is not None:
                    self._tunnel.ended.wait(1.0)  # the pump records its error just before closing
                    tunnel_error = self._tunnel.error
                self._dead = tunnel_error or LinkClosed(f"the MQTT connection was lost ({reason_code})")
            self._cond.notify_all()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reason_codes: list[Any],
                      properties: Any) -> None:
        with self._cond:
            self._subacks[mid] = list(reason_codes)
            self._cond.notify_all()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        with self._cond:
            self._pubacks[mid] = reason_code
            self._cond.notify_all()

    def _on_written(self, client: Any, userdata: Any, sock: Any) -> None:
        tunnel = self._tunnel
        if tunnel is not None:
            tunnel.kick()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        payload = bytes(message.payload)
        if self._payload_limit is not None and len(payload) > self._payload_limit:
            with self._cond:
                if self._dead is None:
                    self._dead = DeviceLimitError(self._payload_symbol, self._payload_limit, len(payload))
                self._cond.notify_all()
            client.disconnect()  # what the device's MQTT library does on -EMSGSIZE
            return
        msg = Message(message.topic, payload, int(message.qos), bool(message.retain), time.monotonic())
        with self._cond:
            if len(self._queue) == self._queue.maxlen:
                log.warning("dropping the oldest queued MQTT message (queue limit %d)", self._queue.maxlen)
            self._queue.append(msg)
            self._cond.notify_all()
