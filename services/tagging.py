"""The write path: bulk tag changes that are previewed, requested, approved, applied, verified and undone.

Flow: ``preview`` (per-resource diff, projected compliance and cost-gap change, risk) -> ``create_request``
(immutable; ``dry_run`` by default) -> ``decide`` (approve or deny; one decision per request, so an
approval cannot be replayed; the requester may not approve their own request above
``tagging_self_approval_max_risk``; undecided requests expire) -> ``apply_group`` (a Celery task per
account and region: TagResources in batches of 20 ARNs, only the ARNs of ``FailedResourcesMap`` retried,
then the tags read back and each resource marked applied / failed / drifted) -> ``create_rollback`` (a
new request restoring the previous values, approved like any other).

Current values are read live through the Resource Groups Tagging API when a request is built, so the
previous values a rollback restores are the ones the cloud held, not a scan's older copy. Identity comes
from the front doors as a ``services.auth.Principal``; authentication itself lives there.
"""

from __future__ import annotations

import json
import random
import shlex
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from policies.engine import evaluate_resource
from policies.models import Resource
from scanner.providers.aws.arn import parse_arn
from scanner.ratelimit import limiter_key
from scanner.retry import call_with_retry, error_code
from services import audit
from services.auth import ALL_SCOPES, Principal
from services.db.models import (
    ResourceRow,
    ScanResourceRow,
    ScanRow,
    TaggingDecisionRow,
    TaggingOutcomeRow,
    TaggingRequestRow,
    utcnow,
)
from services.errors import AppError, Conflict, Forbidden, InvalidInput, NotFound, Unavailable
from services.policy_store import active_policy
from services.runtime import Runtime
from services.scan_policies import freeze_account_policies, synced_policy_versions

# AWS limits (Resource Groups Tagging API and the tag rules of every service).
MAX_KEY_LENGTH = 128
MAX_VALUE_LENGTH = 256
MAX_TAGS_PER_CALL = 50
MAX_ARNS_PER_CALL = 20
READ_ARNS_PER_CALL = 100
#: Resources one request may change (a larger change is several requests, each reviewed).
MAX_REQUEST_RESOURCES = 5000
#: Outcomes and diffs listed in one answer; the counts always cover everything.
MAX_LISTED = 50
#: First wait before retrying the ARNs of a FailedResourcesMap (doubles per attempt, full jitter).
RETRY_BASE_WAIT = 0.2
RETRY_MAX_WAIT = 5.0
_RETRYABLE_CODES = {"InternalServiceException", "ThrottlingException", "Throttling", "ServiceUnavailable",
                    "RequestLimitExceeded", "TooManyRequestsException"}
_PRODUCTION_KEYS = {"env", "environment", "stage", "tier"}

RiskLevel = Literal["low", "medium", "high"]
_RISK_ORDER = {"none": -1, "low": 0, "medium": 1, "high": 2}
Status = Literal["draft", "pending_approval", "approved", "denied", "expired", "applying", "applied",
                 "partially_applied", "failed", "rolled_back"]
FINAL_APPLY = frozenset({"applied", "partially_applied", "failed", "rolled_back"})

# ----------------------------------------------------------------------------------------- identity
# Callers are services.auth.Principal (name, scopes, kind), built by the front doors from the verified
# token or API key; the operations here check the scope they need (tag:write, tag:approve).

#: The caller of direct service use (CLI, tests) when no front door supplies one: every scope.
LOCAL = Principal("local", frozenset(ALL_SCOPES), "local")


# ------------------------------------------------------------------------------------------- models

class ResourceDiff(BaseModel):
    resource_arn: str
    account_id: str
    region: str
    resource_type: str
    added: dict[str, str] = Field(default_factory=dict, description="Tags the resource does not have yet.")
    changed: dict[str, dict[str, str | None]] = Field(default_factory=dict,
                                                      description="key -> {from, to} for values that change.")
    removed: list[str] = Field(default_factory=list, description="Keys removed (rollbacks of added tags).")
    unchanged: list[str] = Field(default_factory=list, description="Requested tags already set to that value.")
    compliant_before: bool | None = None
    compliant_after: bool | None = None


class ComplianceProjection(BaseModel):
    score_before: float | None = Field(description="Compliance score (0..1) of the touched accounts now.")
    score_after: float | None = Field(description="The same score once the change is applied.")
    resources_evaluated: int
    resources_becoming_compliant: int
    resources_becoming_non_compliant: int


class CostGapProjection(BaseModel):
    monthly_reduction: float | None = Field(description=(
        "Monthly spend of resources this change makes compliant (no longer unattributed); None = no cost data."))
    currency: str | None = None
    resources_priced: int = 0
    source: str | None = None
    notes: list[str] = Field(default_factory=list)


class RiskAssessment(BaseModel):
    level: RiskLevel
    reasons: list[str]


class TaggingPreview(BaseModel):
    resource_count: int = Field(description="Resources asked about.")
    resources_changing: int = Field(description="Resources whose tags would change.")
    tags_added: int
    tags_changed: int
    tags_unchanged: int
    accounts: list[str]
    regions: list[str]
    diffs: list[ResourceDiff] = Field(description=f"Per-resource diffs, the first {MAX_LISTED} changing ones.")
    diffs_truncated: bool
    compliance: ComplianceProjection
    cost_gap: CostGapProjection
    risk: RiskAssessment
    notes: list[str] = Field(default_factory=list)


class DecisionOut(BaseModel):
    decided_by: str
    decision: Literal["approved", "denied"]
    comment: str | None
    decided_at: datetime


class OutcomeOut(BaseModel):
    resource_arn: str
    account_id: str
    region: str
    status: Literal["pending", "applied", "failed", "drifted"]
    attempts: int
    error: str | None = None
    observed: dict[str, Any] | None = Field(default=None, description="Drifted: the differing tags read back.")


class TaggingRequestOut(BaseModel):
    request_id: str
    intent: str
    status: Status
    requested_by: str
    created_at: datetime
    expires_at: datetime
    dry_run: bool
    risk: RiskAssessment
    tags: dict[str, str] = Field(description="Tags requested for every resource (empty when per-resource).")
    resource_count: int
    rollback_of: str | None = None
    decision: DecisionOut | None = None
    outcome_counts: dict[str, int] = Field(default_factory=dict)
    outcomes: list[OutcomeOut] = Field(default_factory=list, description=(
        f"Per-resource outcomes, problems first, at most {MAX_LISTED}."))
    outcomes_truncated: bool = False
    compliance: ComplianceProjection | None = None
    cost_gap: CostGapProjection | None = None
    next_step: str


class TaggingRequestList(BaseModel):
    requests: list[TaggingRequestOut]


# ------------------------------------------------------------------------------------------- inputs

@dataclass
class _Target:
    arn: str
    account_id: str
    region: str
    resource_type: str
    resource_id: str


def validate_tags(tags: Mapping[str, Any], field_name: str = "tags") -> dict[str, str]:
    """Check ``tags`` against the AWS limits; every problem names the key and the fix."""
    if not isinstance(tags, Mapping):
        raise InvalidInput("tags must be an object of key -> value", field=field_name,
                           fix='pass e.g. {"CostCenter": "Payments"}')
    if len(tags) > MAX_TAGS_PER_CALL:
        raise InvalidInput(f"{len(tags)} tags given; AWS takes at most {MAX_TAGS_PER_CALL} per call", field=field_name,
                           fix=f"split the change into requests of at most {MAX_TAGS_PER_CALL} tags")
    out: dict[str, str] = {}
    for key, value in tags.items():
        where = f"{field_name}.{key}"
        if not isinstance(key, str) or not key.strip():
            raise InvalidInput("a tag key is empty", field=field_name, fix="give every tag a non-empty key")
        if len(key) > MAX_KEY_LENGTH:
            raise InvalidInput(f"key is {len(key)} characters; AWS allows {MAX_KEY_LENGTH}", field=where,
                               fix=f"shorten the key to at most {MAX_KEY_LENGTH} characters")
        if key.lower().startswith("aws:"):
            raise InvalidInput("keys starting with 'aws:' are reserved for AWS", field=where,
                               fix="choose a key without the aws: prefix")
        if value is None or not isinstance(value, str):
            raise InvalidInput(f"value must be a string, got {type(value).__name__}", field=where,
                               fix='pass the value as text, e.g. "Payments" ("" for an empty value)')
        if len(value) > MAX_VALUE_LENGTH:
            raise InvalidInput(f"value is {len(value)} characters; AWS allows {MAX_VALUE_LENGTH}", field=where,
                               fix=f"shorten the value to at most {MAX_VALUE_LENGTH} characters")
        out[key] = value
    return out


def _targets(rt: Runtime, resource_arns: Sequence[str] | None, scan_id: str | None,
             resource_types: Sequence[str] | None) -> list[_Target]:
    if (resource_arns is None) == (scan_id is None):
        raise InvalidInput("give either resource_arns or scan_id", field="resource_arns",
                           fix="pass the ARNs to tag, or the scan_id of a finished scan to cover its non-compliant "
                               "resources (optionally narrowed with resource_types)")
    if scan_id is not None:
        with rt.db.session() as s:
            if s.get(ScanRow, scan_id) is None:
                raise NotFound(f"scan {scan_id} does not exist", field="scan_id", fix="pass a scan_id from list_scans")
            q = select(ScanResourceRow).where(ScanResourceRow.scan_id == scan_id, ScanResourceRow.in_scope.is_(True),
                                              ScanResourceRow.compliant.is_(False))
            if resource_types:
                q = q.where(ScanResourceRow.resource_type.in_(list(resource_types)))
            rows = s.scalars(q.order_by(ScanResourceRow.arn).limit(MAX_REQUEST_RESOURCES + 1)).all()
            found = [_Target(r.arn, r.account_id, r.region, r.resource_type, r.resource_id) for r in rows]
        if not found:
            raise InvalidInput(f"scan {scan_id} has no non-compliant resources" +
                               (f" of types {list(resource_types)}" if resource_types else ""),
                               field="scan_id", fix="pick another scan or other resource_types")
        _check_size(len(found), "scan_id")
        return found
    arns = list(resource_arns or [])
    if not arns:
        raise InvalidInput("resource_arns is empty", field="resource_arns", fix="pass at least one ARN")
    _check_size(len(arns), "resource_arns")
    unique = list(dict.fromkeys(arns))
    with rt.db.session() as s:
        known = {r.arn: r for r in s.scalars(select(ResourceRow).where(ResourceRow.arn.in_(unique))).all()}
    out = []
    for i, arn in enumerate(unique):
        try:
            parsed = parse_arn(arn)
        except ValueError as exc:
            raise InvalidInput(str(exc), field=f"resource_arns[{i}]",
                               fix="pass a full ARN such as arn:aws:ec2:us-east-1:123456789012:volume/vol-0abc",
                               ) from None
        row = known.get(arn)
        account = row.account_id if row else parsed.account or rt.aws.caller_account()
        region = row.region if row else parsed.region or rt.settings.aws_default_region
        out.append(_Target(arn, account, region, row.resource_type if row else parsed.type_key,
                           row.resource_id if row else parsed.resource_id))
    return out


def _check_size(n: int, field_name: str) -> None:
    if n > MAX_REQUEST_RESOURCES:
        raise InvalidInput(f"more than {MAX_REQUEST_RESOURCES} resources", field=field_name,
                           fix=f"split the change into requests of at most {MAX_REQUEST_RESOURCES} resources "
                               "(narrow by resource_types or accounts)")


# ------------------------------------------------------------------------------------------- reading

def read_tags(rt: Runtime, account_id: str, region: str, arns: Sequence[str]) -> dict[str, dict[str, str]]:
    """Current tags of ``arns`` (one account and region) through GetResources; an ARN the API does not
    return (never tagged, or gone) maps to ``{}``."""
    client = rt.aws.client(account_id, "resourcegroupstaggingapi", region)
    out: dict[str, dict[str, str]] = {arn: {} for arn in arns}
    for start in range(0, len(arns), READ_ARNS_PER_CALL):
        chunk = list(arns[start:start + READ_ARNS_PER_CALL])
        token = ""
        while True:
            params: dict[str, Any] = {"ResourceARNList": chunk}
            if token:
                params["PaginationToken"] = token
            page = call_with_retry(_limited(rt, limiter_key(account_id, region, "tagging"), client.get_resources),
                                   attempts=rt.settings.api_call_attempts, **params)
            for item in page.get("ResourceTagMappingList", []):
                if item["ResourceARN"] in out:
                    # moto omits Value for empty values
                    out[item["ResourceARN"]] = {t["Key"]: t.get("Value", "") for t in item.get("Tags", [])}
            token = page.get("PaginationToken") or ""
            if not token:
                break
    return out


def _grouped(targets: Iterable[_Target]) -> dict[tuple[str, str], list[_Target]]:
    groups: dict[tuple[str, str], list[_Target]] = defaultdict(list)
    for t in targets:
        groups[(t.account_id, t.region)].append(t)
    return groups


def _desired_tags(rt: Runtime, targets: Sequence[_Target], tags: dict[str, str] | None,
                  apply_suggestions: bool, min_confidence: float, notes: list[str]) -> dict[str, dict[str, str]]:
    if apply_suggestions:
        if not 0 <= min_confidence <= 1:
            raise InvalidInput(f"min_confidence {min_confidence} is outside 0..1", field="min_confidence",
                               fix="pass a number from 0 to 1, e.g. 0.8")
        from services import suggestions

        suggester, index, version_of = suggestions._suggester(rt, sorted({t.account_id for t in targets}))
        out: dict[str, dict[str, str]] = {}
        renames = 0
        for t in targets:
            record = index.by_arn.get(t.arn)
            if record is None:
                continue
            found = suggester.suggest(record, policy_version=version_of(t.account_id))
            chosen = {}
            for sug in found.suggestions:
                if sug.confidence < min_confidence:
                    continue
                if sug.action == "rename_key":
                    renames += 1  # needs removing the old key too: left to a person
                    continue
                chosen[sug.tag] = sug.value
            chosen.update(tags or {})
            if chosen:
                out[t.arn] = chosen
        if renames:
            notes.append(f"{renames} key-case suggestions (rename a key) are left out: a rename removes a tag; "
                         "do it by hand")
        if not out:
            raise InvalidInput(f"no suggestion reaches confidence {min_confidence} for these resources",
                               field="min_confidence", fix="lower min_confidence, or pass tags explicitly")
        return out
    if not tags:
        raise InvalidInput("no tags given", field="tags",
                           fix='pass tags such as {"CostCenter": "Payments"}, or apply_suggestions=true')
    return {t.arn: tags for t in targets}


# ------------------------------------------------------------------------------------------- preview

@dataclass
class _Plan:
    targets: list[_Target]
    diffs: list[ResourceDiff]
    changes: list[dict[str, Any]]
    preview: TaggingPreview


def _plan(rt: Runtime, *, resource_arns: Sequence[str] | None, tags: Mapping[str, Any] | None, scan_id: str | None,
          resource_types: Sequence[str] | None, apply_suggestions: bool, min_confidence: float) -> _Plan:
    clean = validate_tags(tags) if tags else None
    targets = _targets(rt, resource_arns, scan_id, resource_types)
    notes: list[str] = []
    desired = _desired_tags(rt, targets, clean, apply_suggestions, min_confidence, notes)
    targets = [t for t in targets if t.arn in desired]
    current: dict[str, dict[str, str]] = {}
    for (account, region), group in _grouped(targets).items():
        try:
            current.update(read_tags(rt, account, region, [t.arn for t in group]))
        except Exception as exc:  # an account we cannot reach: said per group, not hidden
            raise Unavailable(f"cannot read the current tags in account {account}, region {region}: "
                           f"{error_code(exc) or type(exc).__name__}", field="resource_arns",
                           fix="check that the account is reachable (assume-role) and the ARNs are right") from None
    diffs: list[ResourceDiff] = []
    changes: list[dict[str, Any]] = []
    for t in targets:
        now = current.get(t.arn, {})
        want = desired[t.arn]
        diff = ResourceDiff(resource_arn=t.arn, account_id=t.account_id, region=t.region, resource_type=t.resource_type)
        for k, v in want.items():
            if k not in now:
                diff.added[k] = v
            elif now[k] != v:
                diff.changed[k] = {"from": now[k], "to": v}
            else:
                diff.unchanged.append(k)
        if len(set(now) | set(want)) > MAX_TAGS_PER_CALL:
            raise InvalidInput(f"{t.arn} would carry more than {MAX_TAGS_PER_CALL} tags", field="tags",
                               fix="remove tags from the resource first or request fewer tags")
        diffs.append(diff)
        to_set = {**diff.added, **{k: str(c["to"]) for k, c in diff.changed.items()}}
        if to_set:
            changes.append({"arn": t.arn, "account_id": t.account_id, "region": t.region,
                            "resource_type": t.resource_type, "resource_id": t.resource_id, "set": to_set,
                            "remove": [], "previous": {k: now.get(k) for k in to_set}})
    after = {c["arn"]: {**current.get(c["arn"], {}), **c["set"]} for c in changes}
    compliance, flips = _project_compliance(rt, targets, current, after, diffs)
    cost = _project_cost(rt, [t for t in targets if t.arn in flips])
    estate = _estate_size(rt, {t.account_id for t in targets})
    risk = assess_risk(rt, len(changes), estate, sum(_is_production({**current.get(c["arn"], {}), **c["set"]})
                                                     for c in changes), len({c["account_id"] for c in changes}))
    changing = [d for d in diffs if d.added or d.changed]
    preview = TaggingPreview(
        resource_count=len(targets), resources_changing=len(changes),
        tags_added=sum(len(d.added) for d in diffs), tags_changed=sum(len(d.changed) for d in diffs),
        tags_unchanged=sum(len(d.unchanged) for d in diffs),
        accounts=sorted({t.account_id for t in targets}), regions=sorted({t.region for t in targets}),
        diffs=changing[:MAX_LISTED], diffs_truncated=len(changing) > MAX_LISTED, compliance=compliance,
        cost_gap=cost, risk=risk, notes=notes)
    return _Plan(targets, diffs, changes, preview)


def _policy_for(rt: Runtime, accounts: Sequence[str]) -> Any:
    default = active_policy(rt.db, rt.settings.policy_path)
    frozen = freeze_account_policies(rt, default.id, synced_policy_versions(rt), accounts)
    today = utcnow().date()
    return lambda account: rt.policies.get(rt.db, frozen.by_account.get(account, default.id), today)


def _project_compliance(rt: Runtime, targets: Sequence[_Target], current: Mapping[str, Mapping[str, str]],
                        after: Mapping[str, Mapping[str, str]], diffs: Sequence[ResourceDiff],
                        ) -> tuple[ComplianceProjection, set[str]]:
    """Score of the touched accounts' scanned estate now and after the change (resources the estate does
    not know yet count with their live tags); returns the ARNs turning compliant."""
    accounts = sorted({t.account_id for t in targets})
    policy_for = _policy_for(rt, accounts)
    with rt.db.session() as s:
        rows = s.scalars(select(ResourceRow).where(ResourceRow.account_id.in_(accounts))).all()
        estate = {r.arn: (r.resource_type, r.resource_id, r.account_id, r.region, dict(r.tags or {}), r.name)
                  for r in rows}
    for t in targets:
        estate[t.arn] = (t.resource_type, t.resource_id, t.account_id, t.region, dict(current.get(t.arn, {})), None)
    by_arn = {d.resource_arn: d for d in diffs}
    in_scope = before_ok = after_ok = 0
    flips: set[str] = set()
    worse = 0
    for arn, (rtype, rid, account, region, tags, name) in estate.items():
        compiled = policy_for(account)
        ev = evaluate_resource(Resource(arn=arn, resource_id=rid, resource_type=rtype, account_id=account,
                                        region=region, tags=tags, name=name), compiled)
        if not ev.in_scope:
            continue
        in_scope += 1
        before_ok += ev.compliant
        ok_after = ev.compliant
        if arn in after:
            ev2 = evaluate_resource(Resource(arn=arn, resource_id=rid, resource_type=rtype, account_id=account,
                                             region=region, tags=dict(after[arn]), name=name), compiled)
            ok_after = ev2.compliant
            if ok_after and not ev.compliant:
                flips.add(arn)
            elif ev.compliant and not ok_after:
                worse += 1
        after_ok += ok_after
        if arn in by_arn:
            by_arn[arn].compliant_before = ev.compliant
            by_arn[arn].compliant_after = ok_after
    def score(ok: int) -> float:
        return round(ok / in_scope, 4) if in_scope else 1.0

    return ComplianceProjection(score_before=score(before_ok), score_after=score(after_ok),
                                resources_evaluated=in_scope,
                                resources_becoming_compliant=len(flips), resources_becoming_non_compliant=worse), flips


def _project_cost(rt: Runtime, flipping: Sequence[_Target]) -> CostGapProjection:
    if not flipping:
        return CostGapProjection(monthly_reduction=0.0, notes=["no resource becomes compliant"])
    from services.resource_costs import CostTarget, monthly_costs

    try:
        lookup = monthly_costs(rt, [CostTarget(t.arn, t.resource_id, t.resource_type, t.account_id) for t in flipping],
                               allow_cost_explorer=rt.settings.cost_explorer)
    except Exception as exc:  # cost data is a projection: its absence never blocks a tagging request
        return CostGapProjection(monthly_reduction=None, notes=[f"cost data unavailable: {type(exc).__name__}"])
    if not lookup.costs:
        return CostGapProjection(monthly_reduction=None, source=lookup.source, notes=lookup.notes or [
            "no cost data for these resources"])
    currencies = {c.currency for c in lookup.costs.values()}
    return CostGapProjection(monthly_reduction=round(sum(c.monthly_cost for c in lookup.costs.values()), 2),
                             currency=currencies.pop() if len(currencies) == 1 else None,
                             resources_priced=len(lookup.costs), source=lookup.source, notes=lookup.notes)


def _estate_size(rt: Runtime, accounts: set[str]) -> int:
    with rt.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(ResourceRow).where(
            ResourceRow.account_id.in_(sorted(accounts)))) or 0)


def _is_production(tags: Mapping[str, str]) -> bool:
    return any(k.lower() in _PRODUCTION_KEYS and str(v).lower().startswith("prod") for k, v in tags.items())


def assess_risk(rt: Runtime, resources: int, estate: int, production: int, accounts: int) -> RiskAssessment:
    """Risk of a change from the configured thresholds: over any threshold is high, over half of one medium."""
    s = rt.settings
    level = 0
    reasons: list[str] = []

    def check(value: float, limit: float, text: str) -> None:
        nonlocal level
        if value > limit:
            level = max(level, 2)
            reasons.append(f"{text} (above the high-risk threshold {limit:g})")
        elif value > limit / 2:
            level = max(level, 1)
            reasons.append(f"{text} (over half of the high-risk threshold {limit:g})")

    check(resources, s.tagging_risk_resources, f"{resources} resources change")
    if estate:
        share = resources / max(estate, resources)
        check(share, s.tagging_risk_estate_share, f"{share:.0%} of the scanned resources of the touched accounts")
    check(production, s.tagging_risk_production_resources, f"{production} production-tagged resources")
    check(accounts, s.tagging_risk_accounts, f"{accounts} accounts touched")
    if not reasons:
        reasons.append("small change: under half of every risk threshold")
    names: list[RiskLevel] = ["low", "medium", "high"]
    return RiskAssessment(level=names[level], reasons=reasons)


def preview(rt: Runtime, *, resource_arns: Sequence[str] | None = None, tags: Mapping[str, Any] | None = None,
            scan_id: str | None = None, resource_types: Sequence[str] | None = None,
            apply_suggestions: bool = False, min_confidence: float = 0.8) -> TaggingPreview:
    """What a change would do, per resource, without writing anything."""
    return _plan(rt, resource_arns=resource_arns, tags=tags, scan_id=scan_id, resource_types=resource_types,
                 apply_suggestions=apply_suggestions, min_confidence=min_confidence).preview


# ------------------------------------------------------------------------------------------- requests

def _intent(tags: dict[str, str] | None, plan: _Plan, apply_suggestions: bool) -> str:
    types = Counter(c["resource_type"] for c in plan.changes)
    what = ", ".join(f"{n} {t}" for t, n in types.most_common(3)) + (" and more" if len(types) > 3 else "")
    if apply_suggestions:
        how = "apply suggested tag values"
    else:
        how = "set " + ", ".join(f"{k}={v}" for k, v in list((tags or {}).items())[:5])
    return f"{how} on {len(plan.changes)} resources ({what}) in account(s) {', '.join(plan.preview.accounts)}"


def create_request(rt: Runtime, principal: Principal, *, resource_arns: Sequence[str] | None = None,
                   tags: Mapping[str, Any] | None = None, dry_run: bool = True, intent: str | None = None,
                   scan_id: str | None = None, resource_types: Sequence[str] | None = None,
                   apply_suggestions: bool = False, min_confidence: float = 0.8) -> TaggingRequestOut:
    """Record a tagging request awaiting approval. Nothing changes in the cloud until it is approved."""
    principal.require("tag:write")
    if intent is not None and (not intent.strip() or len(intent) > 2000):
        raise InvalidInput("intent must be 1-2000 characters", field="intent",
                           fix="describe the change in plain words, e.g. 'tag the payments volumes "
                               "CostCenter=Payments'")
    plan = _plan(rt, resource_arns=resource_arns, tags=tags, scan_id=scan_id, resource_types=resource_types,
                 apply_suggestions=apply_suggestions, min_confidence=min_confidence)
    if not plan.changes:
        raise InvalidInput("every resource already carries these tags: nothing to change", field="tags",
                           fix="check the preview (preview_bulk_tagging); no request is needed")
    clean = validate_tags(tags) if tags else {}
    return _store_request(rt, principal, intent=intent.strip() if intent else _intent(clean, plan, apply_suggestions),
                          tags=clean, changes=plan.changes, preview=plan.preview, dry_run=dry_run)


def _store_request(rt: Runtime, principal: Principal, *, intent: str, tags: dict[str, str],
                   changes: list[dict[str, Any]], preview: TaggingPreview, dry_run: bool,
                   rollback_of: str | None = None) -> TaggingRequestOut:
    now = utcnow()
    row = TaggingRequestRow(
        id=str(uuid.uuid4()), intent=intent, requested_by=principal.name, created_at=now,
        expires_at=now + timedelta(hours=rt.settings.tagging_request_ttl_hours), status="pending_approval",
        risk_level=preview.risk.level, risk_reasons=preview.risk.reasons, dry_run=dry_run, tags=tags,
        changes=changes, resource_count=len(changes), rollback_of=rollback_of,
        preview={"compliance": preview.compliance.model_dump(), "cost_gap": preview.cost_gap.model_dump()})
    with rt.db.session() as s:
        s.add(row)
    audit.record(rt.db, principal=principal.name, channel="service", action="tagging.create",
                 parameters={"request_id": row.id, "resources": len(changes), "dry_run": dry_run,
                             "risk": preview.risk.level, "rollback_of": rollback_of}, outcome="ok")
    return get_request(rt, row.id)


def decide(rt: Runtime, principal: Principal, request_id: str, decision: Literal["approve", "deny"],
           comment: str | None = None, *, user_consented: bool = False) -> TaggingRequestOut:
    """Approve or deny a request (once: a second decision is refused). Approval of a non-dry-run request
    starts the apply tasks; a dry run stays as it is (its script can be downloaded).

    ``user_consented``: in a local single-user MCP session the person at the client confirmed this very
    change through MCP elicitation, which stands in for a second approver (the decision says so)."""
    if decision not in ("approve", "deny"):
        raise InvalidInput(f"decision {decision!r} is not approve or deny", field="decision",
                           fix="pass decision='approve' or decision='deny'")
    if comment is not None and len(comment) > 2000:
        raise InvalidInput("comment is longer than 2000 characters", field="comment", fix="shorten the comment")
    try:
        principal.require("tag:approve")
        if user_consented:
            comment = f"[confirmed by the user through MCP elicitation] {comment or ''}".strip()
        groups = _record_decision(rt, principal, request_id, decision, comment, user_consented=user_consented)
    except AppError as exc:
        audit.record(rt.db, principal=principal.name, channel="service", action=f"tagging.{decision}",
                     parameters={"request_id": request_id, "comment": comment}, outcome=f"refused:{exc.code}")
        raise
    audit.record(rt.db, principal=principal.name, channel="service", action=f"tagging.{decision}",
                 parameters={"request_id": request_id, "comment": comment, "user_consented": user_consented},
                 outcome="ok")
    _dispatch(rt, request_id, groups)
    return get_request(rt, request_id)


def _dispatch(rt: Runtime, request_id: str, groups: Sequence[tuple[str, str]]) -> None:
    try:
        for account, region in groups:
            rt.dispatcher.apply_tagging(request_id, account, region)
    except Exception as exc:  # the decision stands; the pending resources wait for resume_apply
        raise Unavailable(f"request {request_id} is approved but its apply tasks could not be queued "
                          f"({type(exc).__name__})", field="request_id",
                          fix="check the broker (CELERY_BROKER_URL), then POST /v1/tagging-requests/{id}/resume"
                          ) from None


def resume_apply(rt: Runtime, principal: Principal, request_id: str) -> TaggingRequestOut:
    """Queue the apply tasks again for the resources of an applying request still pending (a lost task or
    broker outage); settled resources are not touched again."""
    principal.require("tag:approve")
    with rt.db.session() as s:
        row = _load(s, request_id)
        if row.status != "applying":
            raise Conflict(f"request {request_id} is {row.status}, not applying", field="request_id",
                           fix="only a request being applied can be resumed")
        pending = s.execute(select(TaggingOutcomeRow.account_id, TaggingOutcomeRow.region).where(
            TaggingOutcomeRow.request_id == request_id, TaggingOutcomeRow.status == "pending")).all()
        groups = sorted({(str(account), str(region)) for account, region in pending})
    _dispatch(rt, request_id, groups)
    return get_request(rt, request_id)


def _self_approval_refused(rt: Runtime, principal: Principal, row: TaggingRequestRow) -> bool:
    return (principal.name == row.requested_by
            and _RISK_ORDER[row.risk_level] > _RISK_ORDER[rt.settings.tagging_self_approval_max_risk])


def consent_question(rt: Runtime, principal: Principal, request_id: str) -> str | None:
    """The question to put to the user when approving ``request_id`` would be a refused self-approval
    (a local single-user session asks the person instead); ``None`` when no question is needed."""
    with rt.db.session() as s:
        row = _load(s, request_id)
        if row.status != "pending_approval" or not _self_approval_refused(rt, principal, row):
            return None
        effect = ("Dry run: nothing will be changed in the cloud." if row.dry_run
                  else f"This changes tags on {row.resource_count} resources in the cloud now.")
        return (f"Approve tagging request {row.id}? Intent: {row.intent}. Risk {row.risk_level}: "
                f"{'; '.join(row.risk_reasons)}. {effect}")


def _record_decision(rt: Runtime, principal: Principal, request_id: str, decision: str,
                     comment: str | None, *, user_consented: bool = False) -> list[tuple[str, str]]:
    now = utcnow()
    expired = False
    groups: list[tuple[str, str]] = []
    try:
        with rt.db.session() as s:
            row = _load(s, request_id, with_lock=True)
            if s.get(TaggingDecisionRow, request_id) is not None:
                raise Conflict(f"request {request_id} was already decided; a decision cannot be replayed",
                               field="request_id", fix="create a new request for a new change")
            if row.status == "pending_approval" and _aware(row.expires_at) <= now:
                row.status = "expired"
                expired = True
            elif row.status != "pending_approval":
                raise Conflict(f"request {request_id} is {row.status}, not pending_approval", field="request_id",
                               fix="only pending requests can be decided; create a new request")
            if not expired:
                if decision == "approve" and not user_consented and _self_approval_refused(rt, principal, row):
                    raise Forbidden(f"{principal.name} requested this {row.risk_level}-risk change and cannot approve "
                                    "it too", field="request_id",
                                    fix="ask another person holding tag:approve to approve it (in a local MCP "
                                        "session, a client with elicitation support lets you confirm it yourself)")
                s.add(TaggingDecisionRow(request_id=request_id, decided_by=principal.name,
                                         decision="approved" if decision == "approve" else "denied",
                                         comment=comment, decided_at=now))
                row.status = "approved" if decision == "approve" else "denied"
                if decision == "approve" and not row.dry_run:
                    row.status = "applying"
                    row.started_at = now
                    for c in row.changes:
                        s.add(TaggingOutcomeRow(request_id=request_id, arn=c["arn"], account_id=c["account_id"],
                                                region=c["region"], status="pending", updated_at=now))
                    groups = sorted({(c["account_id"], c["region"]) for c in row.changes})
    except IntegrityError:  # a concurrent decision won the race
        raise Conflict(f"request {request_id} was already decided; a decision cannot be replayed",
                       field="request_id", fix="create a new request for a new change") from None
    if expired:
        raise Conflict(f"request {request_id} expired at {_aware(row.expires_at).isoformat()}", field="request_id",
                       fix="create the request again (preview first) and have it decided within "
                           f"{rt.settings.tagging_request_ttl_hours:g} hours")
    return groups


# ------------------------------------------------------------------------------------------- applying

def apply_group(rt: Runtime, request_id: str, account_id: str, region: str) -> None:
    """Apply the pending changes of one account and region, then verify them. Idempotent: resources
    already settled (by an earlier delivery of this task) are not touched again."""
    with rt.db.session() as s:
        row = _load(s, request_id)
        pending = set(s.scalars(select(TaggingOutcomeRow.arn).where(
            TaggingOutcomeRow.request_id == request_id, TaggingOutcomeRow.account_id == account_id,
            TaggingOutcomeRow.region == region, TaggingOutcomeRow.status == "pending")).all())
        changes = [c for c in row.changes if c["arn"] in pending]
    if not changes:
        _finish(rt, request_id)
        return
    results: dict[str, tuple[str, int, str | None]] = {}
    try:
        client = rt.aws.client(account_id, "resourcegroupstaggingapi", region)
    except Exception as exc:
        reason = f"cannot reach account {account_id} in {region}: {error_code(exc) or type(exc).__name__}"
        results = {c["arn"]: ("failed", 0, reason) for c in changes}
    else:
        key = limiter_key(account_id, region, "tagging")
        for batch, op, arg in _batches(changes):
            results.update(_call_batch(rt, client, key, op, batch, arg))
        ok = [c for c in changes if results[c["arn"]][0] == "applied"]
        results.update(_verify(rt, account_id, region, ok, results))
    _save_outcomes(rt, request_id, results)
    _finish(rt, request_id)


def fail_group(rt: Runtime, request_id: str, account_id: str, region: str, reason: str) -> None:
    """Mark the still pending resources of one account and region failed (the apply task died for good), so
    the request settles instead of staying ``applying``; nothing reports them as applied."""
    with rt.db.session() as s:
        rows = s.scalars(select(TaggingOutcomeRow).where(
            TaggingOutcomeRow.request_id == request_id, TaggingOutcomeRow.account_id == account_id,
            TaggingOutcomeRow.region == region, TaggingOutcomeRow.status == "pending")).all()
        for r in rows:
            r.status, r.error, r.updated_at = "failed", f"not applied: {reason}"[:500], utcnow()
    _finish(rt, request_id)


def _batches(changes: Sequence[Mapping[str, Any]]) -> Iterable[tuple[list[str], str, Any]]:
    """(arns <= 20, operation, tags or keys): resources wanting the same change share a call."""
    sets: dict[str, list[str]] = defaultdict(list)
    removes: dict[str, list[str]] = defaultdict(list)
    for c in changes:
        if c["set"]:
            sets[json.dumps(c["set"], sort_keys=True)].append(c["arn"])
        if c["remove"]:
            removes[json.dumps(sorted(c["remove"]))].append(c["arn"])
    for key, arns in sets.items():
        for i in range(0, len(arns), MAX_ARNS_PER_CALL):
            yield arns[i:i + MAX_ARNS_PER_CALL], "tag", json.loads(key)
    for key, arns in removes.items():
        for i in range(0, len(arns), MAX_ARNS_PER_CALL):
            yield arns[i:i + MAX_ARNS_PER_CALL], "untag", json.loads(key)


def _limited(rt: Runtime, key: str, fn: Any) -> Any:
    """``fn`` taking a token of the shared rate limiter (the scanner's buckets) before every attempt."""

    def call(**kwargs: Any) -> Any:
        rt.limiter.acquire(key)
        return fn(**kwargs)

    return call


def _call_batch(rt: Runtime, client: Any, key: str, op: str, arns: list[str],
                arg: Any) -> dict[str, tuple[str, int, str | None]]:
    """One TagResources/UntagResources batch, retrying only the ARNs AWS lists as failed (bounded, backoff).
    An ARN keeps status ``applied`` only when no failure was reported for it; results carry attempts."""
    out: dict[str, tuple[str, int, str | None]] = {}
    todo = list(arns)
    attempts = rt.settings.tagging_apply_attempts
    for attempt in range(1, attempts + 1):
        try:
            if op == "tag":
                resp = call_with_retry(_limited(rt, key, client.tag_resources), attempts=rt.settings.api_call_attempts,
                                       ResourceARNList=todo, Tags=arg)
            else:
                resp = call_with_retry(_limited(rt, key, client.untag_resources),
                                       attempts=rt.settings.api_call_attempts,
                                       ResourceARNList=todo, TagKeys=arg)
        except Exception as exc:  # the whole call failed after its own retries: every ARN of it failed
            reason = f"{error_code(exc) or type(exc).__name__}: {exc}"[:500]
            out.update({a: ("failed", attempt, reason) for a in todo})
            return out
        failed: Mapping[str, Mapping[str, Any]] = resp.get("FailedResourcesMap") or {}
        retry: list[str] = []
        for arn in todo:
            info = failed.get(arn)
            if info is None:
                out[arn] = ("applied", attempt, None)
                continue
            reason = f"{info.get('ErrorCode', 'Error')} ({info.get('StatusCode', '?')}): {info.get('ErrorMessage', '')}"
            retryable = (info.get("ErrorCode") in _RETRYABLE_CODES or int(info.get("StatusCode") or 0) >= 500)
            out[arn] = ("failed", attempt, reason)
            if retryable:
                retry.append(arn)
        if not retry:
            break
        todo = retry
        if attempt < attempts:
            time.sleep(random.uniform(0, min(RETRY_MAX_WAIT, RETRY_BASE_WAIT * 2 ** (attempt - 1))))
    return out


def _verify(rt: Runtime, account_id: str, region: str, changes: Sequence[Mapping[str, Any]],
            prior: Mapping[str, tuple[str, int, str | None]]) -> dict[str, tuple[str, int, str | None]]:
    """Read the tags back: a resource is applied only when every value is as set (and removed keys gone)."""
    if not changes:
        return {}
    try:
        seen = read_tags(rt, account_id, region, [c["arn"] for c in changes])
    except Exception as exc:
        reason = f"applied but not verified: reading back failed ({error_code(exc) or type(exc).__name__})"
        return {c["arn"]: ("failed", prior[c["arn"]][1], reason) for c in changes}
    out: dict[str, tuple[str, int, str | None]] = {}
    for c in changes:
        diff = _differences(c, seen.get(c["arn"], {}))
        attempts = prior[c["arn"]][1]
        out[c["arn"]] = ("drifted", attempts, json.dumps(diff)) if diff else ("applied", attempts, None)
    return out


def _differences(change: Mapping[str, Any], tags: Mapping[str, str]) -> dict[str, Any]:
    diff: dict[str, Any] = {}
    for k, v in change["set"].items():
        if tags.get(k) != v:
            diff[k] = {"expected": v, "found": tags.get(k)}
    for k in change["remove"]:
        if k in tags:
            diff[k] = {"expected": None, "found": tags[k]}
    return diff


def _save_outcomes(rt: Runtime, request_id: str, results: Mapping[str, tuple[str, int, str | None]]) -> None:
    now = utcnow()
    with rt.db.session() as s:
        rows = s.scalars(select(TaggingOutcomeRow).where(TaggingOutcomeRow.request_id == request_id,
                                                         TaggingOutcomeRow.arn.in_(list(results)))).all()
        for r in rows:
            status, attempts, detail = results[r.arn]
            r.status, r.attempts, r.updated_at = status, r.attempts + attempts, now
            if status == "drifted":
                r.observed, r.error = json.loads(detail or "{}"), "tags read back differ from what was applied"
            else:
                r.observed, r.error = None, detail


def _finish(rt: Runtime, request_id: str) -> None:
    """Settle the request's status from its outcomes once none is pending (safe to run concurrently)."""
    with rt.db.session() as s:
        row = _load(s, request_id, with_lock=True)
        counts = dict(s.execute(select(TaggingOutcomeRow.status, func.count()).where(
            TaggingOutcomeRow.request_id == request_id).group_by(TaggingOutcomeRow.status)).all())
        if counts.get("pending") or row.status not in ("applying", *FINAL_APPLY):
            return
        total = sum(counts.values())
        applied = counts.get("applied", 0)
        some = applied + counts.get("drifted", 0)
        status = "applied" if applied == total else "partially_applied" if some else "failed"
        if row.status == "rolled_back":
            return
        row.status = status
        row.finished_at = row.finished_at or utcnow()
        if row.rollback_of and status in ("applied", "partially_applied"):
            original = s.get(TaggingRequestRow, row.rollback_of)
            if original is not None:
                original.status = "rolled_back"


def verify_request(rt: Runtime, request_id: str) -> TaggingRequestOut:
    """Read the tags of an applied request back again: resources changed since are marked drifted."""
    with rt.db.session() as s:
        row = _load(s, request_id)
        outcomes = s.scalars(select(TaggingOutcomeRow).where(
            TaggingOutcomeRow.request_id == request_id, TaggingOutcomeRow.status.in_(["applied", "drifted"]))).all()
        settled = {o.arn: o.attempts for o in outcomes}
        changes = [c for c in row.changes if c["arn"] in settled]
    results: dict[str, tuple[str, int, str | None]] = {}
    for (account, region), group in _grouped_changes(changes).items():
        results.update(_verify(rt, account, region, group, {c["arn"]: ("applied", 0, None) for c in group}))
    _save_outcomes(rt, request_id, results)
    with rt.db.session() as s:
        row = _load(s, request_id)
        if row.status in ("applied", "partially_applied"):
            row.status = "applying"
    _finish(rt, request_id)
    return get_request(rt, request_id)


def _grouped_changes(changes: Sequence[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for c in changes:
        groups[(c["account_id"], c["region"])].append(c)
    return groups


# ------------------------------------------------------------------------------------------- rollback

def create_rollback(rt: Runtime, principal: Principal, request_id: str, *, dry_run: bool = False,
                    intent: str | None = None) -> TaggingRequestOut:
    """A new request restoring the previous values of the resources a request changed (it needs its own
    approval). Keys the request added are removed; values it replaced are put back."""
    principal.require("tag:write")
    with rt.db.session() as s:
        row = _load(s, request_id)
        if row.status not in ("applied", "partially_applied"):
            raise Conflict(f"request {request_id} is {row.status}; only applied or partially applied requests can be "
                           "rolled back", field="request_id", fix="check the request's status with get_tagging_request")
        touched = set(s.scalars(select(TaggingOutcomeRow.arn).where(
            TaggingOutcomeRow.request_id == request_id, TaggingOutcomeRow.status.in_(["applied", "drifted"]))).all())
        changes = []
        for c in row.changes:
            if c["arn"] not in touched:
                continue
            restore = {k: v for k, v in c["previous"].items() if v is not None}
            remove = sorted(k for k, v in c["previous"].items() if v is None)
            changes.append({**{k: c[k] for k in ("arn", "account_id", "region", "resource_type", "resource_id")},
                            "set": restore, "remove": remove, "previous": dict(c["set"])})
        original_intent = row.intent
    if not changes:
        raise Conflict(f"request {request_id} changed no resource", field="request_id", fix="nothing to roll back")
    targets = [_Target(c["arn"], c["account_id"], c["region"], c["resource_type"], c["resource_id"]) for c in changes]
    accounts = {c["account_id"] for c in changes}
    risk = assess_risk(rt, len(changes), _estate_size(rt, accounts), 0, len(accounts))
    diffs = [ResourceDiff(resource_arn=c["arn"], account_id=c["account_id"], region=c["region"],
                          resource_type=c["resource_type"], changed={k: {"from": c["previous"].get(k), "to": v}
                                                                     for k, v in c["set"].items()},
                          removed=c["remove"]) for c in changes]
    pv = TaggingPreview(resource_count=len(targets), resources_changing=len(changes), tags_added=0,
                        tags_changed=sum(len(c["set"]) for c in changes), tags_unchanged=0,
                        accounts=sorted(accounts), regions=sorted({c["region"] for c in changes}),
                        diffs=diffs[:MAX_LISTED], diffs_truncated=len(diffs) > MAX_LISTED,
                        compliance=ComplianceProjection(score_before=None, score_after=None, resources_evaluated=0,
                                                        resources_becoming_compliant=0,
                                                        resources_becoming_non_compliant=0),
                        cost_gap=CostGapProjection(monthly_reduction=None, notes=["rollback: not projected"]),
                        risk=risk)
    return _store_request(rt, principal, intent=intent or f"roll back request {request_id} ({original_intent})",
                          tags={}, changes=changes, preview=pv, dry_run=dry_run, rollback_of=request_id)


# ------------------------------------------------------------------------------------------- reading requests

def _load(s: Any, request_id: str, *, with_lock: bool = False) -> TaggingRequestRow:
    try:
        uuid.UUID(str(request_id))
    except ValueError:
        raise InvalidInput(f"{request_id!r} is not a request id", field="request_id",
                           fix="pass the request_id bulk_tag_resources returned") from None
    q = select(TaggingRequestRow).where(TaggingRequestRow.id == request_id)
    if with_lock:
        q = q.with_for_update()
    row = s.scalars(q).first()
    if row is None:
        raise NotFound(f"tagging request {request_id} does not exist", field="request_id",
                       fix="pass a request_id from bulk_tag_resources or the list of tagging requests")
    return row  # type: ignore[no-any-return]


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _next_step(row: TaggingRequestRow) -> str:
    return {
        "pending_approval": "awaiting a decision: a person holding tag:approve calls approve_bulk_tagging_request"
                            + (" (dry run: approval records the decision; nothing is applied; download the script)"
                               if row.dry_run else ""),
        "approved": "approved dry run: nothing was applied; download the remediation script to apply it elsewhere",
        "denied": "denied: nothing was changed",
        "expired": "expired undecided: nothing was changed; create the request again",
        "applying": "being applied: call get_tagging_request again in a few seconds",
        "applied": "applied and verified; a rollback request can undo it",
        "partially_applied": "some resources failed or drifted (see outcomes); a rollback request can undo the rest",
        "failed": "no resource was changed as asked (see outcomes for each error)",
        "rolled_back": "undone by an applied rollback request",
    }.get(row.status, row.status)


def get_request(rt: Runtime, request_id: str) -> TaggingRequestOut:
    """A request with its decision and per-resource outcomes (problems first, bounded)."""
    with rt.db.session() as s:
        row = _load(s, request_id)
        if row.status == "pending_approval" and _aware(row.expires_at) <= utcnow():
            row.status = "expired"
        decision = s.get(TaggingDecisionRow, request_id)
        counts = dict(s.execute(select(TaggingOutcomeRow.status, func.count()).where(
            TaggingOutcomeRow.request_id == request_id).group_by(TaggingOutcomeRow.status)).all())
        order = {"failed": 0, "drifted": 1, "pending": 2, "applied": 3}
        outcomes = s.scalars(select(TaggingOutcomeRow).where(TaggingOutcomeRow.request_id == request_id)
                             .order_by(TaggingOutcomeRow.arn)).all()
        listed = sorted(outcomes, key=lambda o: order.get(o.status, 9))[:MAX_LISTED]
        return _out(row, decision, counts, listed, truncated=len(outcomes) > MAX_LISTED)


def _out(row: TaggingRequestRow, decision: TaggingDecisionRow | None, counts: dict[str, int],
         listed: Sequence[TaggingOutcomeRow], *, truncated: bool) -> TaggingRequestOut:
    pv = row.preview or {}
    return TaggingRequestOut(
        request_id=row.id, intent=row.intent, status=row.status,  # type: ignore[arg-type]
        requested_by=row.requested_by, created_at=_aware(row.created_at), expires_at=_aware(row.expires_at),
        dry_run=row.dry_run, risk=RiskAssessment(level=row.risk_level, reasons=list(row.risk_reasons)),  # type: ignore[arg-type]
        tags=dict(row.tags or {}), resource_count=row.resource_count, rollback_of=row.rollback_of,
        decision=DecisionOut(decided_by=decision.decided_by, decision=decision.decision,  # type: ignore[arg-type]
                             comment=decision.comment, decided_at=_aware(decision.decided_at)) if decision else None,
        outcome_counts={k: int(v) for k, v in counts.items()},
        outcomes=[OutcomeOut(resource_arn=o.arn, account_id=o.account_id, region=o.region,
                             status=o.status, attempts=o.attempts, error=o.error,  # type: ignore[arg-type]
                             observed=o.observed) for o in listed],
        outcomes_truncated=truncated,
        compliance=ComplianceProjection(**pv["compliance"]) if pv.get("compliance") else None,
        cost_gap=CostGapProjection(**pv["cost_gap"]) if pv.get("cost_gap") else None,
        next_step=_next_step(row))


def list_requests(rt: Runtime, *, status: str | None = None, limit: int = 20) -> TaggingRequestList:
    """The newest requests first (without outcomes)."""
    if not 1 <= limit <= 100:
        raise InvalidInput(f"limit {limit} is outside 1..100", field="limit", fix="pass 1 to 100")
    with rt.db.session() as s:
        q = select(TaggingRequestRow).order_by(TaggingRequestRow.created_at.desc()).limit(limit)
        if status:
            q = q.where(TaggingRequestRow.status == status)
        rows = s.scalars(q).all()
        decisions = {d.request_id: d for d in s.scalars(select(TaggingDecisionRow).where(
            TaggingDecisionRow.request_id.in_([r.id for r in rows]))).all()}
        return TaggingRequestList(requests=[_out(r, decisions.get(r.id), {}, [], truncated=False) for r in rows])


# ------------------------------------------------------------------------------------------- script

def remediation_script(rt: Runtime, request_id: str) -> str:
    """A bash script with the AWS CLI commands making the same change (batches of 20 ARNs per account and
    region), for teams that apply changes through their own pipelines. Values are shell-quoted."""
    with rt.db.session() as s:
        row = _load(s, request_id)
        changes, intent, rid = list(row.changes), row.intent, row.id
    lines = ["#!/usr/bin/env bash", f"# finops-tag-compliance tagging request {rid}",
             "# Intent: " + " ".join(intent.split()), "# Run each account's block with credentials for that account.",
             "set -euo pipefail", ""]
    for (account, region), group in sorted(_grouped_changes(changes).items()):
        lines.append(f"# account {account}, region {region}: {len(group)} resources")
        for arns, op, arg in _batches(group):
            arn_args = " ".join(shlex.quote(a) for a in arns)
            if op == "tag":
                lines.append(f"aws resourcegroupstaggingapi tag-resources --region {shlex.quote(region)} "
                             f"--resource-arn-list {arn_args} --tags {shlex.quote(json.dumps(arg, sort_keys=True))}")
            else:
                lines.append(f"aws resourcegroupstaggingapi untag-resources --region {shlex.quote(region)} "
                             f"--resource-arn-list {arn_args} --tag-keys {shlex.quote(json.dumps(arg))}")
        lines.append("")
    return "\n".join(lines)
