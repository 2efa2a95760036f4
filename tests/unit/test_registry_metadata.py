"""Walks the AWS registry and fails on incomplete or inconsistent metadata.

Beyond ``validate_info`` (structure), every entry is checked against botocore's own service models:
operations exist, parameters are real input members, list calls that can paginate are declared
paginated (so no collector stops after the first page), and the IAM actions cover every call.
No network: botocore models are local data files.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import botocore.session
import pytest
from botocore import xform_name
from botocore.model import OperationModel, ServiceModel

from scanner.providers.aws import registry
from scanner.providers.aws.collectors import SHAPE_COLLECTORS
from scanner.providers.aws.registry import (
    BOTOCORE,
    CollectorShape,
    InvalidResourceTypeInfo,
    ListSpec,
    PageSpec,
    ResourceTypeInfo,
    TagSource,
    TagSpec,
    validate_info,
)

REQUIRED_TYPES = {
    "ec2:instance",
    "ec2:volume",
    "ec2:snapshot",
    "ec2:elastic-ip",
    "ec2:natgateway",
    "s3:bucket",
    "rds:db",
    "rds:cluster",
    "lambda:function",
    "dynamodb:table",
    "ecs:cluster",
    "ecs:service",
    "eks:cluster",
    "elasticache:cluster",
    "elasticloadbalancing:loadbalancer",
    "elasticloadbalancing:targetgroup",
    "elasticfilesystem:file-system",
    "kinesis:stream",
    "secretsmanager:secret",
    "kms:key",
    "sqs:queue",
    "sns:topic",
    "logs:log-group",
    "cloudfront:distribution",
    "route53:hostedzone",
    "opensearch:domain",
    "ecr:repository",
    "states:stateMachine",
}
GLOBAL = {"s3:bucket", "cloudfront:distribution", "route53:hostedzone"}

# Output members that mean "there is another page".
TOKEN_MEMBERS = {
    "NextToken",
    "nextToken",
    "Marker",
    "NextMarker",
    "PaginationToken",
    "ContinuationToken",
    "LastEvaluatedTableName",
    "IsTruncated",
    "Truncated",
    "HasMoreTags",
    "HasMoreStreams",
}
# IAM action names that differ from the API operation name.
IAM_RENAMES = {("s3", "ListBuckets"): "ListAllMyBuckets"}

_SESSION = botocore.session.get_session()
INFOS = [registry.get(t) for t in registry.all_types()]


def _ids(infos: list[ResourceTypeInfo]) -> list[str]:
    return [i.resource_type for i in infos]


def _model(info: ResourceTypeInfo) -> ServiceModel:
    return _SESSION.get_service_model(info.service)


def _op(info: ResourceTypeInfo, operation: str) -> OperationModel:
    model = _model(info)
    assert operation in model.operation_names, f"{info.resource_type}: {info.service} has no {operation}"
    return model.operation_model(operation)


def _inputs(op: OperationModel) -> set[str]:
    return set(op.input_shape.members) if op.input_shape is not None else set()


def _has_more_pages(op: OperationModel) -> bool:
    # Token members at the top level or one level down (CloudFront's DistributionList.NextMarker).
    shape = op.output_shape
    if shape is None:
        return False
    names = set(shape.members)
    for member in shape.members.values():
        if member.type_name == "structure":
            names |= set(member.members)  # type: ignore[attr-defined]
    return bool(names & TOKEN_MEMBERS)


def _can_paginate(info: ResourceTypeInfo, operation: str) -> bool:
    client = _SESSION.create_client(
        info.service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    return bool(client.can_paginate(xform_name(operation)))


def _check_pagination(info: ResourceTypeInfo, operation: str, pagination: Any, where: str) -> None:
    op = _op(info, operation)
    if _can_paginate(info, operation):
        assert pagination == BOTOCORE, f"{info.resource_type} {where}: {operation} has a botocore paginator"
    elif isinstance(pagination, PageSpec):
        assert pagination.input_token in _inputs(op), f"{info.resource_type} {where}: bad input token"
    else:
        assert pagination is None, f"{info.resource_type} {where}: {operation} has no botocore paginator"
        assert not _has_more_pages(op), (
            f"{info.resource_type} {where}: {operation} returns a continuation token; declare a PageSpec"
        )


def test_required_types_are_registered() -> None:
    assert set(registry.all_types()) >= REQUIRED_TYPES


def test_global_and_regional_split() -> None:
    assert set(registry.global_types()) == GLOBAL
    assert set(registry.regional_types()) == set(registry.all_types()) - GLOBAL
    assert all(registry.is_global(t) for t in GLOBAL)


@pytest.mark.parametrize("info", INFOS, ids=_ids(INFOS))
def test_metadata_is_complete(info: ResourceTypeInfo) -> None:
    assert validate_info(info) == []
    assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9-]+", info.resource_type)
    assert info.shape in SHAPE_COLLECTORS, f"no generic collector for shape {info.shape}"
    assert info.arn_field or info.arn_template
    assert info.tags.path
    assert info.api_family and info.group and info.iam_actions
    assert registry.type_for_arn_key(info.arn_key) is info, "ARN type must map back to exactly this type"


@pytest.mark.parametrize("info", INFOS, ids=_ids(INFOS))
def test_operations_and_parameters_exist_in_botocore(info: ResourceTypeInfo) -> None:
    listing = _op(info, info.listing.operation)
    assert set(info.listing.params) <= _inputs(listing)
    if info.parent:
        parent = _op(info, info.parent.operation)
        assert set(info.parent.params) <= _inputs(parent)
        assert info.parent.child_param in _inputs(listing)
    if info.describe:
        d = _op(info, info.describe.operation)
        names = set(info.describe.params) | set(info.describe.static_params)
        if info.describe.batch_param:
            names.add(info.describe.batch_param)
        assert names <= _inputs(d), f"{info.resource_type}: {names - _inputs(d)} not in {d.name}"
    if info.region_lookup:
        r = _op(info, info.region_lookup.operation)
        assert set(info.region_lookup.params) <= _inputs(r)
    t = info.tags
    if t.operation:
        op = _op(info, t.operation)
        names = set(t.params) | set(t.static_params) | ({t.batch_param} if t.batch_param else set())
        assert names <= _inputs(op), f"{info.resource_type}: {names - _inputs(op)} not in {op.name}"


@pytest.mark.parametrize("info", INFOS, ids=_ids(INFOS))
def test_every_call_paginates_to_the_end(info: ResourceTypeInfo) -> None:
    if info.parent:
        _check_pagination(info, info.parent.operation, info.parent.pagination, "parent")
    _check_pagination(info, info.listing.operation, info.listing.pagination, "listing")
    if info.describe:
        _check_pagination(info, info.describe.operation, None, "describe")
    if info.tags.operation:
        _check_pagination(info, info.tags.operation, info.tags.pagination, "tags")


@pytest.mark.parametrize("info", INFOS, ids=_ids(INFOS))
def test_iam_actions_cover_every_operation(info: ResourceTypeInfo) -> None:
    prefix = _model(info).signing_name  # the IAM service prefix (elbv2 signs as elasticloadbalancing)
    for operation in info.operations():
        action = IAM_RENAMES.get((info.service, operation), operation)
        assert f"{prefix}:{action}" in info.iam_actions, f"{info.resource_type}: missing {prefix}:{action}"
    assert all(a.startswith(f"{prefix}:") for a in info.iam_actions)


def test_iam_actions_union() -> None:
    actions = registry.iam_actions()
    assert actions == sorted(set(actions))
    assert {"ec2:DescribeInstances", "s3:ListAllMyBuckets", "tag:GetResources", "es:ListTags"} <= set(actions)
    assert "ec2:DescribeRegions" not in registry.iam_actions(include_discovery=False)
    assert registry.iam_actions(["sqs:queue"], include_discovery=False) == [
        "sqs:ListQueueTags",
        "sqs:ListQueues",
    ]


def test_groups() -> None:
    groups = dict(registry.TYPE_GROUPS)
    assert groups == registry.type_groups()
    assert sorted(t for types in groups.values() for t in types) == registry.all_types()
    assert groups["ec2"] == ("ec2:elastic-ip", "ec2:instance", "ec2:natgateway", "ec2:snapshot", "ec2:volume")
    assert registry.group_of("opensearch:domain") == "opensearch"
    for group, types in groups.items():
        assert len({registry.is_global(t) for t in types}) == 1, f"group {group} mixes global and regional"


def test_every_shape_has_a_collector_and_is_used() -> None:
    assert set(SHAPE_COLLECTORS) == set(CollectorShape)
    assert {i.shape for i in INFOS} == set(CollectorShape)


def test_unknown_types_are_named() -> None:
    with pytest.raises(registry.UnknownResourceTypeError) as err:
        registry.resolve(["ec2:instance", "ec2:nope", "foo:bar"])
    assert err.value.unknown == ["ec2:nope", "foo:bar"]
    assert "ec2:instance" in str(err.value)
    assert [i.resource_type for i in registry.resolve(None)] == registry.all_types()


# ------------------------------------------------------- the checks catch incomplete metadata
_GOOD = registry.get("lambda:function")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"resource_type": "lambda"}, "service:resource"),
        ({"arn_field": None}, "arn_field / arn_template"),
        ({"arn_template": "arn:{partition}:x:{region}:{account}:f/{id}"}, "exactly one"),
        ({"api_family": ""}, "api_family is empty"),
        ({"group": ""}, "group is empty"),
        ({"iam_actions": ()}, "iam_actions is empty"),
        ({"iam_actions": ("ListFunctions",)}, "bad IAM action"),
        ({"shape": "list_everything"}, "unknown collector shape"),
        ({"shape": CollectorShape.DESCRIBE_INLINE_TAGS}, "does not take tag source"),
        ({"shape": CollectorShape.LIST_THEN_DESCRIBE}, "needs a describe spec"),
        ({"shape": CollectorShape.NESTED_LIST}, "needs a parent spec"),
        ({"tags": TagSpec(source=TagSource.PER_ITEM, path="")}, "tags.path is empty"),
        ({"tags": TagSpec(source=TagSource.PER_ITEM, path="Tags")}, "need an operation"),
        (
            {
                "tags": TagSpec(
                    source=TagSource.PER_ITEM, path="Tags", operation="ListTags", params={"R": "@nope"}
                )
            },
            "unknown reference",
        ),
        ({"tags": TagSpec(source=TagSource.BATCH, path="Tags", operation="X")}, "batch tags need"),
        ({"listing": ListSpec("", "")}, "listing needs"),
        ({"arn_field": None, "arn_template": "arn:aws:x:::{id}"}, "id_field is not set"),
        ({"arn_field": None, "arn_template": "arn:aws:x:::{bogus}"}, "unknown fields"),
    ],
)
def test_validation_rejects_incomplete_metadata(change: dict[str, Any], problem: str) -> None:
    broken = dataclasses.replace(_GOOD, **change)
    problems = validate_info(broken)
    assert any(problem in p for p in problems), problems
    with pytest.raises(InvalidResourceTypeInfo):
        registry.register(broken)


def test_duplicate_registration_is_rejected() -> None:
    with pytest.raises(InvalidResourceTypeInfo, match="twice"):
        registry.register(_GOOD)
