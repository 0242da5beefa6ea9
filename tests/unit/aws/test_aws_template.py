"""The CloudFormation template: cfn-lint clean, within CloudFormation's size limit, least privilege.

The policy checks evaluate the template's IoT policies the way AWS IoT matches them: policy
variables substituted for the connection, ``*`` matching any characters (``/`` included), MQTT
wildcards in a topic filter compared literally [AWS IoT developer guide, pub-sub-policy and
iot-policy-variables].
"""

from __future__ import annotations

import ast
import fnmatch
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nrfprov.aws import template as tpl

SRC = Path(__file__).resolve().parents[3] / "src" / "nrfprov"
REGION, ACCOUNT = "eu-west-1", "123456789012"
ARN = f"arn:aws:iot:{REGION}:{ACCOUNT}"


def allowed(statements: list[dict[str, Any]], action: str, resource: str, client_id: str,
            thing: str | None = None, attached: bool = False) -> bool:
    """Whether an Allow statement grants ``action`` on ``resource`` to this connection."""
    for st in statements:
        assert st["Effect"] == "Allow"
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        if action not in actions:
            continue
        cond = st.get("Condition")
        if cond is not None:
            assert cond == {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}
            if not attached:
                continue
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        for pattern in resources:
            pattern = pattern.replace("${iot:ClientId}", client_id)
            if "${iot:Connection.Thing.ThingName}" in pattern:
                if thing is None:
                    continue
                pattern = pattern.replace("${iot:Connection.Thing.ThingName}", thing)
            assert "${" not in pattern, pattern
            if fnmatch.fnmatchcase(resource, pattern):
                return True
    return False


def claim(flow: str) -> list[dict[str, Any]]:
    return tpl.policy_statements("ClaimPolicy", tpl.StackOptions(flow=flow), region=REGION, account=ACCOUNT)


def cfn_lint(path: Path) -> list[str]:
    from cfnlint.api import lint_file

    return [str(m) for m in lint_file(path)]


def test_static_and_rendered_templates_pass_cfn_lint(tmp_path: Path) -> None:
    rendered = tmp_path / "stack.json"
    rendered.write_text(tpl.render_text())
    for path in (SRC / "aws" / "stack.json", rendered):
        assert cfn_lint(path) == [], path


def test_cfn_lint_is_not_blind(tmp_path: Path) -> None:
    # The same check flags a broken template: the Node.js 16 runtime the old CDK stack used.
    doc = tpl.render()
    doc["Resources"]["Function"]["Properties"]["Runtime"] = "nodejs16.x"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    assert any("nodejs16.x" in m for m in cfn_lint(bad))


def test_rendered_template_carries_the_handler_and_the_fleet_template() -> None:
    text = tpl.render_text()
    assert len(text.encode()) <= tpl.TEMPLATE_BODY_LIMIT
    doc = json.loads(text)
    fn = doc["Resources"]["Function"]["Properties"]
    assert fn["Code"]["ZipFile"] == (SRC / "aws" / "handler.py").read_text()
    assert fn["Runtime"] == "python3.14" and fn["Handler"] == "index.handler"
    body, names = doc["Resources"]["FleetTemplate"]["Properties"]["TemplateBody"]["Fn::Sub"]
    assert json.loads(body) == tpl.fleet_template_body()
    assert names == {"DevicePolicyName": {"Ref": "DevicePolicy"}}
    # Fn::Sub must see no variable but the policy name ({"Ref": ...} in the body is plain text).
    assert body.count("${") == 1 and "${DevicePolicyName}" in body


def test_rule_sql_passes_client_id_and_topic_segment() -> None:
    rule = tpl.load_stack()["Resources"]["SplitRule"]["Properties"]["TopicRulePayload"]
    assert rule["Sql"] == "SELECT clientid() AS deviceId, topic(2) AS topicId FROM 'certificate/+/create'"
    assert rule["AwsIotSqlVersion"] == "2016-03-23"
    perm = tpl.load_stack()["Resources"]["SplitRulePermission"]["Properties"]
    assert perm["SourceArn"] == {"Fn::GetAtt": ["SplitRule", "Arn"]} and perm["Principal"] == "iot.amazonaws.com"


@pytest.mark.parametrize("flow", ["split", "fleet", "both"])
def test_claim_policy_grants_nothing_outside_the_requesters_own_topics(flow: str) -> None:
    st = claim(flow)
    me, other = "dev-1", "dev-2"
    for s in st:
        for r in s["Resource"]:
            assert r != "*" and not r.endswith(":*") and not r.endswith("/*/*"), r
    # Anything on another device's split topics, or outside provisioning, is refused.
    for action, resource in [
        ("iot:Receive", f"{ARN}:topic/certificate/{other}/create/accepted/key"),
        ("iot:Receive", f"{ARN}:topic/certificate/{other}/create/accepted/cert"),
        ("iot:Subscribe", f"{ARN}:topicfilter/certificate/+/create/accepted/+"),
        ("iot:Subscribe", f"{ARN}:topicfilter/certificate/{other}/create/accepted/+"),
        ("iot:Subscribe", f"{ARN}:topicfilter/#"),
        ("iot:Subscribe", f"{ARN}:topicfilter/certificate/#"),
        ("iot:Publish", f"{ARN}:topic/certificate/{other}/create"),
        ("iot:Publish", f"{ARN}:topic/certificate/{me}/create/accepted/key"),  # no forged replies
        ("iot:Receive", f"{ARN}:topic/$aws/things/{other}/shadow/update"),
        ("iot:Publish", f"{ARN}:topic/$aws/things/{me}/shadow/update"),
        ("iot:Publish", f"{ARN}:topic/$aws/provisioning-templates/other/provision/json"),
        ("iot:Receive", f"{ARN}:topic/errors"),
    ]:
        assert not allowed(st, action, resource, me), (action, resource)
    assert allowed(st, "iot:Connect", f"{ARN}:client/{me}", me)
    split_ok = [
        ("iot:Publish", f"{ARN}:topic/certificate/{me}/create"),
        ("iot:Subscribe", f"{ARN}:topicfilter/certificate/{me}/create/accepted/+"),
        ("iot:Subscribe", f"{ARN}:topicfilter/certificate/{me}/create/rejected"),
        ("iot:Receive", f"{ARN}:topic/certificate/{me}/create/accepted/key"),
        ("iot:Receive", f"{ARN}:topic/certificate/{me}/create/rejected"),
    ]
    fleet_ok = [
        (a, f"{ARN}:{kind}/$aws/{t}")
        for t in ("certificates/create/json", "certificates/create-from-csr/cbor",
                  "provisioning-templates/nrfprov/provision/json")
        for a, kind in (("iot:Publish", "topic"), ("iot:Subscribe", "topicfilter"))
    ] + [("iot:Receive", f"{ARN}:topic/$aws/certificates/create/json/accepted")]
    for action, resource in split_ok:
        assert allowed(st, action, resource, me) is (flow != "fleet"), (action, resource)
    for action, resource in fleet_ok:
        assert allowed(st, action, resource, me) is (flow != "split"), (action, resource)


def test_the_evaluator_is_not_vacuous() -> None:
    # The workaround's original claim policy (iot:Receive on *) must fail the check above.
    loose = [*claim("split"), {"Effect": "Allow", "Action": "iot:Receive", "Resource": ["*"]}]
    assert allowed(loose, "iot:Receive", f"{ARN}:topic/certificate/dev-2/create/accepted/key", "dev-1")


def test_device_policy_binds_the_connection_to_its_thing() -> None:
    st = tpl.policy_statements("DevicePolicy", tpl.StackOptions(), region=REGION, account=ACCOUNT)
    thing = "dev-1"
    assert allowed(st, "iot:Connect", f"{ARN}:client/{thing}", thing, thing=thing, attached=True)
    assert not allowed(st, "iot:Connect", f"{ARN}:client/{thing}", thing, thing=thing, attached=False)
    assert not allowed(st, "iot:Connect", f"{ARN}:client/dev-2", "dev-2", thing=thing, attached=True)
    assert allowed(st, "iot:Publish", f"{ARN}:topic/$aws/things/{thing}/shadow/update", thing, thing=thing)
    assert allowed(st, "iot:Subscribe", f"{ARN}:topicfilter/$aws/things/{thing}/shadow/update/accepted", thing)
    for action, resource in [
        ("iot:Publish", f"{ARN}:topic/$aws/things/dev-2/shadow/update"),
        ("iot:Receive", f"{ARN}:topic/$aws/things/dev-2/shadow/update/accepted"),
        ("iot:Publish", f"{ARN}:topic/certificate/{thing}/create"),
        ("iot:Subscribe", f"{ARN}:topicfilter/#"),
    ]:
        assert not allowed(st, action, resource, thing, thing=thing, attached=True), (action, resource)


def test_plan_lists_only_the_flows_resources() -> None:
    kinds = {f: {r.logical_id for r in tpl.plan("nrfprov", tpl.StackOptions(flow=f))} for f in tpl.FLOWS}
    assert {"SplitRule", "SplitRulePermission", "Function"} <= kinds["split"]
    assert not {"FleetTemplate", "ProvisioningRole", "HookPermission"} & kinds["split"]
    assert {"FleetTemplate", "ProvisioningRole", "HookPermission", "Function"} <= kinds["fleet"]
    assert "SplitRule" not in kinds["fleet"]
    assert kinds["both"] == set(tpl.load_stack()["Resources"])
    no_hook = {r.logical_id for r in tpl.plan("nrfprov", tpl.StackOptions(flow="fleet", hook=False))}
    assert not {"Function", "FunctionRole", "HookPermission", "FunctionLogGroup"} & no_hook


def test_handler_is_self_contained() -> None:
    # CloudFormation deploys handler.py alone as index.py: standard library only at module level.
    tree = ast.parse((SRC / "aws" / "handler.py").read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            top.add(node.module.split(".")[0])
    assert top and top <= set(sys.stdlib_module_names) | {"__future__"}, top


DEVICE_LAYERS = ("at", "modem", "transport", "mqtt", "provisioning", "sim")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_aws_room_and_device_layers_do_not_import_each_other() -> None:
    aws_files = sorted((SRC / "aws").rglob("*.py"))
    assert aws_files
    for f in aws_files:
        bad = {n for n in _imports(f) for d in DEVICE_LAYERS if n == f"nrfprov.{d}" or n.startswith(f"nrfprov.{d}.")}
        assert not bad, f"{f}: {bad}"
    for d in DEVICE_LAYERS:
        for f in sorted((SRC / d).rglob("*.py")):
            assert not {n for n in _imports(f) if n.startswith("nrfprov.aws")}, f


_NO_BOTO = "import sys; sys.modules['boto3'] = None; sys.modules['botocore'] = None; from nrfprov.cli import main; "


def _no_boto(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _NO_BOTO + f"raise SystemExit(main({args!r}))"],
                          capture_output=True, text=True)


def test_without_boto3_help_and_dry_run_work_and_commands_name_the_extra() -> None:
    assert _no_boto(["--help"]).returncode == 0
    dry = _no_boto(["aws", "deploy", "--dry-run", "--json"])
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert {r["logicalId"] for r in plan["resources"]} == set(tpl.load_stack()["Resources"])
    st = _no_boto(["aws", "status", "--region", REGION])
    assert st.returncode == 2 and "pip install 'nrfprov[aws]'" in st.stderr and "Traceback" not in st.stderr
