"""A simulated modem and a ``prj.conf`` ready for ``nrfprov provision`` against the stand-in (CLI tests)."""

from __future__ import annotations

from pathlib import Path

from integration.provisioning.provrig import CLAIM_TAG, fragment
from nrfprov.cli.demo import write_claim_tag
from nrfprov.cloud import LocalAwsIot
from nrfprov.modem import Modem
from nrfprov.sim import SimulatedModem


def claim_modems(local_aws: LocalAwsIot, *sims: SimulatedModem) -> None:
    """Write the stand-in's claim credentials into each modem's claim sec tag."""
    for sim in sims:
        with Modem.open(sim.port_url) as m:
            write_claim_tag(m, local_aws, CLAIM_TAG)


def split_offload_conf(local_aws: LocalAwsIot, tmp_path: Path, client_id: str) -> Path:
    """``tmp_path/prj.conf``: split flow over the modem's TLS, Serial Modem dialect, as a user writes it."""
    certs = local_aws.write_certs_folder(tmp_path / "certs")
    conf = tmp_path / "prj.conf"
    lines = fragment(local_aws, certs, backend="offload", flow="split", fmt="json", dialect="sm", client_id=client_id)
    conf.write_text("\n".join(_quoted(line) for line in lines) + "\n")
    return conf


def _quoted(line: str) -> str:
    name, _, value = line.partition("=")
    return f"{name}={value}" if value.lstrip("-").isdigit() else f'{name}="{value}"'
