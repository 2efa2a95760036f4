"""Tag drift against a real baseline: what changed on each resource's tags between two observations.

Write path (:func:`record_tag_changes`, called by ``scans._store_shard`` in the shard's transaction):

* The baseline of a resource is its latest known tag state (``resources`` row) from the scan that saw it
  before this one. A resource seen for the first time is a baseline, never drift.
* Every tag that differs becomes one ``resource_tag_changes`` row: ``added`` (old value null),
  ``removed`` (new value null) or ``changed`` (both). Keys compare exactly, as AWS does, so a key
  whose case changed is one removal plus one addition.
* Idempotent under redelivery: the resource row keeps the state from before the scan that last saw it
  (``previous_tags``), so a shard delivered again compares against the same baseline, and its change
  rows are deleted and rewritten under the key (scan, ARN, tag key). Two scans therefore never
  duplicate a change, and a change is reported by the first scan that observed it.
* Impact, judged when the change is observed, from the previous scan's evaluation and this one's:
  ``regression`` (the change introduced a violation on that key, removed a required tag, or the
  resource went from compliant to non-compliant with these changes), ``required_tag_changed`` (a
  required tag's value moved without a new violation: attribution changed, compliance did not),
  ``improvement`` (a violation on that key was resolved) or ``neutral``.

Read path (:func:`detect_tag_drift`): bounded; totals and breakdowns over every matching change, then
the top ``limit`` changes, regressions first, then required-tag changes, improvements, neutral ones;
newest first within each.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Integer, case, delete, distinct, func, select, tuple_
from sqlalchemy.orm import Session

from policies.engine import CompiledPolicy
from scanner.providers.aws import registry
from services.db.engine import upsert_rows
from services.db.models import ResourceRow, ResourceTagChangeRow, ScanResourceRow, ScanRow, ViolationRow, utcnow
from services.errors import InvalidInput
from services.runtime import Runtime
from services.schemas import DataQuality

ChangeKind = Literal["added", "removed", "changed"]
TagDiff = list[tuple[str, ChangeKind, str | None, str | None]]
Impact = Literal["regression", "required_tag_changed", "improvement", "neutral"]
#: Report order: what broke compliance first, then attribution moves, then fixes, then the rest.
IMPACT_ORDER: tuple[Impact, ...] = ("regression", "required_tag_changed", "improvement", "neutral")

MAX_LOOKBACK_DAYS = 3650
MAX_LIMIT = 1000
MAX_FILTER_VALUES = 100
_BREAKDOWN_LIMIT = 20
_CHUNK = 500
_RESOURCE_TYPE = re.compile(r"[A-Za-z0-9-]+:[A-Za-z0-9_.\-/]+")


# ------------------------------------------------------------------------------------------- pure

def diff_tags(old: Mapping[str, str], new: Mapping[str, str]) -> TagDiff:
    """(key, kind, old value, new value) for every key whose value differs, sorted by key."""
    out: TagDiff = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            out.append((key, "added", None, str(new[key])))
        elif key not in new:
            out.append((key, "removed", str(old[key]), None))
        elif str(old[key]) != str(new[key]):
            out.append((key, "changed", str(old[key]), str(new[key])))
    return out


def classify(kind: ChangeKind, key: str, *, required: bool, violation_before: str | None,
             violation_after: str | None) -> tuple[Impact, str]:
    """The impact of one tag change and why. ``violation_*`` is the violation type on that key (its
    policy name, compared ignoring case) in the scan before / after the change, or None."""
    if violation_after and not violation_before:
        verb = {"added": "added", "removed": "removed", "changed": "changed"}[kind]
        return "regression", f"{verb} tag {key}: it now breaks the policy ({violation_after})"
    if kind == "removed" and required:
        return "regression", f"removed required tag {key}"
    if violation_before and not violation_after:
        return "improvement", f"resolved {violation_before} on {key}"
    if kind == "changed" and required:
        state = f"still {violation_after}" if violation_after else "still valid"
        return "required_tag_changed", f"required tag {key} changed value ({state}): cost attribution moved"
    if violation_before and violation_after:
        return "neutral", f"{key} still breaks the policy (was {violation_before}, now {violation_after})"
    return "neutral", f"{'required' if required else 'non-required'} tag {key} {kind}; compliance unchanged"


# ------------------------------------------------------------------------------------------ write

@dataclass(frozen=True)
class _Baseline:
    tags: dict[str, str] | None  # None: first sighting
    scan_id: str | None
    seen_at: datetime | None


def _baseline(row: Any, scan_id: str) -> _Baseline:
    if row is None:
        return _Baseline(None, None, None)
    if row.last_scan_id == scan_id:
        # This scan already stored the resource (a redelivered shard): its baseline is what came before.
        return _Baseline(dict(row.previous_tags) if row.previous_tags is not None else None,
                         row.previous_scan_id, row.previous_seen_at)
    return _Baseline(dict(row.tags or {}), row.last_scan_id, row.last_seen)


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)  # SQLite returns naive UTC


def record_tag_changes(s: Session, scan_id: str, shard_id: str, latest: list[dict[str, Any]],
                       evaluated: Sequence[Mapping[str, Any]], violations: Sequence[Mapping[str, Any]],
                       compiled: CompiledPolicy, observed_at: datetime) -> list[dict[str, Any]]:
    """Record this shard's tag changes and return ``latest`` (the ``resources`` upsert rows) with each
    resource's baseline columns, to be written by the caller's upsert in the same transaction.

    ``observed_at`` is the scan's creation time: observations are ordered by scan, not by when a shard
    happened to be stored, so a resource a newer scan already stored is left out of the result (its
    state and baseline stay the newer scan's) and records no change.

    ``evaluated`` are the shard's ``scan_resources`` rows and ``violations`` its ``violations`` rows.
    """
    s.execute(delete(ResourceTagChangeRow).where(ResourceTagChangeRow.scan_id == scan_id,
                                                 ResourceTagChangeRow.shard_id == shard_id))
    postgres = s.get_bind().dialect.name == "postgresql"
    out: list[dict[str, Any]] = []
    pending: list[tuple[dict[str, Any], _Baseline, TagDiff]] = []
    r = ResourceRow
    # In ARN order, so two transactions lock (and then upsert) shared resources in the same order.
    ordered = sorted(latest, key=lambda row: str(row["arn"]))
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start:start + _CHUNK]
        q = select(r.arn, r.tags, r.last_scan_id, r.last_seen, r.previous_tags, r.previous_scan_id,
                   r.previous_seen_at).where(r.arn.in_([row["arn"] for row in chunk])).order_by(r.arn)
        if postgres:  # two scans storing the same resource at once: the second waits for the first
            q = q.with_for_update()
        existing = {row.arn: row for row in s.execute(q)}
        for row in chunk:
            known = existing.get(row["arn"])
            if known is not None and known.last_scan_id != scan_id and _utc(known.last_seen) > _utc(observed_at):
                # A newer scan already stored this resource (this shard was retried or queued behind it): this
                # older observation is neither drift nor the latest state, so it changes nothing here.
                continue
            base = _baseline(known, scan_id)
            out.append({**row, "previous_tags": base.tags, "previous_scan_id": base.scan_id,
                        "previous_seen_at": base.seen_at})
            if base.tags is not None:
                diff = diff_tags(base.tags, row["tags"])
                if diff:
                    pending.append((row, base, diff))
    if pending:
        _write_changes(s, scan_id, shard_id, pending, evaluated, violations, compiled, observed_at)
    return out


def _write_changes(s: Session, scan_id: str, shard_id: str,
                   pending: list[tuple[dict[str, Any], _Baseline, TagDiff]],
                   evaluated: Sequence[Mapping[str, Any]], violations: Sequence[Mapping[str, Any]],
                   compiled: CompiledPolicy, observed_at: datetime) -> None:
    # Out-of-scope resources (no required tag applies to their type) have no compliance: None.
    after_compliant = {e["arn"]: bool(e["compliant"]) if e["in_scope"] else None for e in evaluated}
    after_violations = _violations_by_key((v["resource_arn"], v["tag_name"], v["violation_type"]) for v in violations)
    pairs = sorted({(base.scan_id, row["arn"]) for row, base, _ in pending if base.scan_id})
    before_compliant: dict[tuple[str, str], bool | None] = {}
    before_rows: list[tuple[str, str, str]] = []
    for start in range(0, len(pairs), _CHUNK):
        chunk = pairs[start:start + _CHUNK]
        sr, v = ScanResourceRow, ViolationRow
        for sid, arn, in_scope, compliant in s.execute(select(sr.scan_id, sr.arn, sr.in_scope, sr.compliant)
                                                       .where(tuple_(sr.scan_id, sr.arn).in_(chunk))):
            before_compliant[(sid, arn)] = bool(compliant) if in_scope else None
        before_rows.extend((f"{sid}\n{arn}", tag, vtype) for sid, arn, tag, vtype in s.execute(
            select(v.scan_id, v.resource_arn, v.tag_name, v.violation_type)
            .where(tuple_(v.scan_id, v.resource_arn).in_(chunk))))
    before_violations = _violations_by_key(before_rows)

    rows: list[dict[str, Any]] = []
    for res, base, diff in pending:
        arn, rtype = res["arn"], res["resource_type"]
        required = {rule.folded for rule in compiled.rules_for(rtype) if rule.required}
        was = before_compliant.get((base.scan_id, arn)) if base.scan_id else None
        now = after_compliant.get(arn)
        before = before_violations.get(f"{base.scan_id}\n{arn}", {})
        after = after_violations.get(arn, {})
        resource_rows = []
        for key, kind, old, new in diff:
            folded = key.casefold()
            impact, reason = classify(kind, key, required=folded in required,
                                      violation_before=before.get(folded), violation_after=after.get(folded))
            resource_rows.append({
                "scan_id": scan_id, "arn": arn, "tag_key": key, "shard_id": shard_id,
                "previous_scan_id": base.scan_id, "resource_id": res["resource_id"], "resource_type": rtype,
                "account_id": res["account_id"], "region": res["region"], "change": kind, "old_value": old,
                "new_value": new, "previous_seen_at": base.seen_at, "observed_at": observed_at, "impact": impact,
                "impact_reason": reason, "required": folded in required, "compliant_before": was,
                "compliant_after": now})
        if was and now is False and not any(row["impact"] == "regression" for row in resource_rows):
            # The resource broke although no single key explains it (e.g. one tag too many): blame the set.
            for row in resource_rows:
                row["impact"] = "regression"
                row["impact_reason"] = "the resource went from compliant to non-compliant with these changes"
        rows.extend(resource_rows)

    keys = ("scan_id", "arn", "tag_key")
    for start in range(0, len(rows), _CHUNK):
        batch = rows[start:start + _CHUNK]
        # A resource listed by two shards of one scan: the last write wins, never a second row.
        upsert_rows(s, ResourceTagChangeRow, batch, keys)


def _violations_by_key(rows: Iterable[tuple[str, str, str]]) -> dict[str, dict[str, str]]:
    """owner -> casefolded tag name -> the first violation type (alphabetically) on it."""
    out: dict[str, dict[str, str]] = {}
    for owner, tag, vtype in rows:
        keys = out.setdefault(owner, {})
        folded = str(tag).casefold()
        if folded not in keys or str(vtype) < keys[folded]:
            keys[folded] = str(vtype)
    return out


# ------------------------------------------------------------------------------------------- read

class TagChange(BaseModel):
    """One tag of one resource that changed between two observations."""

    resource_arn: str
    resource_id: str
    resource_type: str
    account_id: str
    region: str
    tag_key: str
    change: ChangeKind = Field(description="added (old_value null), removed (new_value null) or changed.")
    old_value: str | None
    new_value: str | None
    impact: Impact = Field(description=(
        "regression: broke compliance (a new violation on this key, a required tag removed, or the resource "
        "turned non-compliant); required_tag_changed: a required tag's value moved (cost attribution changed, "
        "compliance did not); improvement: fixed a violation on this key; neutral: neither."))
    impact_reason: str
    regression: bool = Field(description="True when impact is regression.")
    required_tag: bool = Field(description="The key is a required tag for this resource type (ignoring case).")
    compliant_before: bool | None = Field(description="The resource's compliance in the previous scan (null: unknown).")
    compliant_after: bool | None = Field(description="The resource's compliance in the scan that saw the change.")
    observed_at: datetime = Field(description="When the new state was first observed (the scan's shard stored it).")
    previous_seen_at: datetime | None = Field(description=(
        "When the old state was last observed: the change happened between the two."))
    scan_id: str = Field(description="The scan that observed the change.")
    previous_scan_id: str | None = Field(description="The scan that saw the old state (the baseline).")


class DriftCounts(BaseModel):
    """Totals over every change that matches the filters (not only the listed ones)."""

    total: int
    added: int
    removed: int
    changed: int
    regressions: int
    required_tag_changes: int
    improvements: int
    neutral: int
    resources: int = Field(description="Distinct resources with at least one change.")


class DriftGroup(BaseModel):
    """Changes of one tag key, resource type or account."""

    key: str
    total: int
    added: int
    removed: int
    changed: int
    regressions: int


class DriftBaseline(BaseModel):
    """What the comparison rests on."""

    scans_in_window: int = Field(description="Finished scans created in the lookback window (any trigger).")
    resources_compared: int = Field(description=(
        "Resources observed in the window that had an earlier observation to compare with."))
    resources_first_seen: int = Field(description=(
        "Resources first seen in the window: their first sighting is their baseline, not drift."))
    note: str | None = None


class TagDriftReport(BaseModel):
    """Tag drift over the lookback window: totals, breakdowns and the most important changes first."""

    lookback_days: int
    since: datetime
    until: datetime
    filters: dict[str, list[str] | None] = Field(description="The resource_types, tag_keys and accounts applied.")
    summary: DriftCounts
    by_tag_key: list[DriftGroup] = Field(description=f"Top {_BREAKDOWN_LIMIT} tag keys by number of changes.")
    by_resource_type: list[DriftGroup] = Field(description=f"Top {_BREAKDOWN_LIMIT} resource types.")
    by_account: list[DriftGroup] = Field(description=f"Top {_BREAKDOWN_LIMIT} accounts.")
    changes: list[TagChange] = Field(description=(
        "The most important changes: regressions, then required-tag value changes, improvements, neutral; "
        "newest first within each."))
    changes_total: int
    changes_returned: int
    truncated: bool = Field(description="More changes match than are listed: narrow with tag_keys or resource_types.")
    baseline: DriftBaseline
    data_quality: DataQuality


def validate_drift_request(resource_types: Sequence[str] | None, tag_keys: Sequence[str] | None,
                           lookback_days: int, limit: int, accounts: Sequence[str] | None = None) -> None:
    """Reject unusable filters with the field at fault and the fix (nothing is read)."""
    if isinstance(lookback_days, bool) or not isinstance(lookback_days, int) \
            or not 1 <= lookback_days <= MAX_LOOKBACK_DAYS:
        raise InvalidInput(f"lookback_days must be a whole number of days from 1 to {MAX_LOOKBACK_DAYS}, "
                           f"got {lookback_days!r}", field="lookback_days",
                           fix="pass e.g. 7 for the last week or 30 for the last month")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be 1 to {MAX_LIMIT}, got {limit}", field="limit",
                           fix="pass a smaller page, e.g. 25")
    for name, values in (("resource_types", resource_types), ("tag_keys", tag_keys), ("accounts", accounts)):
        if values is not None and len(values) > MAX_FILTER_VALUES:
            raise InvalidInput(f"at most {MAX_FILTER_VALUES} {name} are accepted, got {len(values)}", field=name,
                               fix=f"omit {name} for all, or pass fewer")
        if values is not None and any(not isinstance(v, str) or not v.strip() for v in values):
            raise InvalidInput(f"{name} holds an empty value", field=name, fix=f"omit {name} or pass non-empty values")
    if tag_keys and any(len(k) > 128 for k in tag_keys):
        raise InvalidInput("a tag key is longer than 128 characters (the AWS limit)", field="tag_keys",
                           fix="pass tag keys as they appear on resources, e.g. CostCenter")
    bad = [t for t in resource_types or [] if not _RESOURCE_TYPE.fullmatch(t)]
    if bad:
        raise InvalidInput(f"not a resource type: {', '.join(bad[:5])}", field="resource_types",
                           fix="use service:resource names such as ec2:instance or s3:bucket")
    bad_accounts = [a for a in accounts or [] if not re.fullmatch(r"\d{12}", a)]
    if bad_accounts:
        raise InvalidInput(f"not a 12-digit account id: {', '.join(bad_accounts[:5])}", field="accounts",
                           fix="pass 12-digit AWS account ids, or omit accounts")


def detect_tag_drift(rt: Runtime, resource_types: Sequence[str] | None = None, tag_keys: Sequence[str] | None = None,
                     lookback_days: int = 7, *, accounts: Sequence[str] | None = None, limit: int = 25,
                     now: datetime | None = None) -> TagDriftReport:
    """Tag changes observed in the last ``lookback_days`` days (see the module docstring)."""
    types = _normalized(resource_types)
    keys = _normalized(tag_keys)
    accts = _normalized(accounts)
    validate_drift_request(types, keys, lookback_days, limit, accts)
    until = now or utcnow()
    since = until - timedelta(days=lookback_days)
    c = ResourceTagChangeRow
    clauses: list[Any] = [c.observed_at >= since, c.observed_at <= until]
    if types:
        _check_types_known(rt, types)
        clauses.append(c.resource_type.in_(types))
    if keys:
        clauses.append(func.lower(c.tag_key).in_(sorted({k.lower() for k in keys})))
    if accts:
        clauses.append(c.account_id.in_(accts))
    rank = case({name: i for i, name in enumerate(IMPACT_ORDER)}, value=c.impact, else_=len(IMPACT_ORDER))
    with rt.db.session() as s:
        summary = _summary(s, clauses)
        groups = {dim: _groups(s, clauses, col) for dim, col in
                  (("tag", c.tag_key), ("type", c.resource_type), ("account", c.account_id))}
        rows = s.scalars(select(c).where(*clauses).order_by(rank, c.observed_at.desc(), c.arn, c.tag_key)
                         .limit(limit)).all()
        baseline, dq = _baseline_info(s, since, until, types, accts)
    changes = [_change_out(r) for r in rows]
    return TagDriftReport(
        lookback_days=lookback_days, since=since, until=until,
        filters={"resource_types": types, "tag_keys": keys, "accounts": accts}, summary=summary,
        by_tag_key=groups["tag"], by_resource_type=groups["type"], by_account=groups["account"], changes=changes,
        changes_total=summary.total, changes_returned=len(changes), truncated=summary.total > len(changes),
        baseline=baseline, data_quality=dq)


def _normalized(values: Sequence[str] | None) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        values = values.split(",")
    out = [v.strip() if isinstance(v, str) else v for v in values]
    return list(dict.fromkeys(out)) or None  # an empty list means "no filter", like an omitted one


def _check_types_known(rt: Runtime, types: Sequence[str]) -> None:
    known = set(registry.all_types())
    unknown = [t for t in types if t not in known]
    if not unknown:
        return
    with rt.db.session() as s:
        seen = set(s.scalars(select(ResourceRow.resource_type).distinct()
                             .where(ResourceRow.resource_type.in_(unknown))))
    missing = [t for t in unknown if t not in seen]
    if missing:
        close = [m for t in missing for m in difflib.get_close_matches(t, sorted(known | seen), n=1)]
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise InvalidInput(f"unknown resource type(s): {', '.join(missing[:5])}", field="resource_types",
                           fix=f"{hint}use types such as {', '.join(sorted(known)[:12])} (or omit resource_types)")


def _counts(c: Any) -> list[Any]:
    def n(expr: Any) -> Any:
        return func.coalesce(func.sum(case((expr, 1), else_=0)), 0).cast(Integer)

    return [func.count(), n(c.change == "added"), n(c.change == "removed"), n(c.change == "changed"),
            n(c.impact == "regression")]


def _summary(s: Session, clauses: list[Any]) -> DriftCounts:
    c = ResourceTagChangeRow
    total, added, removed, changed, regressions = s.execute(select(*_counts(c)).where(*clauses)).one()
    impacts = dict(s.execute(select(c.impact, func.count()).where(*clauses).group_by(c.impact)).all())
    resources = s.scalar(select(func.count(distinct(c.arn))).where(*clauses)) or 0
    return DriftCounts(total=int(total), added=int(added), removed=int(removed), changed=int(changed),
                       regressions=int(regressions), required_tag_changes=int(impacts.get("required_tag_changed", 0)),
                       improvements=int(impacts.get("improvement", 0)), neutral=int(impacts.get("neutral", 0)),
                       resources=int(resources))


def _groups(s: Session, clauses: list[Any], column: Any) -> list[DriftGroup]:
    c = ResourceTagChangeRow
    counts = _counts(c)
    q = (select(column, *counts).where(*clauses).group_by(column)
         .order_by(counts[4].desc(), counts[0].desc(), column).limit(_BREAKDOWN_LIMIT))
    return [DriftGroup(key=str(key), total=int(t), added=int(a), removed=int(r), changed=int(ch), regressions=int(rg))
            for key, t, a, r, ch, rg in s.execute(q)]


def _baseline_info(s: Session, since: datetime, until: datetime, types: list[str] | None,
                   accounts: list[str] | None) -> tuple[DriftBaseline, DataQuality]:
    r = ResourceRow
    where: list[Any] = [r.last_seen >= since, r.last_seen <= until]
    if types:
        where.append(r.resource_type.in_(types))
    if accounts:
        where.append(r.account_id.in_(accounts))
    compared = s.scalar(select(func.count()).select_from(r).where(*where, r.previous_scan_id.is_not(None))) or 0
    first = s.scalar(select(func.count()).select_from(r).where(*where, r.previous_scan_id.is_(None))) or 0
    scans = s.execute(select(ScanRow.id, ScanRow.status).where(
        ScanRow.created_at >= since, ScanRow.created_at <= until,
        ScanRow.status.in_(("succeeded", "partial", "cancelled")))).all()
    notes = ["a change is reported once, by the first scan that observed it; a deleted resource is not tag drift",
             "tag keys compare exactly (AWS keys are case-sensitive): a key whose case changed shows as removed "
             "plus added"]
    note = None
    if compared == 0:
        note = ("no baseline yet: the resources in this window have been observed only once, and a first sighting "
                "is a baseline, not drift; drift appears after the next scan of the same resources")
        notes.insert(0, note)
    partial = [sid for sid, status in scans if status != "succeeded"]
    if partial:
        notes.append(f"{len(partial)} scan(s) in the window did not read every shard (partial or cancelled): "
                     "resources they missed were not re-observed, so changes on them are not known yet")
    dq = DataQuality(status="partial" if partial else "complete", notes=notes)
    return DriftBaseline(scans_in_window=len(scans), resources_compared=int(compared),
                         resources_first_seen=int(first), note=note), dq


def _change_out(r: ResourceTagChangeRow) -> TagChange:
    return TagChange(
        resource_arn=r.arn, resource_id=r.resource_id, resource_type=r.resource_type, account_id=r.account_id,
        region=r.region, tag_key=r.tag_key, change=r.change,  # type: ignore[arg-type]
        old_value=r.old_value, new_value=r.new_value, impact=r.impact,  # type: ignore[arg-type]
        impact_reason=r.impact_reason, regression=r.impact == "regression", required_tag=r.required,
        compliant_before=r.compliant_before, compliant_after=r.compliant_after, observed_at=_aware(r.observed_at),
        previous_seen_at=_aware(r.previous_seen_at) if r.previous_seen_at else None, scan_id=r.scan_id,
        previous_scan_id=r.previous_scan_id)


def _aware(dt: datetime) -> datetime:
    # SQLite gives back naive datetimes even for timezone-aware columns.
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
