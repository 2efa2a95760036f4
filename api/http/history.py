"""REST front door of compliance history (``GET /v1/history``) and tag drift (``GET /v1/drift``), thin over
the service functions the MCP tools get_violation_history and detect_tag_drift use."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from api.http.routes import RuntimeDep
from services import drift, history

history_router = APIRouter(prefix="/v1", tags=["history"])


def _split(values: list[str] | None) -> list[str] | None:
    """Repeated query parameters and comma-separated ones alike (``?tag_keys=A,B`` = ``?tag_keys=A&tag_keys=B``)."""
    if values is None:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()] or None


@history_router.get("/history", response_model=history.ViolationHistory)
def get_history(
    rt: RuntimeDep,
    days_back: Annotated[int, Query(ge=1, le=history.MAX_DAYS_BACK, description="Days of history (1-3650).")] = 30,
    group_by: Annotated[Literal["day", "week", "month"], Query(description="Period of one point.")] = "day",
    top_n: Annotated[int, Query(ge=0, le=history.MAX_TOP_N, description="Series per account/type/tag.")] = 5,
    max_points: Annotated[int, Query(ge=1, le=history.MAX_POINTS, description="Most recent periods listed.")] = 90,
) -> history.ViolationHistory:
    """Compliance score, resources and violations per period from snapshot scans (scheduled, or run with
    ``store_snapshot``), with the trend; several scans in one period are averaged, never summed."""
    return history.violation_history(rt, days_back, group_by, top_n=top_n, max_points=max_points)


@history_router.get("/drift", response_model=drift.TagDriftReport)
def get_drift(
    rt: RuntimeDep,
    resource_types: Annotated[list[str] | None, Query(description="e.g. ec2:instance (repeat or comma-separate).")]
    = None,
    tag_keys: Annotated[list[str] | None, Query(description="Tag keys, matched ignoring case.")] = None,
    accounts: Annotated[list[str] | None, Query(description="12-digit account ids.")] = None,
    lookback_days: Annotated[int, Query(ge=1, le=drift.MAX_LOOKBACK_DAYS, description="Days back (1-3650).")] = 7,
    limit: Annotated[int, Query(ge=1, le=drift.MAX_LIMIT, description="Changes listed (totals cover all).")] = 100,
) -> drift.TagDriftReport:
    """Tags added, removed or changed since the previous observation of each resource, regressions first."""
    return drift.detect_tag_drift(rt, _split(resource_types), _split(tag_keys), lookback_days,
                                  accounts=_split(accounts), limit=limit)
