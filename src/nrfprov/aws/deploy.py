"""``deploy`` and ``destroy``: the CloudFormation stack that holds the cloud side.

deploy is idempotent: when the stack already has this template and these parameters it changes
nothing (no change set is even made); otherwise a change set lists what changes, then runs.
A stack in a state no update can start from is reported with the one command that gets it out.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from nrfprov.aws import template as tpl
from nrfprov.aws.handler import error_code
from nrfprov.aws.session import Clients, aws_errors
from nrfprov.errors import AwsError, ConflictError, StackStateError

#: Statuses an update (a change set) can start from [AWS CloudFormation user guide, stack status codes].
UPDATABLE = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE",
                       "IMPORT_ROLLBACK_COMPLETE"})
#: A create that failed leaves a stack that can only be deleted.
DEAD = frozenset({"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED"})
WAIT = {"Delay": 5, "MaxAttempts": 720}  # up to an hour: a first create takes ~1-2 min


def fix_for(stack: str, status: str) -> str:
    """The one command that gets a stack out of ``status``."""
    if status in DEAD:
        return "nrfprov aws deploy --recreate"
    if status == "UPDATE_ROLLBACK_FAILED":
        return f"aws cloudformation continue-update-rollback --stack-name {stack}"
    if status == "DELETE_FAILED":
        return "nrfprov aws destroy"
    if status.endswith("_IN_PROGRESS"):
        return "nrfprov aws status  (wait until the operation in progress ends)"
    return "nrfprov aws deploy"


@dataclass(frozen=True)
class Change:
    action: str  # Add, Modify, Remove
    logical_id: str
    resource_type: str
    replacement: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"action": self.action, "logicalId": self.logical_id, "type": self.resource_type,
                "replacement": self.replacement}


@dataclass(frozen=True)
class DeployResult:
    stack: str
    region: str
    action: str  # created, updated, unchanged
    changes: tuple[Change, ...]
    outputs: dict[str, str]
    status: str

    def as_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "region": self.region, "action": self.action, "status": self.status,
                "changes": [c.as_dict() for c in self.changes], "outputs": self.outputs}


@dataclass(frozen=True)
class DestroyResult:
    stack: str
    existed: bool
    deleted_claim_certificates: tuple[str, ...] = ()
    detached_certificates: tuple[str, ...] = ()
    kept_device_policy: str | None = None
    device_certificates: int = 0
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "existed": self.existed,
                "deletedClaimCertificates": list(self.deleted_claim_certificates),
                "detachedCertificates": list(self.detached_certificates),
                "keptDevicePolicy": self.kept_device_policy, "deviceCertificates": self.device_certificates,
                "notes": list(self.notes)}


# --- reading the stack ----------------------------------------------------------------------------


def describe_stack(clients: Clients, stack: str) -> dict[str, Any] | None:
    try:
        stacks = clients.cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except Exception as exc:
        if error_code(exc) == "ValidationError" and "does not exist" in str(exc):
            return None
        raise
    if not stacks or stacks[0]["StackStatus"] == "DELETE_COMPLETE":
        return None
    found: dict[str, Any] = stacks[0]
    return found


def outputs(stack_doc: dict[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: str(o.get("OutputValue", "")) for o in stack_doc.get("Outputs", [])}


def parameters(stack_doc: dict[str, Any]) -> dict[str, str]:
    return {p["ParameterKey"]: str(p.get("ParameterValue", "")) for p in stack_doc.get("Parameters", [])}


def stack_resources(clients: Clients, stack: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = clients.cloudformation.describe_stack_resources(StackName=stack)["StackResources"]
    return found


def failure_reason(clients: Clients, stack: str) -> str:
    """The first resource failure of the stack's latest operation, from its events."""
    try:
        events = clients.cloudformation.describe_stack_events(StackName=stack)["StackEvents"]
    except Exception:
        return ""
    failed = [e for e in events
              if str(e.get("ResourceStatus", "")).endswith("FAILED") and e.get("ResourceStatusReason")]
    if not failed:
        return ""
    first = failed[-1]  # events are newest first
    return f"{first.get('LogicalResourceId')}: {first.get('ResourceStatusReason')}"


def _current_template(clients: Clients, stack: str) -> Any:
    body = clients.cloudformation.get_template(StackName=stack, TemplateStage="Original")["TemplateBody"]
    return json.loads(body) if isinstance(body, str) else body


# --- deploy -----------------------------------------------------------------------------------------


def _same_fleet_body(existing: str, ours: dict[str, Any]) -> bool:
    try:
        theirs = json.loads(existing)
    except ValueError:
        return False

    def norm(doc: Any) -> Any:
        doc = json.loads(json.dumps(doc))
        for res in (doc.get("Resources") or {}).values() if isinstance(doc, dict) else ():
            if isinstance(res, dict) and res.get("Type") == "AWS::IoT::Policy":
                res.get("Properties", {}).pop("PolicyName", None)  # ours is filled in by CloudFormation
        return doc

    return bool(norm(theirs) == norm(ours))


def _exists(call: Any, **kw: Any) -> bool:
    try:
        call(**kw)
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return False
        raise
    return True


def check_conflicts(clients: Clients, stack: str, options: tpl.StackOptions, owned: set[str]) -> None:
    """Refuse before CloudFormation starts when a name the stack sets is taken outside it."""
    conds = tpl.conditions(tpl.load_stack(), options.parameters())
    function = f"{stack}-provisioner"
    if conds["Function"] and function not in owned and _exists(clients.lambda_.get_function, FunctionName=function):
        raise ConflictError(f"a Lambda function named {function} exists outside stack {stack}",
                            hint=f"delete it (aws lambda delete-function --function-name {function}) or deploy "
                            "with another --stack-name")
    group = f"/aws/lambda/{function}"
    if conds["Function"] and group not in owned:
        groups = clients.logs.describe_log_groups(logGroupNamePrefix=group).get("logGroups", [])
        if any(g.get("logGroupName") == group for g in groups):
            raise ConflictError(f"a log group named {group} exists outside stack {stack}",
                                hint=f"delete it (aws logs delete-log-group --log-group-name {group}) or deploy "
                                "with another --stack-name")
    name = options.template_name
    if conds["Fleet"] and name not in owned:
        try:
            found = clients.iot_templates.describe_provisioning_template(templateName=name)
        except Exception as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            return
        same = _same_fleet_body(str(found.get("templateBody", "")), tpl.fleet_template_body())
        raise ConflictError(
            f"a provisioning template named {name} already exists outside stack {stack} "
            + ("(its body matches nrfprov's, but CloudFormation cannot take it over)" if same
               else "with another body"),
            hint=f"delete it (aws iot delete-provisioning-template --template-name {name}) or deploy with "
            "--template-name OTHER")


def _changes(clients: Clients, stack: str, change_set: str) -> tuple[str, str, list[Change]]:
    cfn = clients.cloudformation
    try:
        cfn.get_waiter("change_set_create_complete").wait(
            ChangeSetName=change_set, StackName=stack, WaiterConfig={"Delay": 2, "MaxAttempts": 150})
    except Exception as exc:
        if type(exc).__name__ != "WaiterError":
            raise
    changes: list[Change] = []
    token: str | None = None
    while True:
        kw: dict[str, Any] = {"ChangeSetName": change_set, "StackName": stack}
        if token:
            kw["NextToken"] = token
        doc = cfn.describe_change_set(**kw)
        for c in doc.get("Changes", []):
            rc = c.get("ResourceChange", {})
            changes.append(Change(rc.get("Action", ""), rc.get("LogicalResourceId", ""), rc.get("ResourceType", ""),
                                  str(rc.get("Replacement", "") or "")))
        token = doc.get("NextToken")
        if not token:
            return str(doc.get("Status", "")), str(doc.get("StatusReason", "") or ""), changes


def _no_changes(text: str) -> bool:
    return "didn't contain changes" in text or "No updates are to be performed" in text


@aws_errors
def _wait_stack(clients: Clients, stack: str, waiter: str) -> None:
    """Wait for a CloudFormation stack operation; a failed one becomes ``StackStateError`` naming the
    stack's state, the first failure reason and the command that fixes it."""
    try:
        clients.cloudformation.get_waiter(waiter).wait(StackName=stack, WaiterConfig=WAIT)
    except Exception as exc:
        if type(exc).__name__ != "WaiterError":  # botocore's WaiterError, not imported at module load
            raise
        after = describe_stack(clients, stack)
        st = after["StackStatus"] if after else "DELETE_COMPLETE"
        raise StackStateError(stack, st, failure_reason(clients, stack), hint=f"run: {fix_for(stack, st)}") from exc


def deploy(clients: Clients, stack: str, options: tpl.StackOptions, *, recreate: bool = False) -> DeployResult:
    """Create or update the stack so it holds ``options``; a second identical call changes nothing."""
    body = tpl.render_text()
    params = options.parameters()
    current = describe_stack(clients, stack)
    kept_claims: tuple[str, ...] = ()
    if current is not None and recreate:
        # Claim certificates survive a recreate: detached now, attached to the new claim policy below.
        kept_claims = destroy(clients, stack, keep_claim_certificates=True).detached_certificates
        current = None
    if current is not None:
        status = current["StackStatus"]
        if status == "REVIEW_IN_PROGRESS":
            current = None  # a change set that never ran: start over with a CREATE change set
        elif status not in UPDATABLE:
            raise StackStateError(stack, status, current.get("StackStatusReason") or failure_reason(clients, stack),
                                  hint=f"run: {fix_for(stack, status)}")
    owned: set[str] = set()
    if current is not None:
        if parameters(current) == params and _current_template(clients, stack) == json.loads(body):
            return DeployResult(stack, clients.region, "unchanged", (), outputs(current), current["StackStatus"])
        owned = {str(r.get("PhysicalResourceId")) for r in stack_resources(clients, stack)}
    check_conflicts(clients, stack, options, owned)
    cfn = clients.cloudformation
    name = f"nrfprov-{uuid.uuid4().hex[:12]}"
    kind = "CREATE" if current is None else "UPDATE"
    try:
        cfn.create_change_set(
            StackName=stack, ChangeSetName=name, ChangeSetType=kind, TemplateBody=body,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
            Capabilities=["CAPABILITY_IAM"], Description="nrfprov aws deploy",
            Tags=[{"Key": "nrfprov", "Value": "aws-deploy"}],
        )
    except Exception as exc:
        if error_code(exc) == "ValidationError" and _no_changes(str(exc)):
            assert current is not None
            return DeployResult(stack, clients.region, "unchanged", (), outputs(current), current["StackStatus"])
        raise
    status, reason, changes = _changes(clients, stack, name)
    if status == "FAILED":
        if _no_changes(reason) and current is not None:
            cfn.delete_change_set(ChangeSetName=name, StackName=stack)
            return DeployResult(stack, clients.region, "unchanged", (), outputs(current), current["StackStatus"])
        raise AwsError(f"CloudFormation could not plan the change: {reason}", operation="CreateChangeSet",
                       hint="nrfprov aws status shows what is deployed")
    cfn.execute_change_set(ChangeSetName=name, StackName=stack)
    _wait_stack(clients, stack, "stack_create_complete" if kind == "CREATE" else "stack_update_complete")
    after = describe_stack(clients, stack)
    assert after is not None
    claim_policy = outputs(after).get("ClaimPolicyName")
    for cert_id in kept_claims if claim_policy else ():
        arn = clients.iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["certificateArn"]
        clients.iot.attach_policy(policyName=claim_policy, target=arn)
    return DeployResult(stack, clients.region, "created" if kind == "CREATE" else "updated", tuple(changes),
                        outputs(after), after["StackStatus"])


# --- destroy ------------------------------------------------------------------------------------------


def policy_targets(clients: Clients, policy: str) -> list[str]:
    targets: list[str] = []
    marker: str | None = None
    while True:
        kw: dict[str, Any] = {"policyName": policy}
        if marker:
            kw["marker"] = marker
        try:
            page = clients.iot.list_targets_for_policy(**kw)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return targets
            raise
        targets += list(page.get("targets", []))
        marker = page.get("nextMarker")
        if not marker:
            return targets


def _is_claim_only(clients: Clients, cert_arn: str, claim_policy: str) -> bool:
    """A certificate ``nrfprov aws claim`` made: only the claim policy, no thing."""
    things = clients.iot.list_principal_things(principal=cert_arn).get("things", [])
    policies = [p["policyName"] for p in clients.iot.list_attached_policies(target=cert_arn).get("policies", [])]
    return not things and policies == [claim_policy]


@aws_errors
def destroy(clients: Clients, stack: str, *, keep_claim_certificates: bool = False) -> DestroyResult:
    """Delete the stack. Claim certificates go with it (``keep_claim_certificates``: only detached);
    device certificates are never touched, and the device policy stays (DeletionPolicy Retain) so
    provisioned devices keep connecting."""
    current = describe_stack(clients, stack)
    if current is None:
        return DestroyResult(stack, existed=False)
    status = current["StackStatus"]
    if status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS":
        raise StackStateError(stack, status, "", hint=f"run: {fix_for(stack, status)}")
    outs = outputs(current)
    claim_policy = outs.get("ClaimPolicyName", "")
    deleted: list[str] = []
    detached: list[str] = []
    notes: list[str] = []
    if claim_policy:
        # CloudFormation cannot delete a policy that is still attached.
        for arn in policy_targets(clients, claim_policy):
            cert_id = arn.rpartition("/")[2]
            claim_only = ":cert/" in arn and _is_claim_only(clients, arn, claim_policy)
            clients.iot.detach_policy(policyName=claim_policy, target=arn)
            if not claim_only or keep_claim_certificates:
                detached.append(cert_id)
                continue
            clients.iot.update_certificate(certificateId=cert_id, newStatus="INACTIVE")
            try:
                clients.iot.delete_certificate(certificateId=cert_id)
                deleted.append(cert_id)
            except Exception as exc:
                notes.append(f"claim certificate {cert_id} is INACTIVE but not deleted ({error_code(exc)}); "
                             f"delete it later: aws iot delete-certificate --certificate-id {cert_id}")
    device_policy = outs.get("DevicePolicyName") or None
    device_certs = len(policy_targets(clients, device_policy)) if device_policy else 0
    cfn = clients.cloudformation
    cfn.delete_stack(StackName=stack)
    _wait_stack(clients, stack, "stack_delete_complete")
    return DestroyResult(stack, True, tuple(deleted), tuple(detached), device_policy, device_certs, tuple(notes))
