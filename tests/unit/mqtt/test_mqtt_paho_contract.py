"""Contract test pinning the paho-mqtt internals nrfprov.mqtt._paho relies on (paho-mqtt 2.x).

If paho changes how ``_create_socket`` is used, these fail first and point at ``_paho.py``.
"""

from __future__ import annotations

import socket
import threading

import paho.mqtt
import pytest
from mqtt_wire import CONNACK, CONNECT, packet, read_packet
from paho.mqtt.client import MQTT_ERR_SUCCESS, Client

from nrfprov.errors import CertificateVerifyError
from nrfprov.mqtt._paho import TunnelClient, check_paho_version, make_client


def test_paho_major_version_is_pinned() -> None:
    assert paho.mqtt.__version__.startswith("2.")
    check_paho_version()
    assert callable(getattr(Client, "_create_socket", None)), "paho dropped Client._create_socket"


def test_create_socket_is_called_once_per_connect_with_no_args_and_made_non_blocking() -> None:
    ours, peer = socket.socketpair()
    calls: list[tuple[object, ...]] = []

    def factory(*args: object) -> socket.socket:
        calls.append(args)
        return ours

    client = make_client(factory, "dev-1", mqtt_v5=False, clean_session=True)
    try:
        assert isinstance(client, TunnelClient)
        assert client.connect("label-only", 1, keepalive=30) == MQTT_ERR_SUCCESS
        assert calls == [()]
        assert ours.getblocking() is False  # paho set it; the tunnel relies on select() on it
        ptype, _flags, body = read_packet(peer)  # CONNECT went out through our socket
        assert ptype == CONNECT and b"MQTT" in body and b"dev-1" in body
        # and paho's own TCP connect was never used: "label-only" does not resolve
    finally:
        client.loop_stop()
        ours.close()
        peer.close()


def test_factory_exception_leaves_connect_unchanged() -> None:
    def factory() -> socket.socket:
        raise CertificateVerifyError("bad cert", err=0x2700)

    client = make_client(factory, "dev-1", mqtt_v5=True, clean_session=True)
    with pytest.raises(CertificateVerifyError, match="bad cert"):
        client.connect("label-only", 1)


@pytest.mark.parametrize("v5", [False, True])
def test_version2_on_connect_receives_a_reason_code(v5: bool) -> None:
    ours, peer = socket.socketpair()
    got: list[object] = []
    done = threading.Event()
    client = make_client(lambda: ours, "dev-1", mqtt_v5=v5, clean_session=True)

    def on_connect(c: object, userdata: object, flags: object, reason_code: object, properties: object) -> None:
        got.append(reason_code)
        done.set()

    client.on_connect = on_connect
    try:
        client.connect("label-only", 1)
        client.loop_start()
        assert read_packet(peer)[0] == CONNECT
        peer.sendall(packet(CONNACK, b"\x00\x00\x00" if v5 else b"\x00\x00"))
        assert done.wait(5)
        rc = got[0]
        assert getattr(rc, "is_failure") is False and int(getattr(rc, "value")) == 0  # noqa: B009
    finally:
        client.disconnect()
        client.loop_stop()
        peer.close()


def test_reconnect_on_failure_is_off() -> None:
    client = make_client(lambda: socket.socketpair()[0], "dev-1", mqtt_v5=False, clean_session=True)
    assert client._reconnect_on_failure is False  # a broken link must surface as an error
