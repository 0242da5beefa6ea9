"""``endpoint.json`` names a host every TLS backend accepts, and every backend names a CONNECT refusal.

The stand-in advertised ``127.0.0.1``; Mbed TLS 2.28 (python-mbedtls, the native backend) checks DNS
names only, so a user who configured the advertised host got a refusal before any byte was sent. It
advertises ``localhost`` now (its certificate names both). Each backend connects with the name taken
from the file, and a second CONNECT with the same client ID inside AWS's one-second window surfaces
as ``ConnectThrottled`` whichever way the bytes travel (host TCP, modem TCP + host TLS, modem TLS).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from nrfprov.cli.demo import write_claim_tag
from nrfprov.cloud import LocalAwsIot
from nrfprov.config import Settings, load_settings
from nrfprov.errors import ConnectThrottled
from nrfprov.modem import Modem
from nrfprov.mqtt.session import ConnectSpacer, MqttSession
from nrfprov.sim import SimulatedModem
from nrfprov.transport import open_stream

pytestmark = pytest.mark.integration
CLAIM_TAG = 43


def _rig(cloud: LocalAwsIot, sim_factory: Callable[..., SimulatedModem], tmp_path: Path, backend: str,
         modems: list[Modem], count: int) -> Settings:
    """Settings built from endpoint.json alone, and ``count`` registered modems (none for ``host``)."""
    endpoint = json.loads(cloud.endpoint_path.read_text())
    assert endpoint == {"host": "localhost", "port": cloud.port}
    certs = cloud.write_certs_folder(tmp_path / "certs")
    if backend != "host":
        for _ in range(count):
            modem = Modem.open(sim_factory(dialect="sm", baud=0).port_url, dialect="sm")
            modems.append(modem)
            write_claim_tag(modem, cloud, CLAIM_TAG)
            modem.set_cfun(1)
            modem.wait_registered(15)
    return load_settings(overrides=[
        f"CONFIG_AWS_IOT_BROKER_HOST_NAME={endpoint['host']}", f"CONFIG_AWS_IOT_PORT={endpoint['port']}",
        f"CONFIG_NRFPROV_TLS_BACKEND={backend}", f"CONFIG_NRFPROV_CERTS_DIR={certs}",
        f"CONFIG_AWS_IOT_SEC_TAG={CLAIM_TAG}", "CONFIG_NRFPROV_MODEM_DIALECT=sm",
    ])


@pytest.mark.parametrize("backend", ["native", "offload", "host"])
def test_every_backend_connects_to_the_advertised_endpoint(
    local_aws: LocalAwsIot, sim_factory: Callable[..., SimulatedModem], tmp_path: Path, backend: str
) -> None:
    modems: list[Modem] = []
    try:
        settings = _rig(local_aws, sim_factory, tmp_path, backend, modems, 1)
        modem = modems[0] if modems else None
        with MqttSession(lambda: open_stream(settings, modem=modem, timeout=15), f"ep-{backend}") as session:
            session.connect(15)
            assert session.subscribe([(f"certificate/ep-{backend}/create/accepted/+", 1)]) == [1]
    finally:
        for m in modems:
            m.close()


@pytest.mark.parametrize("backend", ["native", "offload", "host"])
def test_every_backend_names_a_connect_the_broker_hung_up_on(
    local_aws: LocalAwsIot, sim_factory: Callable[..., SimulatedModem], tmp_path: Path, backend: str
) -> None:
    modems: list[Modem] = []
    unspaced = ConnectSpacer(0.0)  # as if another process used the same client ID

    def session(i: int) -> MqttSession:
        modem = modems[i] if modems else None
        return MqttSession(lambda: open_stream(settings, modem=modem, timeout=15), f"hu-{backend}", spacer=unspaced)

    try:
        # Two modems: the second connection must not share the first one's link.
        settings = _rig(local_aws, sim_factory, tmp_path, backend, modems, 2)
        with session(0) as first:
            first.connect(15)
            with pytest.raises(ConnectThrottled) as info, session(1) as second:
                second.connect(15)
            assert first.subscribe([(f"certificate/hu-{backend}/create/accepted/+", 1)]) == [1]  # still up
    finally:
        for m in modems:
            m.close()
    assert info.value.client_id == f"hu-{backend}"
