"""Helpers for provisioning integration tests: settings pointing at the stand-in and a simulated modem."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nrfprov.cli.demo import SLM_TERMINATOR
from nrfprov.cloud import LocalAwsIot
from nrfprov.config import Settings, load_settings
from nrfprov.modem import Modem
from nrfprov.sim import SimulatedModem

#: The integration tests run unthrottled: the chain's logic is what they check; honest 115200-baud
#: timings are the demo's and the benchmarks' job (and keep this room's suite well under budget).
BAUD = 0
CLAIM_TAG = 43
TAG = 50


def fragment(cloud: LocalAwsIot, certs: Path, *, backend: str, flow: str, fmt: str, dialect: str,
             client_id: str) -> list[str]:
    return [
        "CONFIG_AWS_IOT_BROKER_HOST_NAME=localhost",
        f"CONFIG_AWS_IOT_PORT={cloud.port}",
        f"CONFIG_AWS_IOT_SEC_TAG={CLAIM_TAG}",
        f"CONFIG_AWS_IOT_CLIENT_ID_STATIC={client_id}",
        f"CONFIG_NRFPROV_PROVISIONED_SEC_TAG={TAG}",
        f"CONFIG_NRFPROV_TLS_BACKEND={backend}",
        f"CONFIG_NRFPROV_FLOW={flow}",
        f"CONFIG_NRFPROV_PAYLOAD_FORMAT={fmt}",
        f"CONFIG_NRFPROV_CERTS_DIR={certs}",
        f"CONFIG_NRFPROV_CA_FILE={cloud.ca_path}",
        "CONFIG_NRFPROV_TEMPLATE_NAME=nrfprov",
        "CONFIG_NRFPROV_TEMPLATE_PARAMETERS=SerialNumber={imei}",
        f"CONFIG_NRFPROV_SLM_TERMINATOR={SLM_TERMINATOR}",
        f"CONFIG_NRFPROV_MODEM_DIALECT={dialect}",
        "CONFIG_NRFPROV_RESPONSE_TIMEOUT_S=15",
        "CONFIG_NRFPROV_LTE_TIMEOUT_S=15",
    ]


@dataclass
class Rig:
    cloud: LocalAwsIot
    sim: SimulatedModem
    modem: Modem
    certs: Path
    state: Path
    dialect: str

    def settings(self, *, backend: str, flow: str, fmt: str = "json", client_id: str = "dev-1",
                 extra: tuple[str, ...] = ()) -> Settings:
        lines = fragment(self.cloud, self.certs, backend=backend, flow=flow, fmt=fmt, dialect=self.dialect,
                         client_id=client_id)
        return load_settings(overrides=[*lines, *extra])

    def conf_file(self, path: Path, **kw: Any) -> Path:
        lines = fragment(self.cloud, self.certs, dialect=self.dialect, **kw)
        # --set accepts bare strings; a fragment file needs them quoted like prj.conf.
        out = []
        for line in lines:
            name, _, value = line.partition("=")
            quoted = value if value.lstrip("-").isdigit() else '"' + value + '"'
            out.append(f"{name}={quoted}")
        path.write_text("\n".join(out) + "\n")
        return path


