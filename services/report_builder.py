"""The compliance report: one pydantic model built from a finished scan, rendered by report_formats.

Everything is read from the scan's rows (aggregated in SQL, so a report of a large estate stays
bounded in memory); nothing calls the cloud. A report can be narrowed to some resource types: every
count, the score, the trend and the recommendations are then computed over those types only.

Recommendations are exact, not estimated from averages: a fix is one kind of problem (violation
type x tag, e.g. "missing CostCenter"), and its score impact counts the resources whose *only*
problems are of that kind, because exactly those become compliant when the fix is made.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Integer, and_, case, distinct, func, select
from sqlalchemy.orm import Session

from scanner.providers.aws import registry
from services.db.models import ScanResourceRow, ScanRow, ViolationRow, utcnow
from services.errors import AppError, InvalidInput, NotFound
from services.resource_costs import CostTarget, monthly_costs
from services.runtime import Runtime
from services.scans import policy_lookup
from services.schemas import DataQuality, ViolationOut

#: Scans a report is built from when no scan id is given ("the latest finished scan").
FINISHED_STATUSES: tuple[str, ...] = ("succeeded", "partial")
#: Scans a report may be built from when asked by id: a cancelled scan still has results (partial).
REPORTABLE_STATUSES: frozenset[str] = frozenset({"succeeded", "partial", "cancelled"})

#: The report's cost section until reports read cost data: what is missing and how to get it.
COST_UNAVAILABLE = ("cost data not available in reports yet: get the spend no tag attributes from a FOCUS cost "
                    "export with `finops-tags cost --focus FILE`")
NO_COST_BASIS = "no cost data"
#: Findings that leave a resource's spend unattributable when they concern a required tag.
_ATTRIBUTION_TYPES = ("missing_required_tag", "invalid_value", "invalid_format", "wrong_key_case")

# Bounds that keep every report (and so every MCP answer carrying one) small whatever the estate.
MAX_GROUPS = 100
MAX_TREND_POINTS = 60
TOP_OFFENDERS = 10
MAX_RECOMMENDATIONS = 10
SAMPLE_ARNS = 5
SAMPLE_VIOLATIONS = 15
# How many earlier scans are read to find the trend's same-scope points.
_TREND_LOOKBACK = 500
_SCOPE_KEYS = ("accounts", "regions", "resource_types")


# ---------------------------------------------------------------------------------------------- model

class ReportScope(BaseModel):
    """What the report covers: the scan's request and the report's own resource-type filter."""

    accounts: list[str] | str | None = Field(description="The scan's accounts (None: the configured default).")
    regions: list[str] | str | None = Field(description="The scan's regions (None: every enabled region).")
    scan_resource_types: list[str] | str | None = Field(description="The resource types the scan covered.")
    resource_types: list[str] | None = Field(
        default=None, description="The report's filter: only these types are counted (None: all of the scan).")


class ReportSummary(BaseModel):
    """Headline numbers over the report's scope."""

    compliance_score: float = Field(description="Compliant / in-scope resources, 0..1 (1.0 when nothing is in scope).")
    total_resources: int
    in_scope_resources: int
    compliant_resources: int
    non_compliant_resources: int
    violations_total: int
    errors: int
    warnings: int


class TrendPoint(BaseModel):
    """The score of one finished scan."""

    scan_id: str
    finished_at: datetime
    compliance_score: float
    status: str
    trigger: str = Field(description="interactive or scheduled (daily snapshots).")


class ScoreTrend(BaseModel):
    """Scores of the finished scans with the same scope as this one, oldest first, ending with this scan."""

    points: list[TrendPoint]
    other_scope_scans: int = Field(
        default=0, description="Earlier finished scans left out because they covered other accounts, regions "
        "or resource types (their scores are not comparable).")
    note: str | None = None


class GroupStats(BaseModel):
    """Counts for one account, region or resource type."""

    key: str
    total: int
    in_scope: int
    compliant: int
    non_compliant: int
    violations: int
    compliance_score: float


class TagStats(BaseModel):
    """Violations of one tag."""

    tag_name: str
    violations: int
    resources: int
    by_violation_type: dict[str, int]


class OffenderResource(BaseModel):
    """A resource with many violations."""

    resource_arn: str
    resource_id: str
    resource_type: str
    account_id: str
    region: str
    name: str | None
    violations: int
    problems: list[str] = Field(description="'tag: violation type' for each problem.")


class TopOffenders(BaseModel):
    """Where most of the work is."""

    resources: list[OffenderResource] = Field(description="Resources with the most violations.")
    resource_types: list[GroupStats] = Field(description="Types with the most non-compliant resources.")
    accounts: list[GroupStats] = Field(description="Accounts with the most non-compliant resources.")


class CostGapEntry(BaseModel):
    """Spend of one group (account, service or resource type) and the part no tag attributes."""

    key: str
    total_cost: float
    unattributed_cost: float


class CostGap(BaseModel):
    """Spend left unattributed by missing or invalid tags, from FOCUS cost data.

    Filled only from real cost data; the report never estimates dollars without it.
    """

    currency: str
    period_start: date | None = None
    period_end: date | None = None
    total_cost: float
    unattributed_cost: float
    by_group: list[CostGapEntry] = Field(default_factory=list)
    source: str = Field(description="Where the cost data came from (e.g. the FOCUS file name).")


class Recommendation(BaseModel):
    """One fix, with its exact effect on the score."""

    rank: int
    title: str
    action: str
    violation_type: str
    tag_name: str
    resources_affected: int = Field(description="Resources that have this problem.")
    by_resource_type: dict[str, int] = Field(description="Affected resources per type.")
    sample_resource_arns: list[str]
    example_suggestion: str | None = Field(description="The most common fix suggestion for this problem.")
    resources_becoming_compliant: int = Field(
        description="Resources whose only problems are this one: they become compliant with this fix alone.")
    estimated_score_points: float = Field(
        description="Score gain in percentage points: resources_becoming_compliant / in-scope resources x 100.")
    compliance_score_after: float = Field(description="The score (0..1) once this fix alone is made.")
    estimated_dollars: float | None = Field(
        default=None, description="Monthly spend this fix would attribute; null without cost data.")
    dollar_impact_basis: str = NO_COST_BASIS


class ComplianceReport(BaseModel):
    """A compliance report of one finished scan (bounded: every list is a top N)."""

    report_version: Literal[1] = 1
    generated_at: datetime
    scan_id: str
    scan_status: str
    scan_created_at: datetime
    scan_finished_at: datetime | None
    policy_version: str
    scope: ReportScope
    summary: ReportSummary
    data_quality: DataQuality
    trend: ScoreTrend
    by_account: list[GroupStats] = Field(description="Worst score first (at most 100).")
    by_region: list[GroupStats] = Field(description="Worst score first (at most 100).")
    by_resource_type: list[GroupStats] = Field(description="Worst score first (at most 100).")
    by_tag: list[TagStats] = Field(description="Most violations first.")
    top_offenders: TopOffenders
    cost: CostGap | None = Field(default=None, description="Null until cost data (FOCUS) is loaded.")
    cost_note: str | None = None
    recommendations: list[Recommendation] | None = Field(
        default=None, description="Ranked by score points; null when not requested.")
    sample_violations: list[ViolationOut] = Field(
        description="A varied sample (most frequent kinds of problem first); every violation is in the CSV.")


# -------------------------------------------------------------------------------------------- builder

def resolve_scan_id(rt: Runtime, scan_id: str | None) -> str:
    """The scan to report on: ``scan_id`` once checked, or the latest finished scan."""
    with rt.db.session() as s:
        if scan_id is None:
            latest = s.scalar(select(ScanRow.id).where(ScanRow.status.in_(FINISHED_STATUSES),
                                                       ScanRow.finished_at.is_not(None))
                              .order_by(ScanRow.finished_at.desc()).limit(1))
            if latest is None:
                raise NotFound("no finished scan yet: a report needs one", field="scan_id",
                               fix="run check_tag_compliance first (or `finops-tags scan`, or POST /v1/scans), "
                                   "then ask for the report again")
            return latest
        try:
            uuid.UUID(scan_id)
        except (ValueError, AttributeError, TypeError):
            raise InvalidInput(f"'{scan_id}' is not a scan id", field="scan_id",
                               fix="pass a scan_id from list_scans (a UUID), or omit it for the latest "
                                   "finished scan") from None
        scan = s.get(ScanRow, scan_id)
        if scan is None:
            raise NotFound(f"scan {scan_id} does not exist", field="scan_id",
                           fix="list scans to find a valid id, or omit scan_id for the latest finished scan")
        if scan.status not in REPORTABLE_STATUSES:
            if scan.status == "failed":
                raise InvalidInput(f"scan {scan_id} failed ({scan.error or 'no result'}); it has nothing to report",
                                   field="scan_id", fix="run a new scan, or omit scan_id for the latest finished "
                                                        "scan")
            raise InvalidInput(f"scan {scan_id} is still {scan.status}", field="scan_id",
                               fix="wait until get_scan_status says succeeded or partial, then ask again")
        return scan_id


def build_report(rt: Runtime, *, scan_id: str | None = None, resource_types: Sequence[str] | None = None,
                 include_recommendations: bool = True) -> ComplianceReport:
    """Build the report of ``scan_id`` (default: the latest finished scan), over ``resource_types``
    (default: every type of the scan)."""
    sid = resolve_scan_id(rt, scan_id)
    with rt.db.session() as s:
        scan = s.get(ScanRow, sid)
        assert scan is not None  # resolve_scan_id checked it
        types = _check_types(s, scan, resource_types)
        r, v = ScanResourceRow, ViolationRow
        rclauses: list[Any] = [r.scan_id == sid]
        vclauses: list[Any] = [v.scan_id == sid]
        if types is not None:
            rclauses.append(r.resource_type.in_(types))
            vclauses.append(v.resource_type.in_(types))

        by_account = _groups(s, r.account_id, rclauses)
        by_region = _groups(s, r.region, rclauses)
        by_type = _groups(s, r.resource_type, rclauses)
        summary = _summary(s, rclauses, vclauses)
        data_quality = DataQuality.model_validate(scan.data_quality or {"status": "partial"})
        if types is not None:
            data_quality.notes.append("this report covers only the resource types " + ", ".join(types))
        report = ComplianceReport(
            generated_at=utcnow(), scan_id=sid, scan_status=scan.status, scan_created_at=_aware(scan.created_at),
            scan_finished_at=_aware(scan.finished_at) if scan.finished_at else None, policy_version=scan.policy_id,
            scope=ReportScope(accounts=scan.request.get("accounts"), regions=scan.request.get("regions"),
                              scan_resource_types=scan.request.get("resource_types"), resource_types=types),
            summary=summary, data_quality=data_quality, trend=_trend(s, scan, types, summary.compliance_score),
            by_account=_worst(by_account), by_region=_worst(by_region), by_resource_type=_worst(by_type),
            by_tag=_tags(s, vclauses),
            top_offenders=TopOffenders(resources=_offender_resources(s, sid, rclauses),
                                       resource_types=_most_non_compliant(by_type),
                                       accounts=_most_non_compliant(by_account)),
            cost=None, cost_note=COST_UNAVAILABLE,
            recommendations=_recommendations(s, vclauses, summary) if include_recommendations else None,
            sample_violations=_sample_violations(s, vclauses))
        if rt.settings.focus_path:
            _add_costs(rt, s, scan, report, rclauses, vclauses)
    return report


def _add_costs(rt: Runtime, s: Session, scan: ScanRow, report: ComplianceReport, rclauses: list[Any],
               vclauses: list[Any]) -> None:
    """The cost panel and the recommendations' dollars, from the FOCUS export (measured; never estimated).

    A resource's spend is unattributed when a required tag that applies to it is missing or wrong
    (the cost of non-compliance semantics); a fix "attributes" the spend of the resources whose only
    such problem it is.
    """
    r, v = ScanResourceRow, ViolationRow
    resources = s.execute(select(r.arn, r.resource_id, r.resource_type, r.account_id).where(*rclauses)).all()
    try:
        lookup = monthly_costs(rt, [CostTarget(*row) for row in resources], allow_cost_explorer=False)
    except AppError as exc:
        report.cost_note = f"cost data could not be read: {exc.message}"
        return
    if not lookup.costs:
        report.cost_note = "the FOCUS export prices none of this scan's resources (no ResourceId matched)"
        return
    policy_for = policy_lookup(scan)
    problems: dict[str, set[tuple[str, str]]] = {}
    for arn, vt, tag, rtype, account in s.execute(
            select(v.resource_arn, v.violation_type, v.tag_name, v.resource_type, v.account_id)
            .where(*vclauses, v.violation_type.in_(_ATTRIBUTION_TYPES))):
        compiled = rt.policies.get(rt.db, policy_for(account))
        if any(rule.name == tag and rule.required for rule in compiled.rules_for(rtype)):
            problems.setdefault(arn, set()).add((vt, tag))
    currency = next((c.currency for c in lookup.costs.values() if c.currency), None) or "USD"
    groups: dict[str, list[float]] = {}
    total = gap = 0.0
    for arn, _rid, _rtype, account in resources:
        cost = lookup.costs.get(arn)
        if cost is None:
            continue
        entry = groups.setdefault(account, [0.0, 0.0])
        entry[0] += cost.monthly_cost
        total += cost.monthly_cost
        if arn in problems:
            entry[1] += cost.monthly_cost
            gap += cost.monthly_cost
    report.cost = CostGap(
        currency=currency, total_cost=round(total, 2), unattributed_cost=round(gap, 2),
        by_group=sorted((CostGapEntry(key=k, total_cost=round(t, 2), unattributed_cost=round(u, 2))
                         for k, (t, u) in groups.items()), key=lambda e: (-e.unattributed_cost, e.key))[:MAX_GROUPS],
        source=f"{Path(str(rt.settings.focus_path)).name}: monthly spend of this scan's resources")
    priced = sum(1 for row in resources if row[0] in lookup.costs)
    report.cost_note = (f"{priced} of {len(resources)} resources priced from the FOCUS export; the others have no "
                        "cost data and count as 0 here")
    for rec in report.recommendations or []:
        key = (rec.violation_type, rec.tag_name)
        attributed = [lookup.costs[arn].monthly_cost for arn, found in problems.items()
                      if found == {key} and arn in lookup.costs]
        if key[0] in _ATTRIBUTION_TYPES:
            rec.estimated_dollars = round(sum(attributed), 2)
            rec.dollar_impact_basis = (f"monthly spend of the {len(attributed)} priced resource(s) whose only "
                                       "attribution problem this is (FOCUS export)")



def _check_types(s: Session, scan: ScanRow, resource_types: Sequence[str] | None) -> list[str] | None:
    if resource_types is None:
        return None
    wanted = list(dict.fromkeys(t.strip() for t in resource_types if t and t.strip()))
    if not wanted:
        raise InvalidInput("the list of resource types is empty", field="resource_types",
                           fix="omit it for every type of the scan, or name types such as ec2:instance")
    if wanted == ["all"]:
        return None
    # Types of the tagging API's long tail are not in the registry but may be in the scan.
    seen = set(s.scalars(select(ScanResourceRow.resource_type).distinct()
                        .where(ScanResourceRow.scan_id == scan.id)))
    known = set(registry.all_types()) | seen
    bad = [t for t in wanted if t not in known]
    if bad:
        raise InvalidInput(f"unknown resource type(s): {', '.join(bad[:5])}", field="resource_types",
                           fix="omit it for every type of the scan, or use types such as "
                               + ", ".join(sorted(known)[:20]))
    # A known type the scan did not look at would read as "nothing in scope, score 100%": refuse it.
    requested = scan.request.get("resource_types")
    covered = set(requested) if isinstance(requested, list) else known
    uncovered = [t for t in wanted if t not in covered]
    if uncovered:
        raise InvalidInput(f"scan {scan.id} did not cover the resource type(s) {', '.join(uncovered[:5])}",
                           field="resource_types",
                           fix="use types the scan covered (" + ", ".join(sorted(covered)[:20])
                               + "), or run a scan that includes them and report on it")
    return wanted


def _score(compliant: int, in_scope: int) -> float:
    return 1.0 if in_scope == 0 else round(compliant / in_scope, 6)


def _aware(dt: datetime) -> datetime:
    # SQLite gives back naive datetimes even for timezone-aware columns.
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _counts() -> tuple[Any, Any]:
    r = ScanResourceRow
    return (func.sum(case((r.in_scope, 1), else_=0)).cast(Integer),
            func.sum(case((r.compliant, 1), else_=0)).cast(Integer))


def _groups(s: Session, dim: Any, clauses: list[Any]) -> list[GroupStats]:
    in_scope, compliant = _counts()
    q = select(dim, func.count(), in_scope, compliant, func.sum(ScanResourceRow.violation_count)).where(
        *clauses).group_by(dim)
    out = []
    for key, total, ins, comp, viol in s.execute(q):
        ins, comp = int(ins or 0), int(comp or 0)
        out.append(GroupStats(key=str(key), total=int(total), in_scope=ins, compliant=comp, non_compliant=ins - comp,
                              violations=int(viol or 0), compliance_score=_score(comp, ins)))
    return out


def _worst(groups: list[GroupStats]) -> list[GroupStats]:
    return sorted(groups, key=lambda g: (g.compliance_score, -g.non_compliant, g.key))[:MAX_GROUPS]


def _most_non_compliant(groups: list[GroupStats]) -> list[GroupStats]:
    return [g for g in sorted(groups, key=lambda g: (-g.non_compliant, g.key)) if g.non_compliant][:TOP_OFFENDERS]


def _summary(s: Session, rclauses: list[Any], vclauses: list[Any]) -> ReportSummary:
    in_scope, compliant = _counts()
    total, ins, comp = s.execute(select(func.count(), in_scope, compliant).where(*rclauses)).one()
    total, ins, comp = int(total), int(ins or 0), int(comp or 0)
    by_severity = {sev: int(n) for sev, n in s.execute(
        select(ViolationRow.severity, func.count()).where(*vclauses).group_by(ViolationRow.severity))}
    return ReportSummary(compliance_score=_score(comp, ins), total_resources=total, in_scope_resources=ins,
                         compliant_resources=comp, non_compliant_resources=ins - comp,
                         violations_total=sum(by_severity.values()), errors=by_severity.get("error", 0),
                         warnings=by_severity.get("warning", 0))


def _tags(s: Session, vclauses: list[Any]) -> list[TagStats]:
    v = ViolationRow
    stats: dict[str, TagStats] = {}
    for tag, resources in s.execute(select(v.tag_name, func.count(distinct(v.resource_arn))).where(*vclauses)
                                    .group_by(v.tag_name)):
        stats[tag] = TagStats(tag_name=tag, violations=0, resources=int(resources), by_violation_type={})
    for tag, vtype, n in s.execute(select(v.tag_name, v.violation_type, func.count()).where(*vclauses)
                                   .group_by(v.tag_name, v.violation_type)):
        entry = stats[tag]
        entry.by_violation_type[vtype] = int(n)
        entry.violations += int(n)
    return sorted(stats.values(), key=lambda t: (-t.violations, t.tag_name))[:MAX_GROUPS]


def _offender_resources(s: Session, scan_id: str, rclauses: list[Any]) -> list[OffenderResource]:
    r, v = ScanResourceRow, ViolationRow
    rows = s.scalars(select(r).where(*rclauses, r.violation_count > 0)
                     .order_by(r.violation_count.desc(), r.arn).limit(TOP_OFFENDERS)).all()
    problems: dict[str, list[str]] = {}
    if rows:
        for arn, tag, vtype in s.execute(select(v.resource_arn, v.tag_name, v.violation_type).where(
                v.scan_id == scan_id, v.resource_arn.in_([row.arn for row in rows])).order_by(v.tag_name)):
            problems.setdefault(arn, []).append(f"{tag}: {vtype}")
    return [OffenderResource(resource_arn=row.arn, resource_id=row.resource_id, resource_type=row.resource_type,
                             account_id=row.account_id, region=row.region, name=row.name,
                             violations=row.violation_count, problems=problems.get(row.arn, []))
            for row in rows]


def _scope_of(request: dict[str, Any]) -> tuple[str, ...]:
    def norm(value: Any) -> str:
        return ",".join(sorted(map(str, value))) if isinstance(value, list) else str(value)

    return tuple(norm(request.get(k)) for k in _SCOPE_KEYS)


def _trend(s: Session, scan: ScanRow, types: list[str] | None, score_now: float) -> ScoreTrend:
    """Same-scope finished scans up to this one. With a type filter, each earlier score is recomputed
    over those types from the scan's stored per-type breakdown."""
    finished = scan.finished_at or scan.created_at
    rows = s.scalars(select(ScanRow).where(ScanRow.status.in_(FINISHED_STATUSES), ScanRow.finished_at.is_not(None),
                                           ScanRow.finished_at <= finished, ScanRow.id != scan.id)
                     .order_by(ScanRow.finished_at.desc()).limit(_TREND_LOOKBACK)).all()
    scope = _scope_of(scan.request)
    same = [row for row in rows if _scope_of(row.request) == scope]
    points: list[TrendPoint] = []
    for row in reversed(same[:MAX_TREND_POINTS - 1]):
        score = row.compliance_score if types is None else _typed_score(row.breakdowns or {}, types)
        if score is None or row.finished_at is None:
            continue
        points.append(TrendPoint(scan_id=row.id, finished_at=_aware(row.finished_at), compliance_score=score,
                                 status=row.status, trigger=row.trigger))
    points.append(TrendPoint(scan_id=scan.id, finished_at=_aware(finished), compliance_score=score_now,
                             status=scan.status, trigger=scan.trigger))
    note = None
    if len(points) == 1:
        note = ("only one finished scan with this scope so far: the trend starts here "
                "(daily scheduled snapshots and later scans add points)")
    return ScoreTrend(points=points, other_scope_scans=len(rows) - len(same), note=note)


def _typed_score(breakdowns: dict[str, Any], types: list[str]) -> float | None:
    by_type = breakdowns.get("by_resource_type") or {}
    if not any(t in by_type for t in types):
        return None  # none of these types was found then: no comparable score
    ins = sum(int((by_type.get(t) or {}).get("in_scope", 0)) for t in types)
    comp = sum(int((by_type.get(t) or {}).get("compliant", 0)) for t in types)
    return _score(comp, ins)


_TITLES: dict[str, tuple[str, str]] = {
    "missing_required_tag": ("Add the {tag} tag", "add tag {tag!r} to the {n} that lack it"),
    "invalid_value": ("Correct the values of {tag}", "replace {tag!r} values outside the allowed list on {n}"),
    "invalid_format": ("Fix the format of {tag}", "rewrite {tag!r} values that break the required format on {n}"),
    "wrong_key_case": ("Fix the key case of {tag}", "rename mis-cased keys to exactly {tag!r} on {n}"),
    "prohibited_tag": ("Remove the prohibited tag {tag}", "remove tag {tag!r} from {n}"),
    # Naming rules judge keys and values alike: length, reserved prefixes, characters.
    "naming_rule": ("Fix naming-rule breaks on {tag}", "make the key and value of {tag!r} follow the naming rules "
                                                       "(length, characters, reserved prefixes) on {n}"),
}


def _resources(n: int) -> str:
    return f"{n} resource" if n == 1 else f"{n} resources"


def _recommendations(s: Session, vclauses: list[Any], summary: ReportSummary) -> list[Recommendation]:
    v = ViolationRow
    affected: dict[tuple[str, str], int] = {
        (vt, tag): int(n) for vt, tag, n in s.execute(
            select(v.violation_type, v.tag_name, func.count(distinct(v.resource_arn))).where(*vclauses)
            .group_by(v.violation_type, v.tag_name))}
    # A resource whose violations all share one (type, tag) is fixed by that one fix; both distinct
    # counts being 1 means every row of the resource has the same pair.
    # Only in-scope resources count: an out-of-scope one (a prohibited key on a type no required tag
    # applies to) is never compliant, so fixing it moves no score.
    r = ScanResourceRow
    only = (select(v.resource_arn, func.min(v.violation_type).label("vt"), func.min(v.tag_name).label("tag"))
            .join(r, and_(r.scan_id == v.scan_id, r.arn == v.resource_arn))
            .where(*vclauses, r.in_scope).group_by(v.resource_arn)
            .having(and_(func.count(distinct(v.violation_type)) == 1, func.count(distinct(v.tag_name)) == 1))
            .subquery())
    fixed: dict[tuple[str, str], int] = {
        (vt, tag): int(n) for vt, tag, n in s.execute(select(only.c.vt, only.c.tag, func.count())
                                                      .group_by(only.c.vt, only.c.tag))}
    ranked = sorted(affected, key=lambda k: (-fixed.get(k, 0), -affected[k], k))[:MAX_RECOMMENDATIONS]
    ins, comp = summary.in_scope_resources, summary.compliant_resources
    out: list[Recommendation] = []
    for rank, (vt, tag) in enumerate(ranked, start=1):
        kind = [*vclauses, v.violation_type == vt, v.tag_name == tag]
        by_type = {t: int(n) for t, n in s.execute(select(v.resource_type, func.count(distinct(v.resource_arn)))
                                                   .where(*kind).group_by(v.resource_type)
                                                   .order_by(func.count(distinct(v.resource_arn)).desc()))}
        arns = list(s.scalars(select(v.resource_arn).distinct().where(*kind).order_by(v.resource_arn)
                              .limit(SAMPLE_ARNS)))
        suggestion = s.execute(select(v.suggestion, func.count()).where(*kind, v.suggestion.is_not(None))
                               .group_by(v.suggestion).order_by(func.count().desc(), v.suggestion).limit(1)).first()
        n_fixed = fixed.get((vt, tag), 0)
        title, action = _TITLES.get(vt, ("Fix {tag}", "fix {tag!r} on {n}"))
        out.append(Recommendation(
            rank=rank, title=title.format(tag=tag), action=action.format(tag=tag, n=_resources(affected[(vt, tag)])),
            violation_type=vt, tag_name=tag, resources_affected=affected[(vt, tag)], by_resource_type=by_type,
            sample_resource_arns=arns, example_suggestion=suggestion[0] if suggestion else None,
            resources_becoming_compliant=n_fixed,
            estimated_score_points=0.0 if ins == 0 else round(100.0 * n_fixed / ins, 2),
            compliance_score_after=_score(comp + n_fixed, ins)))
    return out


def _sample_violations(s: Session, vclauses: list[Any]) -> list[ViolationOut]:
    """Most frequent kinds of problem first, a few examples each, those with a fix suggestion preferred."""
    v = ViolationRow
    kinds = s.execute(select(v.violation_type, v.tag_name, func.count()).where(*vclauses)
                      .group_by(v.violation_type, v.tag_name).order_by(func.count().desc(), v.tag_name)
                      .limit(SAMPLE_VIOLATIONS)).all()
    per_kind = max(1, -(-SAMPLE_VIOLATIONS // max(1, len(kinds))))
    buckets = [s.scalars(select(v).where(*vclauses, v.violation_type == vt, v.tag_name == tag)
                         .order_by(v.suggestion.is_(None), v.resource_arn).limit(per_kind)).all()
               for vt, tag, _n in kinds]
    picked: list[ViolationOut] = []
    for rank in range(per_kind):  # round-robin so every kind shows before any repeats
        for bucket in buckets:
            if rank < len(bucket) and len(picked) < SAMPLE_VIOLATIONS:
                picked.append(violation_out_row(bucket[rank]))
    return picked


def violation_out_row(r: ViolationRow) -> ViolationOut:
    """The API shape of a stored violation."""
    return ViolationOut(resource_arn=r.resource_arn, resource_id=r.resource_id, resource_type=r.resource_type,
                        account_id=r.account_id, region=r.region, tag_name=r.tag_name,
                        violation_type=r.violation_type, severity=r.severity, current_value=r.current_value,
                        allowed_values=r.allowed_values, message=r.message, suggestion=r.suggestion,
                        rule_id=r.rule_id, rule_source=r.rule_source)
