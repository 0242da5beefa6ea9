"""``status``: what is deployed, what is missing or disabled, and the one command that fixes it.

Reads the stack, then asks each service whether the resource is really there and switched on: a
topic rule or a provisioning template can be disabled, or deleted, outside CloudFormation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nrfprov.aws.deploy import (
    DEAD,
    UPDATABLE,
    describe_stack,
    failure_reason,
    fix_for,
    outputs,
    parameters,
    policy_targets,
    stack_resources,
)
from nrfprov.aws.handler import error_code
from nrfprov.aws.session import Clients, aws_errors

OK, MISSING, DISABLED, FAILED, BUSY = "ok", "missing", "disabled", "failed", "busy"
RECREATE = "nrfprov aws deploy --recreate"


@dataclass(frozen=True)
class Check:
    what: str
    state: str
    detail: str = ""
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"what": self.what, "state": self.state, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True)
class StatusReport:
    stack: str
    region: str
    stack_status: str | None
    flow: str | None
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.state == OK for c in self.checks)

    @property
    def fix(self) -> str | None:
        """The one command to run next (the first problem's fix)."""
        return next((c.fix for c in self.checks if c.state != OK and c.fix), None)

    def as_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "region": self.region, "stackStatus": self.stack_status, "flow": self.flow,
                "ok": self.ok, "fix": self.fix, "checks": [c.as_dict() for c in self.checks]}


def _missing(exc: BaseException) -> bool:
    return error_code(exc) in ("ResourceNotFoundException", "NoSuchEntity", "NoSuchEntityException")


def _check_rule(clients: Clients, name: str) -> Check:
    what = f"topic rule {name}"
    try:
        rule = clients.iot.get_topic_rule(ruleName=name)["rule"]
    except Exception as exc:
        if _missing(exc):
            return Check(what, MISSING, "deleted outside CloudFormation", RECREATE)
        raise
    if rule.get("ruleDisabled"):
        return Check(what, DISABLED, "split requests are not served", f"aws iot enable-topic-rule --rule-name {name}")
    return Check(what, OK, rule.get("sql", ""))


def _check_template(clients: Clients, name: str, hook_wanted: bool) -> Check:
    what = f"provisioning template {name}"
    try:
        doc = clients.iot_templates.describe_provisioning_template(templateName=name)
    except Exception as exc:
        if _missing(exc):
            return Check(what, MISSING, "deleted outside CloudFormation", RECREATE)
        raise
    if not doc.get("enabled"):
        return Check(what, DISABLED, "RegisterThing is refused",
                     f"aws iot update-provisioning-template --template-name {name} --enabled")
    if hook_wanted and not doc.get("preProvisioningHook"):
        return Check(what, FAILED, "the pre-provisioning hook was removed", "nrfprov aws deploy --recreate")
    return Check(what, OK, "enabled" + (", pre-provisioning hook on" if doc.get("preProvisioningHook") else ""))


def _check_function(clients: Clients, name: str) -> Check:
    what = f"function {name}"
    try:
        conf = clients.lambda_.get_function(FunctionName=name)["Configuration"]
    except Exception as exc:
        if _missing(exc):
            return Check(what, MISSING, "deleted outside CloudFormation", RECREATE)
        raise
    state = conf.get("State", "Active")
    if state not in ("Active", "Pending"):
        return Check(what, FAILED, f"state {state}: {conf.get('StateReason', '')}", RECREATE)
    return Check(what, OK, f"{conf.get('Runtime', '')}, {state}")


def _check_policy(clients: Clients, role: str, name: str) -> Check:
    what = f"{role} policy {name}"
    try:
        clients.iot.get_policy(policyName=name)
    except Exception as exc:
        if _missing(exc):
            return Check(what, MISSING, "deleted outside CloudFormation", RECREATE)
        raise
    return Check(what, OK)


def _check_claims(clients: Clients, policy: str) -> Check:
    active, other = 0, 0
    for arn in policy_targets(clients, policy):
        if ":cert/" not in arn:
            continue
        desc = clients.iot.describe_certificate(certificateId=arn.rpartition("/")[2])["certificateDescription"]
        if desc.get("status") == "ACTIVE":
            active += 1
        else:
            other += 1
    detail = f"{active} active" + (f", {other} not active" if other else "")
    if active == 0:
        return Check("claim certificates", MISSING, detail + ": devices cannot ask for credentials",
                     "nrfprov aws claim --out DIR")
    return Check("claim certificates", OK, detail)


@aws_errors
def status(clients: Clients, stack: str) -> StatusReport:
    doc = describe_stack(clients, stack)
    if doc is None:
        return StatusReport(stack, clients.region, None, None,
                            (Check(f"stack {stack}", MISSING, "not deployed in this region", "nrfprov aws deploy"),))
    st = doc["StackStatus"]
    params = parameters(doc)
    flow = params.get("Flow")
    checks: list[Check] = []
    if st in UPDATABLE:
        checks.append(Check(f"stack {stack}", OK, st))
    else:
        state = BUSY if st.endswith("_IN_PROGRESS") else FAILED
        reason = doc.get("StackStatusReason") or (failure_reason(clients, stack) if st not in ("REVIEW_IN_PROGRESS",)
                                                  else "")
        checks.append(Check(f"stack {stack}", state, f"{st}: {reason}" if reason else st, fix_for(stack, st)))
        if st in DEAD or st == "REVIEW_IN_PROGRESS":
            return StatusReport(stack, clients.region, st, flow, tuple(checks))
    for res in stack_resources(clients, stack):
        rs = str(res.get("ResourceStatus", ""))
        if rs.endswith("FAILED"):
            checks.append(Check(f"{res.get('ResourceType', 'resource')} {res.get('LogicalResourceId', '?')}", FAILED,
                                f"{rs}: {res.get('ResourceStatusReason', '')}", fix_for(stack, st)))
    outs = outputs(doc)
    if outs.get("ClaimPolicyName"):
        checks.append(_check_policy(clients, "claim", outs["ClaimPolicyName"]))
    if outs.get("DevicePolicyName"):
        checks.append(_check_policy(clients, "device", outs["DevicePolicyName"]))
    if outs.get("FunctionName"):
        checks.append(_check_function(clients, outs["FunctionName"]))
    if outs.get("SplitRuleName"):
        checks.append(_check_rule(clients, outs["SplitRuleName"]))
    if outs.get("TemplateName"):
        checks.append(_check_template(clients, outs["TemplateName"], params.get("PreProvisioningHook") == "enabled"))
    if outs.get("ClaimPolicyName"):
        checks.append(_check_claims(clients, outs["ClaimPolicyName"]))
    return StatusReport(stack, clients.region, st, flow, tuple(checks))
