"""Scheduled compliance audits: stored schedules that beat really runs, and what each run did.

A schedule is a row of ``audit_schedules``: when (a 5-field cron read on the clock of an IANA time
zone, or the existing open-source server's ``daily|weekly|monthly`` + ``HH:MM``), what (the scan scope)
and who hears about it (webhook URLs get Slack-compatible JSON, email addresses get the report
attached). ``workers.schedule_db.DatabaseScheduler`` re-reads the table every
``FINOPS_SCHEDULE_REFRESH_SECONDS`` and sends ``audit.run_scheduled(schedule_id, slot)`` when a
schedule is due; that task calls :func:`start_run`, and the follow-up ``audit.notify_run`` calls
:func:`notify_when_finished` until the scan is over.

Idempotency: a run is keyed by its *slot* (the cron time it serves, as beat saw it). A redelivered
message, or beat sending the same slot again after a restart, finds the run already started and
reuses its scan; an older slot arriving after a newer one is skipped. Notifications are claimed
(``notified_scan_id``) before anything is sent, so one run never notifies twice.
"""

from __future__ import annotations

import difflib
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal, cast
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import CursorResult, or_, select, update

from services import report_formats, scans
from services.config import Settings
from services.db.models import AuditScheduleRow, ScanRow, utcnow
from services.errors import AppError, InvalidInput, NotFound
from services.runtime import Runtime
from services.schemas import TERMINAL_STATUSES, ScanRequest
from services.webhooks import WebhookRefused, check_webhook_target

log = logging.getLogger(__name__)

FREQUENCIES = ("daily", "weekly", "monthly")
#: The existing open-source server's notification_format values name delivery channels, not a format.
PEER_CHANNELS = ("email", "slack", "both")
DEFAULT_FORMAT = "html"
DEFAULT_TIME = "09:00"
MAX_RECIPIENTS = 20
MAX_SCHEDULES_LISTED = 200
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")
# Pragmatic address syntax: one @, a dotted domain, no spaces, quotes or line breaks (header injection).
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")
_SLOT_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class AuditSchedule(BaseModel):
    """A stored audit schedule, as every front door shows it."""

    schedule_id: str
    name: str
    cron_expression: str = Field(description="The 5-field cron (minute hour day-of-month month day-of-week).")
    schedule: Literal["daily", "weekly", "monthly"] | None = Field(description=(
        "daily, weekly (Mondays) or monthly (the 1st) when created that way; null for a custom cron."))
    time: str | None = Field(description="HH:MM with schedule; null for a custom cron.")
    timezone: str = Field(description="IANA time zone the cron is read in (DST is honoured).")
    description: str = Field(description="The schedule in words.")
    resource_types: list[str] | str | None = Field(description="Scan scope; null = every supported type.")
    accounts: list[str] | str | None = Field(description="Scan scope; null = the configured accounts.")
    regions: list[str] | str | None = Field(description="Scan scope; null = every enabled region.")
    recipients: list[str] = Field(description=(
        "Email addresses and webhook URLs (shown shortened: a webhook URL is a secret)."))
    notification_format: str = Field(description="Format of the emailed report: markdown, html, csv or json.")
    enabled: bool
    next_run: datetime | None = Field(description="Next run (UTC); null while disabled.")
    next_run_local: str | None = Field(description="Next run on the schedule's own clock (ISO 8601 with offset).")
    created_by: str
    created_at: datetime
    updated_at: datetime
    last_run_at: datetime | None
    last_scan_id: str | None
    last_status: str | None = Field(description=(
        "Outcome of the last run: queued/running, the scan's final status, or skipped."))
    last_error: str | None = Field(description="Why the last run or its notifications failed, if they did.")


@dataclass(frozen=True)
class ScheduleTiming:
    """What beat needs of an enabled schedule."""

    schedule_id: str
    cron: str
    timezone: str
    #: When counting starts: the definition's last change or the last run, whichever is later.
    baseline: datetime


@dataclass(frozen=True)
class RunStart:
    """What :func:`start_run` did: ``scan_id`` is set when a scan runs (or already ran) for this slot."""

    scan_id: str | None
    started: bool
    reason: str


@dataclass(frozen=True)
class NotifyOutcome:
    """``wait_seconds`` set: the scan is still running, ask again then."""

    status: str
    wait_seconds: float | None = None


# ------------------------------------------------------------------------------------ cron and clocks

def parse_cron(expr: str, *, field: str = "cron") -> str:
    """The expression normalized (single spaces), or InvalidInput naming what is wrong."""
    if not isinstance(expr, str) or not expr.strip():
        raise InvalidInput("the cron expression is empty", field=field,
                           fix="give 5 fields: minute hour day-of-month month day-of-week, e.g. '0 9 * * 1-5'")
    parts = expr.split()
    if len(parts) != 5:
        raise InvalidInput(f"'{expr}' has {len(parts)} field(s); a cron expression has exactly 5", field=field,
                           fix="give minute hour day-of-month month day-of-week, e.g. '30 8 * * *' for 08:30 "
                               "every day (no seconds or year field)")
    normalized = " ".join(parts)
    try:
        next(CronSim(normalized, datetime(2026, 1, 1, tzinfo=UTC)))
    except CronSimError as exc:
        raise InvalidInput(f"'{expr}' is not a valid cron expression: {exc}", field=field,
                           fix="fields are minute (0-59) hour (0-23) day-of-month (1-31) month (1-12) "
                               "day-of-week (0-7 or MON-SUN), each '*', a value, a range a-b, a list or a step */n"
                           ) from None
    except StopIteration:
        raise InvalidInput(f"'{expr}' never fires (no matching date)", field=field,
                           fix="check the day-of-month against the month, e.g. '0 9 30 2 *' never happens") from None
    return normalized


def _check_interval(settings: Settings, cron_expr: str) -> None:
    """Refuse a cron that fires more often than FINOPS_SCHEDULE_MIN_INTERVAL_MINUTES (checked over a week
    of firings, so '0,5 9 * * *' is caught as well as '*/5 * * * *')."""
    minimum = timedelta(minutes=settings.schedule_min_interval_minutes)
    previous: datetime | None = None
    start = datetime(2026, 1, 5, tzinfo=UTC)
    for fire in CronSim(cron_expr, start):
        if previous is not None and fire - previous < minimum:
            raise InvalidInput(f"'{cron_expr}' runs {int((fire - previous).total_seconds() // 60)} minute(s) apart; "
                               f"audits run at most every {settings.schedule_min_interval_minutes} minutes",
                               field="cron", fix="each run scans the whole scope: choose an hourly or daily "
                                                 "cron such as '0 9 * * *' (FINOPS_SCHEDULE_MIN_INTERVAL_MINUTES "
                                                 "sets the limit)")
        if fire - start > timedelta(days=7):
            return
        previous = fire


def check_timezone(name: str, *, field: str = "timezone") -> ZoneInfo:
    """The ZoneInfo of an IANA name, or InvalidInput with the closest names as the fix."""
    if isinstance(name, str) and name.strip() and name in _zone_names():
        return ZoneInfo(name)
    try:
        if isinstance(name, str) and name.strip() and "/" in name and ".." not in name:
            return ZoneInfo(name)  # backward-compatible aliases present in tzdata but not listed
    except (ZoneInfoNotFoundError, ValueError):
        pass
    close = difflib.get_close_matches(str(name), sorted(_zone_names()), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise InvalidInput(f"'{name}' is not an IANA time zone", field=field,
                       fix=f"{hint}use a name such as UTC, Europe/Paris or America/New_York")


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def parse_time(value: str, *, field: str = "time") -> tuple[int, int]:
    """HH:MM on a 24-hour clock as (hour, minute)."""
    match = _CLOCK.fullmatch(value.strip()) if isinstance(value, str) else None
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise InvalidInput(f"'{value}' is not a time of day", field=field,
                           fix="use HH:MM on a 24-hour clock, 00:00 to 23:59, e.g. 09:00 or 17:30")
    return int(match.group(1)), int(match.group(2))


def cron_for(frequency: str, time_of_day: str) -> str:
    """The cron of the peer's schedule form: daily, weekly on Mondays, monthly on the 1st, at HH:MM."""
    if frequency not in FREQUENCIES:
        raise InvalidInput(f"'{frequency}' is not a schedule", field="schedule",
                           fix="use daily, weekly (Mondays) or monthly (the 1st), or give a 5-field cron instead")
    hour, minute = parse_time(time_of_day)
    day = {"daily": "* * *", "weekly": "* * 1", "monthly": "1 * *"}[frequency]
    return f"{minute} {hour} {day}"


def next_fire(cron: str, zone: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` that ``cron`` matches on the clock of ``zone`` (UTC).

    Wall-clock semantics across DST (as Debian cron): a time skipped by the spring change fires at the
    first minute after the gap, a time repeated by the autumn change fires once.
    """
    local = _aware(after).astimezone(ZoneInfo(zone))
    return next(CronSim(cron, local)).astimezone(UTC)


def previous_fire(cron: str, zone: str, at: datetime) -> datetime:
    """The latest time at or before ``at`` that ``cron`` matches (UTC): the slot a run at ``at`` serves."""
    local = (_aware(at) + timedelta(seconds=1)).astimezone(ZoneInfo(zone)).replace(microsecond=0)
    return next(CronSim(cron, local, reverse=True)).astimezone(UTC)


def slot_key(slot: datetime) -> str:
    """The run key of a slot: UTC to the second, ordered as text."""
    return _aware(slot).astimezone(UTC).strftime(_SLOT_FORMAT)


def describe(cron: str, zone: str) -> str:
    """The schedule in words, e.g. 'At 09:00 AM (Europe/Paris)'."""
    try:
        words = CronSim(cron, datetime(2026, 1, 1, tzinfo=UTC)).explain()
    except Exception:  # explain() is a nicety; the cron itself is valid
        words = f"cron '{cron}'"
    return f"{words} ({zone})"


# --------------------------------------------------------------------------------------- validation

def _scope(resource_types: Sequence[str] | str | None, accounts: Sequence[str] | str | None,
           regions: Sequence[str] | str | None) -> ScanRequest:
    try:
        request = ScanRequest.model_validate({"resource_types": resource_types, "accounts": accounts,
                                              "regions": regions, "trigger": "scheduled"})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"] if not isinstance(p, int)) or "resource_types"
        raise InvalidInput(str(err["msg"]).removeprefix("Value error, "), field=field,
                           fix="pass a list of names, ['all'], or omit the field for the default") from None
    scans.validate_request(request)
    return request


def _stored(value: list[str] | str | None) -> list[str] | None:
    if value is None:
        return None
    return ["all"] if value == "all" else list(value)


def is_webhook(recipient: str) -> bool:
    return recipient.lower().startswith(("http://", "https://"))


def check_recipients(settings: Settings, recipients: Sequence[str] | None, *, channels: str | None = None) -> list[str]:
    """Webhook URLs (http/https) and email addresses, de-duplicated; InvalidInput names the bad one."""
    if recipients is None:
        return []
    if isinstance(recipients, str):
        recipients = [recipients]
    out: list[str] = []
    for raw in recipients:
        value = str(raw).strip()
        if not value:
            continue
        if len(value) > 2048 or any(c in value for c in "\r\n\t "):
            raise InvalidInput(f"recipient '{value[:80]}' contains spaces or line breaks, or is too long",
                               field="recipients", fix="give one email address or webhook URL per list entry")
        if is_webhook(value):
            _check_webhook(settings, value)
        elif value.startswith("#") or value.startswith("@"):
            raise InvalidInput(f"'{value}' is a Slack channel or user name, which cannot be posted to without "
                               "a Slack app", field="recipients",
                               fix="create an incoming webhook for that channel in Slack and give its URL "
                                   "(https://hooks.slack.com/services/...)")
        elif "@" in value:
            if not _EMAIL.fullmatch(value):
                raise InvalidInput(f"'{value}' is not an email address", field="recipients",
                                   fix="use name@example.com (no display name or angle brackets)")
            if not settings.smtp_host:
                raise InvalidInput(f"cannot email {value}: no SMTP server is configured", field="recipients",
                                   fix="set FINOPS_SMTP_HOST (and FINOPS_SMTP_FROM, FINOPS_SMTP_USER/PASSWORD if "
                                       "needed) on the gateway, workers and beat, or give only webhook URLs")
        else:
            raise InvalidInput(f"'{value}' is neither an email address nor a webhook URL", field="recipients",
                               fix="give name@example.com or an https:// webhook URL (e.g. a Slack incoming webhook)")
        if value not in out:
            out.append(value)
    if len(out) > MAX_RECIPIENTS:
        raise InvalidInput(f"{len(out)} recipients; at most {MAX_RECIPIENTS} are accepted", field="recipients",
                           fix="use a mailing list address or one channel webhook instead of many individuals")
    if channels in ("email", "slack"):
        wrong = [r for r in out if is_webhook(r) == (channels == "email")]
        if wrong:
            kind = "webhook URLs" if channels == "email" else "email addresses"
            raise InvalidInput(f"notification_format '{channels}' delivers only by {channels}, but recipients "
                               f"include {kind}: {', '.join(mask(r) for r in wrong[:3])}",
                               field="notification_format",
                               fix="use notification_format 'both', or remove those recipients")
        if not out:
            raise InvalidInput(f"notification_format '{channels}' needs at least one recipient", field="recipients",
                               fix="give email addresses (email) or webhook URLs (slack)")
    return out


def _check_webhook(settings: Settings, url: str) -> None:
    scheme, host = "", ""
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        _ = parts.port  # raises on a malformed port
    except ValueError:
        host = ""
    if scheme not in ("http", "https") or not host:
        raise InvalidInput(f"'{mask(url)}' is not a usable webhook URL", field="recipients",
                           fix="give a full URL such as https://hooks.slack.com/services/T000/B000/XXXX")
    try:
        # The same checks as at delivery, so a bad target is refused when the schedule is saved.
        check_webhook_target(settings, url, resolve=False)
    except WebhookRefused as exc:
        raise InvalidInput(f"webhook '{mask(url)}' cannot be used: {exc}", field="recipients",
                           fix="give an https URL of a public webhook service, e.g. "
                               "https://hooks.slack.com/services/T000/B000/XXXX") from None


def mask(recipient: str) -> str:
    """A webhook URL without its secret path (Slack's URL is the credential); emails unchanged."""
    if not is_webhook(recipient):
        return recipient
    try:
        parts = urlsplit(recipient)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an unparsable URL)"
    # Built from host and port, never netloc: user:password@ in a URL must not reach answers or logs.
    tail = parts.path.rstrip("/")[-4:]
    base = f"{parts.scheme}://{host}{port}/"
    return f"{base}…{tail}" if tail else base


def _format(notification_format: str | None) -> tuple[str, str | None]:
    """(report format, peer channel or None)."""
    value = (notification_format or DEFAULT_FORMAT).strip().lower()
    if value in PEER_CHANNELS:
        return DEFAULT_FORMAT, value
    names = report_formats.format_names()
    if value not in names:
        raise InvalidInput(f"'{notification_format}' is not a notification format", field="notification_format",
                           fix=f"use {', '.join(names)} (the emailed report's format), or email, slack or both")
    return value, None


def _when(cron: str | None, schedule: str | None, time: str | None, current: AuditScheduleRow | None
          ) -> tuple[str, str | None, str | None]:
    """(cron, frequency, time_of_day) from the caller's cron or daily|weekly|monthly + HH:MM."""
    if cron is not None and (schedule is not None or time is not None):
        raise InvalidInput("give either cron, or schedule and time, not both", field="cron",
                           fix="drop schedule/time to use the cron, or drop cron to use schedule and time")
    if cron is not None:
        return parse_cron(cron), None, None
    if schedule is None and time is None:
        if current is not None:
            return current.cron, current.frequency, current.time_of_day
        schedule = "daily"
    if schedule is None:
        if current is None or current.frequency is None:
            raise InvalidInput("time alone cannot change a custom cron schedule", field="time",
                               fix="pass schedule (daily, weekly or monthly) with time, or a new cron")
        schedule = current.frequency
    if time is None:
        time = current.time_of_day if current is not None and current.time_of_day else DEFAULT_TIME
    hour, minute = parse_time(time)
    frequency = schedule.strip().lower()
    return cron_for(frequency, time), frequency, f"{hour:02d}:{minute:02d}"


def _name(name: str | None, cron: str, frequency: str | None, time_of_day: str | None, zone: str) -> str:
    if name is not None:
        cleaned = " ".join(str(name).split())
        if not cleaned or len(cleaned) > 200:
            raise InvalidInput("the name must be 1 to 200 characters", field="name",
                               fix="give a short name such as 'weekly prod audit'")
        return cleaned
    if frequency:
        return f"{frequency} audit at {time_of_day} {zone}"
    return f"audit '{cron}' {zone}"


# --------------------------------------------------------------------------------------------- CRUD

def create_schedule(rt: Runtime, *, name: str | None = None, cron: str | None = None, schedule: str | None = None,
                    time: str | None = None, timezone: str = "UTC",
                    resource_types: Sequence[str] | str | None = None, accounts: Sequence[str] | str | None = None,
                    regions: Sequence[str] | str | None = None, recipients: Sequence[str] | None = None,
                    notification_format: str | None = None, enabled: bool = True,
                    created_by: str = "local") -> AuditSchedule:
    """Validate and store a schedule; beat picks it up within FINOPS_SCHEDULE_REFRESH_SECONDS."""
    zone = (timezone or "UTC").strip()
    check_timezone(zone)
    cron_expr, frequency, time_of_day = _when(cron, schedule, time, None)
    _check_interval(rt.settings, cron_expr)
    request = _scope(resource_types, accounts, regions)
    report_format, channels = _format(notification_format)
    people = check_recipients(rt.settings, recipients, channels=channels)
    now = utcnow()
    row = AuditScheduleRow(
        id=str(uuid.uuid4()), name=_name(name, cron_expr, frequency, time_of_day, zone), cron=cron_expr,
        frequency=frequency, time_of_day=time_of_day, timezone=zone,
        resource_types=_stored(request.resource_types), accounts=_stored(request.accounts),
        regions=_stored(request.regions), recipients=people, notification_format=report_format,
        enabled=bool(enabled), created_by=created_by[:256], created_at=now, updated_at=now)
    with rt.db.session() as s:
        s.add(row)
    return to_model(row)


def list_schedules(rt: Runtime, *, enabled: bool | None = None) -> list[AuditSchedule]:
    """Schedules, oldest first (at most MAX_SCHEDULES_LISTED)."""
    with rt.db.session() as s:
        query = select(AuditScheduleRow).order_by(AuditScheduleRow.created_at, AuditScheduleRow.id)
        if enabled is not None:
            query = query.where(AuditScheduleRow.enabled.is_(enabled))
        rows = list(s.scalars(query.limit(MAX_SCHEDULES_LISTED)))
    return [to_model(r) for r in rows]


def get_schedule(rt: Runtime, schedule_id: str) -> AuditSchedule:
    with rt.db.session() as s:
        return to_model(_row(s, schedule_id))


def update_schedule(rt: Runtime, schedule_id: str, *, name: str | None = None, cron: str | None = None,
                    schedule: str | None = None, time: str | None = None, timezone: str | None = None,
                    resource_types: Sequence[str] | str | None = None, accounts: Sequence[str] | str | None = None,
                    regions: Sequence[str] | str | None = None, recipients: Sequence[str] | None = None,
                    notification_format: str | None = None, enabled: bool | None = None) -> AuditSchedule:
    """Change what is given (None = unchanged; a list replaces the stored one). Beat applies a new cron,
    time zone or enabled flag within FINOPS_SCHEDULE_REFRESH_SECONDS; the rest is read at the next run."""
    toggle_only = all(v is None for v in (cron, schedule, time, timezone, resource_types, accounts, regions,
                                          recipients, notification_format))
    with rt.db.session() as s:
        row = _row(s, schedule_id, lock=True)
        if toggle_only:
            # Pausing or renaming never re-checks the rest: a schedule whose recipients or scope stopped being
            # valid (SMTP removed, an account left) must still be pausable.
            if name is not None:
                row.name = _name(name, row.cron, row.frequency, row.time_of_day, row.timezone)
            if enabled is not None:
                row.enabled = bool(enabled)
            row.updated_at = utcnow()
            s.flush()
            return to_model(row)
        zone = row.timezone if timezone is None else timezone.strip()
        check_timezone(zone)
        cron_expr, frequency, time_of_day = _when(cron, schedule, time, row)
        if cron_expr != row.cron:
            _check_interval(rt.settings, cron_expr)
        request = _scope(row.resource_types if resource_types is None else resource_types,
                         row.accounts if accounts is None else accounts,
                         row.regions if regions is None else regions)
        report_format, channels = _format(notification_format or row.notification_format)
        people = check_recipients(rt.settings, row.recipients if recipients is None else recipients,
                                  channels=channels)
        generated = row.name == _name(None, row.cron, row.frequency, row.time_of_day, row.timezone)
        if name is not None or generated:
            # A generated name follows the schedule it describes; a given name is kept until changed.
            row.name = _name(name, cron_expr, frequency, time_of_day, zone)
        row.cron, row.frequency, row.time_of_day, row.timezone = cron_expr, frequency, time_of_day, zone
        row.resource_types = _stored(request.resource_types)
        row.accounts = _stored(request.accounts)
        row.regions = _stored(request.regions)
        row.recipients = people
        row.notification_format = report_format
        if enabled is not None:
            row.enabled = bool(enabled)
        # Beat counts a changed cron, zone or enabled flag from here: the next run is the first after it.
        row.updated_at = utcnow()
        s.flush()
        return to_model(row)


def delete_schedule(rt: Runtime, schedule_id: str) -> AuditSchedule:
    """Remove a schedule (what it was is returned); beat stops sending it within the refresh delay."""
    with rt.db.session() as s:
        row = _row(s, schedule_id, lock=True)
        gone = to_model(row)
        s.delete(row)
    return gone


def _row(s: Any, schedule_id: str, *, lock: bool = False) -> AuditScheduleRow:
    try:
        uuid.UUID(str(schedule_id))
    except ValueError:
        raise InvalidInput(f"'{schedule_id}' is not a schedule id", field="schedule_id",
                           fix="pass a schedule_id from list_audit_schedules (a UUID)") from None
    query = select(AuditScheduleRow).where(AuditScheduleRow.id == schedule_id)
    row = s.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise NotFound(f"schedule {schedule_id} does not exist", field="schedule_id",
                       fix="list the schedules (list_audit_schedules or GET /v1/schedules) for valid ids")
    assert isinstance(row, AuditScheduleRow)
    return row


def to_model(row: AuditScheduleRow, *, now: datetime | None = None) -> AuditSchedule:
    nxt = None
    if row.enabled:
        baseline = max(_aware(now or utcnow()), _aware(row.updated_at))
        nxt = next_fire(row.cron, row.timezone, baseline)
    return AuditSchedule(
        schedule_id=row.id, name=row.name, cron_expression=row.cron,
        schedule=row.frequency if row.frequency in FREQUENCIES else None,  # type: ignore[arg-type]
        time=row.time_of_day, timezone=row.timezone, description=describe(row.cron, row.timezone),
        resource_types=_shown(row.resource_types), accounts=_shown(row.accounts), regions=_shown(row.regions),
        recipients=[mask(r) for r in row.recipients or []], notification_format=row.notification_format,
        enabled=row.enabled, next_run=nxt,
        next_run_local=nxt.astimezone(ZoneInfo(row.timezone)).isoformat() if nxt else None,
        created_by=row.created_by, created_at=_aware(row.created_at), updated_at=_aware(row.updated_at),
        last_run_at=_aware(row.last_run_at) if row.last_run_at else None, last_scan_id=row.last_scan_id,
        last_status=row.last_status, last_error=row.last_error)


def _shown(value: list[Any] | None) -> list[str] | str | None:
    if value is None:
        return None
    return "all" if value == ["all"] else [str(v) for v in value]


# ------------------------------------------------------------------------------------- beat's view

def enabled_timings(rt_db: Any) -> list[ScheduleTiming]:
    """Every enabled schedule's cron, zone and counting baseline (read by beat on each refresh)."""
    with rt_db.session() as s:
        rows = s.execute(select(AuditScheduleRow.id, AuditScheduleRow.cron, AuditScheduleRow.timezone,
                                AuditScheduleRow.updated_at, AuditScheduleRow.last_run_at)
                         .where(AuditScheduleRow.enabled.is_(True))).all()
    return [ScheduleTiming(schedule_id=r.id, cron=r.cron, timezone=r.timezone,
                           baseline=max(_aware(r.updated_at), _aware(r.last_run_at) if r.last_run_at else
                                        _aware(r.updated_at)))
            for r in rows]


# --------------------------------------------------------------------------------------------- runs

def start_run(rt: Runtime, schedule_id: str, *, slot: str | None = None, now: datetime | None = None) -> RunStart:
    """Start the scan of one firing of a schedule (idempotent per slot; see the module docstring)."""
    now = _aware(now or utcnow())
    requested_by = f"schedule:{schedule_id}"
    with rt.db.session() as s:
        row = s.scalar(select(AuditScheduleRow).where(AuditScheduleRow.id == schedule_id).with_for_update())
        if row is None:
            return RunStart(None, False, "the schedule was deleted")
        key = slot or slot_key(previous_fire(row.cron, row.timezone, now))
        if row.last_run_key == key:
            if row.last_scan_id:
                return RunStart(row.last_scan_id, False, "this slot's run already started (redelivery)")
            # Claimed but the scan id was never recorded: adopt a scan submitted since, or submit it now.
            adopted = s.scalar(select(ScanRow.id).where(ScanRow.requested_by == requested_by,
                                                        ScanRow.created_at >= row.last_run_at)
                               .order_by(ScanRow.created_at.desc()).limit(1)) if row.last_run_at else None
            if adopted:
                row.last_scan_id, row.last_status = adopted, "queued"
                return RunStart(adopted, False, "adopted the scan submitted before a redelivery")
        else:
            if not row.enabled:
                return RunStart(None, False, "the schedule is disabled")
            if row.last_run_key and _is_slot(row.last_run_key) and _is_slot(key) and row.last_run_key > key:
                return RunStart(None, False, f"a later slot ({row.last_run_key}) already ran")
            running = _running_scan(s, row, now, rt.settings.schedule_notify_wait_minutes)
            if running:
                row.last_error = (f"skipped the {key} run: the previous run's scan {running} is still running")
                return RunStart(None, False, row.last_error)
            row.last_run_key, row.last_run_at, row.last_scan_id = key, now, None
            row.last_status, row.last_error = "queued", None
        request = ScanRequest.model_validate({"resource_types": _scope_value(row.resource_types),
                                              "accounts": _scope_value(row.accounts),
                                              "regions": _scope_value(row.regions), "trigger": "scheduled"})
    # Outside the row's transaction: submit writes its own rows (SQLite allows one writer at a time).
    try:
        scan_id = scans.submit(rt, request, requested_by=requested_by)
    except AppError as exc:
        _record(rt, schedule_id, key, status="failed", error=f"the scan could not start: {exc}")
        raise
    # Like the daily snapshot, the scan is flagged scheduled and enters history; history takes its reference
    # scope from beat's daily snapshot first, so an audit of another scope cannot bend the estate's trend.
    with rt.db.session() as s:
        s.execute(update(AuditScheduleRow).where(AuditScheduleRow.id == schedule_id,
                                                 AuditScheduleRow.last_run_key == key)
                  .values(last_scan_id=scan_id, last_status="queued"))
    return RunStart(scan_id, True, "scan submitted")


def _running_scan(s: Any, row: AuditScheduleRow, now: datetime, wait_minutes: int) -> str | None:
    if not row.last_scan_id:
        return None
    scan = s.get(ScanRow, row.last_scan_id)
    if scan is None or scan.status in TERMINAL_STATUSES:
        return None
    # A scan older than the notification wait is stuck, not running: do not block the schedule forever.
    if _aware(scan.created_at) < now - timedelta(minutes=wait_minutes):
        return None
    return str(scan.id)


def _scope_value(value: list[Any] | None) -> list[str] | str | None:
    if value is None:
        return None
    return "all" if value == ["all"] else [str(v) for v in value]


def _record(rt: Runtime, schedule_id: str, key: str | None, *, status: str | None = None,
            error: str | None = None, scan_id: str | None = None) -> None:
    """Write a run's outcome on the row, if the row still describes that run."""
    values: dict[str, Any] = {"last_error": error}
    if status is not None:
        values["last_status"] = status
    clauses: list[Any] = [AuditScheduleRow.id == schedule_id]
    if key is not None:
        clauses.append(AuditScheduleRow.last_run_key == key)
    if scan_id is not None:
        clauses.append(AuditScheduleRow.last_scan_id == scan_id)
    with rt.db.session() as s:
        s.execute(update(AuditScheduleRow).where(*clauses).values(**values))


Sender = Callable[[Runtime, "RunContext"], list[str]]


@dataclass(frozen=True)
class RunContext:
    """A finished run, as the notifier needs it."""

    schedule_id: str
    schedule_name: str
    scan_id: str
    scan_status: str
    scan_error: str | None
    recipients: list[str]
    notification_format: str
    timezone: str


def notify_when_finished(rt: Runtime, schedule_id: str, scan_id: str, *, sender: Sender | None = None,
                         now: datetime | None = None) -> NotifyOutcome:
    """Once the run's scan is over, send its notifications at most once (the run is claimed before
    sending) and record the outcome."""
    now = _aware(now or utcnow())
    try:
        result = scans.get_scan(rt, scan_id, violations_limit=0)  # reconciles a stuck scan as readers do
    except NotFound:
        _record(rt, schedule_id, None, scan_id=scan_id, status="failed", error=f"scan {scan_id} vanished")
        return NotifyOutcome("scan_missing")
    if result.status not in TERMINAL_STATUSES:
        with rt.db.session() as s:
            created = s.scalar(select(ScanRow.created_at).where(ScanRow.id == scan_id))
        age = now - _aware(created) if created else timedelta(0)
        if age > timedelta(minutes=rt.settings.schedule_notify_wait_minutes):
            _record(rt, schedule_id, None, scan_id=scan_id, status="failed",
                    error=f"scan {scan_id} did not finish within {rt.settings.schedule_notify_wait_minutes} minutes "
                          "(FINOPS_SCHEDULE_NOTIFY_WAIT_MINUTES); no notification was sent")
            return NotifyOutcome("gave_up")
        _record_status(rt, schedule_id, scan_id, result.status)
        # Poll often while a small scan would finish, then back off.
        return NotifyOutcome("waiting", wait_seconds=5.0 if age < timedelta(minutes=2) else 30.0)
    with rt.db.session() as s:
        claimed = cast(CursorResult[Any], s.execute(update(AuditScheduleRow).where(
            AuditScheduleRow.id == schedule_id,
            or_(AuditScheduleRow.notified_scan_id.is_(None), AuditScheduleRow.notified_scan_id != scan_id))
            .values(notified_scan_id=scan_id))).rowcount
        row = s.get(AuditScheduleRow, schedule_id)
        if not claimed or row is None:
            return NotifyOutcome("already_notified" if row is not None else "schedule_deleted")
        scan = s.get(ScanRow, scan_id)
        ctx = RunContext(schedule_id=schedule_id, schedule_name=row.name, scan_id=scan_id, scan_status=result.status,
                         scan_error=scan.error if scan is not None else None, recipients=list(row.recipients or []),
                         notification_format=row.notification_format, timezone=row.timezone)
    failures: list[str] = []
    if ctx.recipients:
        if sender is None:
            from services.notify import deliver  # notify imports this module's types

            sender = deliver
        try:
            failures = sender(rt, ctx)
        except Exception as exc:  # a notifier bug must be recorded, never crash the worker loop
            log.exception("notifications of schedule %s failed", schedule_id)
            failures = [f"notifications failed: {type(exc).__name__}: {exc}"]
    error = "; ".join(failures) if failures else (ctx.scan_error if result.status == "failed" else None)
    _record(rt, schedule_id, None, scan_id=scan_id, status=result.status, error=error)
    return NotifyOutcome("notified" if not failures else "notify_failed")


def _record_status(rt: Runtime, schedule_id: str, scan_id: str, status: str) -> None:
    with rt.db.session() as s:
        s.execute(update(AuditScheduleRow).where(AuditScheduleRow.id == schedule_id,
                                                 AuditScheduleRow.last_scan_id == scan_id)
                  .values(last_status=status))


def _is_slot(key: str) -> bool:
    try:
        datetime.strptime(key, _SLOT_FORMAT)
    except ValueError:
        return False
    return True


def _aware(dt: datetime) -> datetime:
    # SQLite returns naive datetimes (stored as UTC).
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
