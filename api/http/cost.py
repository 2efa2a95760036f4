"""REST: the cost of non-compliance over the configured cost source (thin over ``services.cost_gap``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.http.routes import RuntimeDep
from services import cost_gap

cost_router = APIRouter(prefix="/v1/cost", tags=["cost"])


def _split(values: list[str] | None) -> list[str] | None:
    return [v.strip() for value in values for v in value.split(",") if v.strip()] if values else None


@cost_router.get("/gap", response_model=cost_gap.CostGapAnswer)
def attribution_gap(
    rt: RuntimeDep,
    start: Annotated[str | None, Query(description="First day, YYYY-MM-DD.")] = None,
    end: Annotated[str | None, Query(description="Day after the last, YYYY-MM-DD (exclusive).")] = None,
    group_by: Annotated[str | None, Query(description="service, account, region, resource_type or tag_key.")] = None,
    resource_types: Annotated[list[str] | None, Query(description="Comma-separated or repeated types.")] = None,
    accounts: Annotated[list[str] | None, Query(description="Comma-separated or repeated account ids.")] = None,
    regions: Annotated[list[str] | None, Query(description="Comma-separated or repeated regions.")] = None,
) -> cost_gap.CostGapAnswer:
    """Spend the tagging policy cannot attribute: measured from the FOCUS export, else estimated from Cost
    Explorer (the answer's method says which)."""
    period = {k: v for k, v in (("Start", start), ("End", end)) if v} or None
    return cost_gap.cost_attribution_gap(rt, resource_types=_split(resource_types), time_period=period,
                                         group_by=group_by, accounts=_split(accounts), regions=_split(regions))
