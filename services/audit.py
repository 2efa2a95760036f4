"""Append-only audit log: one row per tool, API or CLI call. The application only ever inserts."""

from __future__ import annotations

import base64
import json
import logging
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field
from sqlalchemy import select

from services.db.engine import Database
from services.db.models import AuditRow
from services.errors import InvalidInput

log = logging.getLogger(__name__)
_SECRET_KEY = re.compile(r"(secret|password|passwd|token|credential|api[_-]?key|authorization|cookie|signature)",
                         re.IGNORECASE)
# Values that are credentials whatever their key: bearer tokens, our API keys, JWTs.
_SECRET_VALUE = re.compile(r"(\bBearer\s+\S+|\bfta_[A-Za-z0-9_-]{8,}"
                           r"|\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)")
_URL = re.compile(r"https?://[^\s\"'<>]+", re.IGNORECASE)
_MAX_VALUE = 512
_MAX_DEPTH = 6


def _redact_url(match: re.Match[str]) -> str:
    # Webhook URLs carry their secret in the path (Slack /services/T/B/XXXX, Teams, Discord) or the query;
    # keep scheme and host so the reader knows where it pointed.
    url = match.group(0)
    try:
        parts = urlsplit(url)
    except ValueError:
        return "[redacted url]"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    if parts.path in ("", "/") and not parts.query and not parts.username:
        return url
    return urlunsplit((parts.scheme, host, "/[redacted]", "", ""))


def _redact_value(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        text = _URL.sub(_redact_url, _SECRET_VALUE.sub("[redacted]", value))
        return text[:_MAX_VALUE] + "...[truncated]" if len(text) > _MAX_VALUE else text
    if isinstance(value, dict):
        return redact(value, depth + 1) if depth < _MAX_DEPTH else "[nested]"
    if isinstance(value, list | tuple):
        items = [_redact_value(v, depth + 1) for v in list(value)[:50]]
        return [*items, f"...(+{len(value) - 50} more)"] if len(value) > 50 else items
    return value


def redact(params: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    """Drop secrets (by key name and by value: tokens, API keys, JWTs, webhook URL paths) and cap long
    values, so the log never stores credentials or megabytes."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if _SECRET_KEY.search(str(key)):
            out[key] = "[redacted]"
        else:
            out[key] = _redact_value(value, depth)
    return out


def record(db: Database, *, principal: str, channel: str, action: str, parameters: dict[str, Any],
           outcome: str, duration_ms: float | None = None, correlation_id: str | None = None) -> None:
    """Write one audit row. An audit failure is logged, never raised into the caller's answer."""
    try:
        with db.session() as s:
            s.add(AuditRow(principal=principal, channel=channel, action=action, parameters=redact(parameters),
                           outcome=outcome, duration_ms=duration_ms, correlation_id=correlation_id))
    except Exception:
        log.exception("could not write the audit record for %s", action)


class AuditEntry(BaseModel):
    """One audit row as read by an administrator."""

    id: int
    at: datetime
    principal: str
    channel: str = Field(description="mcp, http, cli or service.")
    action: str
    parameters: dict[str, Any]
    outcome: str = Field(description="ok, an error code, or an HTTP status.")
    correlation_id: str | None
    duration_ms: float | None


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_cursor: str | None = Field(description="Pass back as cursor for the next (older) page; null at the end.")


def _encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": last_id}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return int(data["before"])
    except (ValueError, KeyError, TypeError):
        raise InvalidInput("cursor is not one this server issued", field="cursor",
                           fix="pass next_cursor from the previous page unchanged, or omit it") from None


def query(db: Database, *, principal: str | None = None, action: str | None = None, channel: str | None = None,
          outcome: str | None = None, since: datetime | None = None, until: datetime | None = None,
          correlation_id: str | None = None, cursor: str | None = None, limit: int = 100) -> AuditPage:
    """Audit rows, newest first, filtered; ``next_cursor`` pages to older rows (stable under new inserts)."""
    if since and until and since > until:
        raise InvalidInput("since is after until", field="since", fix="give since <= until")
    stmt = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit + 1)
    for column, value in ((AuditRow.principal, principal), (AuditRow.action, action), (AuditRow.channel, channel),
                          (AuditRow.outcome, outcome), (AuditRow.correlation_id, correlation_id)):
        if value is not None:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(AuditRow.at >= since)
    if until is not None:
        stmt = stmt.where(AuditRow.at <= until)
    if cursor:
        stmt = stmt.where(AuditRow.id < _decode_cursor(cursor))
    with db.session() as s:
        rows = s.scalars(stmt).all()
        entries = [AuditEntry(id=r.id, at=r.at, principal=r.principal, channel=r.channel, action=r.action,
                              parameters=r.parameters or {}, outcome=r.outcome, correlation_id=r.correlation_id,
                              duration_ms=r.duration_ms) for r in rows[:limit]]
    return AuditPage(entries=entries, next_cursor=_encode_cursor(entries[-1].id) if len(rows) > limit else None)
