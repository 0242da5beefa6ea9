"""MqttSession + native TLS (host backend) against real mosquitto: the local AWS IoT stand-in, and a
plain mosquitto peer for the cases that need to kill the broker.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from broker_peer import Mosquitto

from nrfprov.cloud import LocalAwsIot
from nrfprov.config import Settings, load_settings
from nrfprov.errors import (
    CertificateVerifyError,
    CloudRejected,
    DeviceLimitError,
    LinkClosed,
    MqttError,
    TlsError,
)
from nrfprov.mqtt import MqttSession
from nrfprov.paths import builtin_ca_paths
from nrfprov.transport import ByteStream, HostTcpStream, NativeTlsStream, TlsCredentials, open_stream
from unit.transport.transport_peers import Pki

pytestmark = pytest.mark.integration


def host_settings(cloud: LocalAwsIot, *extra: str) -> Settings:
    lines = ["CONFIG_NRFPROV_TLS_BACKEND=host", f"CONFIG_AWS_IOT_BROKER_HOST_NAME={cloud.server_name}",
             f"CONFIG_AWS_IOT_PORT={cloud.port}"]
    return load_settings(None, [], [*lines, *extra])


def factory(settings: Settings, cloud: LocalAwsIot, creds: TlsCredentials, **kw: object) -> Callable[[], ByteStream]:
    return lambda: open_stream(settings, credentials=creds, host=cloud.host, timeout=10, **kw)  # type: ignore[arg-type]


def device(cloud: LocalAwsIot, thing: str) -> TlsCredentials:
    cert, key = cloud.issue_identity(thing, key_type="ec")
    cloud.grant_device(thing, thing)
    return TlsCredentials.from_files(cloud.ca_path, cert, key)


@pytest.mark.parametrize("v5", [False, True])
def test_large_messages_both_mqtt_versions(local_aws: LocalAwsIot, v5: bool) -> None:
    creds = device(local_aws, "dev-v")
    s = host_settings(local_aws, f"CONFIG_MQTT_VERSION_5_0={'y' if v5 else 'n'}")
    with MqttSession.from_settings(s, factory(s, local_aws, creds), "dev-v") as session:
        assert session.mqtt_v5 is v5
        session.connect(10)
        session.subscribe([("$aws/things/dev-v/#", 1)], 10)
        for size in (4500, 65536, 131072):
            payload = os.urandom(size)
            session.publish("$aws/things/dev-v/blob", payload, 1, 10)
            got = session.wait_message("$aws/things/dev-v/#", 10)
            assert hashlib.sha256(got.payload).digest() == hashlib.sha256(payload).digest()


def test_denied_publish_mqtt5_is_reason_135(local_aws: LocalAwsIot) -> None:
    creds = device(local_aws, "dev-d")
    s = host_settings(local_aws, "CONFIG_MQTT_VERSION_5_0=y")
    with MqttSession.from_settings(s, factory(s, local_aws, creds), "dev-d") as session:
        session.connect(10)
        with pytest.raises(MqttError) as ei:
            session.publish("$aws/things/someone-else/x", b"1", 1, 10)
        assert ei.value.reason_code == 135


def test_mirror_mode_sample_lengths(local_aws: LocalAwsIot, tmp_path: Path) -> None:
    overlay = tmp_path / "overlay-native_tls.conf"
    overlay.write_text("CONFIG_MBEDTLS_SSL_IN_CONTENT_LEN=5120\nCONFIG_AWS_IOT_MQTT_PAYLOAD_BUFFER_LEN=8096\n"
                       "CONFIG_NRFPROV_MIRROR_DEVICE_LIMITS=y\n")
    s = load_settings(None, [overlay], ["CONFIG_NRFPROV_TLS_BACKEND=host",
                                        f"CONFIG_AWS_IOT_BROKER_HOST_NAME={local_aws.server_name}",
                                        f"CONFIG_AWS_IOT_PORT={local_aws.port}"])
    creds = device(local_aws, "dev-m")
    with MqttSession.from_settings(s, factory(s, local_aws, creds), "dev-m") as session:
        session.connect(10)
        session.subscribe([("$aws/things/dev-m/#", 1)], 10)
        ok = os.urandom(4500)
        session.publish("$aws/things/dev-m/a", ok, 1, 10)
        assert session.wait_message("$aws/things/dev-m/#", 10).payload == ok
        with pytest.raises(DeviceLimitError) as ei:
            session.publish("$aws/things/dev-m/a", os.urandom(16384), 1, 10)
            session.wait_message("$aws/things/dev-m/#", 10)
    e = ei.value
    # the TLS record (16384 B of plaintext) is what the device's Mbed TLS would refuse first
    assert (e.symbol, e.limit, e.needed) == ("CONFIG_MBEDTLS_SSL_IN_CONTENT_LEN", 5120, 16384)
    assert "short by 11264 bytes" in str(e) and "raise CONFIG_MBEDTLS_SSL_IN_CONTENT_LEN" in str(e)


def test_mirror_mode_payload_buffer(local_aws: LocalAwsIot) -> None:
    s = host_settings(local_aws, "CONFIG_AWS_IOT_MQTT_PAYLOAD_BUFFER_LEN=8096",
                      "CONFIG_NRFPROV_MIRROR_DEVICE_LIMITS=y")  # in-content stays 16384
    creds = device(local_aws, "dev-p")
    with MqttSession.from_settings(s, factory(s, local_aws, creds), "dev-p") as session:
        session.connect(10)
        session.subscribe([("$aws/things/dev-p/#", 1)], 10)
        with pytest.raises(DeviceLimitError) as ei:
            session.publish("$aws/things/dev-p/a", b"x" * 9000, 1, 10)
            session.wait_message("$aws/things/dev-p/#", 10)
    assert (ei.value.symbol, ei.value.limit, ei.value.needed) == ("CONFIG_AWS_IOT_MQTT_PAYLOAD_BUFFER_LEN", 8096, 9000)


def test_typed_errors_from_connect(local_aws: LocalAwsIot) -> None:
    s = host_settings(local_aws)
    claim = TlsCredentials.from_files(local_aws.ca_path, local_aws.claim_cert_path, local_aws.claim_key_path)
    amazon_root_ca_1 = builtin_ca_paths()[0]  # a real root that did not sign the stand-in's server
    amazon = TlsCredentials.from_files(amazon_root_ca_1, local_aws.claim_cert_path, local_aws.claim_key_path)
    no_cert = TlsCredentials.from_files(local_aws.ca_path)
    cases: list[tuple[TlsCredentials, dict[str, object], type[Exception], str]] = [
        (amazon, {}, CertificateVerifyError, "not in the trusted CA file"),
        (claim, {"server_name": "wrong.example"}, CertificateVerifyError, "'wrong.example' is not among"),
        (no_cert, {}, TlsError, "no client certificate was configured"),
    ]
    for creds, kw, exc_type, text in cases:
        session = MqttSession(factory(s, local_aws, creds, **kw), "dev1")
        with pytest.raises((exc_type, LinkClosed)) as ei:
            session.connect(10)
        assert text in str(ei.value)
        session.disconnect()


def test_request_reply_against_the_responder(local_aws: LocalAwsIot) -> None:
    s = host_settings(local_aws, "CONFIG_MQTT_VERSION_5_0=y")
    claim = TlsCredentials.from_files(local_aws.ca_path, local_aws.claim_cert_path, local_aws.claim_key_path)
    with MqttSession.from_settings(s, factory(s, local_aws, claim), "dev-r") as session:
        session.connect(10)
        base = "$aws/certificates/create/json"
        body = json.loads(session.request(base, b"{}", f"{base}/accepted", f"{base}/rejected", 20))
        assert "BEGIN CERTIFICATE" in body["certificatePem"] and "PRIVATE KEY" in body["privateKey"]
        cb = "$aws/certificates/create/cbor"
        with pytest.raises(CloudRejected) as ei:
            session.request(cb, b"\xff\xff", f"{cb}/accepted", f"{cb}/rejected", 20, fmt="cbor")
        assert ei.value.status_code == 400 and ei.value.error_code
        # the split flow: key and cert on two topics, in either order
        session.subscribe([("certificate/dev-r/create/accepted/+", 1)], 10)
        session.publish("certificate/dev-r/create", b"", 1, 10)
        got = session.wait_messages(["certificate/dev-r/create/accepted/key",
                                     "certificate/dev-r/create/accepted/cert"], 20)
        assert b"PRIVATE KEY" in got["certificate/dev-r/create/accepted/key"].payload
        assert b"BEGIN CERTIFICATE" in got["certificate/dev-r/create/accepted/cert"].payload


class CuttingRelay:
    """TCP relay 127.0.0.1 → broker that can cut the connection after N more downstream bytes."""

    def __init__(self, port: int) -> None:
        self._target = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.down = 0
        self._cut_at: int | None = None
        self._socks: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def cut_after(self, extra: int) -> None:
        self._cut_at = self.down + extra

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        upstream = socket.create_connection(("127.0.0.1", self._target))
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socks += [client, upstream]
        t = threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True)
        t.start()
        self._threads.append(t)
        self._pipe(upstream, client, True)

    def _pipe(self, src: socket.socket, dst: socket.socket, downstream: bool) -> None:
        try:
            while data := src.recv(4096):
                if downstream:
                    if self._cut_at is not None and self.down + len(data) >= self._cut_at:
                        dst.sendall(data[: self._cut_at - self.down])
                        self.close()  # the broker is "gone" in the middle of the message
                        return
                    self.down += len(data)
                dst.sendall(data)
        except OSError:
            return

    def close(self) -> None:
        for s in [self._listener, *self._socks]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def test_broker_gone_mid_message_is_link_closed(tmp_path: Path) -> None:
    pki = Pki.create()
    creds = TlsCredentials.from_pems(pki.ca.pem, pki.client_cert, pki.client_key)
    with Mosquitto(tmp_path, pki) as broker:
        relay = CuttingRelay(broker.port)
        try:
            def through_relay() -> ByteStream:
                return NativeTlsStream.open(HostTcpStream.connect("127.0.0.1", relay.port), creds, "localhost")

            with MqttSession(through_relay, "dev-1") as session:
                session.connect(10)
                session.subscribe([("test/#", 1)], 10)
                relay.cut_after(40000)  # the echo of a 128 KB message is cut after 40 KB
                with pytest.raises(LinkClosed) as ei:
                    session.publish("test/big", os.urandom(131072), 1, 10)
                    session.wait_message("test/#", 10)
                assert "middle of a TLS record" in str(ei.value)
        finally:
            relay.close()


def test_broker_killed_while_idle_is_noticed_at_once(tmp_path: Path) -> None:
    pki = Pki.create()
    creds = TlsCredentials.from_pems(pki.ca.pem, pki.client_cert, pki.client_key)
    with Mosquitto(tmp_path, pki) as broker:
        def direct() -> ByteStream:
            return NativeTlsStream.open(HostTcpStream.connect("127.0.0.1", broker.port), creds, "localhost")

        with MqttSession(direct, "dev-1", keepalive=1200) as session:
            session.connect(10)
            broker.kill()
            with pytest.raises(LinkClosed):  # not after keepalive: the tunnel closes paho's end
                session.wait_message("test/#", 5)
