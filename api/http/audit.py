"""REST: the audit log (``GET /v1/audit``), for administrators (scope ``admin``). Read-only: the
application has no way to change or delete audit rows."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from api.http.auth import require_scope
from api.http.routes import RuntimeDep
from services import audit
from services.auth import ADMIN

audit_router = APIRouter(prefix="/v1/audit", tags=["audit"], dependencies=[Depends(require_scope(ADMIN))])


@audit_router.get("", response_model=audit.AuditPage)
def list_audit(
    rt: RuntimeDep,
    principal: Annotated[str | None, Query(description="Exact principal, e.g. apikey:ci or oauth:alice")] = None,
    action: Annotated[str | None, Query(description="Tool name or 'METHOD /route', e.g. GET /v1/scans")] = None,
    channel: Annotated[Literal["mcp", "http", "cli", "service"] | None, Query()] = None,
    outcome: Annotated[str | None, Query(description="ok, an error code, or an HTTP status such as 403")] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601; rows at or after")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601; rows at or before")] = None,
    correlation_id: Annotated[str | None, Query()] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> audit.AuditPage:
    """Audit rows, newest first: who, what, when, parameters (secrets redacted), outcome, correlation id."""
    return audit.query(rt.db, principal=principal, action=action, channel=channel, outcome=outcome, since=since,
                       until=until, correlation_id=correlation_id, cursor=cursor, limit=limit)
