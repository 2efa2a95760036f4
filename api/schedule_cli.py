"""CLI front door of scheduled audits: ``finops-tags schedule list|add|rm``, thin over
``services.audit_schedules`` (the same functions as the MCP tools and ``/v1/schedules``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from services import audit_schedules
from services.audit_schedules import AuditSchedule

EMBEDDED_NOTE = ("note: embedded mode (no broker configured): the schedule is stored, but only a production beat "
                 "(celery -A workers.app beat -S workers.schedule_db:DatabaseScheduler) reading this database runs it")


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()] or None


def _print(schedules: list[AuditSchedule], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([s.model_dump(mode="json") for s in schedules], indent=2))
        return
    table = Table("id", "name", "when", "enabled", "next run", "last run", "recipients")
    for s in schedules:
        last = f"{s.last_status or ''} {s.last_error or ''}".strip() or "-"
        table.add_row(s.schedule_id, s.name, s.description, "yes" if s.enabled else "no", s.next_run_local or "-",
                      last, ", ".join(s.recipients) or "-")
    Console().print(table, markup=False, highlight=False)


def register_schedule_commands(app: typer.Typer, *, handle_errors: Callable[[Any], Any],
                               settings: Callable[[], Any], runtime: Callable[[Any], Any], err: Console) -> None:
    """Add the ``schedule`` command group to the CLI (called from api.cli with its helpers)."""
    schedule_app = typer.Typer(help="Scheduled compliance audits run by beat.", no_args_is_help=True)
    app.add_typer(schedule_app, name="schedule")

    @schedule_app.command("list")
    @handle_errors
    def schedule_list(
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    ) -> None:
        """List the stored audit schedules with their next run and last outcome."""
        _print(audit_schedules.list_schedules(runtime(settings())), as_json)

    @schedule_app.command("add")
    @handle_errors
    def schedule_add(
        cron: Annotated[str | None, typer.Option(help="5-field cron, e.g. '0 8 * * 1-5'.")] = None,
        schedule: Annotated[str | None, typer.Option(help="daily, weekly (Mondays) or monthly (the 1st).")] = None,
        time: Annotated[str | None, typer.Option(help="HH:MM with --schedule (default 09:00).")] = None,
        timezone: Annotated[str, typer.Option(help="IANA time zone, e.g. Europe/Paris.")] = "UTC",
        resource_types: Annotated[str | None, typer.Option(help="Comma-separated types (default: all).")] = None,
        accounts: Annotated[str | None, typer.Option(help="Comma-separated account ids, or 'all'.")] = None,
        regions: Annotated[str | None, typer.Option(help="Comma-separated regions (default: all).")] = None,
        recipient: Annotated[list[str] | None, typer.Option(
            "--recipient", help="Email address or webhook URL (repeat the option for several).")] = None,
        report_format: Annotated[str | None, typer.Option(
            "--report-format", help="Emailed report: html (default), markdown, csv or json.")] = None,
        name: Annotated[str | None, typer.Option(help="A short name.")] = None,
        disabled: Annotated[bool, typer.Option("--disabled", help="Store it paused.")] = False,
    ) -> None:
        """Store an audit schedule; prints it as JSON."""
        s = settings()
        created = audit_schedules.create_schedule(
            runtime(s), name=name, cron=cron, schedule=schedule, time=time, timezone=timezone,
            resource_types=_split(resource_types), accounts=_split(accounts), regions=_split(regions),
            recipients=recipient, notification_format=report_format, enabled=not disabled, created_by="cli")
        typer.echo(created.model_dump_json(indent=2))
        if s.embedded_worker:
            err.print(EMBEDDED_NOTE, highlight=False, markup=False)

    @schedule_app.command("rm")
    @handle_errors
    def schedule_rm(schedule_id: Annotated[str, typer.Argument(help="The schedule id (see schedule list).")]) -> None:
        """Delete an audit schedule (its past scans stay)."""
        gone = audit_schedules.delete_schedule(runtime(settings()), schedule_id)
        err.print(f"deleted schedule {gone.schedule_id} ({gone.name})", highlight=False, markup=False)
