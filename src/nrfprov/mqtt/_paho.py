"""Everything that touches paho-mqtt internals lives here, and only here.

One private hook is used: ``Client._create_socket()`` (paho-mqtt 2.x). paho calls it from
``connect()``/``reconnect()`` with no arguments, calls ``setblocking(False)`` on the result and then
``select()``s on it [paho-mqtt client.py]. Overriding it to return our end of a socketpair is
what lets a TLS handshake run inside ``connect()`` and raise its typed error there, instead of paho
reporting a vague disconnect later. tests/unit/mqtt/test_mqtt_paho_contract.py pins this behaviour;
pyproject pins ``paho-mqtt>=2,<3``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import paho.mqtt
from paho.mqtt.client import CallbackAPIVersion, Client, MQTTv5, MQTTv311

SocketFactory = Callable[[], socket.socket]

SUPPORTED_MAJOR = 2


def paho_version() -> str:
    return str(paho.mqtt.__version__)


def check_paho_version() -> None:
    major = int(paho_version().split(".", 1)[0])
    if major != SUPPORTED_MAJOR:
        raise ImportError(
            f"nrfprov.mqtt needs paho-mqtt {SUPPORTED_MAJOR}.x (it overrides Client._create_socket); "
            f"found {paho_version()}"
        )


class TunnelClient(Client):
    """A paho client whose "socket" comes from ``socket_factory`` instead of a TCP connect."""

    def __init__(self, socket_factory: SocketFactory, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._nrfprov_socket_factory = socket_factory

    def _create_socket(self) -> socket.socket:  # private paho 2.x hook, see module docstring
        return self._nrfprov_socket_factory()


def make_client(socket_factory: SocketFactory, client_id: str, *, mqtt_v5: bool,
                clean_session: bool) -> TunnelClient:
    """A VERSION2-callback client that never reconnects on its own (a broken link is an error)."""
    check_paho_version()
    kwargs: dict[str, Any] = {
        "callback_api_version": CallbackAPIVersion.VERSION2,
        "client_id": client_id,
        "protocol": MQTTv5 if mqtt_v5 else MQTTv311,
        "reconnect_on_failure": False,
    }
    if not mqtt_v5:
        kwargs["clean_session"] = clean_session  # MQTT 5 takes clean_start at connect() instead
    return TunnelClient(socket_factory, **kwargs)
