"""Scan jobs: submit, plan into shards, run a shard, finalize, read, cancel.

A scan is a row plus shards (account x region x resource-type group). Every step is idempotent so
that Celery may deliver a task twice (acks_late): a finished shard is not run again, a redelivered
running shard rewrites the same keyed rows, and finalizing twice computes the same aggregates.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, case, delete, func, select, tuple_, update
from sqlalchemy.orm import Session

from policies.engine import evaluate_resource
from policies.models import GLOBAL_REGION, Resource, Violation
from scanner.providers.aws import registry
from scanner.providers.aws.collect import collect_shard, collect_tagging_api
from scanner.providers.aws.known_regions import KNOWN_REGIONS
from scanner.providers.aws.organization import list_accounts_under, list_organization_accounts
from scanner.providers.aws.regions import discover_regions
from scanner.results import ShardResult
from scanner.retry import DEFAULT_POLICY, retrying
from services import drift, inventory_cache, metrics
from services.db.engine import upsert_rows
from services.db.models import (
    ResourceRow,
    ScanResourceRow,
    ScanRow,
    ScanShardRow,
    ViolationRow,
    utcnow,
)
from services.errors import AppError, InvalidInput, NotFound, Unavailable
from services.policy_store import active_policy
from services.resource_costs import with_cost_impact
from services.runtime import Runtime
from services.scan_policies import (
    AccountPolicies,
    exemption_summary,
    expired_notes,
    freeze_account_policies,
    scan_as_of,
    synced_policy_versions,
)
from services.schemas import (
    ACCOUNT_ID,
    ORG_PARENT_ID,
    TERMINAL_SHARD_STATUSES,
    TERMINAL_STATUSES,
    BreakdownEntry,
    Breakdowns,
    DataQuality,
    ExemptionSummary,
    FailedShard,
    Progress,
    ScanRequest,
    ScanResult,
    ScanSummary,
    TagBreakdownEntry,
    ViolationFilters,
    ViolationOut,
    ViolationPage,
)

log = logging.getLogger(__name__)

TAGGING_API_GROUP = "tagging-api"
_WRITE_CHUNK = 500


# --------------------------------------------------------------------------------------------- submit

def validate_request(request: ScanRequest) -> None:
    """Reject unknown accounts, regions and types before anything is written."""
    if isinstance(request.accounts, list):
        bad = [a for a in request.accounts
               if not isinstance(a, str) or not (ACCOUNT_ID.fullmatch(a) or ORG_PARENT_ID.fullmatch(a))]
        if bad:
            raise InvalidInput(f"not a 12-digit AWS account id or an organizational unit / root id: "
                               f"{', '.join(map(str, bad[:5]))}", field="accounts",
                               fix="pass 12-digit account ids, ou-.../r-... ids, 'all', or omit the field")
    if isinstance(request.regions, list):
        bad = [r for r in request.regions if r not in KNOWN_REGIONS]
        if bad:
            raise InvalidInput(f"unknown region(s): {', '.join(map(str, bad[:5]))}", field="regions",
                               fix="use region names such as us-east-1; valid: " + ", ".join(sorted(KNOWN_REGIONS)))
    if isinstance(request.resource_types, list):
        known = set(registry.all_types())
        bad = [t for t in request.resource_types if t not in known]
        if bad:
            raise InvalidInput(f"unknown resource type(s): {', '.join(map(str, bad[:5]))}",
                               field="resource_types",
                               fix="use 'all' or supported types: " + ", ".join(sorted(known)))


def submit(rt: Runtime, request: ScanRequest, *, requested_by: str = "local") -> str:
    """Create the scan job and enqueue its planning; returns the scan id at once."""
    validate_request(request)
    policy = active_policy(rt.db, rt.settings.policy_path)
    scan_id = str(uuid.uuid4())
    with rt.db.session() as s:
        # Frozen now, so a policy sync while the scan runs cannot mix two versions in one scan.
        by_account = synced_policy_versions(rt)
        if rt.settings.policy_source == "aws-organizations" and not by_account:
            raise Unavailable("no AWS Organizations tag policies have been synced, and FINOPS_POLICY_SOURCE="
                              "aws-organizations forbids falling back to the policy file", field="policy",
                              fix="run `finops-tags policy import-aws` with the management account's credentials "
                                  "(GET /health shows the last sync attempt and why it failed)")
        s.add(ScanRow(id=scan_id, status="queued", request=request.model_dump(mode="json"),
                      policy_id=policy.id, policy_by_account=by_account, requested_by=requested_by,
                      trigger=request.trigger, in_history=request.trigger == "scheduled" or request.store_snapshot))
    try:
        rt.dispatcher.plan_scan(scan_id, interactive=request.trigger == "interactive")
    except Exception as exc:  # the broker is down: leave nothing half-written behind
        with rt.db.session() as s:
            s.execute(delete(ScanRow).where(ScanRow.id == scan_id))
        raise Unavailable("the task queue cannot be reached; the scan was not created",
                          fix="check CELERY_BROKER_URL and that the broker is running, then retry") from exc
    metrics.SCANS_SUBMITTED.labels(trigger=request.trigger).inc()
    return scan_id


# ----------------------------------------------------------------------------------------------- plan

# While a scan is being planned its data_quality carries this key: finalize waits for the plan to be whole
# (shards of the first accounts may all be done before the last account's regions are known).
PLANNING_KEY = "planning"


def plan_scan(rt: Runtime, scan_id: str) -> None:
    """Resolve accounts and regions (cloud I/O), create the shard rows, enqueue them.

    Shards are written and sent account by account as each account's regions become known, so the first
    shards run while the other accounts are still being reached (an AssumeRole and a DescribeRegions each,
    rate-limited by STS: 50 accounts took ~5 s, during which no shard ran). A redelivered plan task whose
    plan was whole only re-sends the shards that never started; one that died mid-plan plans again
    (existing shards are kept, not duplicated)."""
    with rt.db.session() as s:
        scan = _get_scan(s, scan_id)
        planning = bool((scan.data_quality or {}).get(PLANNING_KEY))
        if scan.status != "queued" and not planning:
            requeue = [sh.id for sh in _shards(s, scan_id) if sh.status == "queued"]
            interactive = scan.trigger == "interactive"
        else:
            requeue = None
    if requeue is not None:  # redelivered plan: only re-send shards that never started
        for shard_id in requeue:
            rt.dispatcher.run_shard(shard_id, interactive=interactive)
        return
    with rt.db.session() as s:
        scan = _get_scan(s, scan_id)
        if scan.cancel_requested and scan.status == "queued":
            scan.status, scan.finished_at = "cancelled", utcnow()
            scan.data_quality = DataQuality(status="partial", notes=["cancelled before planning"]).model_dump()
            return
        request = ScanRequest.model_validate(scan.request)
        interactive = scan.trigger == "interactive"

    notes: list[str] = []
    try:
        accounts = _resolve_accounts(rt, request, notes)
    except Exception as exc:
        _fail_scan(rt, scan_id, f"could not resolve the accounts to scan: {_describe(exc)}")
        return
    try:
        frozen = _freeze_account_policies(rt, scan_id, accounts)
    except AppError as exc:
        _fail_scan(rt, scan_id, f"could not resolve the policy of each account: {exc.message}")
        return
    notes.extend(frozen.notes)
    # policies_incomplete is read by finalize: a scan whose rules could not all be resolved is never
    # "complete" (DataQuality ignores both keys when the scan is read).
    quality = {"status": "partial", "failed_shards": [], "notes": notes, "policies_incomplete": frozen.incomplete}

    total = 0
    for account_rows in _plan_shards(rt, request, accounts, scan_id=scan_id):
        total += _write_planned(rt, scan_id, account_rows, {**quality, PLANNING_KEY: True}, frozen.by_account,
                                interactive)
    _write_planned(rt, scan_id, [], quality, frozen.by_account, interactive, total_planned=total)
    # Every shard may have ended before the plan was whole: then nobody else asks for the finalizer.
    maybe_finalize(rt, scan_id)


def _write_planned(rt: Runtime, scan_id: str, rows: list[ScanShardRow], quality: dict[str, Any],
                   policy_by_account: dict[str, str], interactive: bool, *,
                   total_planned: int | None = None) -> int:
    """Store one account's planned shard rows (those not stored by an earlier try), mark the scan running
    and send the new queued shards. ``total_planned`` (every account's shards) comes with the last, empty
    batch: the plan is then whole. Returns how many rows this batch holds."""
    with rt.db.session() as s:
        scan = _get_scan(s, scan_id)
        existing = set(s.scalars(select(ScanShardRow.id).where(ScanShardRow.id.in_([r.id for r in rows])))) \
            if rows else set()
        new = [r for r in rows if r.id not in existing]
        s.add_all(new)
        if scan.status == "queued":
            scan.status, scan.started_at = "running", utcnow()
        if total_planned is not None:
            scan.shards_total = total_planned
        scan.policy_by_account = policy_by_account or None
        scan.data_quality = quality
        queued = [r.id for r in new if r.status == "queued"]
    for shard_id in queued:
        rt.dispatcher.run_shard(shard_id, interactive=interactive)
    return len(rows)


def _freeze_account_policies(rt: Runtime, scan_id: str, accounts: Sequence[str]) -> AccountPolicies:
    with rt.db.session() as s:
        scan = _get_scan(s, scan_id)
        default_id, by_account = scan.policy_id, scan.policy_by_account
    return freeze_account_policies(rt, default_id, by_account, accounts)


def _resolve_accounts(rt: Runtime, request: ScanRequest, notes: list[str]) -> list[str]:
    if isinstance(request.accounts, list):
        parents = [a for a in request.accounts if ORG_PARENT_ID.fullmatch(a)]
        if not parents:
            return request.accounts
        client = rt.aws.client(rt.aws.caller_account(), "organizations", rt.settings.aws_default_region)
        accounts = [a for a in request.accounts if ACCOUNT_ID.fullmatch(a)]
        for parent in parents:
            active, skipped = list_accounts_under(client, parent)
            if not active and not skipped:
                notes.append(f"{parent} holds no accounts")
            if skipped:
                notes.append(f"skipped accounts under {parent} that are not ACTIVE: "
                             + ", ".join(f"{a.id} ({a.status})" for a in skipped))
            accounts.extend(a.id for a in active)
        return list(dict.fromkeys(accounts))
    if request.accounts == "all":
        mgmt = rt.aws.caller_account()
        client = rt.aws.client(mgmt, "organizations", rt.settings.aws_default_region)
        active, skipped = list_organization_accounts(client)
        if skipped:
            notes.append("skipped accounts that are not ACTIVE: "
                         + ", ".join(f"{a.id} ({a.status})" for a in skipped))
        return [a.id for a in active]
    if rt.settings.accounts:
        return list(rt.settings.accounts)
    return [rt.aws.caller_account()]


def _plan_shards(rt: Runtime, request: ScanRequest, accounts: Sequence[str], *,
                 scan_id: str) -> Iterable[list[ScanShardRow]]:
    """Each account's shard rows, account by account in the order their regions become known."""
    types = registry.all_types() if not isinstance(request.resource_types, list) else request.resource_types
    regional = [t for t in types if t in set(registry.regional_types())]
    global_ = [t for t in types if t in set(registry.global_types())]
    allowed = _allowed_regions(rt, request)
    allow = sorted(allowed) if allowed is not None else None
    heavy = _heavy_types(rt, accounts, types)
    # The tagging-API shards carry their own note (tagged resources only) into data_quality.
    with_tagging_api = request.resource_types == "all"
    discovered: Iterable[tuple[str, list[str] | Exception]] = (
        _discover_regions(rt, accounts, allow) if regional or with_tagging_api else ((a, []) for a in accounts))

    def row(account: str, region: str, group: str, group_types: Sequence[str]) -> ScanShardRow:
        return ScanShardRow(id=f"{scan_id}/{account}/{region}/{group}", scan_id=scan_id, account_id=account,
                            region=region, group=group, resource_types=list(group_types), status="queued",
                            failures=[], notes=[])

    for account, regions in discovered:
        if isinstance(regions, BaseException):
            # This account cannot be reached: its shards are failed, the others go on.
            yield [ScanShardRow(
                id=f"{scan_id}/{account}/*/region-discovery", scan_id=scan_id, account_id=account,
                region="*", group="region-discovery", resource_types=list(types), status="failed",
                error=_describe(regions), failures=[], notes=[], finished_at=utcnow())]
            continue
        rows: list[ScanShardRow] = []
        for region in regions:
            for group, group_types in _packed(regional, heavy.get((account, region), set())):
                rows.append(row(account, region, group, group_types))
            if with_tagging_api:
                rows.append(row(account, region, TAGGING_API_GROUP, ()))
        for group, group_types in _packed(global_, heavy.get((account, GLOBAL_REGION), set())):
            rows.append(row(account, GLOBAL_REGION, group, group_types))
        yield rows


# Accounts whose regions are discovered at once while planning. Each needs an AssumeRole and a DescribeRegions
# (two round trips): one account after another, 50 accounts at 200 ms latency held every shard back by 20 s.
_DISCOVERY_THREADS = 16


def _discover_regions(rt: Runtime, accounts: Sequence[str],
                      allow: list[str] | None) -> Iterator[tuple[str, list[str] | Exception]]:
    """(account, its regions to scan or the error that kept them from being known), as each is known."""

    def one(account: str) -> list[str] | Exception:
        try:
            # Retried whole: the AssumeRole inside is throttled too when many accounts start at once (every
            # AssumeRole is the management account's call, one STS bucket).
            return retrying(DEFAULT_POLICY)(discover_regions, rt.aws, account, allow)
        except Exception as exc:
            return exc

    if len(accounts) <= 1:
        yield from ((a, one(a)) for a in accounts)
        return
    with ThreadPoolExecutor(max_workers=min(_DISCOVERY_THREADS, len(accounts)),
                            thread_name_prefix="plan-regions") as pool:
        futures = {pool.submit(one, a): a for a in accounts}
        for future in as_completed(futures):
            yield futures[future], future.result()


# Shard sizing. A shard costs a task, a client per service and a database transaction whatever its size, and
# most account-regions hold a few dozen resources per type: one shard per account-region (its types collected
# side by side, their tagging-API reads shared) is 8x fewer shards than one per service, and measured faster
# (bench.scale). A type that was big there at its last observation would make its shard the last to finish, so
# it gets a shard of its own. Without history (a first scan) everything is packed.
PACKED_GROUP = "bundle"
_HISTORY_WINDOW = timedelta(days=30)


def _heavy_types(rt: Runtime, accounts: Sequence[str], types: Sequence[str]) -> dict[tuple[str, str], set[str]]:
    """(account, region) -> the types that had at least FINOPS_SHARD_SPLIT_RESOURCES resources there when
    last observed (the latest-state table, seen within the last 30 days)."""
    r = ResourceRow
    counts: dict[tuple[str, str, str], int] = {}
    with rt.db.session() as s:
        rows = s.execute(
            select(r.account_id, r.region, r.resource_type, func.count()).where(
                r.account_id.in_(list(accounts)), r.resource_type.in_(list(types)),
                r.last_seen >= utcnow() - _HISTORY_WINDOW)
            .group_by(r.account_id, r.region, r.resource_type))
        for account, region, rtype, n in rows:
            # S3 buckets carry their own region but are all collected in the account's global shard.
            key = (account, GLOBAL_REGION if registry.get(rtype).is_global else region, rtype)
            counts[key] = counts.get(key, 0) + int(n)
    heavy: dict[tuple[str, str], set[str]] = {}
    for (account, region, rtype), n in counts.items():
        if n >= rt.settings.shard_split_resources:
            heavy.setdefault((account, region), set()).add(rtype)
    return heavy


def _packed(types: Sequence[str], heavy: set[str]) -> list[tuple[str, list[str]]]:
    """The shards of one account-region: each heavy type alone, every other type in one bundle."""
    shards = [(f"{registry.group_of(t)}-{t.split(':', 1)[1]}", [t]) for t in types if t in heavy]
    rest = [t for t in types if t not in heavy]
    if rest:
        shards.append((PACKED_GROUP, rest))
    return sorted(shards)


# ---------------------------------------------------------------------------------------------- shard

@dataclass(frozen=True)
class ShardOutcome:
    """What the task should do next: nothing, or run the shard again after ``countdown`` seconds."""

    retry: bool = False
    countdown: float = 0.0
    status: str = "succeeded"
    interactive: bool = True


def run_shard(rt: Runtime, shard_id: str) -> ShardOutcome:
    """Collect, evaluate and store one shard. Safe to call again for the same shard."""
    with rt.db.session() as s:
        # Locked until "running" is committed: a cancel in between would otherwise be overwritten (its
        # UPDATE of queued shards now waits, then finds this one running and lets it finish).
        shard = s.get(ScanShardRow, shard_id, with_for_update=True)
        if shard is None:
            raise NotFound(f"shard {shard_id} does not exist", field="shard_id")
        if shard.status in TERMINAL_SHARD_STATUSES:
            return ShardOutcome(status=shard.status)
        scan = _get_scan(s, shard.scan_id)
        if scan.cancel_requested:
            shard.status, shard.finished_at = "cancelled", utcnow()
            cancelled = True
        else:
            cancelled = False
            shard.status, shard.started_at, shard.attempts = "running", utcnow(), shard.attempts + 1
        # An account with its own effective policy (AWS Organizations) is judged by it; others by the default.
        scan_id, policy_id = scan.id, (scan.policy_by_account or {}).get(shard.account_id, scan.policy_id)
        as_of = scan_as_of(scan)
        observed_at = _aware(scan.created_at)  # resources' last_seen orders observations by scan
        interactive = scan.trigger == "interactive"
        request = ScanRequest.model_validate(scan.request)
        allowed_regions, force_refresh = _allowed_regions(rt, request), request.force_refresh
        account, region, group = shard.account_id, shard.region, shard.group
        types, attempts = list(shard.resource_types), shard.attempts
    if cancelled:
        maybe_finalize(rt, scan_id)
        return ShardOutcome(status="cancelled")

    compiled = rt.policies.get(rt.db, policy_id, as_of)
    reused = None if force_refresh else inventory_cache.reusable_shard(
        rt, scan_id=scan_id, shard_id=shard_id, policy_id=policy_id, allowed_regions=allowed_regions)
    if reused is not None:
        result = reused.result
    else:
        with metrics.SHARD_SECONDS.labels(provider="aws").time():
            if group == TAGGING_API_GROUP:
                result = collect_tagging_api(rt.aws, account, region, exclude_types=set(registry.all_types()),
                                             limiter=rt.limiter)
            else:
                result = collect_shard(rt.aws, account, region, types, limiter=rt.limiter,
                                       type_workers=rt.settings.shard_type_threads)
    # Global listings (S3) return every region's resources: keep the regions that were asked for.
    kept = frozenset(allowed_regions | {GLOBAL_REGION}) \
        if region == GLOBAL_REGION and allowed_regions is not None else None
    if kept is not None:
        result.resources = [r for r in result.resources if r.region in kept]
    metrics.API_CALLS.labels(provider="aws").inc(result.api_calls)
    metrics.API_RETRIES.labels(provider="aws").inc(result.retries)
    for family, counts in result.api_by_family.items():
        metrics.API_CALLS_BY_FAMILY.labels(provider="aws", api_family=family).inc(counts.get("calls", 0))
        metrics.API_RETRIES_BY_FAMILY.labels(provider="aws", api_family=family).inc(counts.get("retries", 0))
        metrics.API_THROTTLES_BY_FAMILY.labels(provider="aws", api_family=family).inc(counts.get("throttles", 0))

    retryable = bool(result.failures) and all(f.retryable for f in result.failures)
    will_retry = retryable and attempts <= rt.settings.shard_max_retries
    status = "queued" if will_retry else ("failed" if result.failures else "succeeded")
    # The tagging API shows only tagged resources: its shards never prove a resource gone.
    scope = None if group == TAGGING_API_GROUP else ShardScope(account, region, tuple(types), kept)
    _store_shard(rt, scan_id, shard_id, result, compiled, status, observed_at=observed_at,
                 reused_from=reused.scan_id if reused else None, scope=scope)
    metrics.SHARDS_FINISHED.labels(status=status).inc()
    if will_retry:
        return ShardOutcome(retry=True, countdown=min(60.0, 2.0 ** attempts), status=status, interactive=interactive)
    maybe_finalize(rt, scan_id)
    return ShardOutcome(status=status, interactive=interactive)


def _allowed_regions(rt: Runtime, request: ScanRequest) -> set[str] | None:
    if isinstance(request.regions, list):
        return set(request.regions)
    return set(rt.settings.regions) if rt.settings.regions else None


@dataclass(frozen=True)
class ShardScope:
    """Where a shard looked: one account, one region (or "global") and its types; a global shard whose scan
    kept only some regions' resources names them in ``regions``."""

    account_id: str
    region: str
    types: tuple[str, ...]
    regions: frozenset[str] | None = None


def _store_shard(rt: Runtime, scan_id: str, shard_id: str, result: ShardResult, compiled: Any,
                 status: str, *, observed_at: datetime | None = None, reused_from: str | None = None,
                 scope: ShardScope | None = None) -> None:
    """Replace this shard's rows in one transaction: a redelivered shard leaves exactly one copy.

    ``observed_at`` (the scan's creation time) stamps the resources' latest state, so a shard stored
    after a newer scan's does not roll that state back (services.drift). Resources of ``scope`` that the
    latest state holds but this scan did not see are gone from the cloud: they leave it (_forget_unseen)."""
    now = observed_at or utcnow()
    resources: dict[str, Resource] = {r.arn: r for r in result.resources}  # a collector listing twice
    resource_rows: list[dict[str, Any]] = []
    violation_rows: list[dict[str, Any]] = []
    for res in resources.values():
        ev = evaluate_resource(res, compiled)
        resource_rows.append({
            "scan_id": scan_id, "arn": res.arn, "shard_id": shard_id, "resource_id": res.resource_id,
            "resource_type": res.resource_type, "account_id": res.account_id, "region": res.region,
            "name": res.name, "tags": dict(res.tags), "in_scope": ev.in_scope, "compliant": ev.compliant,
            "violation_count": len(ev.violations), "waived_violations": len(ev.waived),
            "exempted_by": list(ev.exempted_by) or None})
        violation_rows.extend(_violation_row(scan_id, shard_id, v) for v in ev.violations)
    with rt.db.session() as s:
        s.execute(delete(ViolationRow).where(ViolationRow.scan_id == scan_id, ViolationRow.shard_id == shard_id))
        s.execute(delete(ScanResourceRow).where(ScanResourceRow.scan_id == scan_id,
                                                ScanResourceRow.shard_id == shard_id))
        for chunk in _chunks(resource_rows):
            upsert_rows(s, ScanResourceRow, chunk, ["scan_id", "arn"])
        for chunk in _chunks(violation_rows):
            upsert_rows(s, ViolationRow, chunk, ["scan_id", "resource_arn", "rule_id"])
        # A reused inventory is not a new look at the cloud: the latest state and drift stay as they were.
        if reused_from is None:
            latest = [{"arn": r.arn, "resource_id": r.resource_id, "resource_type": r.resource_type,
                       "account_id": r.account_id, "region": r.region, "name": r.name, "tags": dict(r.tags),
                       "attributes": _jsonable(r.attributes), "first_seen": now, "last_seen": now,
                       "last_scan_id": scan_id} for r in resources.values()]
            # Tags that differ from each resource's previous observation become drift rows (same transaction).
            latest = drift.record_tag_changes(s, scan_id, shard_id, latest, resource_rows, violation_rows,
                                              compiled, now)
            for chunk in _chunks(latest):
                upsert_rows(s, ResourceRow, chunk, ["arn"], keep=("first_seen",))
            if scope is not None:
                _forget_unseen(s, scope, {f.resource_type for f in result.failures}, now)
        shard = s.get(ScanShardRow, shard_id)
        assert shard is not None
        shard.status = status
        shard.api_calls += result.api_calls
        shard.retries += result.retries
        shard.throttles += result.throttles
        shard.api_by_family = _merge_family_counts(shard.api_by_family, result.api_by_family)
        shard.reused_from_scan = reused_from
        shard.resources_found = len(resources)
        shard.failures = [{"resource_type": f.resource_type, "code": f.code, "message": f.message,
                           "retryable": f.retryable} for f in result.failures]
        shard.notes = list(result.notes)
        shard.error = "; ".join(f"{f.resource_type}: {f.code}: {f.message}" for f in result.failures) or None
        if status in TERMINAL_SHARD_STATUSES:
            shard.finished_at = utcnow()


def _forget_unseen(s: Session, scope: ShardScope, failed_types: set[str], observed_at: datetime) -> None:
    # A resource deleted in the cloud would otherwise stay in the latest state for good: counted in the estate
    # a bulk-tagging request projects, learned from by suggestions, and weighing on shard planning. Only the
    # types this shard listed completely count as a look (a failed or cut-off type proves nothing), and only
    # rows no scan as new as this one has seen (last_seen < this scan's time: a newer scan's rows stay).
    complete = sorted(set(scope.types) - failed_types)
    if not complete:
        return
    r = ResourceRow
    where = [r.account_id == scope.account_id, r.resource_type.in_(complete), r.last_seen < observed_at]
    if scope.region != GLOBAL_REGION:
        where.append(r.region == scope.region)
    elif scope.regions is not None:
        where.append(r.region.in_(sorted(scope.regions)))
    s.execute(delete(r).where(*where))


def _merge_family_counts(stored: dict[str, Any] | None, new: dict[str, dict[str, int]]) -> dict[str, Any] | None:
    # Attempts of one shard add up (a shard run again after throttling made the calls of both runs).
    merged: dict[str, dict[str, int]] = {f: dict(c) for f, c in (stored or {}).items()}
    for family, counts in new.items():
        into = merged.setdefault(family, {})
        for name, value in counts.items():
            into[name] = into.get(name, 0) + value
    return merged or None


def _violation_row(scan_id: str, shard_id: str, v: Violation) -> dict[str, Any]:
    return {"scan_id": scan_id, "resource_arn": v.resource_arn, "rule_id": v.rule_id, "shard_id": shard_id,
            "resource_id": v.resource_id, "resource_type": v.resource_type, "account_id": v.account_id,
            "region": v.region, "tag_name": v.tag_name, "violation_type": str(v.violation_type),
            "severity": str(v.severity), "current_value": v.current_value,
            "allowed_values": list(v.allowed_values) if v.allowed_values is not None else None,
            "message": v.message, "suggestion": v.suggestion, "rule_source": getattr(v, "source", None)}


def mark_shard_failed(rt: Runtime, shard_id: str, error: str) -> None:
    """Record a shard that ended without storing results (time limit, crash, retries exhausted)."""
    with rt.db.session() as s:
        shard = s.get(ScanShardRow, shard_id)
        if shard is None or shard.status in TERMINAL_SHARD_STATUSES:
            return
        shard.status, shard.error, shard.finished_at = "failed", error, utcnow()
        scan_id = shard.scan_id
    metrics.SHARDS_FINISHED.labels(status="failed").inc()
    maybe_finalize(rt, scan_id)


def maybe_finalize(rt: Runtime, scan_id: str) -> None:
    """Enqueue the finalizer once every shard is terminal (checked after this shard's commit, so the
    last shard to finish always sees the others' results)."""
    with rt.db.session() as s:
        pending = _unfinished_shards(s, scan_id)
    if pending == 0:
        try:
            rt.dispatcher.finalize_scan(scan_id)
        except Exception:  # readers finalize lazily (reconcile) if the message is lost
            log.warning("could not enqueue finalize for scan %s; it will be finalized on read", scan_id)


# ------------------------------------------------------------------------------------------- finalize

def finalize_scan(rt: Runtime, scan_id: str) -> str:
    """Aggregate counts, score, breakdowns and data quality. Idempotent. Returns the scan's status after it."""
    with rt.db.session() as s:
        scan = _get_scan(s, scan_id)
        if scan.status in TERMINAL_STATUSES or (scan.data_quality or {}).get(PLANNING_KEY):
            return scan.status
        # Counted first: every status read of a running scan gets here (reconcile).
        if _unfinished_shards(s, scan_id):
            return scan.status
        _aggregate(s, scan, _shards(s, scan_id))
        status = scan.status
    metrics.SCANS_FINISHED.labels(status=status).inc()
    return status


def _aggregate(s: Session, scan: ScanRow, shards: list[ScanShardRow]) -> None:
    sr = ScanResourceRow
    in_scope = func.sum(case((sr.in_scope, 1), else_=0)).cast(Integer)
    compliant = func.sum(case((sr.compliant, 1), else_=0)).cast(Integer)
    breakdowns = Breakdowns()
    totals = s.execute(select(func.count(), in_scope, compliant).where(sr.scan_id == scan.id)).one()
    for dim, target in ((sr.account_id, breakdowns.by_account), (sr.region, breakdowns.by_region),
                        (sr.resource_type, breakdowns.by_resource_type)):
        q = select(dim, func.count(), in_scope, compliant, func.sum(sr.violation_count)).where(
            sr.scan_id == scan.id).group_by(dim)
        for key, total, ins, comp, viol in s.execute(q):
            ins, comp = int(ins or 0), int(comp or 0)
            target[key] = BreakdownEntry(total=total, in_scope=ins, compliant=comp, violations=int(viol or 0),
                                         compliance_score=_score(comp, ins))
    v = ViolationRow
    q2 = select(v.tag_name, v.resource_type, func.count(), func.count(func.distinct(v.resource_arn))).where(
        v.scan_id == scan.id).group_by(v.tag_name, v.resource_type)
    for tag, rtype, count, resources in s.execute(q2):
        entry = breakdowns.by_tag.setdefault(tag, TagBreakdownEntry())
        entry.violations += count
        entry.by_type[rtype] = count
        entry.resources += resources  # distinct per (tag, type); ARNs never span types
    total, ins, comp = int(totals[0]), int(totals[1] or 0), int(totals[2] or 0)
    failed = [sh for sh in shards if sh.status == "failed"]
    notes = list((scan.data_quality or {}).get("notes", []))
    for sh in shards:
        notes.extend(n for n in sh.notes or [] if n not in notes)
    policies_incomplete = bool((scan.data_quality or {}).get("policies_incomplete"))
    exemptions = exemption_summary(s, scan)
    notes.extend(expired_notes(exemptions))
    scan.exemptions = exemptions.model_dump(mode="json") if exemptions else None
    if scan.cancel_requested:
        status = "cancelled"
        notes.append("the scan was cancelled; results cover only the shards that finished")
    elif not shards:
        status = "failed"
        scan.error = scan.error or "nothing to scan: no account or region matched the request"
    elif len(failed) == len(shards):
        status = "failed"
        scan.error = scan.error or "every shard failed; see data_quality.failed_shards"
    elif failed:
        status = "partial"
    else:
        status = "succeeded"
    complete = status == "succeeded" and not policies_incomplete
    scan.status, scan.finished_at = status, utcnow()
    scan.total_resources, scan.in_scope_resources, scan.compliant_resources = total, ins, comp
    scan.compliance_score = _score(comp, ins)
    scan.breakdowns = breakdowns.model_dump(mode="json")
    scan.data_quality = DataQuality(
        status="complete" if complete else "partial",
        failed_shards=[FailedShard(shard=sh.id.split("/", 1)[1], error=sh.error or "failed") for sh in failed],
        notes=notes).model_dump(mode="json")


def _score(compliant: int, in_scope: int) -> float:
    return 1.0 if in_scope == 0 else round(compliant / in_scope, 6)


def _fail_scan(rt: Runtime, scan_id: str, error: str) -> None:
    with rt.db.session() as s:
        scan = _get_scan(s, scan_id)
        scan.status, scan.error, scan.finished_at = "failed", error, utcnow()
        scan.data_quality = DataQuality(status="partial", notes=[error]).model_dump(mode="json")
    metrics.SCANS_FINISHED.labels(status="failed").inc()


# ----------------------------------------------------------------------------------------------- read

def reconcile(rt: Runtime, scan_id: str) -> None:
    """Repair what a lost message or a dead worker left behind: shards running past their hard time
    limit are failed, and a scan whose shards are all terminal is finalized now."""
    stale_before = utcnow() - timedelta(seconds=rt.settings.shard_hard_time_limit + 60)
    sh = ScanShardRow
    started_long_ago = sh.started_at.is_not(None) & (sh.started_at < stale_before)
    with rt.db.session() as s:
        scan = _get_scan(s, scan_id)
        if scan.status != "running":
            return
        # Only the ids that need repair, found by the database: this runs at every status read, and loading
        # every shard row each time cost the gateway ~15 ms of CPU per poll of a 200-shard scan.
        stale = list(s.scalars(select(sh.id).where(sh.scan_id == scan_id, sh.status == "running",
                                                   started_long_ago)))
        # A shard sent back to the queue for a retry (attempts > 0) whose retry never ran.
        lost = list(s.scalars(select(sh.id).where(sh.scan_id == scan_id, sh.status == "queued", sh.attempts > 0,
                                                  started_long_ago)))
    for shard_id in stale:
        mark_shard_failed(rt, shard_id, "the shard ran past its time limit or its worker died")
    for shard_id in lost:
        mark_shard_failed(rt, shard_id, "the shard was due for a retry that never ran")
    finalize_scan(rt, scan_id)


@dataclass(frozen=True, slots=True)
class ScanProbe:
    """How far a scan is, read in one light query (for waiters asking several times a second)."""

    status: str
    shards_done: int
    shards_total: int
    resources_found: int


def probe(rt: Runtime, scan_id: str) -> ScanProbe:
    """The scan's status and shard counts. A running scan whose shards have all ended is finalized here,
    as a full read would (its finalize message may have been lost); stale shards are left to ``reconcile``.

    A full status read costs the gateway ~15 ms of CPU (three sessions, the violation count, the whole
    result model); this is one session and two indexed queries, so waiting on a scan costs next to nothing.
    """
    _check_scan_id(scan_id)
    sh = ScanShardRow
    done = func.sum(case((sh.status.in_(TERMINAL_SHARD_STATUSES), 1), else_=0))
    with rt.db.session() as s:
        status = s.scalar(select(ScanRow.status).where(ScanRow.id == scan_id))
        if status is None:
            _get_scan(s, scan_id)  # raises NotFound with its fix
        counts = s.execute(select(func.count(), done, func.sum(sh.resources_found)).where(sh.scan_id == scan_id)).one()
    total, finished, found = int(counts[0]), int(counts[1] or 0), int(counts[2] or 0)
    if status == "running" and total and finished == total:
        status = finalize_scan(rt, scan_id)
    return ScanProbe(status=str(status), shards_done=finished, shards_total=total, resources_found=found)


def get_scan(rt: Runtime, scan_id: str, *, violations_limit: int = 25,
             filters: ViolationFilters | None = None) -> ScanResult:
    """A scan's status and (when finished) its result, with the first page of violations."""
    _check_scan_id(scan_id)
    reconcile(rt, scan_id)
    with rt.db.session() as s:
        scan = _get_scan(s, scan_id)
        progress = _progress(s, scan)
        page = _violation_page(s, scan_id, filters or ViolationFilters(), None, violations_limit) \
            if violations_limit > 0 else ViolationPage(scan_id=scan_id, violations=[], next_cursor=None,
                                                        total=_violation_total(s, scan_id, filters))
        if scan.status in TERMINAL_STATUSES:
            dq = DataQuality.model_validate(scan.data_quality or {"status": "partial"})
        else:
            notes = list((scan.data_quality or {}).get("notes", []))
            notes.insert(0, f"scan is {scan.status}: {progress.shards_done} of {progress.shards_total} shards done; "
                            "results so far are incomplete")
            dq = DataQuality(status="partial", notes=notes)
        return ScanResult(
            scan_id=scan.id, status=scan.status,  # type: ignore[arg-type]
            compliance_score=scan.compliance_score, total_resources=scan.total_resources,
            in_scope_resources=scan.in_scope_resources, compliant_resources=scan.compliant_resources,
            violations=with_cost_impact(rt, page.violations, policy_lookup(scan)), violations_total=page.total,
            violations_returned=len(page.violations),
            next_cursor=page.next_cursor,
            breakdowns=Breakdowns.model_validate(scan.breakdowns or {}), data_quality=dq, progress=progress,
            policy_version=scan.policy_id, policy_by_account=scan.policy_by_account, request=scan.request,
            exemptions=ExemptionSummary.model_validate(scan.exemptions) if scan.exemptions else None,
            created_at=scan.created_at, finished_at=scan.finished_at, error=scan.error, in_history=scan.in_history)


def list_violations(rt: Runtime, scan_id: str, *, filters: ViolationFilters | None = None,
                    cursor: str | None = None, limit: int = 100) -> ViolationPage:
    """One page of a scan's violations, ordered errors first, then by ARN and rule (keyset cursor)."""
    _check_scan_id(scan_id)
    with rt.db.session() as s:
        scan = _get_scan(s, scan_id)
        page = _violation_page(s, scan_id, filters or ViolationFilters(), cursor, limit)
        policy_for = policy_lookup(scan)
    return page.model_copy(update={"violations": with_cost_impact(rt, page.violations, policy_for)})


def policy_lookup(scan: ScanRow) -> Callable[[str], str]:
    """account id -> the policy version that judged it in ``scan`` (a copy: safe after the session)."""
    default, by_account = scan.policy_id, dict(scan.policy_by_account or {})
    return lambda account: by_account.get(account, default)


def iter_violations(rt: Runtime, scan_id: str, filters: ViolationFilters | None = None,
                    page_size: int = 1000) -> Iterable[ViolationOut]:
    """Every violation of a scan, page by page (constant memory for large scans)."""
    cursor: str | None = None
    while True:
        page = list_violations(rt, scan_id, filters=filters, cursor=cursor, limit=page_size)
        yield from page.violations
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def representative_violations(rt: Runtime, scan_id: str, limit: int = 15) -> list[ViolationOut]:
    """A varied sample for people: the most frequent kinds of problem (violation type x tag) first,
    a few examples of each, those with a concrete fix suggestion preferred."""
    v = ViolationRow
    with rt.db.session() as s:
        kinds = s.execute(select(v.violation_type, v.tag_name, func.count()).where(v.scan_id == scan_id)
                          .group_by(v.violation_type, v.tag_name).order_by(func.count().desc(), v.tag_name)
                          .limit(limit)).all()
        per_kind = max(1, -(-limit // max(1, len(kinds))))
        buckets = [s.scalars(select(v).where(v.scan_id == scan_id, v.violation_type == vt, v.tag_name == tag)
                             .order_by(v.suggestion.is_(None), v.resource_arn).limit(per_kind)).all()
                   for vt, tag, _n in kinds]
    picked: list[ViolationOut] = []
    for rank in range(per_kind):  # round-robin so every kind shows before any repeats
        for bucket in buckets:
            if rank < len(bucket) and len(picked) < limit:
                picked.append(_violation_out(bucket[rank]))
    return picked


def _filter_clauses(scan_id: str, f: ViolationFilters | None) -> list[Any]:
    v = ViolationRow
    clauses: list[Any] = [v.scan_id == scan_id]
    if f is None:
        return clauses
    for attr in ("severity", "resource_type", "account_id", "region", "tag_name", "violation_type", "resource_arn"):
        value = getattr(f, attr)
        if value is not None:
            clauses.append(getattr(v, attr) == value)
    return clauses


def _violation_total(s: Session, scan_id: str, f: ViolationFilters | None) -> int:
    return int(s.scalar(select(func.count()).select_from(ViolationRow).where(*_filter_clauses(scan_id, f))) or 0)


def _violation_page(s: Session, scan_id: str, f: ViolationFilters, cursor: str | None,
                    limit: int) -> ViolationPage:
    v = ViolationRow
    clauses = _filter_clauses(scan_id, f)
    total = _violation_total(s, scan_id, f)
    if cursor:
        clauses.append(tuple_(v.severity, v.resource_arn, v.rule_id) > tuple_(*_decode_cursor(cursor)))
    rows = s.scalars(select(v).where(*clauses).order_by(v.severity, v.resource_arn, v.rule_id)
                     .limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = _encode_cursor((rows[-1].severity, rows[-1].resource_arn, rows[-1].rule_id)) \
        if more and rows else None
    return ViolationPage(scan_id=scan_id, violations=[_violation_out(r) for r in rows], next_cursor=next_cursor,
                         total=total)


def _violation_out(r: ViolationRow) -> ViolationOut:
    return ViolationOut(resource_arn=r.resource_arn, resource_id=r.resource_id, resource_type=r.resource_type,
                        account_id=r.account_id, region=r.region, tag_name=r.tag_name,
                        violation_type=r.violation_type, severity=r.severity, current_value=r.current_value,
                        allowed_values=r.allowed_values, message=r.message, suggestion=r.suggestion,
                        rule_id=r.rule_id, rule_source=r.rule_source)


def _encode_cursor(key: tuple[str, str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
        if isinstance(key, list) and len(key) == 3 and all(isinstance(k, str) for k in key):
            return key[0], key[1], key[2]
    except (binascii.Error, ValueError, UnicodeDecodeError):
        pass
    raise InvalidInput("the cursor is not one this service issued", field="cursor",
                       fix="pass the next_cursor value from the previous page unchanged, or omit it")


def _progress(s: Session, scan: ScanRow) -> Progress:
    retried = ScanShardRow.attempts > 1
    reused = ScanShardRow.reused_from_scan.is_not(None)
    q = select(ScanShardRow.status, func.count(), func.sum(ScanShardRow.resources_found),
               func.sum(ScanShardRow.api_calls), func.sum(ScanShardRow.retries), func.sum(ScanShardRow.throttles),
               func.sum(case((retried, 1), else_=0)), func.sum(case((reused, 1), else_=0))).where(
        ScanShardRow.scan_id == scan.id).group_by(ScanShardRow.status)
    counts: dict[str, int] = {}
    found = calls = retries = throttles = shards_retried = shards_reused = 0
    for status, n, res, api, rtr, thr, n_retried, n_reused in s.execute(q):
        counts[status] = n
        found, calls, retries = found + int(res or 0), calls + int(api or 0), retries + int(rtr or 0)
        throttles += int(thr or 0)
        shards_retried, shards_reused = shards_retried + int(n_retried or 0), shards_reused + int(n_reused or 0)
    total = sum(counts.values())
    done = sum(n for st, n in counts.items() if st in TERMINAL_SHARD_STATUSES)
    return Progress(shards_total=total, shards_done=done, shards_running=counts.get("running", 0),
                    shards_failed=counts.get("failed", 0), shards_queued=counts.get("queued", 0),
                    shards_retried=shards_retried, shards_reused=shards_reused, resources_found=found,
                    api_calls=calls, retries=retries, throttles=throttles)


def list_scans(rt: Runtime, *, limit: int = 20, status: str | None = None) -> list[ScanSummary]:
    with rt.db.session() as s:
        q = select(ScanRow).order_by(ScanRow.created_at.desc()).limit(limit)
        if status:
            q = q.where(ScanRow.status == status)
        return [ScanSummary(scan_id=r.id, status=r.status,  # type: ignore[arg-type]
                            compliance_score=r.compliance_score, total_resources=r.total_resources,
                            compliant_resources=r.compliant_resources, trigger=r.trigger,
                            created_at=r.created_at, finished_at=r.finished_at,
                            data_quality_status=(r.data_quality or {}).get("status"), in_history=r.in_history)
                for r in s.scalars(q)]


def cancel_scan(rt: Runtime, scan_id: str) -> ScanResult:
    """Stop a scan: queued shards are skipped, running ones finish, then the scan ends 'cancelled'."""
    _check_scan_id(scan_id)
    with rt.db.session() as s:
        scan = _get_scan(s, scan_id)
        if scan.status in TERMINAL_STATUSES:
            raise InvalidInput(f"scan {scan_id} already ended with status '{scan.status}'", field="scan_id",
                               fix="only queued or running scans can be cancelled")
        scan.cancel_requested = True
        s.execute(update(ScanShardRow).where(ScanShardRow.scan_id == scan_id, ScanShardRow.status == "queued")
                  .values(status="cancelled", finished_at=utcnow()))
        if scan.status == "queued":
            scan.status, scan.finished_at = "cancelled", utcnow()
            scan.data_quality = DataQuality(status="partial", notes=["cancelled before planning"]).model_dump()
    finalize_scan(rt, scan_id)
    return get_scan(rt, scan_id, violations_limit=0)


# -------------------------------------------------------------------------------------------- helpers

def _check_scan_id(scan_id: str) -> None:
    try:
        uuid.UUID(scan_id)
    except (ValueError, AttributeError, TypeError):
        raise InvalidInput(f"'{scan_id}' is not a scan id", field="scan_id",
                           fix="pass the scan_id returned when the scan was submitted (a UUID)") from None


def _get_scan(s: Session, scan_id: str) -> ScanRow:
    scan = s.get(ScanRow, scan_id)
    if scan is None:
        raise NotFound(f"scan {scan_id} does not exist", field="scan_id",
                       fix="list scans to find a valid id, or submit a new scan")
    return scan


def _unfinished_shards(s: Session, scan_id: str) -> int:
    return s.scalar(select(func.count()).select_from(ScanShardRow).where(
        ScanShardRow.scan_id == scan_id, ScanShardRow.status.not_in(TERMINAL_SHARD_STATUSES))) or 0


def _shards(s: Session, scan_id: str) -> list[ScanShardRow]:
    return list(s.scalars(select(ScanShardRow).where(ScanShardRow.scan_id == scan_id).order_by(ScanShardRow.id)))


def _chunks(rows: list[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
    for i in range(0, len(rows), _WRITE_CHUNK):
        yield rows[i:i + _WRITE_CHUNK]


def _jsonable(value: Any) -> dict[str, Any]:
    try:
        return dict(json.loads(json.dumps(dict(value), default=str)))
    except (TypeError, ValueError):
        return {}


def _aware(dt: datetime) -> datetime:
    # SQLite gives back naive datetimes even for timezone-aware columns.
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, AppError):
        return exc.message
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{code}: {text}" if code else f"{type(exc).__name__}: {text}"
