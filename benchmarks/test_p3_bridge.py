"""P3: the native TLS bridge against paho over OpenSSL, on loopback, measured in one run.

Both sides do the same thing against the same local AWS IoT stand-in (mosquitto, mTLS): publish one
QoS 1 message to the device's own topic, wait for its PUBACK and for the echo of the message — a
round trip of ``size`` payload bytes each way.

- ``bridge``: ``MqttSession`` → socketpair tunnel → ``NativeTlsStream`` (python-mbedtls) →
  ``HostTcpStream`` (TCP_NODELAY) — the code path the native backend uses, minus the modem.
- ``openssl``: plain paho-mqtt with ``tls_set_context`` (Python ``ssl`` / OpenSSL 3), TCP_NODELAY set in
  ``on_connect``, and held to TLS 1.2 like the bridge (mosquitto would otherwise negotiate 1.3).

Ratio = OpenSSL time ÷ bridge time (higher is better; benchmarks/README.md conventions). Also: TLS
handshake bytes up/down with an EC P-256 vs an RSA-2048 client key (the server side is the same).

Run: ``pytest benchmarks/test_p3_bridge.py --benchmark-only`` (skipped in normal runs), or call
:func:`p3_figures` for a plain dict.
"""

from __future__ import annotations

import functools
import os
import socket
import ssl
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

SIZES = (4500, 65536, 131072)
THING = "p3-bench"
TOPIC = f"$aws/things/{THING}/p3"  # + "/bridge" or "/openssl": each side hears only itself


class Side:
    """One client (bridge or OpenSSL) connected and subscribed to its echo topic."""

    def round_trip(self, payload: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class BridgeSide(Side):
    def __init__(self, cloud: Any, cert: Path, key: Path) -> None:
        from nrfprov.mqtt import MqttSession
        from nrfprov.transport import HostTcpStream, NativeTlsStream, TlsCredentials

        creds = TlsCredentials.from_files(cloud.ca_path, cert, key)

        def factory() -> NativeTlsStream:
            return NativeTlsStream.open(HostTcpStream.connect(cloud.host, cloud.port), creds,
                                        cloud.server_name, port=cloud.port)

        self.session = MqttSession(factory, THING + "-bridge", keepalive=60)
        self.session.connect(10)
        self.topic = TOPIC + "/bridge"
        self.session.subscribe([(self.topic, 1)], 10)

    def round_trip(self, payload: bytes) -> None:
        self.session.publish(self.topic, payload, 1, 30)
        got = self.session.wait_message(self.topic, 30)
        if len(got.payload) != len(payload):
            raise AssertionError("bridge echo has the wrong length")

    def close(self) -> None:
        self.session.disconnect()


class OpenSslSide(Side):
    def __init__(self, cloud: Any, cert: Path, key: Path) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        ctx = ssl.create_default_context(cafile=str(cloud.ca_path))
        ctx.load_cert_chain(str(cert), str(key))
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # same protocol as the bridge (and the modem)
        self._got = threading.Event()
        self._ready = threading.Event()
        self._len = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=THING + "-openssl")
        self.client.tls_set_context(ctx)

        def on_connect(c: Any, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
            sock = c.socket()
            if isinstance(sock, socket.socket):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._ready.set()

        def on_message(_c: Any, _u: Any, m: Any) -> None:
            self._len = len(m.payload)
            self._got.set()

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        self.client.connect(cloud.host, cloud.port, 60)  # the stand-in cert also names 127.0.0.1
        self.client.loop_start()
        if not self._ready.wait(10):
            raise RuntimeError("paho did not connect")
        self.topic = TOPIC + "/openssl"
        sub = threading.Event()
        self.client.on_subscribe = lambda *_a: sub.set()
        self.client.subscribe(self.topic, 1)
        if not sub.wait(10):
            raise RuntimeError("no SUBACK")

    def round_trip(self, payload: bytes) -> None:
        self._got.clear()
        info = self.client.publish(self.topic, payload, 1)
        info.wait_for_publish(30)
        if not self._got.wait(30) or self._len != len(payload):
            raise AssertionError("OpenSSL echo missing or wrong length")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def stand_in_with_device(cloud: Any | None = None) -> Iterator[tuple[Any, dict[str, tuple[Path, Path]]]]:
    """A stand-in (given or fresh) with EC and RSA identities allowed on the P3 thing's topics."""
    from nrfprov.cloud import LocalAwsIot

    with tempfile.TemporaryDirectory() as tmp:
        own = None
        if cloud is None:
            own = LocalAwsIot(Path(tmp)).start()
            cloud = own
        try:
            ids = {}
            for kind in ("ec", "rsa"):
                cn = f"{THING}-{kind}"
                ids[kind] = cloud.issue_identity(cn, key_type=kind)
                cloud.grant_device(THING, cn)
            yield cloud, ids
        finally:
            if own is not None:
                own.stop()


def handshake_bytes(cloud: Any, cert: Path, key: Path) -> dict[str, Any]:
    from nrfprov.transport import HostTcpStream, NativeTlsStream, TlsCredentials

    creds = TlsCredentials.from_files(cloud.ca_path, cert, key)
    s = NativeTlsStream.open(HostTcpStream.connect(cloud.host, cloud.port), creds, cloud.server_name)
    try:
        up, down = s.handshake_bytes
        return {"up": up, "down": down, "writes": s.handshake_writes, "cipher": s.cipher,
                "seconds": round(s.handshake_seconds, 6), "key_type": creds.key_type}
    finally:
        s.close()


def _time(fn: Callable[[], None], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def p3_figures(cloud: Any | None = None, *, sizes: tuple[int, ...] = SIZES, repeats: int = 30) -> dict[str, Any]:
    """Measure everything P3 reports, in one run, and return it as plain data.

    ``{"throughput": {size: {"bridge_s", "openssl_s", "ratio", "bridge_mb_s", "openssl_mb_s"}},
       "handshake": {"ec": {"up", "down", ...}, "rsa": {...}}, "repeats": n}``; ratio = OpenSSL ÷ bridge.
    """
    out: dict[str, Any] = {"throughput": {}, "handshake": {}, "repeats": repeats}
    with stand_in_with_device(cloud) as (c, ids):
        bridge, openssl = BridgeSide(c, *ids["ec"]), OpenSslSide(c, *ids["ec"])
        try:
            for size in sizes:
                payload = os.urandom(size)
                bridge.round_trip(payload)  # warm-up
                openssl.round_trip(payload)
                b = _time(functools.partial(bridge.round_trip, payload), repeats)
                o = _time(functools.partial(openssl.round_trip, payload), repeats)
                out["throughput"][size] = {
                    "bridge_s": b, "openssl_s": o, "ratio": round(o / b, 3),
                    "bridge_mb_s": round(2 * size / b / 1e6, 2), "openssl_mb_s": round(2 * size / o / 1e6, 2),
                }
        finally:
            bridge.close()
            openssl.close()
        for kind in ("ec", "rsa"):
            out["handshake"][kind] = handshake_bytes(c, *ids[kind])
    return out


# -- pytest-benchmark (skipped unless --benchmark-only) ---------------------------------------------


@pytest.fixture(scope="module")
def p3_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, tuple[Path, Path]]]]:
    from nrfprov.cloud import LocalAwsIot

    with LocalAwsIot(tmp_path_factory.mktemp("p3cloud")) as cloud, stand_in_with_device(cloud) as pair:
        yield pair


@pytest.fixture(scope="module")
def sides(p3_cloud: tuple[Any, dict[str, tuple[Path, Path]]]) -> Iterator[dict[str, Side]]:
    cloud, ids = p3_cloud
    made: dict[str, Side] = {"bridge": BridgeSide(cloud, *ids["ec"]), "openssl": OpenSslSide(cloud, *ids["ec"])}
    yield made
    for s in made.values():
        s.close()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("impl", ["bridge", "openssl"])
def test_p3_round_trip(benchmark: Any, sides: dict[str, Side], impl: str, size: int) -> None:
    payload = os.urandom(size)
    benchmark.extra_info.update({"suite": "p3", "impl": impl, "size": size})
    benchmark.pedantic(sides[impl].round_trip, args=(payload,), rounds=30, iterations=1, warmup_rounds=2)


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_p3_handshake_bytes(benchmark: Any, p3_cloud: tuple[Any, dict[str, tuple[Path, Path]]],
                            key_type: str) -> None:
    cloud, ids = p3_cloud
    figures: dict[str, Any] = {}

    def once() -> None:
        figures.update(handshake_bytes(cloud, *ids[key_type]))

    benchmark.pedantic(once, rounds=10, iterations=1)
    benchmark.extra_info.update({"suite": "p3_handshake", "key_type": key_type, "bytes_up": figures["up"],
                                 "bytes_down": figures["down"], "writes": figures["writes"],
                                 "cipher": figures["cipher"]})
    assert figures["writes"] == 2  # coalesced flights


if __name__ == "__main__":
    import json

    print(json.dumps(p3_figures(), indent=2))
