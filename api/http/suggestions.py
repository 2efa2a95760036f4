"""REST: tag suggestions from the scanned estate (thin over ``services.suggestions``, as the MCP tools are)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from api.http.routes import RuntimeDep
from services import suggestions

suggestions_router = APIRouter(prefix="/v1/suggestions", tags=["suggestions"])


class SuggestionBatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resource_arns: list[str] | None = Field(default=None, description="Up to 100 ARNs; or give scan_id.")
    scan_id: str | None = Field(default=None, description="Cover the non-compliant resources of this scan.")
    resource_types: list[str] | None = Field(default=None, description="With scan_id: only these types.")
    min_confidence: float = Field(default=0.5, ge=0, le=1)
    limit: int = Field(default=25, ge=1, le=suggestions.MAX_BATCH_RESULTS)


@suggestions_router.get("", response_model=suggestions.ResourceSuggestions)
def suggest_for_resource(rt: RuntimeDep, resource_arn: Annotated[str, Query(
        description="Full ARN of a scanned resource.")]) -> suggestions.ResourceSuggestions:
    """Suggested values for the tags one resource breaks, with confidence, reasoning and evidence."""
    return suggestions.suggest_tags(rt, resource_arn)


@suggestions_router.post("", response_model=suggestions.SuggestionBatch)
def suggest_for_many(rt: RuntimeDep, body: SuggestionBatchBody) -> suggestions.SuggestionBatch:
    """Suggestions for up to 100 ARNs, or for the non-compliant resources of a scan (bounded by limit)."""
    return suggestions.suggest_tags_batch(rt, resource_arns=body.resource_arns, scan_id=body.scan_id,
                                          resource_types=body.resource_types, min_confidence=body.min_confidence,
                                          limit=body.limit)
