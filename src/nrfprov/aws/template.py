"""The CloudFormation template: load, fill in, and plan -- no AWS calls, no boto3.

``stack.json`` holds every declarative resource. Two strings are filled in at deploy time so that
each exists once in the repository: the function code (``handler.py``, inline ``ZipFile``) and the
Fleet Provisioning template body (``fleet_template.json``, into an ``Fn::Sub`` that names the device
policy). :func:`resolve` evaluates the few intrinsic functions the template uses, for the plan and
for tests that check the policies.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

#: CreateStack/CreateChangeSet accept a TemplateBody of at most 51,200 bytes; larger needs S3
#: [AWS CloudFormation API reference, API_CreateStack, TemplateBody].
TEMPLATE_BODY_LIMIT = 51_200
#: A provisioning template body is at most 10,240 characters [AWS IoT API reference,
#: API_CreateProvisioningTemplate, templateBody].
FLEET_BODY_LIMIT = 10_240
FLOWS = ("split", "fleet", "both")
TEMPLATE_NAME_RE = re.compile(r"[0-9A-Za-z_-]{1,36}")
#: CloudFormation stack names: a letter, then letters, digits and hyphens, at most 128.
STACK_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,127}")
NO_VALUE = object()

#: What each resource is for (printed by the plan and by ``deploy``).
PURPOSES: dict[str, str] = {
    "ClaimPolicy": "claim identity: connect as its client id, only its own provisioning topics",
    "DevicePolicy": "provisioned devices: connect as their thing, only $aws/things/<thing>/ (kept on destroy)",
    "FunctionLogGroup": "the function's logs (every issue and refusal), with retention",
    "FunctionRole": "what the function may do: registry, certificates, publish replies, write logs",
    "Function": "issues split-flow certificates; pre-provisioning hook for Fleet Provisioning",
    "SplitRule": "IoT rule on certificate/+/create -> the function",
    "SplitRulePermission": "lets IoT invoke the function, only from this rule",
    "ProvisioningRole": "lets Fleet Provisioning create things and certificates (AWSIoTThingsRegistration)",
    "HookPermission": "lets IoT invoke the function as hook, only from this provisioning template",
    "FleetTemplate": "Fleet Provisioning template: thing <SerialNumber>, active certificate, device policy",
}


def _text(name: str) -> str:
    return resources.files("nrfprov.aws").joinpath(name).read_text(encoding="utf-8")


def load_stack() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_text("stack.json"))
    return doc


def fleet_template_body() -> dict[str, Any]:
    """The provisioning template document (the stand-in loads this same file)."""
    doc: dict[str, Any] = json.loads(_text("fleet_template.json"))
    return doc


def handler_source() -> str:
    return _text("handler.py")


@dataclass(frozen=True)
class StackOptions:
    flow: str = "both"
    template_name: str = "nrfprov"
    allowed: tuple[str, ...] = ()
    reserved: tuple[str, ...] = ()
    hook: bool = True
    log_retention_days: int = 30

    def parameters(self) -> dict[str, str]:
        return {
            "Flow": self.flow,
            "TemplateName": self.template_name,
            "AllowedDeviceIds": ",".join(self.allowed),
            "ReservedDeviceIds": ",".join(self.reserved),
            "PreProvisioningHook": "enabled" if self.hook else "disabled",
            "LogRetentionDays": str(self.log_retention_days),
        }


def render() -> dict[str, Any]:
    """The template with the function code and the provisioning template body filled in."""
    doc = load_stack()
    res = doc["Resources"]
    res["Function"]["Properties"]["Code"]["ZipFile"] = handler_source()
    body = json.dumps(fleet_template_body(), separators=(",", ":"), sort_keys=True)
    if len(body) > FLEET_BODY_LIMIT:
        raise ValueError(f"fleet_template.json is {len(body)} characters, over AWS's {FLEET_BODY_LIMIT}")
    res["FleetTemplate"]["Properties"]["TemplateBody"] = {
        "Fn::Sub": [body, {"DevicePolicyName": {"Ref": "DevicePolicy"}}]
    }
    return doc


def render_text() -> str:
    text = json.dumps(render(), separators=(",", ":"), sort_keys=True)
    size = len(text.encode())
    if size > TEMPLATE_BODY_LIMIT:
        raise ValueError(f"the rendered template is {size} bytes, over CloudFormation's {TEMPLATE_BODY_LIMIT}")
    return text


# --- a small evaluator for the intrinsic functions stack.json uses --------------------------------


def conditions(doc: Mapping[str, Any], params: Mapping[str, str]) -> dict[str, bool]:
    out: dict[str, bool] = {}

    def ev(expr: Any) -> bool:
        (fn, arg), = expr.items()
        if fn == "Condition":
            return out.get(arg) if arg in out else ev(doc["Conditions"][arg])  # type: ignore[return-value]
        if fn == "Fn::Equals":
            a, b = (resolve(x, params, out) for x in arg)
            return bool(a == b)
        if fn == "Fn::Or":
            return any(ev(x) for x in arg)
        if fn == "Fn::And":
            return all(ev(x) for x in arg)
        if fn == "Fn::Not":
            return not ev(arg[0])
        raise ValueError(f"unsupported condition function {fn}")

    for name, expr in doc.get("Conditions", {}).items():
        out[name] = ev(expr)
    return out


def resolve(value: Any, params: Mapping[str, str], conds: Mapping[str, bool],
            pseudo: Mapping[str, str] | None = None) -> Any:
    """Evaluate Ref / Fn::Sub / Fn::If / Fn::GetAtt; resources resolve to ``<LogicalId>`` /
    ``<LogicalId.Attr>`` placeholders. ``AWS::NoValue`` entries are dropped from lists and maps."""
    pseudo = dict(pseudo or {"AWS::Region": "<region>", "AWS::AccountId": "<account>",
                              "AWS::Partition": "aws", "AWS::StackName": "<stack>"})

    def ref(name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in pseudo:
            return pseudo[name]
        if name in params:
            return params[name]
        return f"<{name}>"

    def sub(text: str, local: Mapping[str, Any]) -> str:
        def repl(m: re.Match[str]) -> str:
            inner = m.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"
            if inner in local:
                return str(local[inner])
            if "." in inner:
                return f"<{inner}>"
            return str(ref(inner))

        return re.sub(r"\$\{([^}]*)\}", repl, text)

    def ev(v: Any) -> Any:
        if isinstance(v, list):
            return [x for x in (ev(i) for i in v) if x is not NO_VALUE]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (k, arg), = v.items()
            if k == "Ref":
                return ref(arg)
            if k == "Fn::Sub":
                if isinstance(arg, str):
                    return sub(arg, {})
                return sub(arg[0], {n: ev(x) for n, x in arg[1].items()})
            if k == "Fn::If":
                return ev(arg[1] if conds[arg[0]] else arg[2])
            if k == "Fn::GetAtt":
                return f"<{arg[0]}.{arg[1]}>"
        return {k: x for k, x in ((k, ev(i)) for k, i in v.items()) if x is not NO_VALUE}

    return ev(value)


@dataclass(frozen=True)
class PlannedResource:
    logical_id: str
    resource_type: str
    name: str
    purpose: str

    def as_dict(self) -> dict[str, str]:
        return {"logicalId": self.logical_id, "type": self.resource_type, "name": self.name,
                "purpose": self.purpose}


_NAME_PROPERTIES = ("FunctionName", "LogGroupName", "TemplateName", "PolicyName", "RuleName")


def plan(stack_name: str, options: StackOptions) -> list[PlannedResource]:
    """Every resource the stack holds for these options, with its name and purpose."""
    doc = load_stack()
    params = options.parameters()
    conds = conditions(doc, params)
    pseudo = {"AWS::Region": "<region>", "AWS::AccountId": "<account>", "AWS::Partition": "aws",
              "AWS::StackName": stack_name}
    out = []
    for lid, res in doc["Resources"].items():
        if "Condition" in res and not conds[res["Condition"]]:
            continue
        props = res.get("Properties", {})
        name = "(named by CloudFormation)"
        for key in _NAME_PROPERTIES:
            if key in props and res["Type"] != "AWS::Lambda::Permission":
                name = str(resolve(props[key], params, conds, pseudo))
                break
        out.append(PlannedResource(lid, res["Type"], name, PURPOSES.get(lid, "")))
    return out


def policy_statements(logical_id: str, options: StackOptions, *, region: str = "eu-west-1",
                      account: str = "123456789012") -> list[dict[str, Any]]:
    """The statements of an IoT policy in the template, resolved for ``options``."""
    doc = load_stack()
    params = options.parameters()
    conds = conditions(doc, params)
    pseudo = {"AWS::Region": region, "AWS::AccountId": account, "AWS::Partition": "aws",
              "AWS::StackName": "nrfprov"}
    document = resolve(copy.deepcopy(doc["Resources"][logical_id]["Properties"]["PolicyDocument"]),
                       params, conds, pseudo)
    statements: list[dict[str, Any]] = document["Statement"]
    return statements
