"""Our policy -> AWS Config ``required-tags`` managed rules, as a CloudFormation template.

The managed rule (Source Owner ``AWS``, SourceIdentifier ``REQUIRED_TAGS``) checks at most six keys
(``tag1Key`` .. ``tag6Key``), each with an optional ``tagNValue``: a comma-separated list of the
values it accepts. It can only say "this key must be present (with one of these values)" on the
resource types of its Scope, so the export:

* takes the required tags, groups them by scope (the AWS Config resource types their
  ``required_for``, or else ``applies_to``, maps to; an empty ``applies_to`` means no Scope, every
  recorded type), and emits one
  ``AWS::Config::ConfigRule`` per six keys of a group, keys in policy order;
* writes a key's allowed values as ``tagNValue`` only when the list means the same there: a
  wildcard value (``*@example.com``) or a value holding a comma cannot be written, so that key gets
  no value list (presence is still checked) and a note says so, in the result and in the resource's
  Metadata;
* reports as notes what AWS Config cannot express at all: ``validation_regex``, optional and
  prohibited tags, ``max_tags``, naming rules, and ``applies_to`` types without an AWS Config
  resource type.

Deploying needs AWS Config recording in the account and region (a configuration recorder), and
AWS Config records tags only for some resource types; resources it does not record are not
evaluated.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Final, TypeVar

from policies.export.result import ExportResult, engine_only_notes
from policies.matching import WILDCARD
from policies.policy import SERVICE_WILDCARDS, Policy, TagRule

__all__ = ["CONFIG_RESOURCE_TYPES", "MAX_KEYS_PER_RULE", "config_resource_types", "export_aws_config"]

# AWS Config required-tags: tag1Key .. tag6Key (REFERENCE "AWS tagging facts").
MAX_KEYS_PER_RULE: Final = 6
# Scope.ComplianceResourceTypes holds at most 100 types (CloudFormation AWS::Config::ConfigRule Scope).
MAX_SCOPE_TYPES: Final = 100
# CloudFormation limits the rule description to 256 characters.
_MAX_DESCRIPTION = 256

# Our `service:resource` type -> the AWS Config resource type (the name Scope.ComplianceResourceTypes
# takes; for these it equals the CloudFormation type name, except OpenSearch, whose CloudFormation
# type is AWS::OpenSearchService::Domain while Config records AWS::OpenSearch::Domain). None marks a
# type AWS Config does not record at all, so no Config rule can evaluate it. Covers every type the
# scanner collects (a unit test walks its registry and checks the names against AWS Config's own list).
CONFIG_RESOURCE_TYPES: Final[Mapping[str, str | None]] = MappingProxyType({
    "ec2:instance": "AWS::EC2::Instance",
    "ec2:volume": "AWS::EC2::Volume",
    "ec2:snapshot": None,  # EBS snapshots are not an AWS Config resource type
    "ec2:elastic-ip": "AWS::EC2::EIP",
    "ec2:natgateway": "AWS::EC2::NatGateway",
    "ec2:security-group": "AWS::EC2::SecurityGroup",
    "ec2:vpc": "AWS::EC2::VPC",
    "ec2:subnet": "AWS::EC2::Subnet",
    "ec2:network-interface": "AWS::EC2::NetworkInterface",
    "ec2:internet-gateway": "AWS::EC2::InternetGateway",
    "s3:bucket": "AWS::S3::Bucket",
    "rds:db": "AWS::RDS::DBInstance",
    "rds:cluster": "AWS::RDS::DBCluster",
    "lambda:function": "AWS::Lambda::Function",
    "dynamodb:table": "AWS::DynamoDB::Table",
    "states:stateMachine": "AWS::StepFunctions::StateMachine",
    "ecs:cluster": "AWS::ECS::Cluster",
    "ecs:service": "AWS::ECS::Service",
    "eks:cluster": "AWS::EKS::Cluster",
    "ecr:repository": "AWS::ECR::Repository",
    "elasticache:cluster": None,  # AWS Config records no ElastiCache cache-cluster type
    "opensearch:domain": "AWS::OpenSearch::Domain",
    "elasticloadbalancing:loadbalancer": "AWS::ElasticLoadBalancingV2::LoadBalancer",
    "elasticloadbalancing:targetgroup": "AWS::ElasticLoadBalancingV2::TargetGroup",
    "cloudfront:distribution": "AWS::CloudFront::Distribution",
    "route53:hostedzone": "AWS::Route53::HostedZone",
    "elasticfilesystem:file-system": "AWS::EFS::FileSystem",
    "kinesis:stream": "AWS::Kinesis::Stream",
    "sqs:queue": "AWS::SQS::Queue",
    "sns:topic": "AWS::SNS::Topic",
    "logs:log-group": None,  # AWS Config records log destinations, not log groups
    "secretsmanager:secret": "AWS::SecretsManager::Secret",
    "kms:key": "AWS::KMS::Key",
    "redshift:cluster": "AWS::Redshift::Cluster",
    "acm:certificate": "AWS::ACM::Certificate",
    "cloudformation:stack": "AWS::CloudFormation::Stack",
    "codebuild:project": "AWS::CodeBuild::Project",
})

_T = TypeVar("_T")

_FOLDED_TYPES: Final = {k.casefold(): v for k, v in CONFIG_RESOURCE_TYPES.items()}


def config_resource_types(applies_to: Sequence[str]) -> tuple[list[str], list[str]]:
    """AWS Config types for an ``applies_to`` list (sorted, unique) and the entries that have none.

    ``service:*`` / ``service:ALL_SUPPORTED`` expand to every mapped type of that service. Types
    compare ignoring case, as the engine compares them.
    """
    found: set[str] = set()
    unmapped: list[str] = []
    for entry in applies_to:
        service, _, resource = entry.partition(":")
        if resource in SERVICE_WILDCARDS:
            expanded = {v for k, v in _FOLDED_TYPES.items()
                        if v is not None and k.partition(":")[0] == service.casefold()}
            if expanded:
                found |= expanded
            else:
                unmapped.append(entry)
            continue
        config_type = _FOLDED_TYPES.get(entry.casefold())
        if config_type is None:
            unmapped.append(entry)
        else:
            found.add(config_type)
    return sorted(found), unmapped


def export_aws_config(policy: Policy, *, rule_name_prefix: str = "required-tags") -> ExportResult:
    """The required tags of ``policy`` as AWS Config ``required-tags`` rules in a CloudFormation template.

    The result holds one document, ``aws-config-required-tags.template.json`` (a template dict; dump
    it as JSON, or as YAML), and notes on everything AWS Config cannot express.
    """
    notes: list[str] = []
    groups: dict[tuple[str, ...], list[TagRule]] = {}
    for rule in policy.required_tags:
        # required_for narrows where the key must be present; elsewhere in applies_to it is only
        # checked when present, which required-tags cannot express.
        where = rule.applies_to if rule.required_for is None else rule.required_for
        if rule.required_for is not None and not rule.required_for:
            notes.append(f"{rule.name}: left out, required on no type (required_for: []); AWS Config cannot "
                         "check a tag only where it is present")
            continue
        if not where:
            groups.setdefault((), []).append(rule)
            continue
        field = "applies_to" if rule.required_for is None else "required_for"
        types, unmapped = config_resource_types(where)
        if unmapped:
            notes.append(f"{rule.name}: {field} {', '.join(unmapped)} has no AWS Config resource type, so "
                         "AWS Config cannot check it there; the scanner still does")
        if not types:
            # An empty Scope would widen the rule to every type: leaving the key out is the honest choice.
            notes.append(f"{rule.name}: left out, none of its {field} types is recorded by AWS Config")
            continue
        groups.setdefault(tuple(types), []).append(rule)

    resources: dict[str, object] = {}
    number = 0
    for scope, rules in groups.items():
        for scope_part in _chunks(scope, MAX_SCOPE_TYPES) if scope else [()]:
            for keys in _chunks(rules, MAX_KEYS_PER_RULE):
                number += 1
                resources[f"RequiredTags{number}"] = _config_rule(
                    f"{rule_name_prefix}-{number}", list(keys), list(scope_part), policy, notes)

    notes.extend(_unexpressed(policy))
    if not resources:
        notes.append("the policy has no required tag AWS Config can check; the template defines no rule")
    template: dict[str, object] = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": ("AWS Config required-tags rules generated from tagging policy version "
                        f"{policy.version} (content hash {policy.content_hash()[:12]}). Needs AWS Config recording "
                        "in the account and region."),
        "Metadata": {"FinopsTagCompliance": {"policyVersion": policy.version,
                                             "policyContentHash": policy.content_hash(),
                                             "notes": list(notes)}},
        "Resources": resources,
    }
    if not resources:
        # CloudFormation needs at least one resource; a wait-condition handle costs nothing and
        # keeps an empty export deployable.
        template["Resources"] = {"NoRequiredTags": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}
    return ExportResult(documents={"aws-config-required-tags.template.json": template}, notes=notes)


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _config_rule(name: str, rules: list[TagRule], scope: list[str], policy: Policy,
                 notes: list[str]) -> dict[str, object]:
    params: dict[str, str] = {}
    rule_notes: list[str] = []
    for n, rule in enumerate(rules, start=1):
        params[f"tag{n}Key"] = rule.name
        values, why_not = _value_list(rule)
        if values is not None:
            params[f"tag{n}Value"] = values
        elif why_not:
            text = f"{rule.name}: {why_not}; the rule checks only that the key is present"
            rule_notes.append(text)
            notes.append(f"{name}: {text}")
    keys = ", ".join(r.name for r in rules)
    where = f"on {len(scope)} resource types" if scope else "on every recorded resource type"
    description = f"Requires tags {keys} {where} (tagging policy {policy.version})."
    properties: dict[str, object] = {
        "ConfigRuleName": name,
        "Description": description[:_MAX_DESCRIPTION],
        "Source": {"Owner": "AWS", "SourceIdentifier": "REQUIRED_TAGS"},
        "InputParameters": params,
    }
    if scope:
        properties["Scope"] = {"ComplianceResourceTypes": scope}
    resource: dict[str, object] = {"Type": "AWS::Config::ConfigRule", "Properties": properties}
    if rule_notes:
        # JSON templates have no comments; resource Metadata is where CloudFormation keeps free text.
        resource["Metadata"] = {"Notes": rule_notes}
    return resource


def _value_list(rule: TagRule) -> tuple[str | None, str | None]:
    """``(tagNValue, None)``, or ``(None, reason)`` when the values cannot be written, ``(None, None)`` if none."""
    values = rule.allowed_values
    if not values or WILDCARD in values:
        return None, None  # any value is allowed: nothing to write
    wildcards = [v for v in values if WILDCARD in v]
    if wildcards:
        return None, (f"wildcard values ({', '.join(wildcards)}) cannot be expressed in tagNValue, so its value "
                      "list is left out")
    with_comma = [v for v in values if "," in v]
    if with_comma:
        return None, (f"values holding a comma ({', '.join(with_comma)}) cannot be written in the comma-separated "
                      "tagNValue, so its value list is left out")
    return ",".join(values), None


def _unexpressed(policy: Policy) -> list[str]:
    """Notes for the parts of the policy the required-tags rule has no way to check."""
    notes: list[str] = []
    with_regex = [r.name for r, _ in policy.rules() if r.validation_regex]
    if with_regex:
        notes.append(f"validation_regex is not checked by AWS Config ({', '.join(with_regex)})")
    if policy.optional_tags:
        notes.append("optional tags are not exported: required-tags can only require keys "
                     f"({', '.join(r.name for r in policy.optional_tags)})")
    notes.extend(engine_only_notes(policy))
    return notes
