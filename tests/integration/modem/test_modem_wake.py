"""A modem socket's ``recv`` can be woken from another thread, so the MQTT tunnel sends a packet paho just
wrote at once instead of after its poll timeout (transport.base ``wake``; mqtt/tunnel.py ``kick``).

Event-based: the tunnel's poll timeout is raised to a minute, so a packet that waited for it would miss
the operation's 10 s deadline; the deadlines are safety nets, not performance assertions.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.modem.modem_peers import EchoServer
from nrfprov.errors import ResponseTimeout
from nrfprov.modem import Modem
from nrfprov.mqtt import tunnel
from nrfprov.mqtt.session import ConnectSpacer, MqttSession
from nrfprov.sim import SimulatedModem
from unit.mqtt.mqtt_wire import ScriptedBroker

pytestmark = pytest.mark.integration

SAFETY_S = 10.0


@pytest.fixture(params=["sm", "slm"])
def modem(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Modem]:
    with SimulatedModem(tmp_path / "sim", dialect=request.param, baud=0) as sim:
        with Modem.open(sim.port_url, dialect=request.param) as m:
            m.set_cfun(1)
            m.wait_registered(30)
            yield m


def test_wake_returns_a_waiting_recv_and_data_comes_first(modem: Modem) -> None:
    server = EchoServer()
    try:
        with modem.open_tcp("127.0.0.1", server.port) as s:
            outcome: list[object] = []

            def reader() -> None:
                try:
                    outcome.append(s.recv(16, timeout=None))  # would wait forever: nothing comes
                except ResponseTimeout as exc:
                    outcome.append(exc)

            t = threading.Thread(target=reader)
            t.start()
            s.wake()
            t.join(SAFETY_S)
            assert not t.is_alive() and isinstance(outcome[0], ResponseTimeout)
            s.send(b"x")
            got = s.recv(16, timeout=SAFETY_S)
            s.wake()  # data that is there wins over a wake
            assert got == b"x" or got + s.recv(16, timeout=SAFETY_S) == b"x"
    finally:
        server.stop()


@pytest.fixture
def scripted_broker() -> Iterator[tuple[int, list[ScriptedBroker]]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    brokers: list[ScriptedBroker] = []

    def accept() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        brokers.append(ScriptedBroker(conn))

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield listener.getsockname()[1], brokers
    listener.close()
    for b in brokers:
        b.sock.close()


@pytest.fixture
def sm_modem(tmp_path: Path) -> Iterator[Modem]:
    """Serial Modem only: legacy SLM reads with a blocking #XPOLL, which a wake cannot cut short."""
    with SimulatedModem(tmp_path / "sim", dialect="sm", baud=0) as sim:
        with Modem.open(sim.port_url, dialect="sm") as m:
            m.set_cfun(1)
            m.wait_registered(30)
            yield m


@pytest.mark.parametrize("attempt", range(5))  # the kick races paho's thread; five runs exercise it
def test_the_tunnel_sends_what_paho_wrote_without_waiting_out_its_poll(
    sm_modem: Modem, scripted_broker: tuple[int, list[ScriptedBroker]], monkeypatch: pytest.MonkeyPatch,
    attempt: int,
) -> None:
    modem = sm_modem
    monkeypatch.setattr(tunnel, "POLL_MIN_S", 60.0)
    monkeypatch.setattr(tunnel, "POLL_MAX_S", 60.0)
    port, _ = scripted_broker
    with MqttSession(lambda: modem.open_tcp("127.0.0.1", port), "dev-1", spacer=ConnectSpacer(0.0),
                     pipeline=True) as s:
        s.connect(SAFETY_S)
        assert s.subscribe([("a/#", 1)], SAFETY_S) == [1]
        s.publish("a/b", b"x", 1, SAFETY_S)
