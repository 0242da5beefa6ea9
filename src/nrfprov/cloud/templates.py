"""Provisioning templates: a subset of AWS's template body, one JSON file per template.

Files live in ``<state>/templates/<name>.json`` and use AWS's own shape [provision-template]:
``Parameters`` (``Type: String``, optional ``Default``), ``Resources`` with an ``AWS::IoT::Thing``
(``ThingName``, optional ``AttributePayload.attributes``), an optional ``AWS::IoT::Certificate``
(``Status``), and an optional ``DeviceConfiguration`` string map. Values may be literals, ``{"Ref": P}``
or ``{"Fn::Join": [delimiter, [parts...]]}``. Policies in the template are not evaluated: a provisioned
device gets the stand-in's fixed device rights (see acl.device_rules).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_TEMPLATE_NAME = "nrfprov"

DEFAULT_TEMPLATE: dict[str, Any] = {
    "Parameters": {
        "SerialNumber": {"Type": "String"},
        "AWS::IoT::Certificate::Id": {"Type": "String"},
    },
    "Resources": {
        "thing": {
            "Type": "AWS::IoT::Thing",
            "Properties": {"ThingName": {"Ref": "SerialNumber"}},
        },
        "certificate": {
            "Type": "AWS::IoT::Certificate",
            "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"},
        },
        "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "nrfprov-device"}},
    },
    "DeviceConfiguration": {},
}

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


def template_dir(state_dir: Path) -> Path:
    return state_dir / "templates"


def ensure_default(state_dir: Path) -> None:
    d = template_dir(state_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{DEFAULT_TEMPLATE_NAME}.json"
    if not path.exists():
        path.write_text(json.dumps(DEFAULT_TEMPLATE, indent=2) + "\n")


def load(state_dir: Path, name: str) -> dict[str, Any]:
    if TEMPLATE_NAME_RE.fullmatch(name) is None:
        raise TemplateNotFound(f"Template {name} does not exist.")
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
    for res in body.get("Resources", {}).values():
        props = res.get("Properties", {})
        if res.get("Type") == "AWS::IoT::Thing":
            thing_name = _resolve(props.get("ThingName"), params)
            attrs = props.get("AttributePayload", {}).get("attributes", {})
            attributes = {k: _resolve(v, params) for k, v in attrs.items()}
        elif res.get("Type") == "AWS::IoT::Certificate" and "Status" in props:
            status = _resolve(props["Status"], params)
    if thing_name is None:
        raise TemplateError("template has no AWS::IoT::Thing resource")
    config = {k: _resolve(v, params) for k, v in body.get("DeviceConfiguration", {}).items()}
    return Outcome(thing_name, attributes, status, config)
