"""MqttSession against a scripted byte-level peer over a real socketpair (no broker process)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import cbor2
import pytest
from mqtt_wire import ScriptedBroker, publish

from nrfprov.errors import CloudRejected, DeviceLimitError, LinkClosed, MqttError, PayloadTooLarge, ResponseTimeout
from nrfprov.iotcore import parse_rejected
from nrfprov.mqtt.session import MqttSession
from nrfprov.transport.tcp import HostTcpStream


@pytest.fixture()
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def session(sock: socket.socket, **kw: object) -> MqttSession:
    return MqttSession(lambda: HostTcpStream(sock, peer="scripted"), "dev-1", **kw)  # type: ignore[arg-type]


# paho 2 reports MQTT 3.1.1 CONNACK codes in MQTT 5 terms: rc 5 "not authorized" → 135
@pytest.mark.parametrize("v5,rc,code", [(False, 5, 0x87), (True, 0x87, 0x87)])
def test_connack_refusal_is_mqtt_error(pair: tuple[socket.socket, socket.socket], v5: bool, rc: int,
                                       code: int) -> None:
    ScriptedBroker(pair[1], v5=v5, connack_rc=rc)
    s = session(pair[0], mqtt_v5=v5)
    with pytest.raises(MqttError) as ei:
        s.connect(5)
    assert ei.value.reason_code == code
    s.disconnect()


def test_suback_failure_is_mqtt_error_naming_the_topic(pair: tuple[socket.socket, socket.socket]) -> None:
    ScriptedBroker(pair[1], suback_codes={"no/#": 0x80})
    with session(pair[0]) as s:
        s.connect(5)
        assert s.subscribe([("ok/#", 1), ("ok2", 0)], 5) == [1, 0]
        with pytest.raises(MqttError, match="'no/#'") as ei:
            s.subscribe([("no/#", 1)], 5)
        assert ei.value.reason_code == 0x80


def test_puback_reason_135_is_mqtt_error(pair: tuple[socket.socket, socket.socket]) -> None:
    ScriptedBroker(pair[1], v5=True, puback_reason=135)
    with session(pair[0], mqtt_v5=True) as s:
        s.connect(5)
        with pytest.raises(MqttError, match="Not authorized") as ei:
            s.publish("t", b"x", 1, 5)
        assert ei.value.reason_code == 135
        s.publish("t", b"x", 0, 5)  # QoS 0 has no PUBACK to refuse


def test_request_accepted_rejected_and_timeout(pair: tuple[socket.socket, socket.socket]) -> None:
    def answer(topic: str, payload: bytes) -> list[bytes]:
        if topic == "req/json":
            return [publish("req/json/accepted", b'{"ok":1}')]
        if topic == "req/cbor":
            body = cbor2.dumps({"statusCode": 400, "errorCode": "InvalidPayload", "errorMessage": "bad"})
            return [publish("req/cbor/rejected", body)]
        return []

    ScriptedBroker(pair[1], on_publish=answer)
    with session(pair[0]) as s:
        s.connect(5)
        assert s.request("req/json", b"{}", "req/json/accepted", "req/json/rejected", 5) == b'{"ok":1}'
        with pytest.raises(CloudRejected) as ei:
            s.request("req/cbor", b"", "req/cbor/accepted", "req/cbor/rejected", 5, fmt="cbor")
        assert (ei.value.status_code, ei.value.error_code, ei.value.error_message) == (400, "InvalidPayload", "bad")
        with pytest.raises(ResponseTimeout, match="reply on req/none/accepted or req/none/rejected"):
            s.request("req/none", b"", "req/none/accepted", "req/none/rejected", 0.3)


def test_wait_messages_takes_either_order_and_mirror_payload_limit(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    def answer(topic: str, payload: bytes) -> list[bytes]:
        if topic == "certificate/dev-1/create":
            return [publish("certificate/dev-1/create/accepted/cert", b"C" * 1200),
                    publish("certificate/dev-1/create/accepted/key", b"K" * 1700)]
        return [publish("big", b"B" * 9000)]

    ScriptedBroker(pair[1], on_publish=answer)
    with session(pair[0], payload_limit=8096, payload_symbol="CONFIG_MQTT_HELPER_PAYLOAD_BUFFER_LEN") as s:
        s.connect(5)
        s.subscribe([("certificate/dev-1/create/accepted/#", 1)], 5)
        s.publish("certificate/dev-1/create", b"", 1, 5)
        got = s.wait_messages(["certificate/dev-1/create/accepted/key",
                               "certificate/dev-1/create/accepted/cert"], 5)
        assert got["certificate/dev-1/create/accepted/key"].payload == b"K" * 1700
        assert got["certificate/dev-1/create/accepted/cert"].payload == b"C" * 1200
        s.publish("certificate/dev-1/create", b"", 1, 5)  # again: the first of either topic wins
        first = s.wait_any(["certificate/dev-1/create/accepted/key", "certificate/dev-1/create/accepted/cert"], 5)
        assert first.topic == "certificate/dev-1/create/accepted/cert"  # the peer sends cert first
        assert s.wait_message("certificate/#", 5).topic == "certificate/dev-1/create/accepted/key"
        assert s.messages("certificate/#") == []  # both were taken
        s.publish("other", b"", 0, 5)
        with pytest.raises(DeviceLimitError) as ei:
            s.wait_message("big", 5)
        e = ei.value
        assert (e.symbol, e.limit, e.needed) == ("CONFIG_MQTT_HELPER_PAYLOAD_BUFFER_LEN", 8096, 9000)
        assert "short by 904 bytes" in str(ei.value)
        with pytest.raises(DeviceLimitError):  # the session stays failed, like the device's
            s.publish("t", b"", 0, 1)


def test_oversize_publish_refused_before_sending(pair: tuple[socket.socket, socket.socket]) -> None:
    broker = ScriptedBroker(pair[1])
    with session(pair[0]) as s:
        s.connect(5)
        with pytest.raises(PayloadTooLarge, match="131073 bytes, over the 131072-byte limit"):
            s.publish("t", b"x" * 131073, 1, 5)
    assert all(p[0] != 3 for p in broker.received)


def test_peer_gone_is_link_closed(pair: tuple[socket.socket, socket.socket]) -> None:
    ScriptedBroker(pair[1])
    with session(pair[0]) as s:
        s.connect(5)
        pair[1].shutdown(socket.SHUT_RDWR)
        with pytest.raises(LinkClosed):
            s.wait_message("x", 5)


def test_parse_rejected_json_cbor_garbage() -> None:
    body = {"statusCode": 403, "errorCode": "Forbidden", "errorMessage": "no"}
    for fmt, raw in (("json", json.dumps(body).encode()), ("cbor", cbor2.dumps(body))):
        e = parse_rejected("t/rejected", raw, fmt)
        assert (e.topic, e.status_code, e.error_code, e.error_message) == ("t/rejected", 403, "Forbidden", "no")
        assert e.exit_code == 5
    g = parse_rejected("t/rejected", b"\xff\x00 not json", "json")
    assert g.error_code == "Unparseable" and g.status_code is None
    assert parse_rejected("t", b"[1,2]", "json").error_code == "Unparseable"


@pytest.mark.parametrize("v5,clean", [(False, True), (False, False), (True, True)])
def test_connect_carries_keepalive_and_clean_session_and_pings(
    pair: tuple[socket.socket, socket.socket], v5: bool, clean: bool,
) -> None:
    broker = ScriptedBroker(pair[1], v5=v5)
    keepalive = 1 if clean and not v5 else 60  # one case waits for a real PINGREQ (~1 s)
    with session(pair[0], mqtt_v5=v5, keepalive=keepalive, clean_session=clean) as s:
        s.connect(5)
        ptype, body = broker.received[0]
        assert ptype == 1 and body[:6] == b"\x00\x04MQTT"
        level, flags, sent_keepalive = body[6], body[7], int.from_bytes(body[8:10], "big")
        assert level == (5 if v5 else 4)
        assert bool(flags & 0x02) is clean  # clean session (3.1.1) / clean start (5)
        assert sent_keepalive == keepalive
        if keepalive == 1:
            assert broker.pinged.wait(5)  # paho keeps the link alive through the tunnel
            s.publish("t", b"after ping", 1, 5)  # and the session still works after PINGRESP


def test_connack_timeout_cleans_up(pair: tuple[socket.socket, socket.socket]) -> None:
    import threading

    before = {t.name for t in threading.enumerate()}
    s = session(pair[0])  # nobody answers on pair[1]
    with pytest.raises(ResponseTimeout, match="CONNACK"):
        s.connect(0.2)
    pair[1].settimeout(5)
    data = b""
    while chunk := pair[1].recv(4096):  # CONNECT, then EOF: the stream was closed by its owner
        data += chunk
    assert data[:1] == b"\x10"
    leftover = {t.name for t in threading.enumerate()} - before
    assert not [n for n in leftover if "nrfprov-tunnel" in n or "paho" in n]
