"""Helpers for station tests: simulated modems with claim credentials, a fragment, witnesses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fixtures.crashrig import WatchedSim
from nrfprov.cloud import LocalAwsIot
from nrfprov.config import Settings, load_settings
from nrfprov.sim.fleet import imei as nth_imei

CLAIM_TAG = 43
TAG = 50
FIRST_IMEI = "490154203237518"
#: Unthrottled UARTs: the station's logic is what the tests check; 115200-baud timing is P6's job.
BAUD = 0
PEM_KEY_MARKERS = ("PRIVATE KEY", "-----BEGIN")


class Bench:
    """Modems on ptys (each with its own IMEI) and the stand-in they are provisioned against."""

    def __init__(self, cloud: LocalAwsIot, root: Path) -> None:
        self.cloud = cloud
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.sims: list[WatchedSim] = []
        self.certs = cloud.write_certs_folder(root / "certs")
        self.journals = root / "journals"
        self.report = root / "batch.csv"

    def _start(self, n: int, **options: Any) -> WatchedSim:
        sim = WatchedSim(self.root / f"modem-{n:03d}", dialect="sm", baud=options.pop("baud", BAUD),
                         imei=nth_imei(FIRST_IMEI, n), link=self.root / f"nrf91-{n}", **options)
        return sim.start()

    def add_modem(self, **options: Any) -> WatchedSim:
        n = len(self.sims)
        sim = self._start(n, **options)
        self.sims.append(sim)
        # The claim identity a factory image carries in CONFIG_AWS_IOT_SEC_TAG (offloaded TLS uses it).
        for cred_type, path in ((0, self.cloud.ca_path), (1, self.cloud.claim_cert_path),
                                (2, self.cloud.claim_key_path)):
            sim.store.put(CLAIM_TAG, cred_type, Path(path).read_text())
        return sim

    def replug(self, n: int) -> WatchedSim:
        """Power-cycle modem ``n``: a new pty at the same link, the same IMEI and credential store."""
        self.sims[n].stop()
        self.sims[n] = self._start(n)
        return self.sims[n]

    def close(self) -> None:
        for sim in self.sims:
            sim.stop()

    def air_bytes(self) -> int:
        """Bytes every modem sent and received over the radio: unchanged = no modem contacted the cloud."""
        return sum(s.stats.snapshot()["air_tx"] + s.stats.snapshot()["air_rx"] for s in self.sims)

    @property
    def pattern(self) -> str:
        return str(self.root / "nrf91-*")

    def lines(self, *, backend: str = "offload", flow: str = "split") -> list[str]:
        return [
            "CONFIG_AWS_IOT_BROKER_HOST_NAME=localhost",
            f"CONFIG_AWS_IOT_PORT={self.cloud.port}",
            f"CONFIG_AWS_IOT_SEC_TAG={CLAIM_TAG}",
            f"CONFIG_NRFPROV_PROVISIONED_SEC_TAG={TAG}",
            f"CONFIG_NRFPROV_TLS_BACKEND={backend}",
            f"CONFIG_NRFPROV_FLOW={flow}",
            f"CONFIG_NRFPROV_CERTS_DIR={self.certs}",
            f"CONFIG_NRFPROV_CA_FILE={self.cloud.ca_path}",
            "CONFIG_NRFPROV_TEMPLATE_NAME=nrfprov",
            "CONFIG_NRFPROV_TEMPLATE_PARAMETERS=SerialNumber={imei}",
            "CONFIG_NRFPROV_MODEM_DIALECT=sm",
            "CONFIG_NRFPROV_RESPONSE_TIMEOUT_S=30",
            "CONFIG_NRFPROV_LTE_TIMEOUT_S=30",
        ]

    def settings(self, *extra: str, **kw: Any) -> Settings:
        return load_settings(overrides=[*self.lines(**kw), *extra])

    def conf_file(self, *extra: str, **kw: Any) -> Path:
        path = self.root / "prj.conf"
        out = []
        for line in [*self.lines(**kw), *extra]:
            name, _, value = line.partition("=")
            out.append(f"{name}={value if value.lstrip('-').isdigit() else chr(34) + value + chr(34)}")
        path.write_text("\n".join(out) + "\n")
        return path

    def report_rows(self) -> list[dict[str, Any]]:
        path = self.report.with_suffix(".jsonl")
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
