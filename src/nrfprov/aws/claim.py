"""``claim``: a claim certificate for the deployed stack, written as a certs folder + ``aws.conf``.

The folder has the layout the native TLS backend reads (docs/transports.md): ``ca-cert.pem`` (Amazon
Root CA 1 + 3), ``client-cert.pem``, ``private-key.pem`` (0600). ``aws.conf`` is a Kconfig fragment
for ``nrfprov provision --overlay aws.conf``: the ATS data endpoint [AWS IoT developer guide,
iot-connect-devices: DescribeEndpoint with endpointType iot:Data-ATS], port, claim sec tag, the
certs folder and, for Fleet Provisioning, the template name and parameters.

Nothing half-made survives a failure: if the policy cannot be attached or a file cannot be
written, the certificate is deactivated and deleted again.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nrfprov.aws.deploy import describe_stack, outputs, parameters
from nrfprov.aws.handler import error_code
from nrfprov.aws.session import Clients, aws_errors, translate
from nrfprov.errors import AwsError, AwsSetupError, NrfprovError
from nrfprov.paths import builtin_ca_paths

CA_FILE, CERT_FILE, KEY_FILE, CONF_FILE = "ca-cert.pem", "client-cert.pem", "private-key.pem", "aws.conf"
DEFAULT_PORT = 8883
DEFAULT_SEC_TAG = 43  # the NCS sample's claim sec tag


def read_amazon_root_cas(paths: Sequence[Path] | None = None) -> str:
    """Amazon Root CA 1 followed by CA 3, from the first directory that has both.

    AWS IoT presents a chain to CA 1 or CA 3 depending on the negotiated suite [AWS IoT developer
    guide, server-authentication], so a device should trust both.
    """
    files = tuple(paths) if paths is not None else builtin_ca_paths()
    if all(p.is_file() for p in files):
        return "".join(p.read_text(encoding="ascii").strip() + "\n" for p in files)
    raise AwsSetupError("Amazon Root CA 1 and 3 were not found: " + ", ".join(str(p) for p in files),
                        hint="reinstall nrfprov; the CA files ship with it")


@dataclass(frozen=True)
class ClaimResult:
    certificate_id: str
    out_dir: Path
    endpoint: str
    files: tuple[Path, ...]
    flow: str
    ca_pem: str
    cert_pem: str
    #: The claim key, for writing into a modem sec tag; never printed or logged (and not in repr).
    key_pem: str = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"certificateId": self.certificate_id, "outDir": str(self.out_dir), "endpoint": self.endpoint,
                "files": [str(f) for f in self.files], "flow": self.flow}


def _quote(value: str) -> str:
    # Kconfig string: backslash first, then the quote [zephyr doc/build/kconfig/setting.rst].
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def kconfig_fragment(*, stack: str, region: str, certificate_id: str, endpoint: str, port: int, sec_tag: int,
                     certs_dir: Path, flow: str, template_name: str | None) -> str:
    lines = [
        f"# nrfprov aws claim: claim identity of stack {stack} in {region}, certificate {certificate_id}",
        f"CONFIG_AWS_IOT_BROKER_HOST_NAME={_quote(endpoint)}",
        f"CONFIG_AWS_IOT_PORT={port}",
        "# modem TLS (offload): the claim credentials live in this sec tag (nrfprov aws claim --port)",
        f"CONFIG_AWS_IOT_SEC_TAG={sec_tag}",
        "# native TLS: the claim credentials are read from this folder",
        f"CONFIG_NRFPROV_CERTS_DIR={_quote(str(certs_dir))}",
    ]
    if flow == "split":
        lines.append('CONFIG_NRFPROV_FLOW="split"')
    elif flow == "fleet":
        lines += ["# Fleet Provisioning only: CSR (fits the modem's TLS buffer); combined needs native TLS",
                  'CONFIG_NRFPROV_FLOW="csr"']
    if template_name:
        lines += [f"CONFIG_NRFPROV_TEMPLATE_NAME={_quote(template_name)}",
                  "# the thing name; {client_id} and {imei} are filled in per device",
                  'CONFIG_NRFPROV_TEMPLATE_PARAMETERS="SerialNumber={client_id}"']
    return "\n".join(lines) + "\n"


def _write_files(out_dir: Path, files: Iterable[tuple[str, str, int]]) -> list[Path]:
    """Write each (name, text, mode) via a temporary file in ``out_dir`` and an atomic rename."""
    written: list[Path] = []
    for name, text, mode in files:
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.")
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(text)
            os.replace(tmp, out_dir / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            for done in written:  # no half-written identity is left behind
                done.unlink(missing_ok=True)
            raise
        written.append(out_dir / name)
    return written


def _rollback(clients: Clients, policy: str, arn: str, cert_id: str, attached: bool) -> str | None:
    """Deactivate and delete a claim certificate that was not delivered; a note if that failed."""
    try:
        if attached:
            clients.iot.detach_policy(policyName=policy, target=arn)
        clients.iot.update_certificate(certificateId=cert_id, newStatus="INACTIVE")
        clients.iot.delete_certificate(certificateId=cert_id)
    except Exception as exc:
        return (f"certificate {cert_id} could not be removed ({error_code(exc) or type(exc).__name__}); "
                "`nrfprov aws status` lists it; `nrfprov aws destroy` removes it with the stack")
    return None


@aws_errors
def create_claim(clients: Clients, stack: str, out_dir: Path, *, port: int = DEFAULT_PORT,
                 sec_tag: int = DEFAULT_SEC_TAG, ca_paths: Sequence[Path] | None = None) -> ClaimResult:
    out_dir = Path(out_dir).expanduser().resolve()
    for name in (CERT_FILE, KEY_FILE):
        if (out_dir / name).exists():
            raise AwsSetupError(f"{out_dir / name} exists: {out_dir} already holds a claim identity",
                                hint="choose another --out DIR, or move that folder away first")
    ca_pem = read_amazon_root_cas(ca_paths)
    doc = describe_stack(clients, stack)
    if doc is None:
        raise AwsSetupError(f"stack {stack} is not deployed in {clients.region}", hint="run: nrfprov aws deploy")
    outs = outputs(doc)
    policy = outs.get("ClaimPolicyName")
    if not policy:
        raise AwsError(f"stack {stack} ({doc['StackStatus']}) has no claim policy", hint="run: nrfprov aws status")
    flow = parameters(doc).get("Flow", "both")
    endpoint = str(clients.iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"])
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    created = clients.iot.create_keys_and_certificate(setAsActive=True)
    arn, cert_id = created["certificateArn"], created["certificateId"]
    attached = False
    try:
        clients.iot.attach_policy(policyName=policy, target=arn)
        attached = True
        conf = kconfig_fragment(stack=stack, region=clients.region, certificate_id=cert_id, endpoint=endpoint,
                                port=port, sec_tag=sec_tag, certs_dir=out_dir, flow=flow,
                                template_name=outs.get("TemplateName"))
        files = _write_files(out_dir, [
            (KEY_FILE, created["keyPair"]["PrivateKey"], 0o600),
            (CERT_FILE, created["certificatePem"], 0o644),
            (CA_FILE, ca_pem, 0o644),
            (CONF_FILE, conf, 0o644),
        ])
    except BaseException as exc:
        note = _rollback(clients, policy, arn, cert_id, attached)
        if isinstance(exc, OSError):
            raise AwsSetupError(f"cannot write the claim files to {out_dir}: {exc}",
                                hint=note or "the certificate was removed again; fix the folder and retry") from exc
        ours = exc if isinstance(exc, NrfprovError) else translate(exc)
        if ours is None or note is None:
            raise
        ours.hint = f"{ours.hint}; {note}" if ours.hint else note
        if ours is exc:
            raise
        raise ours from exc
    return ClaimResult(cert_id, out_dir, endpoint, tuple(files), flow, ca_pem, created["certificatePem"],
                       created["keyPair"]["PrivateKey"])
