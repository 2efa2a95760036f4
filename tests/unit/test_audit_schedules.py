"""Scheduled audits: validation with errors that name the field and the fix, next runs on the schedule's
own clock across DST changes, beat's entries following the table, run idempotency, the Slack payload."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from services import audit_schedules as sched
from services.config import Settings
from services.db.engine import Database
from services.db.migrate import upgrade
from services.db.models import AuditScheduleRow, ScanRow
from services.errors import InvalidInput, NotFound
from services.runtime import Runtime

PARIS = "Europe/Paris"
NEW_YORK = "America/New_York"


class RecordingDispatcher:
    def __init__(self) -> None:
        self.planned: list[str] = []

    def plan_scan(self, scan_id: str, *, interactive: bool) -> None:
        self.planned.append(scan_id)

    def run_shard(self, shard_id: str, *, interactive: bool, countdown: float = 0.0) -> None:  # pragma: no cover
        pass

    def finalize_scan(self, scan_id: str) -> None:  # pragma: no cover
        pass


@pytest.fixture()
def rt(tmp_path: Path) -> Iterator[Runtime]:
    # Every-minute crons keep these tests fast; production refuses them (schedule_min_interval_minutes).
    settings = Settings(home=tmp_path, policy_source="file", smtp_host="127.0.0.1", schedule_min_interval_minutes=1)
    upgrade(settings.effective_database_url)
    runtime = Runtime(settings=settings, db=Database(settings.effective_database_url), dispatcher=RecordingDispatcher())
    yield runtime
    runtime.db.dispose()


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# ------------------------------------------------------------------------------------------ validation

@pytest.mark.parametrize(("expr", "needle"), [
    ("* * * *", "4 field(s)"),
    ("0 0 9 * * *", "6 field(s)"),
    ("61 * * * *", "not a valid cron"),
    ("0 25 * * *", "not a valid cron"),
    ("0 9 * * FUNDAY", "not a valid cron"),
    ("", "empty"),
])
def test_invalid_cron_names_the_field_and_the_fix(rt: Runtime, expr: str, needle: str) -> None:
    with pytest.raises(InvalidInput) as err:
        sched.create_schedule(rt, cron=expr)
    assert err.value.field == "cron" and needle in err.value.message and err.value.fix


def test_cron_that_never_fires_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"never fires|not a valid"):
        sched.parse_cron("0 9 31 2 *")


@pytest.mark.parametrize("value", ["9am", "24:00", "12:60", "1230", ""])
def test_invalid_time(rt: Runtime, value: str) -> None:
    with pytest.raises(InvalidInput) as err:
        sched.create_schedule(rt, schedule="daily", time=value)
    assert err.value.field == "time" and "HH:MM" in (err.value.fix or "")


def test_invalid_timezone_suggests_close_names(rt: Runtime) -> None:
    with pytest.raises(InvalidInput) as err:
        sched.create_schedule(rt, timezone="Europe/Pariss")
    assert err.value.field == "timezone" and "Europe/Paris" in (err.value.fix or "")
    for bad in ("Mars/Olympus", "../../etc/passwd", "local"):
        with pytest.raises(InvalidInput):
            sched.check_timezone(bad)


def test_invalid_schedule_and_mixed_forms(rt: Runtime) -> None:
    with pytest.raises(InvalidInput) as err:
        sched.create_schedule(rt, schedule="hourly")
    assert err.value.field == "schedule"
    with pytest.raises(InvalidInput) as err:
        sched.create_schedule(rt, cron="0 9 * * *", schedule="daily")
    assert err.value.field == "cron"


@pytest.mark.parametrize(("recipients", "needle"), [
    (["#finops"], "incoming webhook"),
    (["not-an-address"], "neither an email"),
    (["a@b"], "not an email address"),
    (["ftp://hooks.example.com/x"], "neither an email"),
    (["https://"], "not a usable webhook"),
    (["x@example.com\r\nBcc: y@example.com"], "line breaks"),
])
def test_invalid_recipients(rt: Runtime, recipients: list[str], needle: str) -> None:
    with pytest.raises(InvalidInput) as err:
        sched.create_schedule(rt, recipients=recipients)
    assert err.value.field == "recipients" and needle in err.value.message + (err.value.fix or "")


def test_email_needs_smtp(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    with pytest.raises(InvalidInput) as err:
        sched.check_recipients(settings, ["finops@example.com"])
    assert err.value.field == "recipients" and "FINOPS_SMTP_HOST" in (err.value.fix or "")
    assert sched.check_recipients(settings, ["https://hooks.example.com/services/T/B/secret"])


@pytest.mark.parametrize("url", [
    "http://hooks.example.com/x",  # plain http: the URL is a secret
    "https://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "https://127.0.0.1:6379/", "https://[::1]:5432/", "https://10.0.0.5/hook", "https://localhost/hook",
    "https://metadata.google.internal/computeMetadata/v1/",
])
def test_webhooks_to_internal_or_plain_http_targets_are_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(InvalidInput) as err:
        sched.check_recipients(Settings(home=tmp_path), [url])
    assert err.value.field == "recipients" and "https" in (err.value.fix or "")
    allowed = Settings(home=tmp_path, webhook_allow_private_hosts=True, webhook_allow_http=True)
    assert sched.check_recipients(allowed, [url])


def test_delivery_checks_the_resolved_address_and_never_reads_the_answer(tmp_path: Path) -> None:
    from services.notify import DeliveryError, post_webhook

    # The machine's own name is no special word, but it resolves to a loopback or private address.
    with pytest.raises(DeliveryError, match="non-public address"):
        post_webhook(f"https://{socket.gethostname()}:8443/hook", {}, settings=Settings(home=tmp_path), attempts=1)


def test_mask_never_shows_credentials() -> None:
    assert sched.mask("https://user:pa55@hooks.slack.com/services/T/B/XYZW") == "https://hooks.slack.com/…XYZW"
    assert "pa55" not in sched.mask("https://user:pa55@hooks.slack.com:8443/")


def test_webhook_host_allow_list(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, webhook_allowed_hosts="hooks.slack.com,*.example.com")
    assert sched.check_recipients(settings, ["https://hooks.slack.com/services/x", "https://a.example.com/h"])
    with pytest.raises(InvalidInput, match="not in FINOPS_WEBHOOK_ALLOWED_HOSTS"):
        sched.check_recipients(settings, ["https://169.254.169.254/latest/meta-data"])


def test_scope_is_validated_like_a_scan(rt: Runtime) -> None:
    with pytest.raises(InvalidInput) as err:
        sched.create_schedule(rt, resource_types=["ec2:instnace"])
    assert err.value.field == "resource_types"
    with pytest.raises(InvalidInput) as err:
        sched.create_schedule(rt, regions=["us-east-9"])
    assert err.value.field == "regions"


def test_peer_compatible_form_and_channels(rt: Runtime) -> None:
    # The existing open-source server's call: schedule + time + timezone, notification_format email|slack|both.
    created = sched.create_schedule(rt, schedule="weekly", time="7:30", timezone=NEW_YORK,
                                    resource_types=["ec2:instance"], recipients=["finops@example.com"],
                                    notification_format="email")
    assert created.cron_expression == "30 7 * * 1" and created.schedule == "weekly" and created.time == "07:30"
    assert created.notification_format == "html" and created.timezone == NEW_YORK
    assert created.next_run is not None and created.next_run_local is not None
    assert created.next_run_local.startswith(created.next_run.astimezone(ZoneInfo(NEW_YORK)).isoformat()[:16])
    assert created.name == "weekly audit at 07:30 America/New_York"
    with pytest.raises(InvalidInput) as err:
        sched.create_schedule(rt, notification_format="slack", recipients=["finops@example.com"])
    assert err.value.field == "notification_format"
    with pytest.raises(InvalidInput) as err:
        sched.create_schedule(rt, notification_format="pdf")
    assert err.value.field == "notification_format" and "markdown" in (err.value.fix or "")
    assert sched.cron_for("daily", "09:00") == "0 9 * * *"
    assert sched.cron_for("monthly", "23:59") == "59 23 1 * *"


def test_crud_and_masked_webhooks(rt: Runtime) -> None:
    hook = "https://hooks.slack.com/services/T000/B000/verysecrettoken"
    a = sched.create_schedule(rt, cron="*/15 * * * *", name="quarter-hourly", recipients=[hook], created_by="me")
    b = sched.create_schedule(rt, enabled=False)
    assert a.recipients == ["https://hooks.slack.com/…oken"]
    assert "verysecret" not in a.model_dump_json()
    assert [s.schedule_id for s in sched.list_schedules(rt)] == [a.schedule_id, b.schedule_id]
    assert [s.schedule_id for s in sched.list_schedules(rt, enabled=True)] == [a.schedule_id]
    assert b.next_run is None and b.cron_expression == "0 9 * * *"

    changed = sched.update_schedule(rt, a.schedule_id, timezone=PARIS, enabled=False, notification_format="csv")
    assert (changed.timezone, changed.enabled, changed.notification_format) == (PARIS, False, "csv")
    assert changed.name == "quarter-hourly" and changed.cron_expression == "*/15 * * * *"
    with pytest.raises(InvalidInput) as err:
        sched.update_schedule(rt, a.schedule_id, time="10:00")  # a custom cron has no time to move
    assert err.value.field == "time"
    moved = sched.update_schedule(rt, b.schedule_id, time="18:45")
    assert moved.cron_expression == "45 18 * * *" and moved.name == "daily audit at 18:45 UTC"
    with rt.db.session() as s:  # the stored URL is whole: the notifier needs it
        assert s.get(AuditScheduleRow, a.schedule_id).recipients == [hook]

    gone = sched.delete_schedule(rt, a.schedule_id)
    assert gone.schedule_id == a.schedule_id
    with pytest.raises(NotFound) as nf:
        sched.get_schedule(rt, a.schedule_id)
    assert nf.value.field == "schedule_id"
    with pytest.raises(InvalidInput):
        sched.delete_schedule(rt, "not-a-uuid")


# ----------------------------------------------------------------------------------- clocks and DST

def test_next_run_at_0900_paris_across_the_spring_and_autumn_changes() -> None:
    cron = "0 9 * * *"
    # Winter (UTC+1): 09:00 Paris = 08:00 UTC. Summer (UTC+2, from 2026-03-29): 07:00 UTC.
    assert sched.next_fire(cron, PARIS, _utc(2026, 3, 27, 12)) == _utc(2026, 3, 28, 8)
    assert sched.next_fire(cron, PARIS, _utc(2026, 3, 28, 12)) == _utc(2026, 3, 29, 7)
    # Back to winter on 2026-10-25.
    assert sched.next_fire(cron, PARIS, _utc(2026, 10, 24, 12)) == _utc(2026, 10, 25, 8)
    # Every local 09:00 over a year is 09:00 in Paris, never 08:00 or 10:00.
    at = _utc(2026, 1, 1)
    for _ in range(365):
        at = sched.next_fire(cron, PARIS, at)
        local = at.astimezone(ZoneInfo(PARIS))
        assert (local.hour, local.minute) == (9, 0), at


def test_times_in_the_dst_gap_and_overlap_fire_once() -> None:
    # 02:30 does not exist in Paris on 2026-03-29 (02:00 -> 03:00): it runs at 03:00 local (01:00 UTC).
    assert sched.next_fire("30 2 * * *", PARIS, _utc(2026, 3, 28, 12)) == _utc(2026, 3, 29, 1)
    # 02:30 happens twice on 2026-10-25: it runs once, the first time (00:30 UTC), then the next day.
    first = sched.next_fire("30 2 * * *", PARIS, _utc(2026, 10, 24, 12))
    assert first == _utc(2026, 10, 25, 0, 30)
    assert sched.next_fire("30 2 * * *", PARIS, first) == _utc(2026, 10, 26, 1, 30)
    # New York moves on another date (2026-03-08): 09:00 there is 14:00 UTC, then 13:00 UTC.
    assert sched.next_fire("0 9 * * *", NEW_YORK, _utc(2026, 3, 7, 15)) == _utc(2026, 3, 8, 13)


def test_previous_fire_is_the_slot_served() -> None:
    assert sched.previous_fire("0 9 * * *", PARIS, _utc(2026, 7, 1, 7, 0, 3)) == _utc(2026, 7, 1, 7)
    assert sched.previous_fire("0 9 * * *", PARIS, _utc(2026, 7, 1, 7)) == _utc(2026, 7, 1, 7)
    assert sched.previous_fire("* * * * *", "UTC", _utc(2026, 7, 1, 7, 5, 59)) == _utc(2026, 7, 1, 7, 5)
    assert sched.slot_key(_utc(2026, 7, 1, 7, 5)) == "2026-07-01T07:05:00Z"


def test_zoned_cron_is_due_on_the_local_clock() -> None:
    from workers.schedule_db import ZonedCron

    clock = {"now": _utc(2026, 3, 29, 6, 59, 30)}
    cron = ZonedCron("0 9 * * *", PARIS, nowfun=lambda: clock["now"])
    last = _utc(2026, 3, 28, 8, 0, 1)  # yesterday's run, still winter time
    due, wait = cron.is_due(last)
    assert not due and wait == pytest.approx(30)
    clock["now"] = _utc(2026, 3, 29, 7, 0, 2)  # 09:00:02 summer time
    due, wait = cron.is_due(last)
    assert due and wait == pytest.approx(timedelta(days=1).total_seconds() - 2)
    assert cron.slot() == "2026-03-29T07:00:00Z"
    assert cron == ZonedCron("0 9 * * *", PARIS) and cron != ZonedCron("0 9 * * *", "UTC")


# ------------------------------------------------------------------------------------ beat's entries

def test_database_scheduler_follows_the_table(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.config import get_settings
    from workers.app import create_app
    from workers.schedule_db import ENTRY_PREFIX, DatabaseScheduler

    monkeypatch.setenv("DATABASE_URL", rt.settings.effective_database_url)
    monkeypatch.setenv("FINOPS_SCHEDULE_REFRESH_SECONDS", "7")
    get_settings.cache_clear()
    try:
        app = create_app(get_settings())
        a = sched.create_schedule(rt, cron="* * * * *")
        b = sched.create_schedule(rt, schedule="daily", time="09:00", timezone=PARIS)
        scheduler = DatabaseScheduler(app)
        names = set(scheduler.schedule)
        assert "daily-compliance-snapshot" in names  # the static beat_schedule is kept
        assert {ENTRY_PREFIX + a.schedule_id, ENTRY_PREFIX + b.schedule_id} <= names
        assert scheduler.max_interval == 7
        entry = scheduler.schedule[ENTRY_PREFIX + b.schedule_id]
        assert entry.task == "audit.run_scheduled" and entry.args == (b.schedule_id,)
        assert entry.schedule.zone == PARIS and entry.schedule.cron == "0 9 * * *"

        kept = scheduler.schedule[ENTRY_PREFIX + a.schedule_id]
        sched.update_schedule(rt, b.schedule_id, time="10:15")
        sched.delete_schedule(rt, a.schedule_id)
        scheduler.refresh(force=True)
        assert ENTRY_PREFIX + a.schedule_id not in scheduler.schedule
        assert scheduler.schedule[ENTRY_PREFIX + b.schedule_id].schedule.cron == "15 10 * * *"
        sched.update_schedule(rt, b.schedule_id, enabled=False)
        c = sched.create_schedule(rt, cron="*/5 * * * *")
        scheduler.refresh(force=True)
        assert {n for n in scheduler.schedule if n.startswith(ENTRY_PREFIX)} == {ENTRY_PREFIX + c.schedule_id}
        assert kept is not scheduler.schedule[ENTRY_PREFIX + c.schedule_id]

        # An unreadable database keeps what beat has instead of crashing it.
        scheduler._db = Database("postgresql+psycopg://nobody@127.0.0.1:1/none")
        scheduler.refresh(force=True)
        assert ENTRY_PREFIX + c.schedule_id in scheduler.schedule
    finally:
        get_settings.cache_clear()


# ------------------------------------------------------------------------------------ run idempotency

def test_a_slot_runs_once_and_an_older_slot_is_skipped(rt: Runtime) -> None:
    created = sched.create_schedule(rt, cron="* * * * *", resource_types=["ec2:instance"], regions=["us-east-1"])
    sid = created.schedule_id
    first = sched.start_run(rt, sid, slot="2026-07-01T07:05:00Z", now=_utc(2026, 7, 1, 7, 5, 1))
    assert first.started and first.scan_id
    again = sched.start_run(rt, sid, slot="2026-07-01T07:05:00Z", now=_utc(2026, 7, 1, 7, 5, 40))
    assert not again.started and again.scan_id == first.scan_id  # redelivery: same scan
    with rt.db.session() as s:
        scan = s.get(ScanRow, first.scan_id)
        assert scan.trigger == "scheduled" and scan.requested_by == f"schedule:{sid}" and scan.in_history
        assert scan.request["resource_types"] == ["ec2:instance"]
        s.execute(ScanRow.__table__.update().where(ScanRow.id == first.scan_id).values(status="succeeded"))
    stale = sched.start_run(rt, sid, slot="2026-07-01T07:04:00Z", now=_utc(2026, 7, 1, 7, 6, 1))
    assert not stale.started and stale.scan_id is None
    nxt = sched.start_run(rt, sid, slot="2026-07-01T07:06:00Z", now=_utc(2026, 7, 1, 7, 6, 1))
    assert nxt.started and nxt.scan_id != first.scan_id
    # The previous run's scan is still queued: the next slot is skipped rather than piling scans up.
    busy = sched.start_run(rt, sid, slot="2026-07-01T07:07:00Z", now=_utc(2026, 7, 1, 7, 7, 1))
    assert not busy.started and "still running" in busy.reason
    with rt.db.session() as s:
        assert len(list(s.scalars(select(ScanRow.id)))) == 2
    sched.update_schedule(rt, sid, enabled=False)
    assert not sched.start_run(rt, sid, slot="2026-07-01T07:08:00Z").started


def test_notifications_are_sent_once_per_run(rt: Runtime) -> None:
    created = sched.create_schedule(rt, cron="* * * * *", recipients=["https://hooks.example.com/x"])
    run = sched.start_run(rt, created.schedule_id, slot="2026-07-01T07:05:00Z")
    assert run.scan_id
    sent: list[Any] = []

    def sender(_rt: Runtime, ctx: sched.RunContext) -> list[str]:
        sent.append(ctx)
        return []

    waiting = sched.notify_when_finished(rt, created.schedule_id, run.scan_id, sender=sender)
    assert waiting.status == "waiting" and waiting.wait_seconds and not sent
    with rt.db.session() as s:
        s.execute(ScanRow.__table__.update().where(ScanRow.id == run.scan_id).values(
            status="failed", error="boom", finished_at=datetime.now(UTC)))
    assert sched.notify_when_finished(rt, created.schedule_id, run.scan_id, sender=sender).status == "notified"
    assert sched.notify_when_finished(rt, created.schedule_id, run.scan_id, sender=sender).status == "already_notified"
    assert len(sent) == 1 and sent[0].scan_status == "failed" and sent[0].recipients == ["https://hooks.example.com/x"]
    shown = sched.get_schedule(rt, created.schedule_id)
    assert shown.last_status == "failed" and shown.last_error == "boom" and shown.last_scan_id == run.scan_id


# --------------------------------------------------------------------------------------- the payload

def test_slack_payload_without_a_report_escapes_cloud_text() -> None:
    from services.notify import slack_payload

    ctx = sched.RunContext(schedule_id="s", schedule_name="prod <audit>", scan_id="x", scan_status="failed",
                           scan_error="<script> & co", recipients=[], notification_format="html", timezone="UTC")
    payload = slack_payload(ctx, None, "https://finops.example.com/v1/reports/x?format=html", None)
    # The fallback text is mrkdwn as well: names and errors cannot become mentions or links there either.
    assert payload["text"] == "Compliance audit 'prod &lt;audit&gt;': no result (&lt;script&gt; &amp; co)."
    texts = [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section"]
    assert texts == ["*No result*: &lt;script&gt; &amp; co"]
    assert payload["blocks"][0]["type"] == "header"
    context = payload["blocks"][-1]["elements"][0]["text"]
    assert "<https://finops.example.com/v1/reports/x?format=html|report>" in context


def test_crons_that_run_too_often_are_refused(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, policy_source="file")
    upgrade(settings.effective_database_url)
    rt = Runtime(settings=settings, db=Database(settings.effective_database_url), dispatcher=RecordingDispatcher())
    try:
        for expr in ("* * * * *", "*/30 * * * *", "0,20 9 * * *"):
            with pytest.raises(InvalidInput) as err:
                sched.create_schedule(rt, cron=expr)
            assert err.value.field == "cron" and "minute" in err.value.message
        hourly = sched.create_schedule(rt, cron="0 * * * *")
        # Pausing never re-validates the rest (here: a cron the limit now refuses).
        rt.settings = settings.model_copy(update={"schedule_min_interval_minutes": 120})
        assert sched.update_schedule(rt, hourly.schedule_id, enabled=False).enabled is False
        with pytest.raises(InvalidInput):
            sched.update_schedule(rt, hourly.schedule_id, cron="30 * * * *")
    finally:
        rt.db.dispose()
