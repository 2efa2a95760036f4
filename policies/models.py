"""The two records every layer exchanges: a discovered Resource and a Violation found on it.

They are slotted dataclasses rather than pydantic models because the engine creates and reads them
in its hot loop (hundreds of thousands per second); the API layer converts them to its schemas.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# Region value for resources that have no region (CloudFront, Route 53, IAM).
GLOBAL_REGION = "global"


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


class ViolationType(StrEnum):
    MISSING_REQUIRED_TAG = "missing_required_tag"
    INVALID_VALUE = "invalid_value"
    INVALID_FORMAT = "invalid_format"
    WRONG_KEY_CASE = "wrong_key_case"
    PROHIBITED_TAG = "prohibited_tag"
    NAMING_RULE = "naming_rule"


@dataclass(frozen=True, slots=True)
class Resource:
    """One cloud resource as discovered, identified by its ARN (or the cloud's full resource ID).

    ``resource_type`` is ``service:resource`` (``ec2:instance``). ``tags`` holds every user tag,
    with empty values kept as ``""``. ``attributes`` carries provider facts that later features use
    (the instance a volume is attached to, a VPC id, a stack name); the engine never reads it.
    """

    arn: str
    resource_id: str
    resource_type: str
    account_id: str
    region: str
    tags: Mapping[str, str]
    name: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule on one resource.

    ``rule_id`` is unique per resource and stable across runs (``missing_required_tag:CostCenter``),
    so (scan, ARN, rule_id) keys an idempotent upsert. ``source`` is the broken rule's origin
    (``aws:p-abc123 (OU Production)``) when the policy recorded one; ``None`` for key-only checks.
    """

    rule_id: str
    resource_arn: str
    resource_id: str
    resource_type: str
    account_id: str
    region: str
    tag_name: str
    violation_type: ViolationType
    severity: Severity
    current_value: str | None
    allowed_values: tuple[str, ...] | None
    message: str
    suggestion: str | None = None
    source: str | None = None
