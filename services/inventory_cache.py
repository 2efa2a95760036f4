"""Inventory reuse: a shard identical to one collected a few minutes ago takes that inventory instead of
calling the cloud again (FINOPS_INVENTORY_CACHE_MINUTES; a scan's force_refresh skips it).

"Identical" is the cache key: the same account, region, shard group and resource types, the same region
filter (global listings are filtered by it), and the same policy version for the account. The inventory
is what that earlier shard stored in scan_resources (plus each resource's attributes from the latest
state); it is judged again by this scan's compiled policy, so exemptions dated today still apply. Only a
shard that succeeded completely is reused, so a reused inventory is never less complete than a fresh one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from policies.models import Resource
from scanner.results import ShardResult
from services.db.models import ResourceRow, ScanResourceRow, ScanRow, ScanShardRow, utcnow
from services.runtime import Runtime


@dataclass(frozen=True)
class ReusedInventory:
    scan_id: str
    collected_at: datetime
    result: ShardResult


def reusable_shard(rt: Runtime, *, scan_id: str, shard_id: str, policy_id: str,
                   allowed_regions: set[str] | None) -> ReusedInventory | None:
    """The inventory of the newest matching shard finished within the TTL, or None (collect afresh)."""
    minutes = rt.settings.inventory_cache_minutes
    if minutes <= 0:
        return None
    since = utcnow() - timedelta(minutes=minutes)
    with rt.db.session() as s:
        shard = s.get(ScanShardRow, shard_id)
        if shard is None:
            return None
        candidates = s.execute(
            select(ScanShardRow, ScanRow)
            .join(ScanRow, ScanRow.id == ScanShardRow.scan_id)
            .where(ScanShardRow.account_id == shard.account_id, ScanShardRow.region == shard.region,
                   ScanShardRow.group == shard.group, ScanShardRow.status == "succeeded",
                   ScanShardRow.finished_at >= since, ScanShardRow.scan_id != scan_id)
            .order_by(ScanShardRow.finished_at.desc()).limit(20)).all()
        wanted_types = sorted(shard.resource_types)
        for source, source_scan in candidates:
            if sorted(source.resource_types) != wanted_types:
                continue
            source_policy = (source_scan.policy_by_account or {}).get(source.account_id, source_scan.policy_id)
            if source_policy != policy_id or _region_filter(rt, source_scan) != allowed_regions:
                continue
            return ReusedInventory(scan_id=source_scan.id, collected_at=_aware(source.finished_at or since),
                                   result=_inventory(s, source, minutes))
    return None


def _inventory(s: Session, source: ScanShardRow, minutes: float) -> ShardResult:
    rows = s.execute(
        select(ScanResourceRow, ResourceRow.attributes)
        .join(ResourceRow, ResourceRow.arn == ScanResourceRow.arn, isouter=True)
        .where(ScanResourceRow.scan_id == source.scan_id, ScanResourceRow.shard_id == source.id)).all()
    resources = [Resource(arn=r.arn, resource_id=r.resource_id, resource_type=r.resource_type,
                          account_id=r.account_id, region=r.region, tags=dict(r.tags or {}), name=r.name,
                          attributes=dict(attributes or {}))
                 for r, attributes in rows]
    collected = _aware(source.finished_at) if source.finished_at else None
    note = (f"inventory reused from scan {source.scan_id} (collected {collected:%Y-%m-%d %H:%M:%S} UTC, within "
            f"FINOPS_INVENTORY_CACHE_MINUTES={minutes:g}); scan with force_refresh to read the cloud again")
    return ShardResult(resources=resources, notes=[*source.notes, note] if source.notes else [note])


def _region_filter(rt: Runtime, scan: ScanRow) -> set[str] | None:
    regions = (scan.request or {}).get("regions")
    if isinstance(regions, list):
        return set(regions)
    return set(rt.settings.regions) if rt.settings.regions else None


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
