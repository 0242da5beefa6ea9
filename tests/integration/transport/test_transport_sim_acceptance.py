"""Acceptance: the backends through the simulated nRF91 (pty, real TCP) to the local AWS IoT stand-in.

Chain under test (native): MqttSession → paho → socketpair tunnel → NativeTlsStream (python-mbedtls)
→ ModemSocket (#XSEND/#XRECV over a pty) → SimulatedModem → TCP → mosquitto (mTLS, ACLs).
The UART runs at 1 Mbaud (the nRF91 UARTE's top rate) so 128 KB each way stays a few seconds.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from nrfprov.cloud import LocalAwsIot
from nrfprov.config import Settings, load_settings
from nrfprov.errors import DeviceLimitError, DialectError, ModemTlsLimitError
from nrfprov.modem import CredentialType, Modem
from nrfprov.mqtt import MqttSession
from nrfprov.sim import SimulatedModem
from nrfprov.transport import NativeTlsStream, TlsCredentials, open_stream

pytestmark = pytest.mark.integration

BAUD = 1_000_000
LONG_TERMINATOR = "\x1b\x1d<NRFPROV-EOD>\x1d\x1b"  # 16 bytes: ~2^-128 chance per offset in ciphertext


def settings_for(cloud: LocalAwsIot, *extra: str) -> Settings:
    return load_settings(None, [], [f"CONFIG_AWS_IOT_BROKER_HOST_NAME={cloud.server_name}",
                                    f"CONFIG_AWS_IOT_PORT={cloud.port}", *extra])


@contextmanager
def modem_on(sim: SimulatedModem, dialect: str, terminator: str = "+++") -> Iterator[Modem]:
    m = Modem.open(sim.port_url, baud=BAUD, dialect=dialect, slm_terminator=terminator)
    try:
        m.set_cfun(1)
        m.wait_registered(10)
        yield m
    finally:
        m.close()


def device_identity(cloud: LocalAwsIot, thing: str) -> TlsCredentials:
    cert, key = cloud.issue_identity(thing, key_type="ec")
    cloud.grant_device(thing, thing)
    return TlsCredentials.from_files(cloud.ca_path, cert, key)


@pytest.mark.parametrize("dialect,terminator", [("sm", "+++"), ("slm", LONG_TERMINATOR)])
def test_native_backend_carries_4k5_64k_128k_intact(
    sim_factory: Callable[..., SimulatedModem], local_aws: LocalAwsIot, dialect: str, terminator: str,
) -> None:
    sim = sim_factory(dialect=dialect, baud=BAUD, terminator=terminator)
    creds = device_identity(local_aws, "big-1")
    settings = settings_for(local_aws, "CONFIG_NRFPROV_TLS_BACKEND=native")
    with modem_on(sim, dialect, terminator) as m:
        def factory() -> NativeTlsStream:
            s = open_stream(settings, modem=m, credentials=creds, host=local_aws.host, timeout=20)
            assert isinstance(s, NativeTlsStream)
            return s

        with MqttSession.from_settings(settings, factory, "big-1") as session:
            session.connect(30)
            session.subscribe([("$aws/things/big-1/data", 1)], 20)
            for size in (4500, 65536, 131072):
                payload = os.urandom(size)
                session.publish("$aws/things/big-1/data", payload, 1, 60)
                got = session.wait_message("$aws/things/big-1/data", 60)
                assert hashlib.sha256(got.payload).hexdigest() == hashlib.sha256(payload).hexdigest()
            layers = session.counters()
    assert [layer["layer"] for layer in layers] == ["NativeTlsStream", "ModemSocket"]
    # the modem carried ciphertext: more bytes than the MQTT layer, and > 200 KB down
    assert layers[1]["bytes_received"] > layers[0]["bytes_received"] > 200_000  # type: ignore[operator]


def test_legacy_slm_with_plus_plus_plus_refuses_native(
    sim_factory: Callable[..., SimulatedModem], local_aws: LocalAwsIot,
) -> None:
    sim = sim_factory(dialect="slm", baud=BAUD)
    settings = settings_for(local_aws, "CONFIG_NRFPROV_TLS_BACKEND=native")
    creds = TlsCredentials.from_files(local_aws.ca_path, local_aws.claim_cert_path, local_aws.claim_key_path)
    with modem_on(sim, "slm") as m, pytest.raises(DialectError) as ei:
        open_stream(settings, modem=m, credentials=creds, host=local_aws.host)
    assert "+++" in str(ei.value)
    assert sim.stats  # the simulator ran; no socket was opened for the refused backend


@pytest.mark.parametrize("dialect", ["sm", "slm"])
def test_offload_backend_names_the_2kb_limit_and_the_ways_out(
    sim_factory: Callable[..., SimulatedModem], local_aws: LocalAwsIot, dialect: str, tmp_path: Path,
) -> None:
    sim = sim_factory(dialect=dialect, baud=BAUD)
    cert, key = local_aws.issue_identity("small-1", key_type="ec")
    local_aws.grant_device("small-1", "small-1")
    settings = settings_for(local_aws, "CONFIG_AWS_IOT_SEC_TAG=43")
    assert settings.tls_backend == "offload"
    with modem_on(sim, dialect) as m:
        with m.offline():  # %CMNG writes need CFUN=4; the previous mode comes back after the block
            m.write_credential(43, CredentialType.ROOT_CA_CERT, local_aws.ca_path.read_text())
            m.write_credential(43, CredentialType.CLIENT_CERT, cert.read_text())
            m.write_credential(43, CredentialType.CLIENT_KEY, key.read_text())
        m.wait_registered(10)
        with MqttSession.from_settings(
            settings, lambda: open_stream(settings, modem=m, host=local_aws.host, timeout=20), "small-1"
        ) as session:
            session.connect(30)
            session.subscribe([("$aws/things/small-1/data", 1)], 20)
            session.publish("$aws/things/small-1/data", b"s" * 1500, 1, 20)  # under the limit: fine
            assert session.wait_message("$aws/things/small-1/data", 20).payload == b"s" * 1500
            with pytest.raises(ModemTlsLimitError) as ei:
                # the echo may come back before the PUBACK: the error surfaces from whichever waits
                session.publish("$aws/things/small-1/data", b"L" * 4500, 1, 20)
                session.wait_message("$aws/things/small-1/data", 20)
    text = str(ei.value)
    assert "2 KB" in text
    assert "native TLS backend" in text and "split-topic flow" in text


def test_mirror_mode_through_the_modem(
    sim_factory: Callable[..., SimulatedModem], local_aws: LocalAwsIot, tmp_path: Path,
) -> None:
    overlay = tmp_path / "overlay-native_tls.conf"
    overlay.write_text("CONFIG_MBEDTLS_TLS_LIBRARY=y\nCONFIG_MBEDTLS_SSL_IN_CONTENT_LEN=5120\n"
                       "CONFIG_AWS_IOT_MQTT_PAYLOAD_BUFFER_LEN=8096\nCONFIG_NRFPROV_MIRROR_DEVICE_LIMITS=y\n")
    settings = load_settings(None, [overlay], [f"CONFIG_AWS_IOT_BROKER_HOST_NAME={local_aws.server_name}",
                                               f"CONFIG_AWS_IOT_PORT={local_aws.port}"])
    assert settings.tls_backend == "native"
    sim = sim_factory(dialect="sm", baud=BAUD)
    creds = device_identity(local_aws, "mirror-1")
    with modem_on(sim, "sm") as m, MqttSession.from_settings(
        settings, lambda: open_stream(settings, modem=m, credentials=creds, host=local_aws.host, timeout=20),
        "mirror-1",
    ) as session:
        session.connect(30)
        session.subscribe([("$aws/things/mirror-1/d", 1)], 20)
        ok = os.urandom(4500)
        session.publish("$aws/things/mirror-1/d", ok, 1, 20)
        assert session.wait_message("$aws/things/mirror-1/d", 20).payload == ok
        with pytest.raises(DeviceLimitError) as ei:
            session.publish("$aws/things/mirror-1/d", os.urandom(16384), 1, 20)
            session.wait_message("$aws/things/mirror-1/d", 20)
    assert "CONFIG_MBEDTLS_SSL_IN_CONTENT_LEN=5120" in str(ei.value) and "short by 11264 bytes" in str(ei.value)
