"""MCP front door of the cost of non-compliance: get_cost_attribution_gap.

Reads the configured cost source (a FOCUS export, else AWS Cost Explorer); nothing in the cloud
changes. The answer is bounded: totals, the top groups of one dimension, and the per-key figures.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from services import cost_gap
from services.runtime import Runtime

T = TypeVar("T")
#: ``call(name, params, fn)`` of build_mcp_server (audited, AppErrors as ToolErrors naming field and fix).
Call = Callable[[str, dict[str, Any], Callable[[], T]], Awaitable[T]]

# Reads a cost export or Cost Explorer (cached); nothing is written in the cloud.
READ_COSTS = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)


class TimePeriod(BaseModel):
    """A period as Cost Explorer writes it: Start inclusive, End exclusive."""

    model_config = ConfigDict(extra="forbid")

    Start: str = Field(description="First day, YYYY-MM-DD.")
    End: str = Field(description="Day after the last, YYYY-MM-DD (exclusive).")


class CostFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    accounts: list[str] | None = Field(default=None, description="12-digit account ids.")
    regions: list[str] | None = Field(default=None, description="Region names, e.g. ['us-east-1'].")


def register_cost_tools(mcp: MCPServer, runtime: Callable[[], Runtime], principal: str, call: Call[Any]) -> None:
    """Add get_cost_attribution_gap to ``mcp`` (see build_mcp_server)."""
    from api.mcp.server import _tool  # server.py imports this module

    @_tool(mcp, READ_COSTS)
    async def get_cost_attribution_gap(
        resource_types: Annotated[list[str] | None, Field(description=(
            "Only spend of these resource types, e.g. ['ec2:instance'] (needs a FOCUS export). Omit for all."))] = None,
        time_period: Annotated[TimePeriod | None, Field(description=(
            "Period to price. Omit for the whole FOCUS export, or the last full month with Cost Explorer."))] = None,
        group_by: Annotated[Literal["service", "account", "region", "resource_type", "tag_key"] | None, Field(
            description="Break the gap down by this dimension (default service); the top 25 groups are listed."
        )] = None,
        filters: Annotated[CostFilters | None, Field(description="Optional accounts and regions.")] = None,
    ) -> cost_gap.CostGapAnswer:
        """How much cloud spend the tagging policy cannot attribute (the attribution gap), where, and why:
        total, taggable and untaggable spend (tax, credits, rows without a resource are never gap), the gap
        counted once per cost row however many tags it misses, its share of taggable spend, the top groups
        and per required tag key (those overlap). method says whether the figures are measured (FOCUS cost
        export) or estimated (Cost Explorer per-key totals, with a lower and upper bound)."""
        params = {"resource_types": resource_types, "time_period": time_period.model_dump() if time_period else None,
                  "group_by": group_by, "filters": filters.model_dump() if filters else None}
        answer: cost_gap.CostGapAnswer = await call(
            "get_cost_attribution_gap", params, lambda: cost_gap.cost_attribution_gap(
                runtime(), resource_types=resource_types,
                time_period=time_period.model_dump() if time_period else None, group_by=group_by,
                accounts=filters.accounts if filters else None, regions=filters.regions if filters else None))
        return answer
