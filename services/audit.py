"""Append-only audit log: one row per tool, API or CLI call. The application only ever inserts."""

from __future__ import annotations

import logging
import re
from typing import Any

from services.db.engine import Database
from services.db.models import AuditRow

log = logging.getLogger(__name__)
_SECRET_KEY = re.compile(r"(secret|password|token|credential|api[_-]?key|authorization)", re.IGNORECASE)
_MAX_VALUE = 512


def redact(params: dict[str, Any]) -> dict[str, Any]:
    """Drop secrets and cap long values so the log never stores credentials or megabytes."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if _SECRET_KEY.search(key):
            out[key] = "[redacted]"
        elif isinstance(value, str) and len(value) > _MAX_VALUE:
            out[key] = value[:_MAX_VALUE] + "...[truncated]"
        elif isinstance(value, list) and len(value) > 50:
            out[key] = [*value[:50], f"...(+{len(value) - 50} more)"]
        else:
            out[key] = value
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
