"""Reads over a finished scan that answer specific questions (untagged resources, one resource's state)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import func, select

from services.db.models import ScanResourceRow, ViolationRow
from services.errors import InvalidInput
from services.resource_costs import CostTarget, ResourceCost, monthly_costs
from services.runtime import Runtime
from services.scans import get_scan

_IN_CHUNK = 500


class UntaggedResource(BaseModel):
    resource_arn: str
    resource_id: str
    resource_type: str
    account_id: str
    region: str
    name: str | None
    missing_tags: list[str] = Field(description="Required tags absent (or present with an empty value).")
    never_tagged: bool = Field(description="True when the resource carries no tag at all.")
    tag_count: int
    cost: ResourceCost | None = Field(default=None, description=(
        "With include_costs: the resource's monthly cost and how it was obtained (measured or estimated); "
        "null when no cost data covers it."))


class UntaggedResources(BaseModel):
    scan_id: str
    total: int = Field(description="Resources missing at least one required tag (all pages).")
    never_tagged_total: int
    returned: int
    resources: list[UntaggedResource]
    by_resource_type: dict[str, int]
    data_quality: dict[str, Any]
    cost_source: str | None = Field(default=None, description="focus or cost_explorer, with include_costs.")
    monthly_cost_total: float | None = Field(default=None, description=(
        "With include_costs: summed monthly cost of every listed-or-not resource that has cost data."))
    cost_notes: list[str] = Field(default_factory=list)


def untagged_resources(rt: Runtime, scan_id: str, *, resource_types: Sequence[str] | None = None,
                       regions: Sequence[str] | None = None, limit: int = 25, include_costs: bool = False,
                       min_cost_threshold: float | None = None,
                       accounts: Sequence[str] | None = None) -> UntaggedResources:
    """Resources of a scan missing at least one required tag, never-tagged ones first.

    With ``include_costs`` (implied by ``min_cost_threshold``) each resource carries its monthly cost
    (services.resource_costs), the most expensive come first, and ``min_cost_threshold`` keeps those
    costing at least that much a month (resources without cost data are then left out, and counted
    in the notes)."""
    if min_cost_threshold is not None and min_cost_threshold < 0:
        raise InvalidInput(f"min_cost_threshold {min_cost_threshold} is negative", field="min_cost_threshold",
                           fix="pass a monthly amount of 0 or more, e.g. 100")
    include_costs = include_costs or min_cost_threshold is not None
    scan = get_scan(rt, scan_id, violations_limit=0)
    v, r = ViolationRow, ScanResourceRow
    clauses: list[Any] = [v.scan_id == scan_id, v.violation_type == "missing_required_tag"]
    if resource_types:
        clauses.append(v.resource_type.in_(list(resource_types)))
    if regions:
        clauses.append(v.region.in_(list(regions)))
    if accounts:
        clauses.append(v.account_id.in_(list(accounts)))
    with rt.db.session() as s:
        missing: dict[str, list[str]] = {}
        for arn, tag in s.execute(select(v.resource_arn, v.tag_name).where(*clauses)):
            missing.setdefault(arn, []).append(tag)
        arns = list(missing)
        rows: dict[str, ScanResourceRow] = {}
        for i in range(0, len(arns), _IN_CHUNK):  # bounded IN lists: SQLite caps bound parameters
            rows.update((row.arn, row) for row in s.scalars(
                select(r).where(r.scan_id == scan_id, r.arn.in_(arns[i:i + _IN_CHUNK]))))
        by_type = dict(s.execute(select(v.resource_type, func.count(func.distinct(v.resource_arn)))
                                 .where(*clauses).group_by(v.resource_type)).all())
    items = [UntaggedResource(resource_arn=arn, resource_id=row.resource_id, resource_type=row.resource_type,
                              account_id=row.account_id, region=row.region, name=row.name,
                              missing_tags=sorted(tags), never_tagged=not row.tags, tag_count=len(row.tags))
             for arn, tags in missing.items() if (row := rows.get(arn)) is not None]
    cost_source: str | None = None
    cost_total: float | None = None
    notes: list[str] = []
    if include_costs:
        lookup = monthly_costs(rt, [CostTarget(u.resource_arn, u.resource_id, u.resource_type, u.account_id)
                                    for u in items])
        cost_source, notes = lookup.source, list(lookup.notes)
        for u in items:
            u.cost = lookup.costs.get(u.resource_arn)
        priced = [u for u in items if u.cost is not None]
        cost_total = round(sum(u.cost.monthly_cost for u in priced if u.cost), 2)
        if min_cost_threshold is not None:
            unknown = len(items) - len(priced)
            items = [u for u in priced if u.cost and u.cost.monthly_cost >= min_cost_threshold]
            if unknown:
                notes.append(f"{unknown} resource(s) without cost data were left out by min_cost_threshold")
        items.sort(key=lambda u: (-(u.cost.monthly_cost if u.cost else -1.0), not u.never_tagged, u.resource_arn))
        by_type = Counter(u.resource_type for u in items) if min_cost_threshold is not None else by_type
    else:
        items.sort(key=lambda u: (not u.never_tagged, -len(u.missing_tags), u.resource_arn))
    return UntaggedResources(scan_id=scan_id, total=len(items), never_tagged_total=sum(u.never_tagged for u in items),
                             returned=min(limit, len(items)), resources=items[:limit],
                             by_resource_type={k: int(n) for k, n in by_type.items()},
                             data_quality=scan.data_quality.model_dump(), cost_source=cost_source,
                             monthly_cost_total=cost_total, cost_notes=notes)
