"""Reads the local files a provisioning run depends on, once, before anything is asked of the cloud.

The CA written into the provisioned sec tag and, for the ``native`` and ``host`` backends, the certs
folder's claim identity. Each file must be a regular file (a FIFO or a device such as ``/dev/zero``
would block or never end) of bounded size, read without following it into a pipe; every error names
the file. What the texts must satisfy is checked, without I/O, in ``preflight.py``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from nrfprov.config import Settings
from nrfprov.errors import ConfigError
from nrfprov.names import Backend
from nrfprov.provisioning.cas import CA_FILE_LIMIT, choose_ca

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


def read_local_file(path: Path, *, limit: int, what: str) -> str:
    """The ASCII text of a regular file of at most ``limit`` bytes; ``ConfigError`` naming ``path``."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError as exc:
        raise ConfigError(f"{what}: no such file", path=str(path)) from exc
    except OSError as exc:
        raise ConfigError(f"{what}: cannot open: {exc.strerror}", path=str(path)) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{what}: not a regular file", path=str(path),
                              hint="point it at a PEM file, not a device, pipe or directory")
        if st.st_size > limit:
            raise ConfigError(f"{what}: {st.st_size} bytes, over the {limit}-byte limit for this file",
                              path=str(path))
        data = os.read(fd, limit + 1)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read: {exc.strerror}", path=str(path)) from exc
    finally:
        os.close(fd)
    if len(data) > limit:  # grew while we read it
        raise ConfigError(f"{what}: over the {limit}-byte limit for this file", path=str(path))
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what}: not an ASCII PEM file (byte {exc.start})", path=str(path)) from exc


def read_inputs(settings: Settings, backend: Backend) -> LocalInputs:
    """Read the CA to write and, for ``native``/``host``, the certs folder's claim identity."""
    choice = choose_ca(settings)
    texts = [read_local_file(p, limit=CA_FILE_LIMIT, what="CA file") for p in choice.paths]
    ca = texts[0] if len(texts) == 1 else "".join(t.strip() + "\n" for t in texts)
    if backend == "offload":
        return LocalInputs(ca, choice.paths)
    folder = Path(settings.certs_dir)
    claim_ca_path = Path(settings.ca_file) if settings.ca_file else folder / FOLDER_CA
    return LocalInputs(
        ca, choice.paths,
        claim_ca_pem=read_local_file(claim_ca_path, limit=CA_FILE_LIMIT, what="claim CA file"),
        claim_cert_pem=read_local_file(folder / FOLDER_CERT, limit=CA_FILE_LIMIT, what="claim certificate"),
        claim_key_pem=read_local_file(folder / FOLDER_KEY, limit=CA_FILE_LIMIT, what="claim private key"),
        certs_dir=folder,
    )
