"""Reads the local files a provisioning run depends on, once, before anything is asked of the cloud.

The CA written into the provisioned sec tag (``cas.py``) and, for the ``native`` and ``host`` backends,
the certs folder's claim identity. Every file is read through ``nrfprov.files`` (a regular file of
bounded size, never blocking on a FIFO); every error names the file. What the texts must satisfy is
checked, without I/O, in ``preflight.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nrfprov.config import Settings
from nrfprov.files import PEM_LIMIT, read_text_bounded
from nrfprov.names import Backend
from nrfprov.provisioning.cas import choose_ca, read_ca

#: The certs folder's file names (Nordic's aws_iot_provisioning sample's native-TLS layout).
FOLDER_CA, FOLDER_CERT, FOLDER_KEY = "ca-cert.pem", "client-cert.pem", "private-key.pem"


@dataclass(frozen=True)
class LocalInputs:
    """The texts of the local files, each with the path it came from (for messages)."""

    ca_pem: str
    ca_paths: tuple[Path, ...]
    #: native / host: the claim identity from the certs folder (``None`` for ``offload``).
    claim_ca_pem: str | None = None
    claim_cert_pem: str | None = None
    claim_key_pem: str | None = field(default=None, repr=False)
    certs_dir: Path | None = None


def read_inputs(settings: Settings, backend: Backend) -> LocalInputs:
    """Read the CA to write and, for ``native``/``host``, the certs folder's claim identity."""
    choice = choose_ca(settings)
    ca = read_ca(settings)
    if backend == "offload":
        return LocalInputs(ca, choice.paths)
    folder = Path(settings.certs_dir)
    claim_ca_path = Path(settings.ca_file) if settings.ca_file else folder / FOLDER_CA
    return LocalInputs(
        ca, choice.paths,
        claim_ca_pem=read_text_bounded(claim_ca_path, PEM_LIMIT, "claim CA file"),
        claim_cert_pem=read_text_bounded(folder / FOLDER_CERT, PEM_LIMIT, "claim certificate"),
        claim_key_pem=read_text_bounded(folder / FOLDER_KEY, PEM_LIMIT, "claim private key"),
        certs_dir=folder,
    )
