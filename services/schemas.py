"""The public result shapes. CLI JSON, REST and MCP structured output all use these models."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from policies.models import Violation

ScanStatus = Literal["queued", "running", "succeeded", "partial", "failed", "cancelled"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "partial", "failed", "cancelled"})
TERMINAL_SHARD_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

ACCOUNT_ID = re.compile(r"\d{12}")
# An organization root or organizational unit: scanning it means every account under it (nested OUs too).
ORG_PARENT_ID = re.compile(r"ou-[0-9a-z]{4,32}-[0-9a-z]{8,32}|r-[0-9a-z]{4,32}")
MAX_LIST = 500


class ScanRequest(BaseModel):
    """What to scan. ``None`` means the configured default; ``"all"`` means everything available."""

    model_config = ConfigDict(extra="forbid")

    accounts: list[str] | Literal["all"] | None = Field(
        default=None, description="12-digit AWS account ids and/or organizational unit or root ids (ou-..., r-...: "
        "every active account under them), 'all' for every active organization account, or omitted for the "
        "configured accounts (default: the caller's own account).")
    regions: list[str] | Literal["all"] | None = Field(
        default=None, description="Region names such as us-east-1, 'all' or omitted for every enabled region.")
    resource_types: list[str] | Literal["all"] | None = Field(
        default=None, description="Types such as ec2:instance or s3:bucket. Omitted = every supported type; "
        "'all' also adds the tagging API's long tail of other types (tagged resources only).")
    trigger: Literal["interactive", "scheduled"] = "interactive"
    force_refresh: bool = False
    store_snapshot: bool = Field(
        default=False, description="Keep this scan in the compliance history (trends) although it is ad hoc. "
        "Scheduled daily snapshots always are; other scans are not, so a one-off narrow scan cannot bend the trend.")

    @field_validator("accounts", "regions", "resource_types", mode="before")
    @classmethod
    def _normalize(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            value = parts
        if isinstance(value, list):
            value = [v.strip() if isinstance(v, str) else v for v in value]
            if len(value) == 1 and value[0] == "all":
                return "all"
            if len(value) == 0:
                raise ValueError("the list is empty; omit the field for the default or pass 'all'")
            if len(value) > MAX_LIST:
                raise ValueError(f"at most {MAX_LIST} entries are accepted, got {len(value)}")
            return list(dict.fromkeys(value))
        return value


class ViolationOut(BaseModel):
    resource_arn: str
    resource_id: str
    resource_type: str
    account_id: str
    region: str
    tag_name: str
    violation_type: str
    severity: str
    current_value: str | None
    allowed_values: list[str] | None
    message: str
    suggestion: str | None
    rule_id: str
    rule_source: str | None = Field(default=None, description="The policy (and level) the rule came from.")
    cost_impact_monthly: float | None = Field(default=None, description=(
        "Monthly spend of the resource this violation leaves unattributable (a required tag missing or "
        "wrong; 0 for findings that do not affect attribution), measured from the FOCUS export; null when "
        "no export is configured or it does not cover the resource."))


def violation_out(v: Violation) -> ViolationOut:
    """The API shape of an engine violation."""
    return ViolationOut(resource_arn=v.resource_arn, resource_id=v.resource_id, resource_type=v.resource_type,
                        account_id=v.account_id, region=v.region, tag_name=v.tag_name,
                        violation_type=str(v.violation_type), severity=str(v.severity),
                        current_value=v.current_value,
                        allowed_values=list(v.allowed_values) if v.allowed_values is not None else None,
                        message=v.message, suggestion=v.suggestion, rule_id=v.rule_id,
                        rule_source=getattr(v, "source", None))


class FailedShard(BaseModel):
    shard: str
    error: str


class DataQuality(BaseModel):
    """Whether the answer covers everything asked. ``partial`` always names what is missing."""

    status: Literal["complete", "partial", "pending"]
    failed_shards: list[FailedShard] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class Progress(BaseModel):
    """The scan's plan and how far it got: shards of (account, region, resource-type group)."""

    shards_total: int
    shards_done: int
    shards_running: int
    shards_failed: int
    shards_queued: int
    shards_retried: int = Field(default=0, description="Shards that needed more than one attempt.")
    shards_reused: int = Field(default=0, description=(
        "Shards that reused a recent identical shard's inventory (FINOPS_INVENTORY_CACHE_MINUTES)."))
    resources_found: int
    api_calls: int
    retries: int
    throttles: int = Field(default=0, description="Throttling answers from the cloud (each was retried).")


class BreakdownEntry(BaseModel):
    total: int = 0
    in_scope: int = 0
    compliant: int = 0
    violations: int = 0
    compliance_score: float = 1.0


class TagBreakdownEntry(BaseModel):
    violations: int = 0
    resources: int = 0
    by_type: dict[str, int] = Field(default_factory=dict)


class Breakdowns(BaseModel):
    by_account: dict[str, BreakdownEntry] = Field(default_factory=dict)
    by_region: dict[str, BreakdownEntry] = Field(default_factory=dict)
    by_resource_type: dict[str, BreakdownEntry] = Field(default_factory=dict)
    by_tag: dict[str, TagBreakdownEntry] = Field(default_factory=dict)


class ExpiredExemption(BaseModel):
    id: str
    expires: str = Field(description="The last day it applied (ISO date).")
    reason: str
    policy_version: str


class ExemptionSummary(BaseModel):
    """What the policy's exemptions did in one scan (judged on the scan's creation date, UTC)."""

    as_of: str = Field(description="The day exemptions were judged by (ISO date): the scan's creation date, UTC.")
    active: int = Field(description="Exemptions in force in the policies this scan used.")
    resources_exempted: int = Field(description="Resources compliant only because exemptions waived their violations.")
    violations_waived: int = Field(description="Violations waived by exemptions (not listed among violations).")
    by_exemption: dict[str, int] = Field(default_factory=dict,
                                         description="Exemption id -> resources on which it waived something.")
    expired: list[ExpiredExemption] = Field(default_factory=list,
                                            description="Exemptions past their end date: they waived nothing.")


class ScanResult(BaseModel):
    """A scan, finished or not. ``violations`` may be a page; ``violations_total`` counts them all."""

    scan_id: str
    status: ScanStatus
    compliance_score: float | None = Field(
        description="Compliant / in-scope resources, 0..1 (1.0 when nothing is in scope). "
        "Independent of any severity filter. None until the scan finishes.")
    total_resources: int | None
    in_scope_resources: int | None = None
    compliant_resources: int | None
    violations: list[ViolationOut] = Field(default_factory=list)
    violations_total: int = 0
    violations_returned: int = 0
    next_cursor: str | None = Field(default=None, description="Pass to the violations endpoint for more.")
    breakdowns: Breakdowns = Field(default_factory=Breakdowns)
    data_quality: DataQuality
    progress: Progress
    policy_version: str = Field(description="Version (content hash) of the default policy of this scan.")
    policy_by_account: dict[str, str] | None = Field(
        default=None, description="Accounts judged by another policy version than the default (their AWS "
        "Organizations effective policy, or the policy with its per-account/OU overrides applied): version.")
    exemptions: ExemptionSummary | None = Field(
        default=None, description="Exemptions applied and expired; None until the scan finishes, or when the "
        "policies define none.")
    request: dict[str, Any]
    created_at: datetime
    finished_at: datetime | None = None
    error: str | None = None
    in_history: bool = Field(default=False, description=(
        "Whether this scan is a point of the compliance history: scheduled snapshots, and ad-hoc scans "
        "run with store_snapshot."))


class ScanSummary(BaseModel):
    scan_id: str
    status: ScanStatus
    compliance_score: float | None
    total_resources: int | None
    compliant_resources: int | None
    trigger: str
    created_at: datetime
    finished_at: datetime | None
    data_quality_status: str | None
    in_history: bool = False


class ViolationPage(BaseModel):
    scan_id: str
    violations: list[ViolationOut]
    next_cursor: str | None
    total: int


class ViolationFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    severity: Literal["error", "warning"] | None = None
    resource_type: str | None = None
    account_id: str | None = None
    region: str | None = None
    tag_name: str | None = None
    violation_type: Literal["missing_required_tag", "invalid_value", "invalid_format", "wrong_key_case",
                            "prohibited_tag", "naming_rule"] | None = None
    resource_arn: str | None = None

