"""AWS Config required-tags export: valid CloudFormation (cfn-lint), six keys per rule, scopes, notes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml
from cfnlint.api import lint as cfn_lint

from policies.export import ExportResult, export_policy
from policies.export.aws_config import (
    CONFIG_RESOURCE_TYPES,
    MAX_KEYS_PER_RULE,
    config_resource_types,
    export_aws_config,
)
from policies.policy import Policy, load_policy, load_policy_file
from scanner.providers.aws.registry import all_types

EXAMPLES = Path(__file__).resolve().parents[2] / "policies" / "examples"
DOC = "aws-config-required-tags.template.json"
PARAM = re.compile(r"tag([1-6])(Key|Value)")


def config_enum() -> set[str]:
    """Every resource type AWS Config records, from botocore's service model (AWS's own list)."""
    model = botocore.session.get_session().get_service_model("config")
    return set(model.shape_for("ResourceType").enum)


def cfn_errors(template: dict[str, Any]) -> list[str]:
    """cfn-lint matches of level error (rule ids E....) for a template dict."""
    matches = cfn_lint(json.dumps(template), regions=["us-east-1"])
    return [f"{m.rule.id} {m.message} ({m.path})" for m in matches if m.rule.id.startswith("E")]


def template_of(policy: Policy) -> tuple[dict[str, Any], ExportResult]:
    result = export_aws_config(policy)
    assert list(result.documents) == [DOC]
    template = result.documents[DOC]
    assert isinstance(template, dict)
    return template, result


def config_rules(template: dict[str, Any]) -> list[dict[str, Any]]:
    """Properties of every AWS::Config::ConfigRule, checked against what the managed rule accepts."""
    rules = []
    for resource in template["Resources"].values():
        assert resource["Type"] == "AWS::Config::ConfigRule"
        props = resource["Properties"]
        assert props["Source"] == {"Owner": "AWS", "SourceIdentifier": "REQUIRED_TAGS"}
        params = props["InputParameters"]
        for key, value in params.items():
            match = PARAM.fullmatch(key)
            assert match, f"{key} is not a required-tags parameter"
            assert isinstance(value, str) and value
            if match.group(2) == "Value":
                assert f"tag{match.group(1)}Key" in params
        keys = [params[f"tag{n}Key"] for n in range(1, 7) if f"tag{n}Key" in params]
        # Keys are numbered from 1 without gaps, at most six.
        assert [k for k in params if k.endswith("Key")] == [f"tag{n}Key" for n in range(1, len(keys) + 1)]
        assert 1 <= len(keys) <= MAX_KEYS_PER_RULE
        assert len(props["ConfigRuleName"]) <= 128 and len(props["Description"]) <= 256
        rules.append(props)
    names = [r["ConfigRuleName"] for r in rules]
    assert len(set(names)) == len(names)
    return rules


def keys_of(props: dict[str, Any]) -> list[str]:
    params = props["InputParameters"]
    return [params[f"tag{n}Key"] for n in range(1, 7) if f"tag{n}Key" in params]


def test_cfn_lint_gate_catches_a_broken_template() -> None:
    # The helper must be able to fail, or "zero errors" below proves nothing.
    template, _ = template_of(load_policy_file(EXAMPLES / "default.json"))
    broken = json.loads(json.dumps(template))
    del broken["Resources"]["RequiredTags1"]["Properties"]["Source"]
    broken["Resources"]["RequiredTags2"]["Properties"]["Scope"]["ComplianceResourceTypes"] = "AWS::S3::Bucket"
    errors = cfn_errors(broken)
    assert any(e.startswith("E3003") for e in errors)  # required property missing
    assert any(e.startswith("E3012") for e in errors)  # wrong type


def test_default_example_exports_valid_rules() -> None:
    template, result = template_of(load_policy_file(EXAMPLES / "default.json"))
    assert cfn_errors(template) == []
    rules = config_rules(template)
    assert len(rules) == 2
    everywhere, scoped = rules
    assert keys_of(everywhere) == ["CostCenter", "Owner", "Environment"]
    assert "Scope" not in everywhere  # empty applies_to: every recorded type
    params = everywhere["InputParameters"]
    assert params["tag1Value"] == "Engineering,Marketing,Sales,Operations,Finance,Data"
    assert "tag2Value" not in params  # Owner's "*@example.com" cannot be written as tagNValue
    assert params["tag3Value"] == "production,staging,development,test"
    assert keys_of(scoped) == ["Application"]
    assert "tag1Value" not in scoped["InputParameters"]  # a regex is not a value list
    assert scoped["Scope"]["ComplianceResourceTypes"] == sorted([
        "AWS::EC2::Instance", "AWS::Lambda::Function", "AWS::ECS::Service", "AWS::ECS::Cluster",
        "AWS::EKS::Cluster", "AWS::RDS::DBInstance", "AWS::RDS::DBCluster", "AWS::DynamoDB::Table",
        "AWS::S3::Bucket", "AWS::SQS::Queue", "AWS::SNS::Topic", "AWS::ElasticLoadBalancingV2::LoadBalancer",
        "AWS::StepFunctions::StateMachine",
    ])
    # The wildcard is stated both in the notes and inside the template, next to the rule.
    assert any("Owner" in n and "wildcard" in n for n in result.notes)
    assert "wildcard" in template["Resources"]["RequiredTags1"]["Metadata"]["Notes"][0]
    assert template["Metadata"]["FinopsTagCompliance"]["notes"] == result.notes
    for fragment in ("validation_regex", "optional tags", "prohibited_tags"):
        assert any(fragment in n for n in result.notes), fragment


def test_fourteen_required_keys_become_three_rules() -> None:
    names = [f"Key{i:02d}" for i in range(1, 15)]
    policy = load_policy({"required_tags": [{"name": n, "allowed_values": [f"{n.lower()}-a", f"{n.lower()}-b"]}
                                            for n in names]})
    template, _ = template_of(policy)
    assert cfn_errors(template) == []
    rules = config_rules(template)
    assert [keys_of(r) for r in rules] == [names[:6], names[6:12], names[12:]]
    assert rules[2]["InputParameters"] == {"tag1Key": "Key13", "tag1Value": "key13-a,key13-b",
                                           "tag2Key": "Key14", "tag2Value": "key14-a,key14-b"}
    assert [r["ConfigRuleName"] for r in rules] == ["required-tags-1", "required-tags-2", "required-tags-3"]


def test_fourteen_keys_pass_cfn_lint_from_the_command_line(tmp_path: Path) -> None:
    # The way a person would check the file: JSON and YAML renderings through the cfn-lint CLI.
    policy = load_policy({"required_tags": [{"name": f"K{i}"} for i in range(14)]})
    template, _ = template_of(policy)
    (tmp_path / "t.json").write_text(json.dumps(template, indent=2))
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(template, sort_keys=False))
    cfn_lint_bin = Path(sys.executable).with_name("cfn-lint")
    proc = subprocess.run([str(cfn_lint_bin), "--format", "parseable", str(tmp_path / "t.json"),
                           str(tmp_path / "t.yaml")], capture_output=True, text=True, timeout=120)
    errors = [line for line in proc.stdout.splitlines() if ":E" in line]
    assert errors == [] and proc.returncode in (0, 4, 8), proc.stdout + proc.stderr


def test_keys_are_grouped_by_scope_before_splitting() -> None:
    policy = load_policy({"required_tags": [
        {"name": "A"},
        {"name": "B", "applies_to": ["s3:bucket"]},
        {"name": "C"},
        {"name": "D", "applies_to": ["s3:Bucket"]},  # types compare ignoring case
        {"name": "E", "applies_to": ["ec2:*"]},
        {"name": "F", "applies_to": ["logs:log-group", "sqs:queue"]},
        {"name": "G", "applies_to": ["logs:log-group", "ec2:snapshot"]},
    ]})
    template, result = template_of(policy)
    assert cfn_errors(template) == []
    rules = config_rules(template)
    by_keys = {tuple(keys_of(r)): r.get("Scope", {}).get("ComplianceResourceTypes") for r in rules}
    ec2 = sorted(v for k, v in CONFIG_RESOURCE_TYPES.items() if k.startswith("ec2:") and v)
    assert by_keys == {("A", "C"): None, ("B", "D"): ["AWS::S3::Bucket"], ("E",): ec2, ("F",): ["AWS::SQS::Queue"]}
    # logs:log-group has no AWS Config type: F keeps its other type, G (nothing left) is left out.
    assert any(n.startswith("F: applies_to logs:log-group has no AWS Config resource type") for n in result.notes)
    assert any(n.startswith("G: left out") for n in result.notes)


def test_values_that_cannot_be_written_are_left_out_with_a_note() -> None:
    policy = load_policy({"required_tags": [
        {"name": "Team", "allowed_values": ["a,b", "c"]},
        {"name": "Env", "allowed_values": ["prod", "*"]},  # "*" allows any value: nothing to write, no note
        {"name": "Owner", "allowed_values": ["ops", "*@example.com"]},
    ]})
    template, result = template_of(policy)
    params = config_rules(template)[0]["InputParameters"]
    assert params == {"tag1Key": "Team", "tag2Key": "Env", "tag3Key": "Owner"}
    assert sum("comma" in n for n in result.notes) == 1
    assert sum("wildcard values (*@example.com)" in n for n in result.notes) == 1
    assert not any(n.startswith("required-tags-1: Env") for n in result.notes)


def test_a_policy_without_required_tags_still_gives_a_deployable_template() -> None:
    template, result = template_of(load_policy({"optional_tags": [{"name": "Project"}]}))
    assert cfn_errors(template) == []
    assert [r["Type"] for r in template["Resources"].values()] == ["AWS::CloudFormation::WaitConditionHandle"]
    assert any("defines no rule" in n for n in result.notes)


def test_mapping_covers_every_scanner_type_with_real_config_names() -> None:
    assert set(all_types()) <= set(CONFIG_RESOURCE_TYPES)
    known = config_enum()
    wrong = {k: v for k, v in CONFIG_RESOURCE_TYPES.items() if v is not None and v not in known}
    assert wrong == {}
    # Types mapped to None are those AWS Config really does not record.
    assert {k for k, v in CONFIG_RESOURCE_TYPES.items() if v is None} == {
        "ec2:snapshot", "elasticache:cluster", "logs:log-group"}


def test_config_resource_types_expands_services_and_reports_the_rest() -> None:
    types, unmapped = config_resource_types(["rds:*", "kms:key", "nope:thing", "nope:*", "ec2:snapshot"])
    assert types == ["AWS::KMS::Key", "AWS::RDS::DBCluster", "AWS::RDS::DBInstance"]
    assert unmapped == ["nope:thing", "nope:*", "ec2:snapshot"]


def test_export_policy_dispatches_and_rejects_unknown_targets() -> None:
    policy = load_policy_file(EXAMPLES / "minimal.json")
    assert export_policy(policy, "aws-config") == export_aws_config(policy)
    with pytest.raises(ValueError, match="unknown export target"):
        export_policy(policy, "gcp")  # type: ignore[arg-type]


def test_required_for_sets_the_scope() -> None:
    policy = load_policy({"required_tags": [
        {"name": "A", "applies_to": ["s3:bucket", "ec2:instance"], "required_for": ["s3:bucket"]},
        {"name": "B", "applies_to": ["ec2:instance"], "required_for": []},
    ]})
    template, result = template_of(policy)
    assert cfn_errors(template) == []
    rules = config_rules(template)
    assert [(keys_of(r), r["Scope"]["ComplianceResourceTypes"]) for r in rules] == [(["A"], ["AWS::S3::Bucket"])]
    assert any(n.startswith("B: left out, required on no type") for n in result.notes)
