"""The privileged MQTT client that answers provisioning requests: plain paho, plain ``ssl``.

paho's network thread only queues requests; one worker thread runs them (key generation, signing,
grants) and publishes the replies at QoS 1, so a slow RSA key never stalls keep-alives.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from nrfprov.cloud.service import REQUEST_FILTERS, Reply
from nrfprov.errors import ConnectError

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 10.0
PUBACK_TIMEOUT_S = 10.0
# Requests waiting for the worker. Each is ≤ 128 KB (broker limit), so 256 bound memory to 32 MB;
# beyond that paho's thread blocks, which back-pressures the broker rather than growing without end.
MAX_QUEUED = 256


def client_tls_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


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
        handle: Callable[[str, bytes], Reply | None],
    ) -> None:
        self.host, self.port = host, port
        self._handle = handle
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(MAX_QUEUED)
        self._ready = threading.Event()
        self._failed: str | None = None
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self._client.tls_set_context(client_tls_context(ca, cert, key))
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(1, 2)
        self._worker = threading.Thread(target=self._work, name="cloud-responder", daemon=True)

    # --- paho callbacks (network thread) --------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._failed = f"CONNACK {reason}"
            self._ready.set()
            return
        client.subscribe([(t, SubscribeOptions(qos=1)) for t in REQUEST_FILTERS])

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reasons: list[Any], _p: Any) -> None:
        bad = [str(r) for r in reasons if r.is_failure]
        if bad:
            self._failed = f"SUBACK {bad}"
        self._ready.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self._queue.put((msg.topic, bytes(msg.payload)))

    # --- worker ----------------------------------------------------------------------------------

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            topic, payload = item
            reply = self._handle(topic, payload)
            if reply is None:
                continue
            for reply_topic, body in reply.messages:
                info = self._client.publish(reply_topic, body, qos=1)
                if reply.sequential:
                    # Wait for the broker's PUBACK so the next message is queued strictly after.
                    try:
                        info.wait_for_publish(PUBACK_TIMEOUT_S)
                    except (RuntimeError, ValueError) as exc:
                        log.warning("reply on %s not acknowledged: %s", reply_topic, exc)

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
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()
        if self._worker.is_alive():
            self._queue.put(None)
            self._worker.join(PUBACK_TIMEOUT_S)
