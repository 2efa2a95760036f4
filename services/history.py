"""Compliance history: time series of finished snapshot scans, per period, with a trend.

Semantics (each pinned by a test):

* **Which scans.** Scans flagged ``in_history``: beat's daily snapshot (``trigger="scheduled"``) and
  ad-hoc scans run with ``store_snapshot``. Other ad-hoc scans never enter trends (a one-off scan of
  one account must not bend the estate's curve); the answer counts them under ``excluded.not_stored``.
* **Complete enough.** ``succeeded`` scans count. A ``partial`` scan (some shards failed) counts only
  when at least ``FINOPS_HISTORY_MIN_COVERAGE`` (default 0.95) of its shards succeeded; it is then
  marked in its period (``partial_scans``) and the answer's data_quality is ``partial``. Below that
  share, and ``failed`` or ``cancelled`` scans, are left out and counted under ``excluded``: their
  counts would read as resources disappearing.
* **One scope.** Scores of different scopes are not comparable. The reference scope is that of the
  latest daily snapshot (beat) in the window, else of the latest other scheduled scan (an audit
  schedule's), else of the latest stored scan; scans of another scope (accounts, regions, resource
  types asked for) are counted under ``excluded.other_scope``.
* **Periods.** UTC calendar days, ISO weeks (starting Monday) or calendar months, by the scan's
  creation time. The window is the last ``days_back`` days, so the first period may be cut.
* **Several scans in one period are averaged, never summed.** Every number of a period (score,
  resources, in scope, compliant, violations) is the mean over the period's scans, so three scans on
  one day give that day's level, not three times it; the score is the mean of the scans' scores.
  The mean (not the last scan) is used so that one odd scan late in a period cannot stand for the
  whole period, and so that the counts stay consistent with the averaged score.
* **Per account / resource type:** the mean over the period's scans that saw that key (a key absent
  from a scan had no resources in it). **Per tag key:** violations and violating resources, averaged
  over all the period's scans, a scan without violations on the key counting as 0 (it was fixed).
* **Trend.** From the first to the last period of the series: the score change (in score units,
  0..1) decides: ``improving`` when it rose by at least 0.01 (one percentage point), ``declining``
  when it fell by at least 0.01, else ``stable``. For tag keys (no score) the violation count
  decides: ``stable`` while it moved less than 5 % of its first value (and less than one violation).
  Fewer than two periods: ``insufficient_data``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select, update

from services.db.models import ScanRow, utcnow
from services.errors import InvalidInput, NotFound
from services.runtime import Runtime
from services.schemas import TERMINAL_STATUSES, DataQuality

GroupBy = Literal["day", "week", "month"]
GROUP_BY_VALUES: tuple[str, ...] = ("day", "week", "month")
Direction = Literal["improving", "declining", "stable", "insufficient_data"]

MAX_DAYS_BACK = 3650
#: A score change smaller than this (score units, 0..1) is "stable": one percentage point.
SCORE_THRESHOLD = 0.01
#: A violation-count change smaller than this share of the first value (and < 1) is "stable".
VIOLATIONS_THRESHOLD = 0.05
MAX_TOP_N = 50
MAX_POINTS = 400
_SCOPE_KEYS = ("accounts", "regions", "resource_types")
#: ``requested_by`` of beat's daily snapshot (workers.tasks.scheduled_snapshot).
DAILY_SNAPSHOT_REQUESTER = "beat"
_EXCLUDED_IDS = 10

METHOD = (
    "Each point is one period (UTC day, ISO week from Monday, or calendar month). When several snapshot scans "
    "fall in one period, every number is the MEAN over them (score = mean of the scans' scores; resources and "
    "violations = mean counts), never a sum. Only scheduled daily snapshots and scans run with store_snapshot=true "
    "count; partial scans count only when enough of their shards succeeded. Trend: score change from the first "
    f"to the last period; |change| < {SCORE_THRESHOLD} (one percentage point) is stable.")


# ------------------------------------------------------------------------------------------- pure

@dataclass(frozen=True)
class Measure:
    """Counts and score of one scan, or of one account / resource type in it."""

    total: float
    in_scope: float
    compliant: float
    violations: float
    score: float


@dataclass(frozen=True)
class TagMeasure:
    """Violations of one tag key in one scan, and how many resources had them."""

    violations: float
    resources: float


@dataclass(frozen=True)
class Snapshot:
    """One history scan, reduced to what the series need."""

    scan_id: str
    at: datetime
    overall: Measure
    by_account: Mapping[str, Measure] = field(default_factory=dict)
    by_resource_type: Mapping[str, Measure] = field(default_factory=dict)
    by_tag: Mapping[str, TagMeasure] = field(default_factory=dict)
    partial: bool = False


def period_start(at: datetime, group_by: GroupBy) -> date:
    """The first day of the period holding ``at`` (UTC)."""
    day = (at if at.tzinfo is None else at.astimezone(UTC)).date()
    if group_by == "day":
        return day
    if group_by == "week":
        return day - timedelta(days=day.weekday())
    if group_by == "month":
        return day.replace(day=1)
    raise ValueError(f"group_by must be one of {', '.join(GROUP_BY_VALUES)}")


def period_label(start: date, group_by: GroupBy) -> str:
    """``2026-11-05`` (day), ``2026-W45`` (ISO week), ``2026-11`` (month)."""
    if group_by == "week":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    if group_by == "month":
        return f"{start.year}-{start.month:02d}"
    return start.isoformat()


class _Mean:
    """Running sums of measures, divided on read."""

    __slots__ = ("n", "sums")

    def __init__(self, width: int) -> None:
        self.n = 0
        self.sums = [0.0] * width

    def add(self, values: Iterable[float]) -> None:
        self.n += 1
        for i, v in enumerate(values):
            self.sums[i] += v

    def mean(self, over: int | None = None) -> list[float]:
        n = over if over is not None else self.n
        return [s / n for s in self.sums] if n else [0.0] * len(self.sums)


@dataclass
class Period:
    """The averages of one period. ``by_*`` map a key to (mean measure, scans that had the key)."""

    start: date
    scans: int
    partial_scans: int
    overall: Measure
    by_account: dict[str, tuple[Measure, int]]
    by_resource_type: dict[str, tuple[Measure, int]]
    by_tag: dict[str, tuple[TagMeasure, int]]


def _measure(values: list[float]) -> Measure:
    return Measure(total=values[0], in_scope=values[1], compliant=values[2], violations=values[3], score=values[4])


def _vector(m: Measure) -> tuple[float, ...]:
    return (m.total, m.in_scope, m.compliant, m.violations, m.score)


def group_snapshots(snapshots: Iterable[Snapshot], group_by: GroupBy) -> list[Period]:
    """Periods oldest first, each holding the MEANS of its snapshots (see the module docstring)."""
    acc: dict[date, dict[str, Any]] = {}
    for snap in snapshots:
        start = period_start(snap.at, group_by)
        p = acc.setdefault(start, {"overall": _Mean(5), "partial": 0, "account": {}, "type": {}, "tag": {}})
        p["overall"].add(_vector(snap.overall))
        p["partial"] += int(snap.partial)
        for dim, values in (("account", snap.by_account), ("type", snap.by_resource_type)):
            for key, m in values.items():
                p[dim].setdefault(key, _Mean(5)).add(_vector(m))
        for key, t in snap.by_tag.items():
            p["tag"].setdefault(key, _Mean(2)).add((t.violations, t.resources))
    periods = []
    for start in sorted(acc):
        p = acc[start]
        n = p["overall"].n
        periods.append(Period(
            start=start, scans=n, partial_scans=p["partial"], overall=_measure(p["overall"].mean()),
            by_account={k: (_measure(m.mean()), m.n) for k, m in p["account"].items()},
            by_resource_type={k: (_measure(m.mean()), m.n) for k, m in p["type"].items()},
            # A scan without violations on a key had 0 of them: divide by every scan of the period.
            by_tag={k: (TagMeasure(*m.mean(over=n)), n) for k, m in p["tag"].items()}))
    return periods


def trend_of(first: tuple[str, float | None, float] | None, last: tuple[str, float | None, float] | None,
             *, by: Literal["compliance_score", "violations"]) -> Trend:
    """Direction and change between two (period label, score, violations) points."""
    rule = (f"compliance_score change >= {SCORE_THRESHOLD} improving, <= -{SCORE_THRESHOLD} declining, else stable"
            if by == "compliance_score" else
            f"violations fall/rise by at least {VIOLATIONS_THRESHOLD:.0%} of the first value (and at least 1) "
            "= improving/declining, else stable")
    if first is None or last is None or first[0] == last[0]:
        return Trend(direction="insufficient_data", measure=by, from_period=first[0] if first else None,
                     to_period=last[0] if last else None, score_change=None, violations_change=None, rule=rule)
    score_change = None if first[1] is None or last[1] is None else round(last[1] - first[1], 6)
    violations_change = round(last[2] - first[2], 2)
    direction: Direction
    if by == "compliance_score" and score_change is not None:
        direction = ("improving" if score_change >= SCORE_THRESHOLD else
                     "declining" if score_change <= -SCORE_THRESHOLD else "stable")
    else:
        if abs(violations_change) < max(1.0, VIOLATIONS_THRESHOLD * first[2]):
            direction = "stable"
        else:
            direction = "improving" if violations_change < 0 else "declining"
    return Trend(direction=direction, measure=by, from_period=first[0], to_period=last[0],
                 score_change=score_change, violations_change=violations_change, rule=rule)


# ----------------------------------------------------------------------------------------- models

class Trend(BaseModel):
    """Where the series went from its first to its last period."""

    direction: Direction = Field(description="improving, declining, stable, or insufficient_data (< 2 periods).")
    measure: Literal["compliance_score", "violations"] = Field(description="What decided the direction.")
    from_period: str | None
    to_period: str | None
    score_change: float | None = Field(description="Last minus first period's score, 0..1 units (0.05 = 5 points).")
    violations_change: float | None = Field(description="Last minus first period's (mean) violations.")
    rule: str = Field(description="The threshold applied.")


class HistoryPoint(BaseModel):
    """One period of the estate-wide series: means over the period's snapshot scans."""

    period: str = Field(description="2026-11-05 (day), 2026-W45 (ISO week) or 2026-11 (month).")
    period_start: date
    scans: int = Field(description="Snapshot scans averaged into this point.")
    partial_scans: int = Field(description="Of those, scans with some failed shards (their counts are low).")
    compliance_score: float = Field(description="Mean of the scans' scores (compliant / in-scope), 0..1.")
    total_resources: float = Field(description="Mean resources per scan.")
    in_scope_resources: float
    compliant_resources: float
    violations: float = Field(description="Mean violations per scan (never summed across scans).")


class DimensionPoint(BaseModel):
    """One period of one account, resource type or tag key."""

    period: str
    scans: int = Field(description="Scans averaged (for accounts and types: those that saw the key).")
    compliance_score: float | None = Field(description="Mean score; null for tag keys.")
    resources: float = Field(description="Mean resources (for a tag key: resources violating it).")
    violations: float


class DimensionSeries(BaseModel):
    """The series of one account, resource type or tag key."""

    key: str
    trend: Trend
    latest: DimensionPoint
    points: list[DimensionPoint] = Field(description="The most recent periods, oldest first.")
    points_total: int


class HistoryExclusions(BaseModel):
    """Finished scans in the window that are not part of the series, and why."""

    not_stored: int = Field(description="Ad-hoc scans not kept as snapshots (run with store_snapshot=true to keep).")
    low_coverage: int = Field(description="Partial scans with too many failed shards.")
    other_scope: int = Field(description="Snapshots of other accounts, regions or resource types than the series'.")
    failed_or_cancelled: int
    running: int = Field(description="Snapshots still running (they join when finished).")
    scan_ids: list[str] = Field(default_factory=list, description="Up to 10 excluded snapshot scan ids.")


class HistoryScope(BaseModel):
    """What the series' scans covered (as asked: null = the configured defaults)."""

    accounts: Any = None
    regions: Any = None
    resource_types: Any = None


class ViolationHistory(BaseModel):
    """Compliance over time: the estate-wide series, a trend, and series per account, type and tag."""

    days_back: int
    group_by: GroupBy
    window_start: datetime
    window_end: datetime
    method: str = Field(description="How points are computed (averaging, which scans count, trend threshold).")
    scope: HistoryScope | None = Field(description="The scope of the scans in the series; null when there are none.")
    scans_used: int
    periods_total: int
    trend: Trend
    series: list[HistoryPoint] = Field(description="The most recent periods (up to max_points), oldest first.")
    by_account: list[DimensionSeries] = Field(description="Accounts with the most violations in the last period.")
    by_resource_type: list[DimensionSeries] = Field(description="Resource types with the most violations last.")
    by_tag: list[DimensionSeries] = Field(description="Tag keys with the most violations in the last period.")
    dimension_totals: dict[str, int] = Field(description="How many accounts, types and tag keys exist in all.")
    excluded: HistoryExclusions
    data_quality: DataQuality


# ------------------------------------------------------------------------------------------- read

def validate_history_request(days_back: int, group_by: str, top_n: int, max_points: int) -> None:
    """Reject unusable parameters with the field at fault and the fix."""
    if isinstance(days_back, bool) or not isinstance(days_back, int) or not 1 <= days_back <= MAX_DAYS_BACK:
        raise InvalidInput(f"days_back must be a whole number of days from 1 to {MAX_DAYS_BACK}, got {days_back!r}",
                           field="days_back", fix="pass e.g. 30 for the last month or 365 for the last year")
    if group_by not in GROUP_BY_VALUES:
        raise InvalidInput(f"group_by must be day, week or month, got {group_by!r}", field="group_by",
                           fix="pass group_by='day', 'week' or 'month'")
    if not 0 <= top_n <= MAX_TOP_N:
        raise InvalidInput(f"top_n must be 0 to {MAX_TOP_N}, got {top_n}", field="top_n",
                           fix="pass e.g. 5; 0 leaves out the per-account, per-type and per-tag series")
    if not 1 <= max_points <= MAX_POINTS:
        raise InvalidInput(f"max_points must be 1 to {MAX_POINTS}, got {max_points}", field="max_points",
                           fix="pass e.g. 60, or group by week or month for long windows")


def violation_history(rt: Runtime, days_back: int = 30, group_by: GroupBy = "day", *, top_n: int = 5,
                      max_points: int = 90, dimension_points: int = 12,
                      now: datetime | None = None) -> ViolationHistory:
    """The compliance history of the last ``days_back`` days, grouped by day, week or month."""
    validate_history_request(days_back, group_by, top_n, max_points)
    window_end = now or utcnow()
    window_start = window_end - timedelta(days=days_back)
    min_coverage = rt.settings.history_min_coverage
    excluded = HistoryExclusions(not_stored=0, low_coverage=0, other_scope=0, failed_or_cancelled=0, running=0)
    with rt.db.session() as s:
        rows = s.execute(select(ScanRow.id, ScanRow.in_history, ScanRow.status, ScanRow.trigger, ScanRow.request,
                                ScanRow.requested_by, ScanRow.shards_total, ScanRow.data_quality,
                                ScanRow.created_at)
                         .where(ScanRow.created_at >= window_start, ScanRow.created_at <= window_end)
                         .order_by(ScanRow.created_at)).all()
        keep: list[str] = []
        for r in rows:
            if not r.in_history:
                excluded.not_stored += int(r.status in TERMINAL_STATUSES)
            elif r.status not in TERMINAL_STATUSES:
                excluded.running += 1
            elif r.status in ("failed", "cancelled"):
                excluded.failed_or_cancelled += 1
                _note_excluded(excluded, r.id)
            elif r.status == "partial" and _coverage(r.shards_total, r.data_quality) < min_coverage:
                excluded.low_coverage += 1
                _note_excluded(excluded, r.id)
            else:
                keep.append(r.id)
        by_id = {r.id: r for r in rows}
        # The reference scope: beat's daily snapshot, else another scheduled scan (an audit schedule's),
        # else the latest stored one.
        daily = [i for i in keep if by_id[i].requested_by == DAILY_SNAPSHOT_REQUESTER]
        scheduled = [i for i in keep if by_id[i].trigger == "scheduled"]
        reference = by_id[(daily or scheduled or keep)[-1]].request if keep else None
        scope = _scope(reference) if reference is not None else None
        same = []
        for scan_id in keep:
            if _scope(by_id[scan_id].request) == scope:
                same.append(scan_id)
            else:
                excluded.other_scope += 1
                _note_excluded(excluded, scan_id)
        snapshots: list[Snapshot] = []
        for start in range(0, len(same), 200):
            snapshots.extend(_snapshot(r) for r in s.scalars(select(ScanRow).where(
                ScanRow.id.in_(same[start:start + 200]))))
            s.expunge_all()  # only the reduced snapshots are kept: a long daily history stays small
    snapshots.sort(key=lambda snap: snap.at)
    periods = group_snapshots(snapshots, group_by)
    return _answer(periods, snapshots, group_by, days_back, window_start, window_end, reference, excluded,
                   top_n=top_n, max_points=max_points, dimension_points=dimension_points)


def store_snapshot(rt: Runtime, scan_id: str) -> None:
    """Keep an existing scan in the history (what ``store_snapshot`` does for a scan read by id)."""
    with rt.db.session() as s:
        if s.get(ScanRow, scan_id) is None:
            raise NotFound(f"scan {scan_id} does not exist", field="scan_id",
                           fix="list scans to find a valid id, or omit scan_id to start a new scan")
        s.execute(update(ScanRow).where(ScanRow.id == scan_id).values(in_history=True))


def _note_excluded(excluded: HistoryExclusions, scan_id: str) -> None:
    if len(excluded.scan_ids) < _EXCLUDED_IDS:
        excluded.scan_ids.append(scan_id)


def _coverage(shards_total: int | None, data_quality: dict[str, Any] | None) -> float:
    total = int(shards_total or 0)
    failed = len((data_quality or {}).get("failed_shards") or [])
    return 1.0 if total <= 0 else max(0.0, (total - failed) / total)


def _scope(request: dict[str, Any] | None) -> tuple[str, ...]:
    def norm(value: Any) -> str:
        return ",".join(sorted(map(str, value))) if isinstance(value, list) else str(value)

    return tuple(norm((request or {}).get(k)) for k in _SCOPE_KEYS)


def _entry(raw: Mapping[str, Any]) -> Measure:
    total, ins, comp = float(raw.get("total", 0)), float(raw.get("in_scope", 0)), float(raw.get("compliant", 0))
    score = raw.get("compliance_score")
    return Measure(total=total, in_scope=ins, compliant=comp, violations=float(raw.get("violations", 0)),
                   score=float(score) if score is not None else (1.0 if ins == 0 else comp / ins))


def _snapshot(row: ScanRow) -> Snapshot:
    b = row.breakdowns or {}
    by_type = {k: _entry(v) for k, v in (b.get("by_resource_type") or {}).items()}
    in_scope, compliant = float(row.in_scope_resources or 0), float(row.compliant_resources or 0)
    score = row.compliance_score
    if score is None:
        score = 1.0 if in_scope == 0 else compliant / in_scope
    overall = Measure(total=float(row.total_resources or 0), in_scope=in_scope, compliant=compliant,
                      violations=sum(m.violations for m in by_type.values()), score=float(score))
    at = row.created_at if row.created_at.tzinfo is not None else row.created_at.replace(tzinfo=UTC)
    partial = (row.data_quality or {}).get("status") != "complete"
    return Snapshot(
        scan_id=row.id, at=at, overall=overall, partial=partial,
        by_account={k: _entry(v) for k, v in (b.get("by_account") or {}).items()}, by_resource_type=by_type,
        by_tag={k: TagMeasure(violations=float(v.get("violations", 0)), resources=float(v.get("resources", 0)))
                for k, v in (b.get("by_tag") or {}).items()})


def _answer(periods: list[Period], snapshots: list[Snapshot], group_by: GroupBy, days_back: int,
            window_start: datetime, window_end: datetime, reference: dict[str, Any] | None,
            excluded: HistoryExclusions, *, top_n: int, max_points: int, dimension_points: int) -> ViolationHistory:
    series = [HistoryPoint(period=period_label(p.start, group_by), period_start=p.start, scans=p.scans,
                           partial_scans=p.partial_scans, compliance_score=round(p.overall.score, 6),
                           total_resources=_r(p.overall.total), in_scope_resources=_r(p.overall.in_scope),
                           compliant_resources=_r(p.overall.compliant), violations=_r(p.overall.violations))
              for p in periods]
    first = (series[0].period, series[0].compliance_score, series[0].violations) if series else None
    last = (series[-1].period, series[-1].compliance_score, series[-1].violations) if series else None
    dims: dict[str, list[DimensionSeries]] = {}
    totals: dict[str, int] = {}
    for name, attr, scored in (("account", "by_account", True), ("resource_type", "by_resource_type", True),
                               ("tag", "by_tag", False)):
        dims[name], totals[name] = _dimension(periods, group_by, attr, scored, top_n, dimension_points)
    notes: list[str] = []
    if not snapshots:
        notes.append("no snapshot scans in this window: beat takes one daily (FINOPS_SNAPSHOT_TIME), or run "
                     "check_tag_compliance with store_snapshot=true")
    elif len(periods) < 2:
        notes.append("only one period has snapshots: the trend needs at least two")
    partial = sum(p.partial_scans for p in periods)
    if partial:
        notes.append(f"{partial} of the {len(snapshots)} scans used were partial (some shards failed, or policies "
                     "incomplete): their counts may be low")
    if excluded.not_stored:
        notes.append(f"{excluded.not_stored} ad-hoc scan(s) in the window are not in history (run them with "
                     "store_snapshot=true to keep them)")
    if excluded.other_scope:
        notes.append(f"{excluded.other_scope} snapshot(s) of another scope are left out: scores of different "
                     "accounts, regions or resource types are not comparable")
    if excluded.low_coverage or excluded.failed_or_cancelled:
        notes.append(f"{excluded.low_coverage + excluded.failed_or_cancelled} snapshot(s) left out: failed, "
                     "cancelled, or too many shards failed")
    scope_model = HistoryScope(**{k: reference.get(k) for k in _SCOPE_KEYS}) if reference is not None else None
    return ViolationHistory(
        days_back=days_back, group_by=group_by, window_start=window_start, window_end=window_end, method=METHOD,
        scope=scope_model, scans_used=len(snapshots), periods_total=len(series),
        trend=trend_of(first, last, by="compliance_score"), series=series[-max_points:],
        by_account=dims["account"], by_resource_type=dims["resource_type"], by_tag=dims["tag"],
        dimension_totals=totals, excluded=excluded,
        data_quality=DataQuality(status="partial" if partial else "complete", notes=notes))


def _dimension(periods: list[Period], group_by: GroupBy, attr: str, scored: bool, top_n: int,
               points_limit: int) -> tuple[list[DimensionSeries], int]:
    points: dict[str, list[DimensionPoint]] = {}
    for p in periods:
        label = period_label(p.start, group_by)
        for key, (m, n) in getattr(p, attr).items():
            if scored:
                point = DimensionPoint(period=label, scans=n, compliance_score=round(m.score, 6),
                                       resources=_r(m.total), violations=_r(m.violations))
            else:
                point = DimensionPoint(period=label, scans=n, compliance_score=None, resources=_r(m.resources),
                                       violations=_r(m.violations))
            points.setdefault(key, []).append(point)
    if not scored:
        # A tag key without violations in a period had 0 then (it is absent from those scans' breakdowns).
        labels = [(period_label(p.start, group_by), p.scans) for p in periods]
        for pts in points.values():
            have = {pt.period for pt in pts}
            pts.extend(DimensionPoint(period=label, scans=n, compliance_score=None, resources=0, violations=0)
                       for label, n in labels if label not in have)
            pts.sort(key=lambda pt: pt.period)
    last_label = period_label(periods[-1].start, group_by) if periods else None

    def rank(key: str) -> tuple[float, str]:
        latest = points[key][-1]
        return (-(latest.violations if latest.period == last_label else 0.0), key)

    out = []
    for key in sorted(points, key=rank)[:top_n]:
        pts = points[key]
        trend = trend_of((pts[0].period, pts[0].compliance_score, pts[0].violations),
                         (pts[-1].period, pts[-1].compliance_score, pts[-1].violations),
                         by="compliance_score" if scored else "violations")
        out.append(DimensionSeries(key=key, trend=trend, latest=pts[-1], points=pts[-points_limit:],
                                   points_total=len(pts)))
    return out, len(points)


def _r(value: float) -> float:
    return round(value, 2)
