"""Monthly cost per resource: measured from the configured FOCUS export, else estimated from Cost Explorer.

* FOCUS (``FINOPS_FOCUS_PATH``): the resource's spend over the export (untaggable charge categories
  left out) divided by the billing periods the export covers; a resource is matched by its ARN or its
  bare id (CUR reports EC2 usage under ``i-...``, ``vol-...``). ``method`` is ``measured``. The export is
  read once per file version (path, size, modification time) and kept in memory.
* Cost Explorer (no FOCUS export, ``FINOPS_COST_EXPLORER`` on): resource-level data where the payer
  account has opted in to it (``GetCostAndUsageWithResources``: the last 14 days scaled to 30;
  ``measured``); for the other resources, last full month's spend of the service in the resource's
  account divided evenly over the resources of that service the latest scans found there. ``method``
  is then ``estimated`` and ``basis`` says so: it is an average, never a measurement.

Resources with no cost data get no entry; callers say "unknown", never 0.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import func, select

from services.cost_explorer import SERVICE_PREFIXES, resource_level_monthly, service_bills, service_monthly_totals
from services.db.models import ResourceRow, utcnow
from services.errors import AppError
from services.focus import open_focus
from services.runtime import Runtime
from services.schemas import ViolationOut


class ResourceCost(BaseModel):
    monthly_cost: float = Field(description="Average monthly spend of the resource.")
    currency: str | None
    method: Literal["measured", "estimated"]
    source: Literal["focus", "cost_explorer"]
    basis: str = Field(description="How the figure was obtained, in words.")


@dataclass(frozen=True, slots=True)
class CostTarget:
    """What a cost lookup needs to know about one resource."""

    arn: str
    resource_id: str
    resource_type: str
    account_id: str


@dataclass
class CostLookup:
    costs: dict[str, ResourceCost]
    source: str | None
    notes: list[str]


_focus_lock = threading.Lock()
_focus_cache: dict[tuple[str, str, float, int], tuple[dict[str, Decimal], int, tuple[str, ...]]] = {}


def _focus_index(location: str, metric: str) -> tuple[dict[str, Decimal], int, tuple[str, ...]]:
    """Per-ResourceId totals of the export, cached per file version (S3 exports: per hour)."""
    if location.startswith("s3://"):
        stamp: tuple[float, int] = (float(int(utcnow().timestamp() // 3600)), 0)
    else:
        path = Path(location)
        stat = path.stat() if path.exists() else None
        stamp = (stat.st_mtime, stat.st_size) if stat else (0.0, 0)
    key = (location, metric, *stamp)
    with _focus_lock:
        cached = _focus_cache.get(key)
    if cached is not None:
        return cached
    with open_focus(location) as table:
        index = table.resource_totals(metric)
    with _focus_lock:
        _focus_cache.clear()  # one export version at a time: older ones are stale
        _focus_cache[key] = index
    return index


def monthly_costs(rt: Runtime, targets: Sequence[CostTarget], *, allow_cost_explorer: bool = True) -> CostLookup:
    """Monthly cost of each target that has cost data (see the module docstring for the sources)."""
    settings = rt.settings
    if settings.focus_path:
        return _from_focus(rt, targets)
    if settings.cost_explorer and allow_cost_explorer:
        return _from_cost_explorer(rt, targets)
    return CostLookup({}, None, ["no cost source: set FINOPS_FOCUS_PATH to a FOCUS export, or enable "
                                 "FINOPS_COST_EXPLORER"])


def _from_focus(rt: Runtime, targets: Sequence[CostTarget]) -> CostLookup:
    location = str(rt.settings.focus_path)
    totals, periods, currencies = _focus_index(location, rt.settings.cost_metric)
    currency = currencies[0] if len(currencies) == 1 else None
    name = location if location.startswith("s3://") else os.path.basename(location.rstrip("/")) or location
    costs: dict[str, ResourceCost] = {}
    for t in targets:
        # One resource may be billed under both names (CUR uses the bare EC2 id, other exports the ARN).
        found = [totals[k] for k in dict.fromkeys((t.arn, t.resource_id)) if k in totals]
        if not found:
            continue
        total = sum(found, Decimal(0))
        costs[t.arn] = ResourceCost(
            monthly_cost=round(float(total) / periods, 6), currency=currency, method="measured", source="focus",
            basis=f"{rt.settings.cost_metric} of the resource in {name} over {periods} billing period(s)")
    notes = [] if len(currencies) <= 1 else [f"the export mixes currencies {', '.join(currencies)}: figures are "
                                             "summed as they are"]
    return CostLookup(costs, "focus", notes)


def _from_cost_explorer(rt: Runtime, targets: Sequence[CostTarget]) -> CostLookup:
    """Resource-level data where the account has opted in (measured), else service averages (estimated)."""
    measured, notes = _resource_level(rt, targets)
    rest = [t for t in targets if t.arn not in measured]
    if not rest:
        return CostLookup(measured, "cost_explorer", notes)
    estimated = _service_averages(rt, rest)
    return CostLookup({**estimated.costs, **measured}, estimated.source or "cost_explorer", notes + estimated.notes)


def _resource_level(rt: Runtime, targets: Sequence[CostTarget]) -> tuple[dict[str, ResourceCost], list[str]]:
    services = sorted({svc for t in targets for svc in SERVICE_PREFIXES if service_bills(svc, t.resource_type)})
    if not services:
        return {}, []
    try:
        by_id, days, usage = resource_level_monthly(rt, services, sorted({t.account_id for t in targets}),
                                                    metric=rt.settings.cost_metric)
    except AppError as exc:
        return {}, [f"resource-level Cost Explorer data unavailable ({exc.message}); enable it in Cost Explorer "
                    "settings for measured per-resource costs"]
    costs: dict[str, ResourceCost] = {}
    for t in targets:
        found = [by_id[k] for k in dict.fromkeys((t.arn, t.resource_id)) if k in by_id]
        if found:
            costs[t.arn] = ResourceCost(
                monthly_cost=round(sum(found), 6), currency="USD", method="measured", source="cost_explorer",
                basis=f"Cost Explorer resource-level data: the last {days} day(s) scaled to 30")
    return costs, [f"resource-level Cost Explorer data priced {len(costs)} of {len(targets)} resource(s) "
                   f"({usage.requests} request(s), {usage.from_cache} from the cache)"]


def _service_averages(rt: Runtime, targets: Sequence[CostTarget]) -> CostLookup:
    end = utcnow().date().replace(day=1)
    start = (end - timedelta(days=1)).replace(day=1)
    accounts = sorted({t.account_id for t in targets})
    if not accounts:
        return CostLookup({}, "cost_explorer", [])
    try:
        totals, usage = service_monthly_totals(rt, start=start, end=end, metric=rt.settings.cost_metric,
                                               accounts=accounts)
    except AppError as exc:
        return CostLookup({}, None, [f"Cost Explorer could not be read ({exc.message}); costs are unknown"])
    population = _population(rt, accounts)
    costs: dict[str, ResourceCost] = {}
    for t in targets:
        share = 0.0
        used: list[str] = []
        for (account, service), amount in totals.items():
            if account != t.account_id or not service_bills(service, t.resource_type):
                continue
            count = sum(n for (acc, rtype), n in population.items() if acc == account and service_bills(service, rtype))
            if count:
                share += amount / count
                used.append(f"{service} ({count} resources)")
        if used:
            costs[t.arn] = ResourceCost(
                monthly_cost=round(share, 6), currency="USD", method="estimated", source="cost_explorer",
                basis=f"estimated: {start:%Y-%m} spend of {', '.join(used)} in account {t.account_id} divided "
                      "evenly over the resources scanned there")
    notes = [f"costs are estimates from Cost Explorer service totals ({usage.requests} request(s), "
             f"{usage.from_cache} from the cache); configure a FOCUS export for measured per-resource costs"]
    return CostLookup(costs, "cost_explorer", notes)


def _population(rt: Runtime, accounts: Iterable[str]) -> Counter[tuple[str, str]]:
    """Resources per (account, resource type) seen by a scan in the last 35 days (deleted ones drop out)."""
    counts: Counter[tuple[str, str]] = Counter()
    since = utcnow() - timedelta(days=35)
    with rt.db.session() as s:
        rows = s.execute(select(ResourceRow.account_id, ResourceRow.resource_type, func.count())
                         .where(ResourceRow.account_id.in_(list(accounts)), ResourceRow.last_seen >= since)
                         .group_by(ResourceRow.account_id, ResourceRow.resource_type)).all()
    for account, rtype, n in rows:
        counts[(account, str(rtype))] += int(n)
    return counts


#: Findings that leave a resource's spend unattributable when they concern a required tag.
_ATTRIBUTION_TYPES = frozenset({"missing_required_tag", "invalid_value", "invalid_format", "wrong_key_case"})


def with_cost_impact(rt: Runtime, violations: Sequence[ViolationOut], policy_for: Callable[[str], str]
                     ) -> list[ViolationOut]:
    """``violations`` with ``cost_impact_monthly`` filled from the FOCUS export (unchanged without one).

    ``policy_for(account_id)`` is the policy version that judged the account (the scan's frozen map)."""
    if not rt.settings.focus_path or not violations:
        return list(violations)
    try:
        lookup = _from_focus(rt, [CostTarget(v.resource_arn, v.resource_id, v.resource_type, v.account_id)
                                  for v in violations])
    except AppError:
        return list(violations)  # an unreadable export is reported by the cost tools, not by every page
    out: list[ViolationOut] = []
    for v in violations:
        cost = lookup.costs.get(v.resource_arn)
        if cost is None:
            out.append(v)
            continue
        impact = 0.0
        if v.violation_type in _ATTRIBUTION_TYPES:
            compiled = rt.policies.get(rt.db, policy_for(v.account_id))
            if any(r.name == v.tag_name and r.required for r in compiled.rules_for(v.resource_type)):
                impact = cost.monthly_cost
        out.append(v.model_copy(update={"cost_impact_monthly": impact}))
    return out
