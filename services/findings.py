"""Reads over a finished scan that answer specific questions (untagged resources, one resource's state)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import func, select

from services.db.models import ScanResourceRow, ViolationRow
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


class UntaggedResources(BaseModel):
    scan_id: str
    total: int = Field(description="Resources missing at least one required tag (all pages).")
    never_tagged_total: int
    returned: int
    resources: list[UntaggedResource]
    by_resource_type: dict[str, int]
    data_quality: dict[str, Any]


def untagged_resources(rt: Runtime, scan_id: str, *, resource_types: Sequence[str] | None = None,
                       regions: Sequence[str] | None = None, limit: int = 25) -> UntaggedResources:
    """Resources of a scan missing at least one required tag, never-tagged ones first."""
    scan = get_scan(rt, scan_id, violations_limit=0)
    v, r = ViolationRow, ScanResourceRow
    clauses: list[Any] = [v.scan_id == scan_id, v.violation_type == "missing_required_tag"]
    if resource_types:
        clauses.append(v.resource_type.in_(list(resource_types)))
    if regions:
        clauses.append(v.region.in_(list(regions)))
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
    items.sort(key=lambda u: (not u.never_tagged, -len(u.missing_tags), u.resource_arn))
    return UntaggedResources(scan_id=scan_id, total=len(items), never_tagged_total=sum(u.never_tagged for u in items),
                             returned=min(limit, len(items)), resources=items[:limit],
                             by_resource_type={k: int(n) for k, n in by_type.items()},
                             data_quality=scan.data_quality.model_dump())
