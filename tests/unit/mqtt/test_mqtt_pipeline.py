"""Overlapped MQTT exchanges (``pipeline``, ``suback_later``): the packets leave before the acknowledgement
they used to wait for, and every refusal still surfaces as the same typed error.

The scripted broker holds an acknowledgement back until a later packet arrives, so a client that waits
for it before sending that packet waits forever: the tests prove the order by events, not by time.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from mqtt_wire import CONNECT, PUBLISH, SUBSCRIBE, ScriptedBroker, publish

from nrfprov.config import Settings, load_settings
from nrfprov.errors import ConnectThrottled, MqttError, ResponseTimeout
from nrfprov.mqtt.session import ConnectSpacer, MqttSession
from nrfprov.transport.tcp import HostTcpStream


@pytest.fixture()
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def session(sock: socket.socket, **kw: object) -> MqttSession:
    return MqttSession(lambda: HostTcpStream(sock, peer="scripted"), "dev-1",  # type: ignore[arg-type]
                       spacer=ConnectSpacer(0.0), **kw)


def test_pipelined_subscribe_leaves_before_the_connack(pair: tuple[socket.socket, socket.socket]) -> None:
    broker = ScriptedBroker(pair[1], hold_connack_until=SUBSCRIBE)
    with session(pair[0], pipeline=True) as s:
        s.connect(5)  # returns with CONNECT sent
        assert s.subscribe([("a/#", 1)], 5) == [1]  # the CONNACK came only after this SUBSCRIBE arrived
    assert [t for t, _ in broker.received][:2] == [CONNECT, SUBSCRIBE]


def test_without_pipeline_the_client_waits_for_the_connack(pair: tuple[socket.socket, socket.socket]) -> None:
    ScriptedBroker(pair[1], hold_connack_until=SUBSCRIBE)
    s = session(pair[0])
    with pytest.raises(ResponseTimeout, match="CONNACK"):
        s.connect(0.5)
    s.disconnect()


def test_pipelined_proof_publish_leaves_with_the_connect(pair: tuple[socket.socket, socket.socket]) -> None:
    broker = ScriptedBroker(pair[1], v5=True, hold_connack_until=PUBLISH)
    with session(pair[0], mqtt_v5=True, pipeline=True) as s:
        s.connect(5)
        s.publish("$aws/things/t/shadow/update", b"{}", 1, 5)  # PUBACK (after the held CONNACK)
    assert [t for t, _ in broker.received][:2] == [CONNECT, PUBLISH]


@pytest.mark.parametrize("v5,rc,code", [(False, 5, 0x87), (True, 0x87, 0x87)])
def test_a_refused_connect_surfaces_at_the_next_operation(pair: tuple[socket.socket, socket.socket], v5: bool,
                                                          rc: int, code: int) -> None:
    ScriptedBroker(pair[1], v5=v5, connack_rc=rc)
    s = session(pair[0], mqtt_v5=v5, pipeline=True)
    s.connect(5)
    with pytest.raises(MqttError) as ei:
        s.subscribe([("a/#", 1)], 5)
    assert ei.value.reason_code == code
    with pytest.raises(MqttError):  # the session stays dead
        s.publish("t", b"x", 1, 5)
    s.disconnect()


def test_a_hang_up_on_the_connect_is_throttling_at_the_next_operation(
    pair: tuple[socket.socket, socket.socket]
) -> None:
    ScriptedBroker(pair[1], close_after_connect=True)
    s = session(pair[0], pipeline=True)
    s.connect(5)
    with pytest.raises(ConnectThrottled):
        s.publish("t", b"x", 1, 5)
    s.disconnect()


def test_paho_seeing_the_hang_up_first_is_still_throttling(pair: tuple[socket.socket, socket.socket]) -> None:
    # paho may answer MQTT_ERR_NO_CONN (4) before the session's reader has recorded the hang-up on
    # the CONNECT; that answer must read as the same refused CONNECT (the driver reconnects on it).
    ScriptedBroker(pair[1], hold_connack_until=SUBSCRIBE)  # alive, no CONNACK: the reader saw nothing
    s = session(pair[0], pipeline=True)
    s.connect(5)
    with pytest.raises(ConnectThrottled):
        s._check_rc(4, "SUBSCRIBE")
    s.disconnect()


def test_suback_later_publishes_before_the_suback(pair: tuple[socket.socket, socket.socket]) -> None:
    def answer(topic: str, payload: bytes) -> list[bytes]:
        return [publish("req/accepted", b"ok")] if topic == "req" else []

    broker = ScriptedBroker(pair[1], hold_suback_until=PUBLISH, on_publish=answer)
    with session(pair[0], pipeline=True, suback_later=True) as s:
        s.connect(5)
        assert s.subscribe([("req/accepted", 1), ("req/rejected", 1)], 5) == [1, 1]  # as asked, not yet granted
        s.publish("req", b"{}", 1, 5)
        assert s.wait_message("req/accepted", 5).payload == b"ok"
    assert [t for t, _ in broker.received][:3] == [CONNECT, SUBSCRIBE, PUBLISH]


def test_suback_later_still_reports_a_refused_subscription(pair: tuple[socket.socket, socket.socket]) -> None:
    ScriptedBroker(pair[1], suback_codes={"no/#": 0x80})
    with session(pair[0], pipeline=True, suback_later=True) as s:
        s.connect(5)
        s.subscribe([("no/#", 1)], 5)
        with pytest.raises(MqttError, match="'no/#'") as ei:
            s.publish("t", b"x", 1, 5)
        assert ei.value.reason_code == 0x80


def test_the_kconfig_symbols_reach_the_session() -> None:
    assert (Settings().mqtt_pipeline, Settings().publish_before_suback) == (True, False)
    s = load_settings(overrides=["CONFIG_NRFPROV_MQTT_PIPELINE=n", "CONFIG_NRFPROV_PUBLISH_BEFORE_SUBACK=y"])
    session_ = MqttSession.from_settings(s, lambda: None, "dev-1")  # type: ignore[arg-type, return-value]
    assert (session_.pipeline, session_.suback_later) == (False, True)


def test_a_connack_that_never_comes_is_named_in_the_timeout(pair: tuple[socket.socket, socket.socket]) -> None:
    ScriptedBroker(pair[1], hold_connack_until=0, hold_suback_until=0)  # a broker that answers nothing
    s = session(pair[0], pipeline=True)
    s.connect(5)
    with pytest.raises(ResponseTimeout, match="CONNACK"):
        s.subscribe([("a/#", 1)], 0.5)
    s.disconnect()
