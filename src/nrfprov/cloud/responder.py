"""The privileged MQTT client that answers provisioning requests: plain paho, plain ``ssl``.

paho's network thread only queues requests; one worker thread runs them (key generation, signing,
grants) and publishes the replies at QoS 1, so a slow RSA key never stalls keep-alives.

Reply routing (routing.py): the broker tags each request with the serial and the client ID of the
connection that sent it; every reply on a Fleet Provisioning reply topic is published below the route
prefix with that serial, and the broker delivers it to that connection only. The handler (``handle``)
never sees the serial: it maps a topic, payload and requester's client ID to replies.
"""

from __future__ import annotations

import logging
import queue
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from nrfprov.cloud import routing
from nrfprov.cloud.service import REQUEST_FILTERS, Reply
from nrfprov.errors import ConnectError

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 10.0
PUBACK_TIMEOUT_S = 10.0
# Requests waiting for the worker. Each is ≤ 128 KB (broker limit), so 256 bound memory to 32 MB;
# beyond that paho's thread blocks, which back-pressures the broker rather than growing without end.
MAX_QUEUED = 256
# The responder may write certificate/#; nobody subscribes to this one.
BARRIER_TOPIC = "certificate/_barrier/responder"
# PUBACKs remembered for sequential waits; cleared past this (mids wrap at 65535).
_MAX_ACKED = 1024


def client_tls_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def _nodelay(client: mqtt.Client) -> None:
    # Small replies otherwise wait ~40 ms on Nagle + delayed ACK (measured on this project's loopback).
    sock = client.socket()
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Responder:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        ca: Path,
        cert: Path,
        key: Path,
        client_id: str,
        handle: Callable[[str, bytes, str | None], Reply | None],
    ) -> None:
        self.host, self.port = host, port
        self._handle = handle
        self._queue: queue.Queue[tuple[str, bytes, int | None, str | None] | None] = queue.Queue(MAX_QUEUED)
        self._ready = threading.Event()
        self._failed: str | None = None
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self._client.tls_set_context(client_tls_context(ca, cert, key))
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._acked: set[int] = set()
        self._ack_cond = threading.Condition()
        self._closing = False
        self._client.reconnect_delay_set(1, 2)
        self._worker = threading.Thread(target=self._work, name="cloud-responder", daemon=True)

    # --- paho callbacks (network thread) --------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._failed = f"CONNACK {reason}"
            self._ready.set()
            return
        _nodelay(client)
        client.subscribe([(t, SubscribeOptions(qos=1)) for t in REQUEST_FILTERS])

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reasons: list[Any], _p: Any) -> None:
        bad = [str(r) for r in reasons if r.is_failure]
        if bad:
            self._failed = f"SUBACK {bad}"
        self._ready.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        props = msg.properties
        self._queue.put((msg.topic, bytes(msg.payload), routing.serial_from_properties(props),
                         routing.client_id_from_properties(props)))

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, _reason: Any, _p: Any) -> None:
        # Called by paho while it holds its own message lock: never publish while holding _ack_cond.
        with self._ack_cond:
            if len(self._acked) > _MAX_ACKED:  # acks of parallel replies nobody waits for
                self._acked.clear()
            self._acked.add(mid)
            self._ack_cond.notify_all()

    # --- worker ----------------------------------------------------------------------------------

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            topic, payload, serial, client_id = item
            reply = self._handle(topic, payload, client_id)
            if reply is None:
                continue
            for reply_topic, body in reply.messages:
                info = self._client.publish(self._route(reply_topic, serial), body, qos=1)
                if not reply.sequential or info.rc != mqtt.MQTT_ERR_SUCCESS:
                    continue
                # Wait for the broker's PUBACK so the next message is sent strictly after. An ack
                # that came before we got here is already in the set.
                mid = info.mid
                with self._ack_cond:
                    if not self._ack_cond.wait_for(
                        lambda: mid in self._acked or self._closing,  # noqa: B023 (used at once)
                        PUBACK_TIMEOUT_S,
                    ):
                        log.warning("reply on %s not acknowledged in time", reply_topic)
                    self._acked.discard(mid)

    @staticmethod
    def _route(topic: str, serial: int | None) -> str:
        if not routing.is_reply(topic):
            return topic  # an ordinary message (the split workaround's replies)
        if serial is None:  # the broker tags every request; without a tag nobody may get the reply
            log.error("request for %s came without a connection tag: the reply reaches nobody", topic)
            return topic
        return routing.route_topic(serial, topic)

    def nudge(self) -> None:
        """Wake the broker's network loop (QoS 0, nothing waits for it)."""
        self._client.publish(BARRIER_TOPIC, b"", qos=0)

    def barrier(self) -> None:
        """Return once the broker has processed everything before now, a reload included.

        mosquitto logs "Reloading config." at the start of a reload and only clears its reload flag
        at the end, so a second SIGHUP sent in between is lost. The broker is single-threaded and
        reloads between network passes: a PUBACK for a publish sent after the log line proves the
        reload has finished.
        """
        info = self._client.publish(BARRIER_TOPIC, b"", qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectError(self.host, self.port, f"responder link down ({mqtt.error_string(info.rc)})")
        mid = info.mid
        with self._ack_cond:
            ok = self._ack_cond.wait_for(lambda: mid in self._acked or self._closing, PUBACK_TIMEOUT_S)
            self._acked.discard(mid)
        if not ok:
            raise ConnectError(self.host, self.port, "broker did not acknowledge the responder in time")

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._worker.start()
        try:
            self._client.connect(self.host, self.port, keepalive=60)
        except OSError as exc:
            raise ConnectError(self.host, self.port, f"responder cannot connect: {exc}") from exc
        self._client.loop_start()
        if not self._ready.wait(READY_TIMEOUT_S) or self._failed:
            self.stop()
            raise ConnectError(
                self.host, self.port, f"responder not ready: {self._failed or 'no SUBACK in time'}",
                hint="see mosquitto.log in the state directory",
            )

    def stop(self) -> None:
        # Let the worker finish the reply in hand (and get its PUBACK) before the link goes.
        if self._worker.is_alive():
            self._queue.put(None)
            self._worker.join(PUBACK_TIMEOUT_S)
        with self._ack_cond:
            self._closing = True
            self._ack_cond.notify_all()
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()
