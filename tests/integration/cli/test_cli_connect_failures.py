"""Broker connections that fail quietly: each ends within the configured time with the cause named.

- a listener that accepts TCP and never speaks TLS: CONFIG_NRFPROV_CONNECT_TIMEOUT_S bounds the wait
  (host backend through ``tls-check``; native backend through the modem in ``provision``);
- an expired claim certificate over the modem: the broker's reset (ECONNRESET) is explained;
- a refused modem connect says "modem answered" once.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from integration.cli.clirun import run
from integration.provisioning.provrig import CLAIM_TAG, fragment
from nrfprov.cli.demo import write_claim_tag
from nrfprov.cloud import CLAIM_CN, LocalAwsIot
from nrfprov.modem import Modem
from nrfprov.sim import SimulatedModem

pytestmark = pytest.mark.integration

CONNECT_TIMEOUT_S = 2


class SilentBroker:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte (a wrong port, a stuck proxy)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def stop(self) -> None:
        self.listener.close()
        self._thread.join(5)
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentBroker]:
    broker = SilentBroker()
    yield broker
    broker.stop()


def test_tls_check_host_backend_gives_up_on_a_silent_broker(silent: SilentBroker, local_aws: LocalAwsIot,
                                                            tmp_path: Path) -> None:
    certs = local_aws.write_certs_folder(tmp_path / "certs")
    done = run("tls-check", "--backend", "host", "--host", "127.0.0.1", "--broker-port", str(silent.port),
               "--certs", str(certs), "--set", "CONFIG_AWS_IOT_BROKER_HOST_NAME=localhost",
               "--set", f"CONFIG_NRFPROV_CONNECT_TIMEOUT_S={CONNECT_TIMEOUT_S}", timeout=120)
    assert done.returncode == 4, done.stderr
    assert f"within {CONNECT_TIMEOUT_S} s" in done.stderr and "never answered the TLS handshake" in done.stderr
    assert "CONFIG_NRFPROV_CONNECT_TIMEOUT_S" in done.stderr
    assert silent.accepted  # the TCP connection was made: it is the TLS wait that was bounded


def test_provision_native_through_the_modem_gives_up_on_a_silent_broker(
    silent: SilentBroker, local_aws: LocalAwsIot, sim_factory: Callable[..., SimulatedModem], tmp_path: Path
) -> None:
    sim = sim_factory(dialect="sm", baud=0)
    with Modem.open(sim.port_url) as m:
        m.set_cfun(1)
    certs = local_aws.write_certs_folder(tmp_path / "certs")
    lines = fragment(local_aws, certs, backend="native", flow="combined", fmt="json", dialect="sm",
                     client_id="silent-1")
    lines = [line for line in lines if not line.startswith("CONFIG_AWS_IOT_PORT=")]
    conf = tmp_path / "prj.conf"
    conf.write_text("\n".join(_quoted(line) for line in lines) + "\n")
    done = run("provision", "--port", sim.port_url, "--conf", str(conf), "--state", str(tmp_path / "journal"),
               "--set", f"CONFIG_AWS_IOT_PORT={silent.port}",
               "--set", f"CONFIG_NRFPROV_CONNECT_TIMEOUT_S={CONNECT_TIMEOUT_S}", "--json", timeout=180)
    assert done.returncode == 4, done.stderr
    assert f"within {CONNECT_TIMEOUT_S} s" in done.stderr and "never answered the TLS handshake" in done.stderr
    assert json.loads(done.stdout)["error_type"] == "ResponseTimeout"
    assert sim.cfun == 1 and local_aws.request_counts()["create"] == 0


def _expired_claim(cloud: LocalAwsIot) -> tuple[str, str]:
    """A claim certificate from the stand-in's CA (right CN, right CA) that expired yesterday."""
    assert cloud.ca is not None
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CLAIM_CN)]))
        .issuer_name(cloud.ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now - dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(cloud.ca.key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


@pytest.mark.parametrize("backend", ["native", "offload"])
def test_an_expired_claim_certificate_is_named_as_the_likely_cause(
    local_aws: LocalAwsIot, sim_factory: Callable[..., SimulatedModem], tmp_path: Path, backend: str
) -> None:
    # LTE-M delays on the simulated radio: the broker's reset overtakes its alert, as over a real modem.
    sim = sim_factory(dialect="sm", baud=115200, network="lte-m")
    cert_pem, key_pem = _expired_claim(local_aws)
    certs = local_aws.write_certs_folder(tmp_path / "certs")
    (certs / "client-cert.pem").write_text(cert_pem)
    (certs / "private-key.pem").write_text(key_pem)
    with Modem.open(sim.port_url) as m:
        for cred_type, pem in ((0, local_aws.ca_path.read_text()), (1, cert_pem), (2, key_pem)):
            m.write_credential(CLAIM_TAG, cred_type, pem)
    done = run("tls-check", "--port", sim.port_url, "--backend", backend, "--certs", str(certs),
               "--host", "127.0.0.1", "--broker-port", str(local_aws.port), "--server-name", "localhost",
               "--set", "CONFIG_AWS_IOT_BROKER_HOST_NAME=localhost", "--set", f"CONFIG_AWS_IOT_SEC_TAG={CLAIM_TAG}",
               "--set", f"CONFIG_NRFPROV_CA_FILE={local_aws.ca_path}", timeout=180)
    assert done.returncode == 4, done.stderr
    assert "expired or revoked claim certificate" in done.stderr, done.stderr
    assert sim.cfun == 0  # tls-check put back the mode it found


def test_a_refused_modem_connect_says_modem_answered_once(
    local_aws: LocalAwsIot, sim_factory: Callable[..., SimulatedModem]
) -> None:
    sim = sim_factory(dialect="sm", baud=0)
    with Modem.open(sim.port_url) as m:
        write_claim_tag(m, local_aws, CLAIM_TAG)
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    done = run("tls-check", "--port", sim.port_url, "--backend", "offload", "--host", "127.0.0.1",
               "--broker-port", str(port), "--set", "CONFIG_AWS_IOT_BROKER_HOST_NAME=localhost",
               "--set", f"CONFIG_AWS_IOT_SEC_TAG={CLAIM_TAG}", timeout=120)
    assert done.returncode == 4, done.stderr
    assert done.stderr.count("modem answered") == 1, done.stderr


def _quoted(line: str) -> str:
    name, _, value = line.partition("=")
    return f"{name}={value}" if value.lstrip("-").isdigit() else f'{name}="{value}"'
