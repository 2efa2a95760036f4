"""MCP front door of scheduled audits: schedule_compliance_audit (create, compatible with the existing
open-source server's parameters), list_audit_schedules, update_audit_schedule, delete_audit_schedule.

Schedules are stored in the database and run by beat's DatabaseScheduler; a tool only writes the row.
Webhook URLs are secrets: answers and the audit log show them shortened.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from services import audit_schedules
from services.audit_schedules import AuditSchedule
from services.runtime import Runtime

T = TypeVar("T")
#: ``call(name, params, fn)`` of build_mcp_server: runs ``fn`` off the event loop, audited, with
#: AppErrors turned into ToolErrors that name the field and the fix.
Call = Callable[[str, dict[str, Any], Callable[[], T]], Awaitable[T]]

# Writes a row of this service's database; nothing in the cloud changes.
WRITES_SCHEDULE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                                  open_world_hint=False)
UPDATES_SCHEDULE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                                   open_world_hint=False)
READS_SCHEDULES = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                                  open_world_hint=False)
DELETES_SCHEDULE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True,
                                   open_world_hint=False)

RUNS_WHERE = ("Runs are started by beat with the database scheduler (celery -A workers.app beat -S "
              "workers.schedule_db:DatabaseScheduler); changes reach it within FINOPS_SCHEDULE_REFRESH_SECONDS.")
EMBEDDED_NOTE = ("This server runs in the embedded mode, which has no beat: the schedule is stored but runs "
                 "only where production beat (-S workers.schedule_db:DatabaseScheduler) reads this database.")


class ScheduleAnswer(BaseModel):
    """One schedule, and what the call did."""

    schedule_id: str
    status: str = Field(description="created, updated or deleted.")
    schedule: AuditSchedule
    message: str = Field(description="What will happen, in words.")


class ScheduleList(BaseModel):
    """Stored audit schedules, oldest first."""

    schedules: list[AuditSchedule]
    total: int
    note: str


def _message(s: AuditSchedule, verb: str, embedded: bool) -> str:
    when = f"next run {s.next_run_local}" if s.next_run_local else "disabled: it will not run until enabled"
    who = f"; notifies {', '.join(s.recipients)}" if s.recipients else "; no recipients (results only stored)"
    text = f"Audit schedule '{s.name}' {verb}: {s.description}, {when}{who}. {RUNS_WHERE}"
    return f"{text} {EMBEDDED_NOTE}" if embedded else text


def _params(values: dict[str, Any]) -> dict[str, Any]:
    """The audit log's copy: webhook URLs shortened (a Slack webhook URL is a credential)."""
    if values.get("recipients"):
        values = {**values, "recipients": [audit_schedules.mask(str(r)) for r in values["recipients"]]}
    return values


TypesParam = Annotated[list[str] | None, Field(description=(
    "Resource types to audit, e.g. ['ec2:instance', 'rds:db']. Omit for every supported type; ['all'] also adds "
    "other tagged types found through the tagging API."))]
AccountsParam = Annotated[list[str] | None, Field(description=(
    "12-digit account ids, or ['all'] for the whole organization. Omit for the configured accounts."))]
RegionsParam = Annotated[list[str] | None, Field(description="Regions, e.g. ['us-east-1']. Omit for all enabled.")]
RecipientsParam = Annotated[list[str] | None, Field(description=(
    "Who gets the result: email addresses (the report attached; needs SMTP configured on the server) and webhook "
    "URLs (http/https; a Slack incoming-webhook URL gets a Slack message). Slack channel names like #finops "
    "cannot be posted to: give the channel's incoming-webhook URL."))]
FormatParam = Annotated[str | None, Field(description=(
    "Format of the emailed report: html (default; self-contained with charts), markdown, csv (every violation) "
    "or json. For compatibility 'email', 'slack' or 'both' are accepted: they check that recipients are of that "
    "kind and keep html."))]
TimezoneParam = Annotated[str, Field(description=(
    "IANA time zone the time or cron is read in, e.g. Europe/Paris or America/New_York (DST is honoured)."))]


def register_schedule_tools(mcp: MCPServer, runtime: Callable[[], Runtime], principal: str, call: Call[Any]) -> None:
    """Add the scheduled-audit tools to ``mcp`` (see build_mcp_server)."""
    # Imported here: server.py imports this module, so a module-level import would be circular.
    from api.mcp.server import _tool

    def embedded() -> bool:
        return runtime().settings.embedded_worker

    @_tool(mcp, WRITES_SCHEDULE)
    async def schedule_compliance_audit(
        schedule: Annotated[str | None, Field(description=(
            "daily, weekly (Mondays) or monthly (the 1st), with time. Omit when giving cron; default daily."))] = None,
        time: Annotated[str | None, Field(description=(
            "Time of day HH:MM (24-hour) for schedule; default 09:00."))] = None,
        timezone: TimezoneParam = "UTC",
        resource_types: TypesParam = None,
        recipients: RecipientsParam = None,
        notification_format: FormatParam = None,
        cron: Annotated[str | None, Field(description=(
            "Instead of schedule/time: a 5-field cron (minute hour day-of-month month day-of-week), e.g. "
            "'0 8 * * 1-5' for 08:00 on weekdays."))] = None,
        name: Annotated[str | None, Field(description="A short name; default describes the schedule.")] = None,
        accounts: AccountsParam = None,
        regions: RegionsParam = None,
        enabled: Annotated[bool, Field(description="Create it paused with false.")] = True,
    ) -> ScheduleAnswer:
        """Schedule a recurring compliance audit that really runs: the schedule is stored, beat starts a scan
        of the given scope at each time (on the time zone's clock, DST included), and when the scan is over
        the recipients get the score, counts, data quality and top findings (webhooks: Slack-compatible
        message; email: the report attached). Returns the schedule_id and the next run. Use
        list_audit_schedules, update_audit_schedule and delete_audit_schedule to manage it."""
        params = {"schedule": schedule, "time": time, "timezone": timezone, "resource_types": resource_types,
                  "recipients": recipients, "notification_format": notification_format, "cron": cron, "name": name,
                  "accounts": accounts, "regions": regions, "enabled": enabled}

        def run() -> ScheduleAnswer:
            created = audit_schedules.create_schedule(
                runtime(), name=name, cron=cron, schedule=schedule, time=time, timezone=timezone,
                resource_types=resource_types, accounts=accounts, regions=regions, recipients=recipients,
                notification_format=notification_format, enabled=enabled, created_by=principal)
            return ScheduleAnswer(schedule_id=created.schedule_id, status="created", schedule=created,
                                  message=_message(created, "created", embedded()))

        answer: ScheduleAnswer = await call("schedule_compliance_audit", _params(params), run)
        return answer

    @_tool(mcp, READS_SCHEDULES)
    async def list_audit_schedules(
        enabled: Annotated[bool | None, Field(description="Only enabled (true) or paused (false) schedules.")] = None,
    ) -> ScheduleList:
        """The stored audit schedules with their cron and time zone in words, scope, recipients (webhook URLs
        shortened), next run, and the outcome of the last run (scan id, status, error)."""

        def run() -> ScheduleList:
            found = audit_schedules.list_schedules(runtime(), enabled=enabled)
            note = RUNS_WHERE + (f" {EMBEDDED_NOTE}" if embedded() else "")
            if len(found) >= audit_schedules.MAX_SCHEDULES_LISTED:
                note += f" Only the first {audit_schedules.MAX_SCHEDULES_LISTED} are listed."
            return ScheduleList(schedules=found, total=len(found), note=note)

        answer: ScheduleList = await call("list_audit_schedules", {"enabled": enabled}, run)
        return answer

    @_tool(mcp, UPDATES_SCHEDULE)
    async def update_audit_schedule(
        schedule_id: Annotated[str, Field(description="The schedule_id from schedule_compliance_audit or the list.")],
        enabled: Annotated[bool | None, Field(description="false pauses the schedule, true resumes it.")] = None,
        schedule: Annotated[str | None, Field(description="daily, weekly or monthly (replaces a cron).")] = None,
        time: Annotated[str | None, Field(description="New time of day HH:MM for a daily/weekly/monthly schedule.")
                        ] = None,
        cron: Annotated[str | None, Field(description="A new 5-field cron (replaces schedule/time).")] = None,
        timezone: Annotated[str | None, Field(description="A new IANA time zone, e.g. Europe/Paris.")] = None,
        resource_types: TypesParam = None,
        accounts: AccountsParam = None,
        regions: RegionsParam = None,
        recipients: Annotated[list[str] | None, Field(description=(
            "The new full list of email addresses and webhook URLs (replaces the old list)."))] = None,
        notification_format: FormatParam = None,
        name: Annotated[str | None, Field(description="A new name.")] = None,
    ) -> ScheduleAnswer:
        """Change a stored audit schedule: pause or resume it, move its time, cron or time zone, change its
        scope, recipients or report format. Only what is given changes. Beat applies it without a restart."""
        params = {"schedule_id": schedule_id, "enabled": enabled, "schedule": schedule, "time": time, "cron": cron,
                  "timezone": timezone, "resource_types": resource_types, "accounts": accounts, "regions": regions,
                  "recipients": recipients, "notification_format": notification_format, "name": name}

        def run() -> ScheduleAnswer:
            changed = audit_schedules.update_schedule(
                runtime(), schedule_id, name=name, cron=cron, schedule=schedule, time=time, timezone=timezone,
                resource_types=resource_types, accounts=accounts, regions=regions, recipients=recipients,
                notification_format=notification_format, enabled=enabled)
            return ScheduleAnswer(schedule_id=changed.schedule_id, status="updated", schedule=changed,
                                  message=_message(changed, "updated", embedded()))

        answer: ScheduleAnswer = await call("update_audit_schedule", _params(params), run)
        return answer

    @_tool(mcp, DELETES_SCHEDULE)
    async def delete_audit_schedule(
        schedule_id: Annotated[str, Field(description="The schedule_id to delete for good.")],
    ) -> ScheduleAnswer:
        """Delete an audit schedule: no more runs or notifications (a scan already running finishes, without
        notification). Its past scans stay. To stop it for a while instead, use update_audit_schedule with
        enabled=false."""

        def run() -> ScheduleAnswer:
            gone = audit_schedules.delete_schedule(runtime(), schedule_id)
            return ScheduleAnswer(schedule_id=gone.schedule_id, status="deleted", schedule=gone,
                                  message=f"Audit schedule '{gone.name}' deleted; beat stops sending it within "
                                          "FINOPS_SCHEDULE_REFRESH_SECONDS.")

        answer: ScheduleAnswer = await call("delete_audit_schedule", {"schedule_id": schedule_id}, run)
        return answer
