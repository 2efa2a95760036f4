"""ARN parsing and the resource type derived from it."""

from __future__ import annotations

import pytest

from scanner.providers.aws import registry
from scanner.providers.aws.arn import parse_arn, partition_of


@pytest.mark.parametrize(
    ("arn", "type_key", "resource_id", "region", "account"),
    [
        (
            "arn:aws:ec2:us-east-1:123456789012:instance/i-0abc",
            "ec2:instance",
            "i-0abc",
            "us-east-1",
            "123456789012",
        ),
        ("arn:aws:ec2:us-east-1::snapshot/snap-1", "ec2:snapshot", "snap-1", "us-east-1", ""),
        ("arn:aws:rds:eu-west-1:123456789012:db:mydb", "rds:db", "mydb", "eu-west-1", "123456789012"),
        (
            "arn:aws:lambda:us-east-1:123456789012:function:f:prod",
            "lambda:function",
            "f:prod",
            "us-east-1",
            "123456789012",
        ),
        ("arn:aws:s3:::my-bucket", "s3:bucket", "my-bucket", "", ""),
        ("arn:aws:s3:::my-bucket/key.txt", "s3:object", "my-bucket/key.txt", "", ""),
        ("arn:aws:sqs:us-east-1:123456789012:jobs", "sqs:queue", "jobs", "us-east-1", "123456789012"),
        ("arn:aws:sns:us-east-1:123456789012:alerts", "sns:topic", "alerts", "us-east-1", "123456789012"),
        (
            "arn:aws:logs:us-east-1:123456789012:log-group:/app/web",
            "logs:log-group",
            "/app/web",
            "us-east-1",
            "123456789012",
        ),
        (
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/lb/abc",
            "elasticloadbalancing:loadbalancer",
            "app/lb/abc",
            "us-east-1",
            "123456789012",
        ),
        (
            "arn:aws:ecs:us-east-1:123456789012:service/c1/s1",
            "ecs:service",
            "c1/s1",
            "us-east-1",
            "123456789012",
        ),
        ("arn:aws:route53:::hostedzone/Z123", "route53:hostedzone", "Z123", "", ""),
        (
            "arn:aws:cloudfront::123456789012:distribution/E1",
            "cloudfront:distribution",
            "E1",
            "",
            "123456789012",
        ),
        (
            "arn:aws:states:us-east-1:123456789012:stateMachine:m1",
            "states:stateMachine",
            "m1",
            "us-east-1",
            "123456789012",
        ),
        ("arn:aws:iam::aws:policy/ReadOnlyAccess", "iam:policy", "ReadOnlyAccess", "", "aws"),
        (
            "arn:aws-cn:ec2:cn-north-1:123456789012:volume/vol-1",
            "ec2:volume",
            "vol-1",
            "cn-north-1",
            "123456789012",
        ),
    ],
)
def test_parse(arn: str, type_key: str, resource_id: str, region: str, account: str) -> None:
    parsed = parse_arn(arn)
    assert (parsed.type_key, parsed.resource_id, parsed.region, parsed.account) == (
        type_key,
        resource_id,
        region,
        account,
    )
    assert parsed.arn == arn


@pytest.mark.parametrize(
    ("arn", "message"),
    [
        ("i-0abc", "starts with 'arn:'"),
        ("arn:aws:ec2:us-east-1:123456789012", "6 ':'-separated parts"),
        ("arn:aws:ec2:us-east-1:1234:instance/i-1", "12 digits"),
        ("arn:aws:ec2:us-east-1:123456789012:", "resource part is empty"),
        ("arn::ec2:us-east-1:123456789012:instance/i-1", "partition and service"),
        ("arn:aws:ec2:us-east-1:123456789012:instance/", "resource id"),
    ],
)
def test_invalid_arns_say_why(arn: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_arn(arn)


def test_opensearch_arns_map_to_the_public_type() -> None:
    parsed = parse_arn("arn:aws:es:us-east-1:123456789012:domain/search1")
    assert parsed.type_key == "es:domain"
    info = registry.type_for_arn_key(parsed.type_key)
    assert info is not None and info.resource_type == "opensearch:domain"


def test_partitions() -> None:
    assert partition_of("us-east-1") == "aws"
    assert partition_of("cn-northwest-1") == "aws-cn"
    assert partition_of("us-gov-west-1") == "aws-us-gov"
