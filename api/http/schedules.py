"""REST: scheduled compliance audits (``/v1/schedules``), thin over ``services.audit_schedules`` as the MCP
tools are. Beat's DatabaseScheduler picks changes up within FINOPS_SCHEDULE_REFRESH_SECONDS."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from api.http.routes import RuntimeDep
from services import audit_schedules
from services.audit_schedules import AuditSchedule

schedules_router = APIRouter(prefix="/v1/schedules", tags=["schedules"])


class _ScheduleFields(BaseModel):
    # A misspelt field ("timezon") must be an error, not silently ignored.
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description="A short name; default describes the schedule.")
    cron: str | None = Field(default=None, description="5-field cron, e.g. '0 8 * * 1-5' (instead of schedule/time).")
    schedule: str | None = Field(default=None, description="daily, weekly (Mondays) or monthly (the 1st).")
    time: str | None = Field(default=None, description="HH:MM (24-hour) with schedule; default 09:00.")
    resource_types: list[str] | None = Field(default=None, description="Scan scope; omit for every supported type.")
    accounts: list[str] | None = Field(default=None, description="12-digit account ids or ['all'].")
    regions: list[str] | None = Field(default=None, description="Region names; omit for every enabled region.")
    recipients: list[str] | None = Field(default=None, description="Email addresses and webhook URLs.")
    notification_format: str | None = Field(default=None, description="html (default), markdown, csv or json.")


class ScheduleCreate(_ScheduleFields):
    """A new audit schedule (the daily 09:00 UTC audit of the default scope when empty)."""

    timezone: str = Field(default="UTC", description="IANA time zone, e.g. Europe/Paris.")
    enabled: bool = True


class ScheduleUpdate(_ScheduleFields):
    """The fields to change; omitted ones stay as they are."""

    timezone: str | None = Field(default=None, description="IANA time zone, e.g. Europe/Paris.")
    enabled: bool | None = Field(default=None, description="false pauses, true resumes.")


@schedules_router.post("", status_code=201, response_model=AuditSchedule)
def create_schedule(rt: RuntimeDep, body: ScheduleCreate) -> AuditSchedule:
    """Store a schedule; beat runs it (a scan of the scope, then notifications) at each time of its cron."""
    return audit_schedules.create_schedule(rt, **body.model_dump(), created_by="http")


@schedules_router.get("", response_model=list[AuditSchedule])
def list_schedules(rt: RuntimeDep, enabled: Annotated[bool | None, Query(
        description="Only enabled (true) or paused (false) schedules.")] = None) -> list[AuditSchedule]:
    """Every schedule with its next run and the outcome of its last run (webhook URLs shortened)."""
    return audit_schedules.list_schedules(rt, enabled=enabled)


@schedules_router.get("/{schedule_id}", response_model=AuditSchedule)
def get_schedule(rt: RuntimeDep, schedule_id: str) -> AuditSchedule:
    return audit_schedules.get_schedule(rt, schedule_id)


@schedules_router.patch("/{schedule_id}", response_model=AuditSchedule)
def update_schedule(rt: RuntimeDep, schedule_id: str, body: ScheduleUpdate) -> AuditSchedule:
    """Change the given fields (a given list replaces the stored one)."""
    return audit_schedules.update_schedule(rt, schedule_id, **body.model_dump())


@schedules_router.delete("/{schedule_id}", status_code=204, response_class=Response)
def delete_schedule(rt: RuntimeDep, schedule_id: str) -> Response:
    """Delete the schedule; beat stops sending it within the refresh delay. Its past scans stay."""
    audit_schedules.delete_schedule(rt, schedule_id)
    return Response(status_code=204)
