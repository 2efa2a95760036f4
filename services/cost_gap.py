"""The get_cost_attribution_gap answer: from the configured FOCUS export (measured), else from AWS Cost
Explorer (estimated), bounded for an MCP client (top groups, not every service of a large bill).

The policy is the configured one (FINOPS_POLICY_PATH); per-account AWS Organizations policies and OU
overrides are not applied to cost rows, which carry no OU (the notes say so when they exist).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Literal

from pydantic import BaseModel, Field

from scanner.providers.aws import registry
from services.cost import CostAttribution, CostBreakdown, TagKeyGap, attribution_from_focus
from services.cost_explorer import attribution_from_cost_explorer, check_period
from services.errors import InvalidInput, Unavailable
from services.focus import RowFilter
from services.policy_store import active_policy
from services.runtime import Runtime
from services.scan_policies import synced_policy_versions

GroupBy = Literal["service", "account", "region", "resource_type", "tag_key"]
GROUP_BY_VALUES: tuple[str, ...] = ("service", "account", "region", "resource_type", "tag_key")
MAX_GROUPS = 25


class GroupGap(BaseModel):
    key: str
    total_cost: float
    taggable_cost: float
    attribution_gap: float
    attribution_gap_percentage: float | None


class CostGapAnswer(BaseModel):
    """How much spend the tagging policy cannot attribute, where, and how the figure was obtained."""

    source: Literal["focus", "cost_explorer"]
    source_name: str
    method: Literal["measured", "estimated"] = Field(
        description="measured: summed from cost rows; estimated: from Cost Explorer per-key totals "
                    "(see method_description).")
    method_description: str
    metric: str
    currency: str | None
    period_start: datetime | None
    period_end: datetime | None = Field(description="Exclusive.")
    policy_version: str
    total_cost: float
    taggable_cost: float
    untaggable_cost: float = Field(description="Tax, credits, adjustments and rows without a resource: never gap.")
    attributable_cost: float
    attribution_gap: float = Field(description="Spend not attributable, each cost row counted once.")
    attribution_gap_upper_bound: float | None = Field(
        description="Estimated sources only: the most the gap can be (attribution_gap is then the least).")
    attribution_gap_percentage: float | None = Field(description="attribution_gap / taggable_cost x 100.")
    group_by: str
    groups: list[GroupGap] = Field(description=f"The {MAX_GROUPS} groups with the largest gap.")
    groups_total: int = Field(description="How many groups there are in all.")
    by_tag_key: dict[str, TagKeyGap] = Field(description="Spend failing each required key (these overlap).")
    notes: list[str]


def _period(time_period: dict[str, str] | None) -> tuple[date | None, date | None]:
    if not time_period:
        return None, None
    unknown = set(time_period) - {"Start", "End"}
    if unknown:
        raise InvalidInput(f"time_period has unknown key(s) {', '.join(sorted(unknown))}", field="time_period",
                           fix='use {"Start": "YYYY-MM-DD", "End": "YYYY-MM-DD"} (End exclusive)')
    out: list[date | None] = []
    for key in ("Start", "End"):
        text = time_period.get(key)
        try:
            out.append(date.fromisoformat(text) if text else None)
        except (TypeError, ValueError):
            raise InvalidInput(f"time_period.{key} {text!r} is not a date", field=f"time_period.{key}",
                               fix="write it as YYYY-MM-DD, e.g. 2026-11-01") from None
    return out[0], out[1]


def _check_types(resource_types: list[str] | None) -> list[str] | None:
    if not resource_types:
        return None
    known = set(registry.all_types())
    for i, rtype in enumerate(resource_types):
        service = rtype.split(":", 1)[0]
        if rtype not in known and not (rtype.endswith(":*") and any(k.startswith(service + ":") for k in known)):
            raise InvalidInput(f"unknown resource type {rtype!r}", field=f"resource_types[{i}]",
                               fix="use service:resource types such as ec2:instance or s3:bucket (ec2:* for a service)")
    return resource_types


def cost_attribution_gap(rt: Runtime, *, resource_types: list[str] | None = None,
                         time_period: dict[str, str] | None = None, group_by: str | None = None,
                         accounts: list[str] | None = None, regions: list[str] | None = None) -> CostGapAnswer:
    """The attribution gap over the configured cost source; see the module docstring."""
    group = group_by or "service"
    if group not in GROUP_BY_VALUES:
        raise InvalidInput(f"group_by {group_by!r} is not supported", field="group_by",
                           fix=f"use one of {', '.join(GROUP_BY_VALUES)}")
    types = _check_types(resource_types)
    start, end = _period(time_period)
    policy = active_policy(rt.db, rt.settings.policy_path).policy
    notes: list[str] = []
    if synced_policy_versions(rt):
        notes.append("accounts with their own AWS Organizations tag policy are priced with the configured policy "
                     "file: cost rows carry no organizational unit")
    if rt.settings.focus_path:
        if start is not None or end is not None:
            start, end = check_period(start, end)
        rf = RowFilter(accounts=accounts or (), regions=regions or (),
                       start=datetime.combine(start, datetime.min.time(), UTC) if start else None,
                       end=datetime.combine(end, datetime.min.time(), UTC) if end else None)
        result = attribution_from_focus(rt.settings.focus_path, policy, metric=rt.settings.cost_metric,
                                        row_filter=rf, resource_types=types)
    elif rt.settings.cost_explorer:
        if types:
            raise InvalidInput("resource_types cannot narrow Cost Explorer figures (it knows services, not resource "
                               "types)", field="resource_types",
                               fix="omit resource_types, or configure a FOCUS export (FINOPS_FOCUS_PATH) for "
                                   "per-type figures")
        if group == "region" or group == "resource_type":
            raise InvalidInput(f"group_by {group} needs per-resource cost rows", field="group_by",
                               fix="use service, account or tag_key with Cost Explorer, or configure a FOCUS export")
        start, end = check_period(start, end)
        result = attribution_from_cost_explorer(rt, policy, start=start, end=end, metric=rt.settings.cost_metric,
                                                accounts=accounts or (), regions=regions or ())
    else:
        raise Unavailable("no cost source is configured", field="cost_source",
                                fix="set FINOPS_FOCUS_PATH to a FOCUS export, or FINOPS_COST_EXPLORER=true with "
                                    "credentials allowed ce:GetCostAndUsage")
    return _answer(result, group, notes)


def _answer(result: CostAttribution, group: str, notes: list[str]) -> CostGapAnswer:
    if group == "tag_key":
        groups = [GroupGap(key=k, total_cost=v.applicable_cost, taggable_cost=v.applicable_cost,
                           attribution_gap=v.attribution_gap, attribution_gap_percentage=v.gap_percentage_of_applicable)
                  for k, v in result.by_tag_key.items()]
    else:
        table: dict[str, CostBreakdown] = {"service": result.by_service, "account": result.by_account,
                                           "region": result.by_region,
                                           "resource_type": result.by_resource_type}[group]
        groups = [GroupGap(key=k, total_cost=v.total_cost, taggable_cost=v.taggable_cost,
                           attribution_gap=v.attribution_gap, attribution_gap_percentage=v.attribution_gap_percentage)
                  for k, v in table.items()]
    groups.sort(key=lambda g: (-g.attribution_gap, -g.total_cost, g.key))
    return CostGapAnswer(
        source=result.source, source_name=result.source_name, method=result.method,
        method_description=result.method_description, metric=result.metric, currency=result.currency,
        period_start=result.billing_period_start, period_end=result.billing_period_end,
        policy_version=result.policy_version, total_cost=result.total_cost, taggable_cost=result.taggable_cost,
        untaggable_cost=result.untaggable_cost, attributable_cost=result.attributable_cost,
        attribution_gap=result.attribution_gap, attribution_gap_upper_bound=result.attribution_gap_upper_bound,
        attribution_gap_percentage=result.attribution_gap_percentage, group_by=group, groups=groups[:MAX_GROUPS],
        groups_total=len(groups), by_tag_key=result.by_tag_key, notes=[*result.notes, *notes])
