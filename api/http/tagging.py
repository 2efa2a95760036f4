"""REST: bulk tagging requests (thin over ``services.tagging``, as the MCP tools are).

The caller comes from api.http.auth (verified token or API key; with authentication off, an anonymous
caller holding every scope); creating needs ``tag:write``, deciding ``tag:approve``, reading ``tag:read``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from api.http.auth import current_principal, require_scope
from api.http.routes import RuntimeDep
from services import tagging
from services.auth import Principal

PrincipalDep = Annotated[Principal, Depends(current_principal)]
tagging_router = APIRouter(prefix="/v1/tagging-requests", tags=["tagging"])
READ = [Depends(require_scope("tag:read"))]
WRITE = [Depends(require_scope("tag:write"))]
APPROVE = [Depends(require_scope("tag:approve"))]


class TaggingTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resource_arns: list[str] | None = Field(default=None, description="ARNs to tag (up to 5000); or scan_id.")
    tags: dict[str, Any] | None = Field(default=None, description='Tags to set, e.g. {"CostCenter": "Payments"}.')
    scan_id: str | None = Field(default=None, description="The non-compliant resources of this scan.")
    resource_types: list[str] | None = Field(default=None, description="With scan_id: only these types.")
    apply_suggestions: bool = Field(default=False, description="Set suggested values (>= min_confidence).")
    min_confidence: float = Field(default=0.8, ge=0, le=1)


class TaggingRequestBody(TaggingTarget):
    dry_run: bool = Field(default=True, description="True: decided but never applied (script only).")
    intent: str | None = Field(default=None, max_length=2000, description="The purpose, in plain words.")


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "deny"]
    comment: str | None = Field(default=None, max_length=2000)


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: bool = Field(default=False, description="True: the rollback request is decided but never applied.")
    intent: str | None = Field(default=None, max_length=2000)


@tagging_router.post("/preview", response_model=tagging.TaggingPreview, dependencies=READ)
def preview_tagging(rt: RuntimeDep, body: TaggingTarget) -> tagging.TaggingPreview:
    """Per-resource diff, projected compliance and cost-gap change, and risk. Nothing is written."""
    return tagging.preview(rt, resource_arns=body.resource_arns, tags=body.tags, scan_id=body.scan_id,
                           resource_types=body.resource_types, apply_suggestions=body.apply_suggestions,
                           min_confidence=body.min_confidence)


@tagging_router.post("", status_code=201, response_model=tagging.TaggingRequestOut, dependencies=WRITE)
def create_tagging_request(rt: RuntimeDep, who: PrincipalDep, body: TaggingRequestBody) -> tagging.TaggingRequestOut:
    """Create a request awaiting approval (needs tag:write). Nothing changes in the cloud yet."""
    return tagging.create_request(rt, who, resource_arns=body.resource_arns, tags=body.tags, dry_run=body.dry_run,
                                  intent=body.intent, scan_id=body.scan_id, resource_types=body.resource_types,
                                  apply_suggestions=body.apply_suggestions, min_confidence=body.min_confidence)


@tagging_router.get("", response_model=tagging.TaggingRequestList, dependencies=READ)
def list_tagging_requests(rt: RuntimeDep, status: Annotated[str | None, Query(description="Only this status.")] = None,
                          limit: Annotated[int, Query(ge=1, le=100)] = 20) -> tagging.TaggingRequestList:
    """The newest requests first."""
    return tagging.list_requests(rt, status=status, limit=limit)


@tagging_router.get("/{request_id}", response_model=tagging.TaggingRequestOut, dependencies=READ)
def get_tagging_request(rt: RuntimeDep, request_id: str) -> tagging.TaggingRequestOut:
    """Status, decision and per-resource outcomes (problems first, bounded)."""
    return tagging.get_request(rt, request_id)


@tagging_router.post("/{request_id}/decision", response_model=tagging.TaggingRequestOut, dependencies=APPROVE)
def decide_tagging_request(rt: RuntimeDep, who: PrincipalDep, request_id: str,
                           body: DecisionBody) -> tagging.TaggingRequestOut:
    """Approve or deny (needs tag:approve; once per request). Approval of a non-dry-run request applies it."""
    return tagging.decide(rt, who, request_id, body.decision, body.comment)


@tagging_router.post("/{request_id}/approve", response_model=tagging.TaggingRequestOut, dependencies=APPROVE)
def approve_tagging_request(rt: RuntimeDep, who: PrincipalDep, request_id: str,
                            comment: Annotated[str | None, Query(max_length=2000)] = None) -> tagging.TaggingRequestOut:
    """Shorthand for a decision 'approve'."""
    return tagging.decide(rt, who, request_id, "approve", comment)


@tagging_router.post("/{request_id}/resume", response_model=tagging.TaggingRequestOut, dependencies=APPROVE)
def resume_tagging_request(rt: RuntimeDep, who: PrincipalDep, request_id: str) -> tagging.TaggingRequestOut:
    """Queue the apply tasks again for resources still pending (after a lost task or a broker outage)."""
    return tagging.resume_apply(rt, who, request_id)


@tagging_router.post("/{request_id}/verify", response_model=tagging.TaggingRequestOut, dependencies=READ)
def verify_tagging_request(rt: RuntimeDep, request_id: str) -> tagging.TaggingRequestOut:
    """Read the applied tags back again; resources changed since are marked drifted."""
    return tagging.verify_request(rt, request_id)


@tagging_router.post("/{request_id}/rollback", status_code=201, response_model=tagging.TaggingRequestOut,
                     dependencies=WRITE)
def rollback_tagging_request(rt: RuntimeDep, who: PrincipalDep, request_id: str,
                             body: RollbackBody | None = None) -> tagging.TaggingRequestOut:
    """Create a request restoring the previous values (it needs its own approval)."""
    body = body or RollbackBody()
    return tagging.create_rollback(rt, who, request_id, dry_run=body.dry_run, intent=body.intent)


@tagging_router.get("/{request_id}/script", response_class=PlainTextResponse, dependencies=READ)
def tagging_script(rt: RuntimeDep, request_id: str) -> PlainTextResponse:
    """The same change as a bash script of AWS CLI commands, for teams applying changes in their pipelines."""
    return PlainTextResponse(tagging.remediation_script(rt, request_id), media_type="text/x-shellscript",
                             headers={"Content-Disposition": f'attachment; filename="tagging-{request_id}.sh"'})
