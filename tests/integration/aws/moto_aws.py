"""moto as the AWS stand-in for the ``nrfprov aws`` commands: what it lacks, filled in narrowly.

moto (5.2) is the registry and CloudFormation engine. Where it falls short of AWS, this file fills
the gap as narrowly as it can and says so:

- moto's CloudFormation has no ``AWS::IoT::TopicRule`` and no ``AWS::IoT::ProvisioningTemplate``
  (it refuses any template that references them). Two resource models are registered here: the
  topic rule is created in moto's own IoT backend (so ``GetTopicRule`` over HTTP sees it; rules
  still never fire), the provisioning template is recorded in :data:`TEMPLATES`.
- moto implements no provisioning-template API at all (Describe/Create/...): the commands make
  those calls on a client of their own (``Clients.iot_templates``), which the tests stub with
  botocore's Stubber, answering from :data:`TEMPLATES`.
- moto's ``ExecuteChangeSet`` does not compute the stack's outputs (they stay as they were before
  the resources existed); AWS does. The outputs are recomputed after each execution here.
- moto's ``AWS::IoT::Policy`` has no physical id, so ``Ref`` of it yields nothing; AWS returns the
  policy name [CloudFormation template reference, AWS::IoT::Policy, Return values], patched here.
"""

from __future__ import annotations

import json
from typing import Any

from moto.cloudformation import models as cfn_models
from moto.cloudformation import parsing
from moto.core.common_models import CloudFormationModel
from moto.iot import models as iot_models
from moto.iot.models import iot_backends

REGION = "eu-west-1"
ACCOUNT = "123456789012"

#: Provisioning templates CloudFormation "created": name -> properties as AWS would describe them.
TEMPLATES: dict[str, dict[str, Any]] = {}


class MotoTopicRule(CloudFormationModel):
    """AWS::IoT::TopicRule on top of moto's IoT rule store (name generated as CloudFormation does)."""

    __module__ = "moto.iot.nrfprov_tests"  # moto's model registry files models by moto.<service>.

    def __init__(self, name: str, account_id: str, region: str) -> None:
        self.name = name
        self.arn = f"arn:aws:iot:{region}:{account_id}:rule/{name}"

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @staticmethod
    def cloudformation_name_type() -> str:
        return "RuleName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::IoT::TopicRule"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Arn"

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        return self.arn

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str,
        **kwargs: Any,
    ) -> MotoTopicRule:
        name = "".join(c if c.isalnum() else "_" for c in resource_name)  # rule names: [a-zA-Z0-9_]
        p = cloudformation_json["Properties"]["TopicRulePayload"]
        iot_backends[account_id][region_name].create_topic_rule(
            rule_name=name, sql=p["Sql"], description=p.get("Description"), rule_disabled=p.get("RuleDisabled"),
            actions=p.get("Actions"), error_action=p.get("ErrorAction"),
            aws_iot_sql_version=p.get("AwsIotSqlVersion"))
        return cls(name, account_id, region_name)

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[override]
        cls, original_resource: MotoTopicRule, new_resource_name: str, cloudformation_json: dict[str, Any],
        account_id: str, region_name: str,
    ) -> MotoTopicRule:
        iot_backends[account_id][region_name].delete_topic_rule(original_resource.name)
        return cls.create_from_cloudformation_json(original_resource.name, cloudformation_json, account_id,
                                                   region_name)

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str,
    ) -> None:
        iot_backends[account_id][region_name].rules.pop(resource_name, None)

    def delete(self, account_id: str, region_name: str) -> None:
        iot_backends[account_id][region_name].rules.pop(self.name, None)

    def is_created(self) -> bool:
        return True


class MotoProvisioningTemplate(CloudFormationModel):
    """AWS::IoT::ProvisioningTemplate, recorded in TEMPLATES (moto has no such API)."""

    __module__ = "moto.iot.nrfprov_tests"

    def __init__(self, name: str, arn: str) -> None:
        self.name = name
        self.arn = arn

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @staticmethod
    def cloudformation_name_type() -> str:
        return "TemplateName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::IoT::ProvisioningTemplate"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "TemplateArn"

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        return self.arn

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str,
        **kwargs: Any,
    ) -> MotoProvisioningTemplate:
        p = cloudformation_json["Properties"]
        name = p.get("TemplateName", resource_name)
        arn = f"arn:aws:iot:{region_name}:{account_id}:provisioningtemplate/{name}"
        if name in TEMPLATES:
            raise ValueError(f"provisioning template {name} already exists")
        TEMPLATES[name] = {
            "templateArn": arn, "templateName": name, "description": p.get("Description", ""),
            "templateBody": p["TemplateBody"], "enabled": bool(p.get("Enabled", False)),
            "provisioningRoleArn": p["ProvisioningRoleArn"], "type": p.get("TemplateType", "FLEET_PROVISIONING"),
            **({"preProvisioningHook": {"targetArn": p["PreProvisioningHook"]["TargetArn"],
                                        "payloadVersion": p["PreProvisioningHook"]["PayloadVersion"]}}
               if p.get("PreProvisioningHook") else {}),
        }
        return cls(name, arn)

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[override]
        cls, original_resource: MotoProvisioningTemplate, new_resource_name: str,
        cloudformation_json: dict[str, Any], account_id: str, region_name: str,
    ) -> MotoProvisioningTemplate:
        TEMPLATES.pop(original_resource.name, None)
        return cls.create_from_cloudformation_json(new_resource_name, cloudformation_json, account_id, region_name)

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str,
    ) -> None:
        TEMPLATES.pop(resource_name, None)

    def delete(self, account_id: str, region_name: str) -> None:
        TEMPLATES.pop(self.name, None)

    def is_created(self) -> bool:
        return True


def install() -> None:
    iot_models.FakePolicy.physical_resource_id = property(lambda self: self.name)  # type: ignore[attr-defined]
    backend_cls = cfn_models.CloudFormationBackend
    if not getattr(backend_cls.execute_change_set, "nrfprov_patched", False):
        original = backend_cls.execute_change_set

        def execute_change_set(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
            original(self, change_set_name, stack_name)
            for stack in self.stacks.values():
                if stack.status.endswith("_COMPLETE") and stack.status != "DELETE_COMPLETE":
                    stack._parse_template()  # the change set's template, Outputs included
                    stack.output_map = stack._create_output_map()

        execute_change_set.nrfprov_patched = True  # type: ignore[attr-defined]
        backend_cls.execute_change_set = execute_change_set  # type: ignore[method-assign]
    parsing.get_model_list.cache_clear() if hasattr(parsing.get_model_list, "cache_clear") else None
    parsing.get_model_map.cache_clear()
    assert "AWS::IoT::TopicRule" in parsing.get_model_map()


def template_response(name: str) -> dict[str, Any]:
    doc = dict(TEMPLATES[name])
    doc["templateBody"] = doc["templateBody"] if isinstance(doc["templateBody"], str) else json.dumps(
        doc["templateBody"])
    return doc
