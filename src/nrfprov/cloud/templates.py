"""Provisioning templates: a subset of AWS's template body, one JSON document per template.

The template ``nrfprov`` is the document ``nrfprov aws deploy`` deploys, ``src/nrfprov/aws/fleet_template.json``,
with its one CloudFormation substitution (``${DevicePolicyName}``) filled in with the stand-in's device
policy, as ``Fn::Sub`` fills it in on AWS. Other templates live in ``<state>/templates/<name>.json``.

Both use AWS's own shape [provision-template]: ``Parameters`` (``Type: String``, optional ``Default``),
``Resources`` with an ``AWS::IoT::Thing`` (``ThingName``, optional ``AttributePayload.attributes``), an
optional ``AWS::IoT::Certificate`` (``Status``), ``AWS::IoT::Policy`` resources, and an optional
``DeviceConfiguration`` string map. Values may be literals, ``{"Ref": P}`` or ``{"Fn::Join": [delimiter,
[parts...]]}``. A policy is attached by name (``PolicyName``); an inline ``PolicyDocument`` is not
evaluated and stands for the stand-in's device rights (see acl.device_rules). Without a policy a
provisioned certificate has no rights, as on AWS.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

DEFAULT_TEMPLATE_NAME = "nrfprov"
#: The deployed document and the CloudFormation variable in it that names the device policy.
PACKAGE_TEMPLATE = ("nrfprov.aws", "fleet_template.json")
DEVICE_POLICY_VARIABLE = "${DevicePolicyName}"

# Template names as AWS allows them: [0-9A-Za-z_-]{1,36} [API_CreateProvisioningTemplate].
TEMPLATE_NAME_RE = re.compile(r"[0-9A-Za-z_-]{1,36}")
# AWS caps a template body at 10240 chars [API_CreateProvisioningTemplate].
MAX_TEMPLATE_BYTES = 10240
# RegisterThing parameters: keys <= 2048, values <= 4096 chars [API_RegisterThing].
MAX_PARAM_KEY = 2048
MAX_PARAM_VALUE = 4096


class TemplateNotFound(Exception):
    pass


class TemplateError(Exception):
    """The parameters do not satisfy the template (or the template itself is broken)."""


@dataclass(frozen=True)
class Outcome:
    thing_name: str
    attributes: dict[str, str]
    certificate_status: str
    device_configuration: dict[str, str]
    #: Policy names to attach; None for an inline policy document (the stand-in's device rights).
    policies: tuple[str | None, ...] = ()


def template_dir(state_dir: Path) -> Path:
    return state_dir / "templates"


def ensure_dir(state_dir: Path) -> None:
    template_dir(state_dir).mkdir(parents=True, exist_ok=True)


def package_template(device_policy: str) -> dict[str, Any]:
    """The deployed provisioning template with ``${DevicePolicyName}`` filled in."""
    package, name = PACKAGE_TEMPLATE
    text = resources.files(package).joinpath(name).read_text(encoding="utf-8")
    body: dict[str, Any] = json.loads(text.replace(DEVICE_POLICY_VARIABLE, device_policy))
    return body


def load(state_dir: Path, name: str, *, device_policy: str) -> dict[str, Any]:
    if TEMPLATE_NAME_RE.fullmatch(name) is None:
        raise TemplateNotFound(f"Template {name} does not exist.")
    if name == DEFAULT_TEMPLATE_NAME:
        return package_template(device_policy)
    path = template_dir(state_dir) / f"{name}.json"
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise TemplateNotFound(f"Template {name} does not exist.") from exc
    if len(raw) > MAX_TEMPLATE_BYTES:
        raise TemplateError(f"Template {name} is {len(raw)} bytes, over AWS's {MAX_TEMPLATE_BYTES}")
    body = json.loads(raw)
    if not isinstance(body, dict):
        raise TemplateError(f"Template {name} is not a JSON object")
    return body


def _resolve(value: Any, params: dict[str, str]) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Ref"}:
        ref = value["Ref"]
        if ref not in params:
            raise TemplateError(f"Parameter {ref} is not provided.")
        return params[ref]
    if isinstance(value, dict) and set(value) == {"Fn::Join"}:
        args = value["Fn::Join"]
        if not (isinstance(args, list) and len(args) == 2 and isinstance(args[1], list)):
            raise TemplateError("Fn::Join needs [delimiter, [values]]")
        return str(args[0]).join(_resolve(v, params) for v in args[1])
    raise TemplateError(f"unsupported template value {value!r} (use a string, Ref or Fn::Join)")


def evaluate(body: dict[str, Any], parameters: dict[str, str], certificate_id: str) -> Outcome:
    """Apply ``parameters`` to a template body; raises TemplateError when a parameter is missing."""
    declared = body.get("Parameters", {})
    params: dict[str, str] = {}
    for pname, spec in declared.items():
        if pname == "AWS::IoT::Certificate::Id":
            continue
        if pname in parameters:
            params[pname] = parameters[pname]
        elif isinstance(spec, dict) and "Default" in spec:
            params[pname] = str(spec["Default"])
        else:
            raise TemplateError(f"Parameter {pname} is required but was not provided.")
    params["AWS::IoT::Certificate::Id"] = certificate_id
    thing_name: str | None = None
    attributes: dict[str, str] = {}
    status = "ACTIVE"
    policies: list[str | None] = []
    for res in body.get("Resources", {}).values():
        props = res.get("Properties", {})
        if res.get("Type") == "AWS::IoT::Thing":
            thing_name = _resolve(props.get("ThingName"), params)
            attrs = props.get("AttributePayload", {}).get("attributes", {})
            attributes = {k: _resolve(v, params) for k, v in attrs.items()}
        elif res.get("Type") == "AWS::IoT::Certificate" and "Status" in props:
            status = _resolve(props["Status"], params)
        elif res.get("Type") == "AWS::IoT::Policy":
            policies.append(_resolve(props["PolicyName"], params) if "PolicyName" in props else None)
    if thing_name is None:
        raise TemplateError("template has no AWS::IoT::Thing resource")
    config = {k: _resolve(v, params) for k, v in body.get("DeviceConfiguration", {}).items()}
    return Outcome(thing_name, attributes, status, config, tuple(policies))
