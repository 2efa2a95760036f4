"""MCP front door of compliance history and tag drift: get_violation_history and detect_tag_drift.

Both read stored results only (snapshot scans, the tag change log): no cloud call, nothing written.
Names and the first parameters are those of the existing open-source tag-compliance server; the
rest is additive. Answers are bounded: a capped series and top-N lists with totals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import Field

from services import drift, history
from services.runtime import Runtime

T = TypeVar("T")
#: ``call(name, params, fn)`` of build_mcp_server: runs ``fn`` off the event loop, audited, with
#: AppErrors turned into ToolErrors that name the field and the fix.
Call = Callable[[str, dict[str, Any], Callable[[], T]], Awaitable[T]]

# Reads stored scan rows only: no cloud call, nothing written.
READ_STORED = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                              open_world_hint=False)


def register_history_tools(mcp: MCPServer, runtime: Callable[[], Runtime], principal: str, call: Call[Any]) -> None:
    """Add get_violation_history and detect_tag_drift to ``mcp`` (see build_mcp_server)."""
    # Imported here: server.py imports this module, so a module-level import would be circular.
    from api.mcp.server import _tool

    @_tool(mcp, READ_STORED)
    async def get_violation_history(
        days_back: Annotated[int, Field(ge=1, le=history.MAX_DAYS_BACK, description=(
            "How many days of history to read, 1-3650 (30 = the last month)."))] = 30,
        group_by: Annotated[Literal["day", "week", "month"], Field(description=(
            "One point per UTC day, ISO week (from Monday) or calendar month. Several scans in one period are "
            "averaged, never summed."))] = "day",
        top_n: Annotated[int, Field(ge=0, le=history.MAX_TOP_N, description=(
            "How many accounts, resource types and tag keys get their own series (those with the most violations "
            "in the last period), 0-50; 0 for the estate-wide series only."))] = 5,
        max_points: Annotated[int, Field(ge=1, le=history.MAX_POINTS, description=(
            "At most this many of the most recent periods in the estate-wide series (1-400); the trend still "
            "covers the whole window."))] = 60,
    ) -> history.ViolationHistory:
        """Compliance history and trend: the compliance score, resources and violations per day, week or month
        over the last days_back days, whether compliance is improving, declining or stable (score change of at
        least 0.01 = one percentage point), and the same per account, resource type and tag key. Built from
        the daily scheduled snapshots and from scans run with check_tag_compliance(store_snapshot=true); other
        ad-hoc scans are left out and counted in excluded. Reads stored results only (fast)."""
        params = {"days_back": days_back, "group_by": group_by, "top_n": top_n, "max_points": max_points}
        answer: history.ViolationHistory = await call(
            "get_violation_history", params,
            lambda: history.violation_history(runtime(), days_back, group_by, top_n=top_n, max_points=max_points))
        return answer

    @_tool(mcp, READ_STORED)
    async def detect_tag_drift(
        resource_types: Annotated[list[str] | None, Field(description=(
            "Only these resource types, e.g. ['ec2:instance', 's3:bucket']. Omit for every type."))] = None,
        tag_keys: Annotated[list[str] | None, Field(description=(
            "Only these tag keys, e.g. ['CostCenter', 'Owner'] (matched ignoring case). Omit for every key."))] = None,
        lookback_days: Annotated[int, Field(ge=1, le=drift.MAX_LOOKBACK_DAYS, description=(
            "How many days back to look for changes, 1-3650 (7 = the last week)."))] = 7,
        limit: Annotated[int, Field(ge=1, le=100, description=(
            "How many changes to list (1-100); totals and breakdowns always cover every change."))] = 25,
    ) -> drift.TagDriftReport:
        """Tag drift: tags added, removed or changed on resources since an earlier scan observed them, each with
        the old and new value, when it was seen, and its impact. Compliance regressions come first (a change
        that introduced a violation, removed a required tag, or made a compliant resource non-compliant), then
        required tags whose value moved (cost attribution changed), fixes, and the rest. A resource's first
        sighting is its baseline, never drift, so drift needs two scans of the same resources. Returns totals,
        breakdowns by tag key, resource type and account, and the top changes. Reads stored results only."""
        params = {"resource_types": resource_types, "tag_keys": tag_keys, "lookback_days": lookback_days,
                  "limit": limit}
        answer: drift.TagDriftReport = await call("detect_tag_drift", params, lambda: drift.detect_tag_drift(
            runtime(), resource_types, tag_keys, lookback_days, limit=limit))
        return answer
