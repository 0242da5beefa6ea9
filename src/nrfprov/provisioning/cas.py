"""Which CA goes into the provisioned sec tag (type 0), and where the built-in Amazon roots live.

Order: ``CONFIG_NRFPROV_CA_FILE``; else the certs folder's ``ca-cert.pem`` (the anchor the claim
connection trusts); else Amazon Root CA 1 + 3, shipped inside the package (``nrfprov/data``), so a
pip-installed nrfprov finds them without a source checkout. Nordic's aws_iot_provisioning sample
writes CA 1 only, but AWS picks the server chain by the negotiated suite (RSA -> CA 1, ECDSA -> CA 3
[AWS IoT developer guide, "Server authentication"]) and the modem offers ECDSA suites, so both go
in; together they are ~1.9 KB, well inside one %CMNG command.

This module reads files; the decisions that need no I/O are in ``plan.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nrfprov.config import Settings
from nrfprov.errors import ConfigError, InputFileError
from nrfprov.files import read_text_bounded
from nrfprov.paths import builtin_ca_paths

#: A CA bundle is a few KB; 64 KB bounds a wrong path pointing at something large.
CA_FILE_LIMIT = 64 * 1024


@dataclass(frozen=True)
class CaChoice:
    """The CA files a run would write, and why those."""

    paths: tuple[Path, ...]
    reason: str

    def describe(self) -> str:
        return f"{self.reason}: {', '.join(str(p) for p in self.paths)}"


def choose_ca(settings: Settings) -> CaChoice:
    if settings.ca_file:
        return CaChoice((Path(settings.ca_file),), settings.origins.get("ca_file", "CONFIG_NRFPROV_CA_FILE"))
    folder_ca = Path(settings.certs_dir) / "ca-cert.pem"
    if folder_ca.is_file():
        return CaChoice((folder_ca,), "the certs folder's ca-cert.pem")
    builtin = builtin_ca_paths()
    if all(p.is_file() for p in builtin):
        return CaChoice(builtin, "built-in Amazon Root CA 1 + 3")
    raise ConfigError(
        "no CA to write: CONFIG_NRFPROV_CA_FILE is unset and neither the certs folder's ca-cert.pem nor "
        "the built-in Amazon Root CA 1/3 were found", path=str(folder_ca),
        hint="set CONFIG_NRFPROV_CA_FILE to the PEM of the CA that signs your endpoint",
    )


def read_ca(settings: Settings) -> str:
    """The PEM text written into the provisioned sec tag (several files: one certificate each, joined)."""
    choice = choose_ca(settings)
    if len(choice.paths) == 1:
        return _read_text(choice.paths[0])
    return "".join(_read_text(p).strip() + "\n" for p in choice.paths)


def _read_text(path: Path) -> str:
    # Bounded, regular files only, never blocking on a FIFO (nrfprov.files).
    try:
        return read_text_bounded(path, CA_FILE_LIMIT, "CA file")
    except InputFileError as exc:
        raise ConfigError(f"cannot read the CA file: {exc.reason}", path=str(path), hint=exc.hint) from exc
