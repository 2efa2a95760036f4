"""REST routers: a router per resource, thin over the service functions the MCP tools use too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from prometheus_client import Gauge
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from services import findings, policy_sources, policy_validation, scans, validation
from services.db.models import AccountPolicyRow, ScanRow, ScanShardRow
from services.errors import AppError
from services.policy_store import active_policy
from services.runtime import Runtime
from services.scan_waiting import wait_for_scan
from services.schemas import ScanRequest, ScanResult, ScanSummary, ViolationFilters, ViolationPage


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = await anyio.to_thread.run_sync(request.app.state.runtime)
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]

scans_router = APIRouter(prefix="/v1/scans", tags=["scans"])
policy_router = APIRouter(prefix="/v1/policy", tags=["policy"])
resources_router = APIRouter(prefix="/v1/resources", tags=["resources"])
ops_router = APIRouter(tags=["operations"])


@scans_router.post("", status_code=202, response_model=ScanResult)
async def submit_scan(rt: RuntimeDep, body: ScanRequest,
                      wait: Annotated[float, Query(ge=0, le=55, description="Seconds to wait for the result")] = 0,
                      ) -> ScanResult:
    """Start a scan. Answers 202 with the scan_id at once (or after ``wait`` seconds with the result)."""
    scan_id = await anyio.to_thread.run_sync(lambda: scans.submit(rt, body, requested_by="anonymous"))
    if wait:
        await wait_for_scan(rt, scan_id, wait)
    return await anyio.to_thread.run_sync(lambda: scans.get_scan(rt, scan_id))


@scans_router.get("", response_model=list[ScanSummary])
def list_scans(rt: RuntimeDep, limit: Annotated[int, Query(ge=1, le=200)] = 20,
               status: Annotated[Literal["queued", "running", "succeeded", "partial", "failed", "cancelled"] | None,
                                 Query()] = None) -> list[ScanSummary]:
    return scans.list_scans(rt, limit=limit, status=status)


@scans_router.get("/{scan_id}", response_model=ScanResult)
async def get_scan(rt: RuntimeDep, scan_id: str,
                   violations_limit: Annotated[int, Query(ge=0, le=1000)] = 25,
                   wait: Annotated[float, Query(ge=0, le=55, description=(
                       "Seconds to wait for a running scan to end before answering (long poll); 0 answers at "
                       "once"))] = 0) -> ScanResult:
    """Status, progress and (once finished) the result, with the first page of violations."""
    if wait:
        await wait_for_scan(rt, scan_id, wait)
    return await anyio.to_thread.run_sync(lambda: scans.get_scan(rt, scan_id, violations_limit=violations_limit))


@scans_router.get("/{scan_id}/violations", response_model=ViolationPage)
def list_violations(
    rt: RuntimeDep, scan_id: str,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    severity: Annotated[Literal["error", "warning"] | None, Query()] = None,
    resource_type: Annotated[str | None, Query()] = None,
    account_id: Annotated[str | None, Query()] = None,
    region: Annotated[str | None, Query()] = None,
    tag_name: Annotated[str | None, Query()] = None,
    violation_type: Annotated[Literal["missing_required_tag", "invalid_value", "invalid_format", "wrong_key_case",
                                      "prohibited_tag", "naming_rule"] | None, Query()] = None,
) -> ViolationPage:
    filters = ViolationFilters(severity=severity, resource_type=resource_type, account_id=account_id,
                               region=region, tag_name=tag_name, violation_type=violation_type)
    return scans.list_violations(rt, scan_id, filters=filters, cursor=cursor, limit=limit)


@scans_router.get("/{scan_id}/untagged", response_model=findings.UntaggedResources)
def untagged(rt: RuntimeDep, scan_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
             resource_type: Annotated[list[str] | None, Query()] = None,
             region: Annotated[list[str] | None, Query()] = None,
             account: Annotated[list[str] | None, Query(description="Only these account ids.")] = None,
             include_costs: Annotated[bool, Query(description="Add each resource's monthly cost.")] = False,
             min_cost_threshold: Annotated[float | None, Query(ge=0, description=(
                 "Only resources costing at least this much per month."))] = None) -> findings.UntaggedResources:
    return findings.untagged_resources(rt, scan_id, resource_types=resource_type, regions=region, limit=limit,
                                       include_costs=include_costs, min_cost_threshold=min_cost_threshold,
                                       accounts=account)


@scans_router.post("/{scan_id}/cancel", response_model=ScanResult)
def cancel(rt: RuntimeDep, scan_id: str) -> ScanResult:
    return scans.cancel_scan(rt, scan_id)


class PolicyOut(BaseModel):
    version: str
    version_label: str
    source: str
    policy: dict[str, Any]


class ValidatePolicyBody(BaseModel):
    policy: dict[str, Any] | str = Field(description="The policy document (object or JSON text).")
    target: Literal["aws", "azure", "gcp"] | None = None


@policy_router.post("/validate", response_model=policy_validation.PolicyValidation)
def validate_policy(body: ValidatePolicyBody) -> policy_validation.PolicyValidation:
    """Validate and lint a policy document; every problem with its location and fix (nothing is saved)."""
    return policy_validation.validate_policy_content(body.policy, target=body.target)


@policy_router.get("", response_model=PolicyOut)
def get_policy(rt: RuntimeDep) -> PolicyOut:
    pv = active_policy(rt.db, rt.settings.policy_path)
    return PolicyOut(version=pv.id, version_label=pv.version_label, source=pv.source,
                     policy=pv.policy.model_dump(mode="json"))


class ValidateBody(BaseModel):
    resource_arns: list[str] = Field(description="1 to 100 resource ARNs")


@resources_router.post("/validate", response_model=validation.ValidationResult)
def validate(rt: RuntimeDep, body: ValidateBody) -> validation.ValidationResult:
    return validation.validate_resource_tags(rt, body.resource_arns)


@ops_router.get("/health")
def health(rt: RuntimeDep) -> JSONResponse:
    """Database, broker and policy. 503 when the database or broker cannot be reached."""
    checks: dict[str, Any] = {"mode": rt.settings.mode}
    ok = True
    try:
        rt.db.ping()
        checks["database"] = {"status": "ok", "backend": rt.db.engine.dialect.name}
    except AppError as exc:
        ok = False
        checks["database"] = {"status": "unavailable", "message": exc.message}
    checks["broker"] = _broker_health(rt)
    ok = ok and checks["broker"]["status"] == "ok"
    try:
        pv = active_policy(rt.db, rt.settings.policy_path)
        checks["policy"] = {"status": "ok", "source": pv.source, "version": pv.id, "label": pv.version_label,
                            "organization": _org_policy_health(rt)}
    except AppError as exc:
        ok = False
        checks["policy"] = {"status": "invalid", "message": exc.message}
    return JSONResponse(status_code=200 if ok else 503, content={"status": "ok" if ok else "degraded", **checks})


def _org_policy_health(rt: Runtime) -> dict[str, Any]:
    """Whether AWS Organizations tag policies govern, how many accounts have their own, and the last sync."""
    with rt.db.session() as s:
        count, last = s.execute(select(func.count(), func.max(AccountPolicyRow.synced_at))).one()
    attempt = policy_sources.latest_attempt(rt)
    return {"policy_source": rt.settings.policy_source, "in_use": rt.settings.organization_policies_wanted,
            "accounts_with_own_policy": int(count), "last_sync": last.isoformat() if last else None,
            "last_attempt": attempt.model_dump() if attempt else None,
            "resync_minutes": rt.settings.policy_sync_minutes}


def _broker_health(rt: Runtime) -> dict[str, Any]:
    if rt.settings.embedded_worker:
        return {"status": "ok", "kind": "embedded"}
    from kombu.connection import Connection

    try:
        with Connection(rt.settings.effective_broker_url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return {"status": "ok", "kind": conn.transport_cls if isinstance(conn.transport_cls, str) else "broker"}
    except Exception:
        return {"status": "unavailable", "message": "the broker cannot be reached"}


SCANS_BY_STATUS = Gauge("finops_scans", "Scans in the database by status", ["status"])
SHARDS_BY_STATUS = Gauge("finops_shards", "Shards in the database by status", ["status"])
SHARD_API_CALLS = Gauge("finops_shard_api_calls", "Cloud API calls recorded by all workers' shards")
SHARD_RETRIES = Gauge("finops_shard_api_retries", "Cloud API retries recorded by all workers' shards")
SHARD_THROTTLES = Gauge("finops_shard_api_throttles", "Throttling answers recorded by all workers' shards")
FAMILY_LAST_DAY = Gauge("finops_api_family_last_24h", "Calls, retries and throttles per API family in the "
                        "shards that finished in the last 24 hours (all workers)", ["api_family", "kind"])


def refresh_db_gauges(rt: Runtime) -> None:
    """Totals across every worker, read from the database at scrape time."""
    try:
        with rt.db.session() as s:
            for status, n in s.execute(select(ScanRow.status, func.count()).group_by(ScanRow.status)):
                SCANS_BY_STATUS.labels(status=status).set(n)
            for status, n in s.execute(select(ScanShardRow.status, func.count()).group_by(ScanShardRow.status)):
                SHARDS_BY_STATUS.labels(status=status).set(n)
            calls, retries, throttles = s.execute(select(func.coalesce(func.sum(ScanShardRow.api_calls), 0),
                                                         func.coalesce(func.sum(ScanShardRow.retries), 0),
                                                         func.coalesce(func.sum(ScanShardRow.throttles), 0))).one()
            SHARD_API_CALLS.set(calls)
            SHARD_RETRIES.set(retries)
            SHARD_THROTTLES.set(throttles)
            # Per family from the JSON column: summed here, as SQLite and PostgreSQL read JSON differently.
            since = datetime.now(UTC) - timedelta(hours=24)
            totals: dict[tuple[str, str], int] = {}
            for (by_family,) in s.execute(select(ScanShardRow.api_by_family).where(
                    ScanShardRow.finished_at >= since, ScanShardRow.api_by_family.is_not(None))):
                for family, counts in (by_family or {}).items():
                    for kind, n in counts.items():
                        totals[(family, kind)] = totals.get((family, kind), 0) + int(n)
            for (family, kind), n in totals.items():
                FAMILY_LAST_DAY.labels(api_family=family, kind=kind).set(n)
    except AppError:
        pass  # /metrics still answers with the process counters when the database is down
