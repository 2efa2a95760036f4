"""ARN parsing: ``arn:partition:service:region:account:resource`` into its parts and a resource type.

The resource part has no single syntax: ``instance/i-1``, ``db:mydb``, ``function:f:alias``,
``loadbalancer/app/name/id``, a bare queue or bucket name. The type is the text before the first
``/`` or ``:``; services whose ARNs carry no type word get a fixed one (``sqs`` -> ``queue``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ACCOUNT_RE = re.compile(r"^\d{12}$")
# Account field values AWS uses instead of an account id (AWS-managed IAM policies).
_SPECIAL_ACCOUNTS = frozenset({"aws"})

# Services whose ARN resource part is just a name, with the type that name denotes.
_UNTYPED_SERVICES = {"sqs": "queue", "sns": "topic", "s3": "bucket"}
# ...and the type when such a name has a further qualifier ("bucket/key", "topic:subscription-id").
_QUALIFIED_UNTYPED = {"s3": "object", "sns": "subscription"}


@dataclass(frozen=True, slots=True)
class ParsedArn:
    """The parts of one ARN. ``region`` and ``account`` are "" when the ARN has none (S3, Route 53)."""

    arn: str
    partition: str
    service: str
    region: str
    account: str
    resource: str
    resource_type: str
    resource_id: str

    @property
    def type_key(self) -> str:
        """``service:resource_type`` as used by the registry (``ec2:instance``, ``es:domain``)."""
        return f"{self.service}:{self.resource_type or 'resource'}"


def parse_arn(arn: str) -> ParsedArn:
    """Split ``arn`` into its parts; raises ``ValueError`` explaining what is wrong with it."""
    if not isinstance(arn, str) or not arn.startswith("arn:"):
        raise ValueError(f"invalid ARN {arn!r}: an ARN starts with 'arn:'")
    parts = arn.split(":", 5)
    if len(parts) != 6:
        raise ValueError(
            f"invalid ARN {arn!r}: expected 6 ':'-separated parts "
            f"(arn:partition:service:region:account:resource), got {len(parts)}"
        )
    _, partition, service, region, account, resource = parts
    if not partition or not service:
        raise ValueError(f"invalid ARN {arn!r}: partition and service must not be empty")
    if not resource:
        raise ValueError(f"invalid ARN {arn!r}: the resource part is empty")
    if account and not _ACCOUNT_RE.match(account) and account not in _SPECIAL_ACCOUNTS:
        raise ValueError(f"invalid ARN {arn!r}: account {account!r} must be 12 digits")
    if service in _UNTYPED_SERVICES:
        qualified = re.search(r"[/:]", resource) is not None
        if qualified:
            return ParsedArn(
                arn, partition, service, region, account, resource, _QUALIFIED_UNTYPED[service], resource
            )
        return ParsedArn(
            arn, partition, service, region, account, resource, _UNTYPED_SERVICES[service], resource
        )
    match = re.search(r"[/:]", resource)
    if match is None:
        # No type word (rare: some services name the resource only); type_key says "resource".
        return ParsedArn(arn, partition, service, region, account, resource, "", resource)
    rtype, rid = resource[: match.start()], resource[match.end() :]
    if not rid:
        raise ValueError(f"invalid ARN {arn!r}: the resource id after {rtype!r} is empty")
    return ParsedArn(arn, partition, service, region, account, resource, rtype, rid)


def partition_of(region: str) -> str:
    """The AWS partition a region belongs to."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("us-isob-"):
        return "aws-iso-b"
    if region.startswith("us-iso-"):
        return "aws-iso"
    return "aws"
