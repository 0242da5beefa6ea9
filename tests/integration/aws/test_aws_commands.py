"""``nrfprov aws`` deploy / claim / status / destroy / reprovision over real HTTP against a moto server.

What is stubbed and why is in conftest.py: moto's CloudFormation gains the two IoT resource types
it lacks, and the provisioning-template API (absent from moto) is answered by botocore's Stubber
on ``Clients.iot_templates``; every other call goes over HTTP to moto on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.stub import Stubber
from moto.cloudformation.models import cloudformation_backends
from moto_aws import ACCOUNT, REGION, TEMPLATES, template_response

from nrfprov.aws import handler as h
from nrfprov.aws.session import Clients
from nrfprov.cli import main

pytestmark = pytest.mark.integration
CERTS = Path(__file__).resolve().parents[3] / "src" / "nrfprov" / "data"


@pytest.fixture
def templates(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """``expect("describe" | "describe-other")``: the provisioning-template calls the next command
    makes, answered by a Stubber from TEMPLATES (moto has no such API)."""
    pending: list[str] = []
    stubbers: list[Stubber] = []
    real_create = Clients.create.__func__  # type: ignore[attr-defined]

    def create(cls: type[Clients], **kw: Any) -> Clients:
        clients = real_create(cls, **kw)
        stub = Stubber(clients.iot_templates)
        for call in pending:
            name = "nrfprov"
            if call == "describe-other":
                stub.add_response("describe_provisioning_template", {
                    "templateName": name, "enabled": True, "templateBody": json.dumps({"Resources": {}}),
                    "provisioningRoleArn": f"arn:aws:iam::{ACCOUNT}:role/someone-elses"}, {"templateName": name})
            elif name in TEMPLATES:
                stub.add_response("describe_provisioning_template", template_response(name), {"templateName": name})
            else:
                stub.add_client_error("describe_provisioning_template", "ResourceNotFoundException",
                                      "The specified resource does not exist", 404,
                                      expected_params={"templateName": name})
        pending.clear()
        stub.activate()
        stubbers.append(stub)
        return clients

    monkeypatch.setattr(Clients, "create", classmethod(create))

    def expect(*calls: str) -> None:
        pending[:] = list(calls)

    yield expect
    for s in stubbers:
        s.assert_no_pending_responses()  # every expected call was made


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code, out, err = run(capsys, *args, "--json")
    assert "Traceback" not in err
    return code, json.loads(out) if out.strip() else None


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION, endpoint_url=os.environ["AWS_ENDPOINT_URL"])


def test_deploy_claim_status_destroy(aws_env: dict[str, str], templates: Callable[..., None],
                                     capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    iot, lam, logs = client("iot"), client("lambda"), client("logs")
    # 1. Nothing deployed yet.
    templates()
    code, report = run_json(capsys, "aws", "status")
    assert code == 1 and report["stackStatus"] is None and report["fix"] == "nrfprov aws deploy"
    # 2. Deploy: every resource of the plan is created.
    templates("describe")  # the pre-flight check: no template of that name outside the stack
    code, result = run_json(capsys, "aws", "deploy")
    assert code == 0 and result["action"] == "created"
    planned = {r["logicalId"] for r in run_json(capsys, "aws", "deploy", "--dry-run")[1]["resources"]}
    assert {c["logicalId"] for c in result["changes"] if c["action"] == "Add"} == planned
    outs = result["outputs"]
    policies = {p["policyName"] for p in iot.list_policies()["policies"]}
    assert {outs["ClaimPolicyName"], outs["DevicePolicyName"]} <= policies
    rule = iot.get_topic_rule(ruleName=outs["SplitRuleName"])["rule"]
    assert rule["sql"].startswith("SELECT clientid() AS deviceId, topic(2) AS topicId") and not rule["ruleDisabled"]
    fn = lam.get_function(FunctionName=outs["FunctionName"])["Configuration"]
    assert fn["Runtime"] == "python3.14" and fn["Environment"]["Variables"]["DEVICE_POLICY_NAME"] == \
        outs["DevicePolicyName"]
    grants = json.loads(lam.get_policy(FunctionName=outs["FunctionName"])["Policy"])["Statement"]
    sources = sorted(g["Condition"]["ArnLike"]["AWS:SourceArn"] for g in grants)
    assert sources == sorted([f"arn:aws:iot:{REGION}:{ACCOUNT}:rule/{outs['SplitRuleName']}",
                              f"arn:aws:iot:{REGION}:{ACCOUNT}:provisioningtemplate/nrfprov"])
    group = logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{outs['FunctionName']}")["logGroups"][0]
    assert group["retentionInDays"] == 30
    body = json.loads(TEMPLATES["nrfprov"]["templateBody"])
    assert body["Resources"]["policy"]["Properties"]["PolicyName"] == outs["DevicePolicyName"]
    # 3. A second deploy changes nothing (and makes no call to the template API: no stub queued).
    templates()
    code, again = run_json(capsys, "aws", "deploy")
    assert code == 0 and again["action"] == "unchanged" and again["changes"] == []
    code, text, _ = run(capsys, "aws", "deploy")
    assert "nothing changed" in text
    # 4. Status: everything but a claim certificate.
    templates("describe")
    code, report = run_json(capsys, "aws", "status")
    assert code == 1 and report["fix"] == "nrfprov aws claim --out DIR"
    assert [c["state"] for c in report["checks"]].count("ok") == len(report["checks"]) - 1
    # 5. Claim.
    out_dir = tmp_path / "claim"
    templates()
    code, claim = run_json(capsys, "aws", "claim", "--out", str(out_dir))
    assert code == 0
    names = {p.name for p in out_dir.iterdir()}
    assert names == {"ca-cert.pem", "client-cert.pem", "private-key.pem", "aws.conf"}
    assert stat.S_IMODE((out_dir / "private-key.pem").stat().st_mode) == 0o600
    ca = (out_dir / "ca-cert.pem").read_text()
    assert ca == (CERTS / "AmazonRootCA1.pem").read_text().strip() + "\n" + \
        (CERTS / "AmazonRootCA3.pem").read_text().strip() + "\n"
    cert = iot.describe_certificate(certificateId=claim["certificateId"])["certificateDescription"]
    assert cert["status"] == "ACTIVE"
    attached = iot.list_attached_policies(target=cert["certificateArn"])["policies"]
    assert [p["policyName"] for p in attached] == [outs["ClaimPolicyName"]]
    # aws.conf is what `nrfprov provision --overlay aws.conf` reads, and the folder what native TLS reads.
    from nrfprov.config import load_settings
    from nrfprov.transport.credentials import TlsCredentials

    s = load_settings(None, [out_dir / "aws.conf"])
    # moto invents a new endpoint per DescribeEndpoint call (AWS keeps one per account): compare shapes.
    assert s.broker_host == claim["endpoint"] and s.broker_host.endswith(f"-ats.iot.{REGION}.amazonaws.com")
    assert (s.broker_port, s.claim_sec_tag, s.certs_dir) == (8883, 43, str(out_dir))
    assert s.template_name == "nrfprov" and s.parameters() == {"SerialNumber": "{client_id}"}
    TlsCredentials.from_folder(s.certs_dir)  # parses; key and certificate match
    assert "PRIVATE" not in capsys.readouterr().out
    # A second claim into the same folder is refused before anything is created.
    templates()
    code, _, err = run(capsys, "aws", "claim", "--out", str(out_dir))
    assert code == 2 and "already holds a claim identity" in err
    assert len(iot.list_certificates()["certificates"]) == 1
    # 6. All in place.
    templates("describe")
    code, text, _ = run(capsys, "aws", "status")
    assert code == 0 and "all in place" in text
    # 7. A device gets its certificate from the deployed handler code (moto fires no rules, so the
    #    rule's event is handed over here), with the deployed device policy.
    policy = fn["Environment"]["Variables"]["DEVICE_POLICY_NAME"]
    issuer = h.Issuer(iot, client("iot-data"), h.Config(device_policy=policy))
    device = h.dispatch({"deviceId": "dev-1", "topicId": "dev-1"}, issuer)
    assert device["issued"]
    # 8. Destroy: the stack and the claim certificate go, the device keeps its certificate and policy.
    templates()
    code, gone = run_json(capsys, "aws", "destroy")
    assert code == 0 and gone["deletedClaimCertificates"] == [claim["certificateId"]]
    assert gone["keptDevicePolicy"] == outs["DevicePolicyName"] and gone["deviceCertificates"] == 1
    certs = {c["certificateId"]: c["status"] for c in iot.list_certificates()["certificates"]}
    assert certs == {device["certificateId"]: "ACTIVE"}
    assert outs["DevicePolicyName"] in {p["policyName"] for p in iot.list_policies()["policies"]}
    assert outs["ClaimPolicyName"] not in {p["policyName"] for p in iot.list_policies()["policies"]}
    assert iot.list_topic_rules()["rules"] == [] and TEMPLATES == {}
    assert outs["FunctionName"] not in [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    templates()
    assert run_json(capsys, "aws", "status")[1]["fix"] == "nrfprov aws deploy"
    # 9. Deploying again after a destroy works (the kept device policy does not stand in the way).
    templates()  # a split-only stack has no provisioning template to check
    code, again = run_json(capsys, "aws", "deploy", "--flow", "split")
    assert code == 0 and again["action"] == "created" and "TemplateName" not in again["outputs"]


def test_changed_options_update_the_stack(aws_env: dict[str, str], templates: Callable[..., None],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    templates("describe")
    assert run_json(capsys, "aws", "deploy")[0] == 0
    templates()
    # Only a parameter changes here. moto's change sets list no change for a parameter-only update and
    # ignore Conditions (a --flow change adds or removes resources by condition on AWS), so the
    # listed changes and a --flow update are not checked against moto; the effect is.
    code, result = run_json(capsys, "aws", "deploy", "--allow", "nrf-*")
    assert code == 0 and result["action"] == "updated"
    templates()
    assert run_json(capsys, "aws", "deploy", "--allow", "nrf-*")[1]["action"] == "unchanged"
    env = client("lambda").get_function(FunctionName="nrfprov-provisioner")["Configuration"]["Environment"]
    assert env["Variables"]["ALLOWED_DEVICE_IDS"] == "nrf-*"


def test_status_names_a_disabled_rule_and_the_command_that_fixes_it(
    aws_env: dict[str, str], templates: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    templates("describe")
    outs = run_json(capsys, "aws", "deploy")[1]["outputs"]
    client("iot").disable_topic_rule(ruleName=outs["SplitRuleName"])
    templates("describe")
    code, text, _ = run(capsys, "aws", "status")
    assert code == 1 and f"DISABLED  topic rule {outs['SplitRuleName']}" in text
    assert f"fix: aws iot enable-topic-rule --rule-name {outs['SplitRuleName']}" in text


def test_a_template_name_taken_with_another_body_is_refused_before_anything_is_made(
    aws_env: dict[str, str], templates: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    templates("describe-other")
    code, _, err = run(capsys, "aws", "deploy")
    assert code == 5 and "provisioning template named nrfprov already exists outside stack nrfprov" in err
    assert "with another body" in err and "--template-name" in err and "delete-provisioning-template" in err
    templates()
    assert run_json(capsys, "aws", "status")[1]["stackStatus"] is None  # nothing half-made


def _set_stack_status(status: str) -> None:
    # moto cannot make a CloudFormation operation fail on demand: put the stack in the state AWS
    # leaves it in after a failed create / a failed update rollback.
    for stack in cloudformation_backends[ACCOUNT][REGION].stacks.values():
        if stack.name == "nrfprov":
            stack.status = status


@pytest.mark.parametrize(("state", "fix"), [
    ("ROLLBACK_COMPLETE", "nrfprov aws deploy --recreate"),
    ("UPDATE_ROLLBACK_FAILED", "aws cloudformation continue-update-rollback --stack-name nrfprov"),
    ("UPDATE_IN_PROGRESS", "nrfprov aws status"),
])
def test_a_stack_stuck_in_a_failed_state(aws_env: dict[str, str], templates: Callable[..., None],
                                         capsys: pytest.CaptureFixture[str], state: str, fix: str,
                                         tmp_path: Path) -> None:
    templates()
    assert run_json(capsys, "aws", "deploy", "--flow", "split")[0] == 0
    templates()
    claim = run_json(capsys, "aws", "claim", "--out", str(tmp_path / "claim"))[1]
    _set_stack_status(state)
    templates()
    code, _, err = run(capsys, "aws", "deploy", "--flow", "split")
    assert code == 5 and f"stack nrfprov is {state}" in err and fix in err
    templates()
    code, report = run_json(capsys, "aws", "status")
    assert code == 1 and report["stackStatus"] == state and fix in report["fix"]
    if state == "ROLLBACK_COMPLETE":
        templates()
        code, result = run_json(capsys, "aws", "deploy", "--flow", "split", "--recreate")
        assert code == 0 and result["action"] == "created" and result["status"] == "CREATE_COMPLETE"
        # The claim identity already in the field survives, on the new claim policy.
        iot = client("iot")
        desc = iot.describe_certificate(certificateId=claim["certificateId"])["certificateDescription"]
        attached = iot.list_attached_policies(target=desc["certificateArn"])["policies"]
        assert desc["status"] == "ACTIVE" and [p["policyName"] for p in attached] == \
            [result["outputs"]["ClaimPolicyName"]]


def test_a_resource_deleted_by_hand_is_found_and_recreated(
    aws_env: dict[str, str], templates: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    templates()
    outs = run_json(capsys, "aws", "deploy", "--flow", "split")[1]["outputs"]
    client("iot").delete_topic_rule(ruleName=outs["SplitRuleName"])
    templates()
    code, report = run_json(capsys, "aws", "status")
    missing = [c for c in report["checks"] if c["state"] == "missing"]
    assert code == 1 and missing[0]["what"] == f"topic rule {outs['SplitRuleName']}"
    assert report["fix"] == "nrfprov aws deploy --recreate"
    templates()
    assert run_json(capsys, "aws", "deploy", "--flow", "split", "--recreate")[1]["action"] == "created"
    templates()
    checks = run_json(capsys, "aws", "status")[1]["checks"]
    assert [c["what"] for c in checks if c["state"] != "ok"] == ["claim certificates"]


def test_no_credentials_or_region_is_a_usage_error(aws_env: dict[str, str], capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, _, err = run(capsys, "aws", "status")
    assert code == 2 and "no AWS credentials" in err and "AWS_ACCESS_KEY_ID" in err and "AWS_PROFILE" in err
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_REGION")
    code, _, err = run(capsys, "aws", "deploy")
    assert code == 2 and "no AWS region" in err and "--region" in err and "AWS_REGION" in err
    # The plan needs neither.
    code, plan = run_json(capsys, "aws", "deploy", "--dry-run")
    assert code == 0 and len(plan["resources"]) == 10


def test_reprovision_records_a_permission_the_handler_uses(
    aws_env: dict[str, str], templates: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    templates()
    outs = run_json(capsys, "aws", "deploy", "--flow", "split")[1]["outputs"]
    iot = client("iot")
    issuer = h.Issuer(iot, client("iot-data"), h.Config(device_policy=outs["DevicePolicyName"]))
    first = h.dispatch({"deviceId": "dev-2", "topicId": "dev-2"}, issuer)
    assert h.dispatch({"deviceId": "dev-2", "topicId": "dev-2"}, issuer)["errorCode"] == "AlreadyProvisioned"
    templates()
    code, perm = run_json(capsys, "aws", "reprovision", "dev-2", "--hours", "1")
    assert code == 0 and perm["activeCertificates"] == [first["certificateId"]]
    second = h.dispatch({"deviceId": "dev-2", "topicId": "dev-2"}, issuer)
    assert second["issued"] and second["replaced"] == [first["certificateId"]]
    templates()
    code, _, err = run(capsys, "aws", "reprovision", "no-such-thing")
    assert code == 2 and "first provisioning needs no permission" in err


class ThrottlingProxy:
    """Forwards to moto, but answers the first ``n`` CloudFormation DescribeStacks requests with
    AWS's throttling error (HTTP 400, code Throttling), so botocore's real retry path runs."""

    def __init__(self, target: str, n: int) -> None:
        self.target = urlsplit(target)
        self.n = n
        self.throttled = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                if b"Action=DescribeStacks" in body and proxy.throttled < proxy.n:
                    proxy.throttled += 1
                    err = (b'<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">'
                           b"<Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message>"
                           b"</Error><RequestId>t</RequestId></ErrorResponse>")
                    self.send_response(400)
                    self.send_header("Content-Type", "text/xml")
                    self.send_header("Content-Length", str(len(err)))
                    self.end_headers()
                    self.wfile.write(err)
                    return
                conn = http.client.HTTPConnection(proxy.target.hostname, proxy.target.port, timeout=30)
                conn.request(self.command, self.path, body, {k: v for k, v in self.headers.items()})
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = _relay

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ThrottlingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def test_throttling_is_retried_then_reported(aws_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    from nrfprov.aws.status import status
    from nrfprov.errors import AwsError

    with ThrottlingProxy(aws_env["AWS_ENDPOINT_URL"], n=1) as proxy:
        report = status(Clients.create(endpoint_url=proxy.url, max_attempts=3), "nrfprov")
        assert proxy.throttled == 1 and report.stack_status is None  # retried, then answered
    with ThrottlingProxy(aws_env["AWS_ENDPOINT_URL"], n=100) as proxy:
        with pytest.raises(AwsError) as info:
            status(Clients.create(endpoint_url=proxy.url, max_attempts=3), "nrfprov")
        assert proxy.throttled == 3  # botocore standard mode: 3 attempts, then our error
    msg = str(info.value)
    assert "kept throttling DescribeStacks (Throttling) after 3 attempts" in msg and "run the same command" in msg
    assert info.value.exit_code == 5
