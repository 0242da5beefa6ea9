"""Every local input checked before anything is asked of the cloud or the modem leaves CFUN=1 (sans-IO).

A request creates a certificate; one that cannot then be written into the modem is lost with its
key, and running again loses another. So everything a run will need locally is checked first, on
the texts ``inputs.py`` read and the values the configuration holds, with ``now`` as a parameter:

- sec tags within the ``%CMNG`` range [Nordic nRF91 AT Commands reference, %CMNG];
- the CA to write: PEM certificate blocks only, each valid now, no ``"`` (the quoting of ``%CMNG``
  cannot carry one), and its ``AT%CMNG`` write within the modem's 4096-byte command limit
  [Nordic nRF91 AT Commands reference; sdk-nrfxlib nrf_modem_limits.h ``NRF_MODEM_AT_MAX_CMD_SIZE``];
- what the cloud will send must fit too: the client certificate and the private key AWS issues
  (``EXPECTED_CERT_PEM``, ``EXPECTED_KEY_PEM``) written into this sec tag;
- ``native`` / ``host``: the certs folder's claim certificate and key parse, match and are valid now;
- the client id and, for Fleet Provisioning, the template name and parameters, as AWS accepts them.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nrfprov.config import IMEI_PLACEHOLDER
from nrfprov.errors import ConfigError, CredentialBundleError, UsageError
from nrfprov.names import FLEET_FLOWS, Backend, Flow
from nrfprov.provisioning import flows
from nrfprov.provisioning.bundle import (
    AT_COMMAND_LIMIT,
    TYPE_CA,
    TYPE_CERT,
    TYPE_KEY,
    cmng_write_command,
    key_public_der,
    normalize_pem,
)
from nrfprov.provisioning.inputs import LocalInputs

#: %CMNG ``sec_tag`` range [Nordic nRF91 AT Commands reference, %CMNG]; higher tags are the modem's own.
SEC_TAG_MAX = 2147483647
#: The largest certificate and key PEM we expect the cloud to issue: AWS signs a ~1.2 KB certificate
#: and CreateKeysAndCertificate / the split workaround issue RSA-2048 keys (~1.7 KB PKCS#1 PEM); the
#: figures leave room for an RSA-4096 key (~3.3 KB), the largest the modem's TLS takes.
EXPECTED_CERT_PEM = 2048
EXPECTED_KEY_PEM = 3300
#: Template names as AWS allows them [AWS IoT API reference, CreateProvisioningTemplate].
TEMPLATE_NAME_RE = re.compile(r"[0-9A-Za-z_-]{1,36}")
#: RegisterThing parameter keys and values [AWS IoT API reference, RegisterThing]: at most 2048 and 4096 chars.
PARAMETER_KEY_LIMIT, PARAMETER_VALUE_LIMIT = 2048, 4096
_PLACEHOLDER_RE = re.compile(r"\{[^{}]*\}")
_KNOWN_PLACEHOLDERS = (IMEI_PLACEHOLDER, "{client_id}")
_CERT_BLOCK_RE = re.compile(r"-----BEGIN CERTIFICATE-----\n.+?\n-----END CERTIFICATE-----\n", re.S)


def check_sec_tags(*, provisioned: int, claim: int | None, backend: Backend) -> None:
    for what, tag in (("provisioned", provisioned), ("claim", claim if backend == "offload" else None)):
        if tag is not None and not 0 <= tag <= SEC_TAG_MAX:
            raise UsageError(f"the {what} sec tag {tag} is outside 0..{SEC_TAG_MAX}, the range %CMNG takes",
                             hint="set CONFIG_NRFPROV_PROVISIONED_SEC_TAG / CONFIG_AWS_IOT_SEC_TAG in range")


def check_ca(ca_pem: str, source: str, *, sec_tag: int, now: _dt.datetime) -> None:
    """The CA text that goes into ``sec_tag`` (type 0); ``ConfigError`` naming ``source`` otherwise."""
    text = normalize_pem(ca_pem) if ca_pem.strip() else ""
    blocks = _CERT_BLOCK_RE.findall(text)
    if not blocks:
        raise ConfigError("holds no PEM certificate", path=source,
                          hint="point CONFIG_NRFPROV_CA_FILE at the PEM of the CA that signs your endpoint")
    if "".join(blocks) != text:
        raise ConfigError("holds something besides PEM certificates (the modem stores the file as it is)",
                          path=source, hint="keep only the -----BEGIN CERTIFICATE----- blocks")
    for i, block in enumerate(blocks, 1):
        what = f"CA certificate #{i}"
        try:
            cert = x509.load_pem_x509_certificate(block.encode())
        except ValueError as exc:
            raise ConfigError(f"{what} does not parse: {exc}", path=source) from exc
        _check_dates(cert, what, source, now)
    if '"' in text:
        raise ConfigError('contains a double quote, which AT%CMNG cannot carry', path=source)
    _check_fits(TYPE_CA, len(text), sec_tag, f"the CA ({source})",
                "use a shorter CA file: one root instead of a bundle")


def check_expected_sizes(*, sec_tag: int, with_key: bool) -> None:
    """What the cloud will send must be writable too, before it is asked for."""
    _check_fits(TYPE_CERT, EXPECTED_CERT_PEM, sec_tag, "the issued certificate", "")
    if with_key:
        _check_fits(TYPE_KEY, EXPECTED_KEY_PEM, sec_tag, "the issued private key", "")


def check_claim_folder(inputs: LocalInputs, *, now: _dt.datetime) -> None:
    """``native`` / ``host``: the certs folder's claim certificate and key parse, match and are valid."""
    folder = str(inputs.certs_dir)
    assert inputs.claim_cert_pem is not None and inputs.claim_key_pem is not None
    assert inputs.claim_ca_pem is not None
    if not _CERT_BLOCK_RE.findall(normalize_pem(inputs.claim_ca_pem) if inputs.claim_ca_pem.strip() else ""):
        raise ConfigError("the claim CA file holds no PEM certificate", path=folder)
    try:
        certs = x509.load_pem_x509_certificates(inputs.claim_cert_pem.encode())
    except ValueError as exc:
        raise ConfigError(f"client-cert.pem does not parse: {exc}", path=folder) from exc
    _check_dates(certs[0], "the claim certificate (client-cert.pem)", folder, now)
    try:
        key = key_public_der(inputs.claim_key_pem)
    except CredentialBundleError as exc:
        raise ConfigError(f"private-key.pem: {exc.message}", path=folder) from exc
    cert_key = certs[0].public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    if key != cert_key:
        raise ConfigError("private-key.pem does not belong to client-cert.pem", path=folder,
                          hint="put the claim certificate and its own key in the certs folder")


def check_names(*, flow: Flow, client_id: str, template: str, parameters: Mapping[str, str]) -> None:
    """Client id, template name and parameters as AWS accepts them (after ``{imei}`` expansion)."""
    flows.check_client_id(client_id)
    if flow not in FLEET_FLOWS:
        return
    if not TEMPLATE_NAME_RE.fullmatch(template):
        raise ConfigError(f"template name {template!r} is not a valid AWS provisioning template name "
                          "(1-36 of 0-9 A-Z a-z _ -)", hint="fix CONFIG_NRFPROV_TEMPLATE_NAME")
    for key, value in parameters.items():
        if not 0 < len(key) <= PARAMETER_KEY_LIMIT or len(value) > PARAMETER_VALUE_LIMIT:
            raise ConfigError(f"template parameter {key[:40]!r} is empty or too long for RegisterThing",
                              hint="fix CONFIG_NRFPROV_TEMPLATE_PARAMETERS")


def check_placeholders(parameters: Mapping[str, str]) -> None:
    """Before expansion: every ``{...}`` in a parameter value is one nrfprov fills in."""
    for key, value in parameters.items():
        for found in _PLACEHOLDER_RE.findall(value):
            if found not in _KNOWN_PLACEHOLDERS:
                raise ConfigError(f"template parameter {key} uses the unknown placeholder {found}",
                                  hint=f"known: {', '.join(_KNOWN_PLACEHOLDERS)}")


def _check_fits(cred_type: int, content_len: int, sec_tag: int, what: str, hint: str) -> None:
    size = len(cmng_write_command(sec_tag, cred_type, "")) + content_len + 2  # + CR LF
    if size > AT_COMMAND_LIMIT:
        raise UsageError(f"writing {what} into sec tag {sec_tag} takes a {size}-byte AT%CMNG command, over "
                         f"the modem's {AT_COMMAND_LIMIT}-byte limit", hint=hint or None)


def _check_dates(cert: x509.Certificate, what: str, source: str, now: _dt.datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise ConfigError(f"{what} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC", path=source,
                          hint="check the host clock")
    if now > cert.not_valid_after_utc:
        raise ConfigError(f"{what} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC", path=source,
                          hint="replace it; the modem would refuse the server with it")


__all__ = ["SEC_TAG_MAX", "check_ca", "check_claim_folder", "check_expected_sizes", "check_names",
           "check_placeholders", "check_sec_tags"]
