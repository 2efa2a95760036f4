"""A Celery beat scheduler backed by the ``audit_schedules`` table.

    celery -A workers.app beat -S workers.schedule_db:DatabaseScheduler

It runs the app's static ``beat_schedule`` (daily snapshot, policy re-sync) exactly as the default
scheduler does, plus one entry per enabled audit schedule. The table is re-read every
``FINOPS_SCHEDULE_REFRESH_SECONDS`` (30 s by default) and beat never sleeps longer than that, so a
schedule created, changed, disabled or deleted through the API takes effect within about one refresh
interval without restarting beat. A database that cannot be read keeps the entries beat already has
(logged; retried at the next refresh): beat never crashes on it.

Each entry is read on the clock of its own time zone (``ZonedCron``: cronsim, DST-aware), and sends
``audit.run_scheduled(schedule_id, slot=...)`` where ``slot`` is the cron time being served, as beat's
clock saw it: the task's idempotency key.

Nothing is persisted by this scheduler: after a restart an audit schedule counts from its last run (or
last change), so one missed firing runs once at start-up; static entries count from start-up as with
Celery's in-memory scheduler.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery
from celery.beat import BeatLazyFunc, ScheduleEntry, Scheduler
from celery.schedules import BaseSchedule, schedstate

from services import audit_schedules
from services.config import get_settings
from services.db.engine import Database

log = logging.getLogger(__name__)

ENTRY_PREFIX = "audit-schedule:"
RUN_TASK = "audit.run_scheduled"


class ZonedCron(BaseSchedule):  # type: ignore[misc]
    """A 5-field cron read on the wall clock of one IANA time zone (09:00 Europe/Paris is 09:00 in Paris
    in winter and in summer)."""

    def __init__(self, cron: str, zone: str, nowfun: Any = None, app: Celery | None = None) -> None:
        super().__init__(nowfun=nowfun, app=app)
        self.cron = cron
        self.zone = zone

    def now(self) -> datetime:
        return self.nowfun() if self.nowfun else datetime.now(UTC)

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        return audit_schedules.next_fire(self.cron, self.zone, last_run_at) - self.now()

    def is_due(self, last_run_at: datetime) -> schedstate:
        now = self.now()
        due_at = audit_schedules.next_fire(self.cron, self.zone, last_run_at)
        if due_at <= now:
            # Several missed firings (beat was down) run once, now; then count from now.
            following = audit_schedules.next_fire(self.cron, self.zone, now)
            return schedstate(True, max(0.0, (following - now).total_seconds()))
        return schedstate(False, max(0.0, (due_at - now).total_seconds()))

    def slot(self) -> str:
        """The cron time a firing now serves (the run's idempotency key)."""
        return audit_schedules.slot_key(audit_schedules.previous_fire(self.cron, self.zone, self.now()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ZonedCron):
            return (self.cron, self.zone) == (other.cron, other.zone)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.cron, self.zone))

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__class__, (self.cron, self.zone)

    def __repr__(self) -> str:
        return f"<ZonedCron {self.cron} {self.zone}>"


class DatabaseScheduler(Scheduler):  # type: ignore[misc]
    """beat_schedule plus the enabled rows of ``audit_schedules``, re-read every refresh interval."""

    def __init__(self, app: Celery, *args: Any, **kwargs: Any) -> None:
        settings = get_settings()
        self.refresh_seconds = float(settings.schedule_refresh_seconds)
        self._db_url = settings.effective_database_url
        self._db: Database | None = None
        self._last_refresh: float | None = None
        # schedule_id -> (cron, zone): an entry is rebuilt only when its timing changes.
        self._timings: dict[str, tuple[str, str]] = {}
        self._ready = False  # no table read while the base class installs the static entries
        super().__init__(app, *args, **kwargs)
        # Never sleep past a refresh: that bounds how late a change through the API takes effect.
        self.max_interval: float = min(float(getattr(self, "max_interval", 300)), self.refresh_seconds)

    def setup_schedule(self) -> None:
        super().setup_schedule()  # default entries + the app's static beat_schedule
        self._ready = True
        self.refresh(force=True)

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = Database(self._db_url)
        return self._db

    def get_schedule(self) -> dict[str, ScheduleEntry]:
        self.refresh()
        data: dict[str, ScheduleEntry] = self.data
        return data

    def set_schedule(self, schedule: dict[str, ScheduleEntry]) -> None:
        self.data = schedule

    # Scheduler.tick() reads self.schedule on every tick: this is where the refresh happens.
    schedule = property(get_schedule, set_schedule)

    def refresh(self, *, force: bool = False) -> None:
        """Re-read the table when the interval has passed; keep the current entries if it cannot be read."""
        if not self._ready:
            return
        now = time.monotonic()
        if not force and self._last_refresh is not None and now - self._last_refresh < self.refresh_seconds:
            return
        self._last_refresh = now
        try:
            timings = audit_schedules.enabled_timings(self.db)
        except Exception as exc:
            log.warning("beat: cannot read audit_schedules (%s: %s); keeping %d audit entries, retrying in %.0f s",
                        type(exc).__name__, exc, len(self._timings), self.refresh_seconds)
            return
        self.apply_timings(timings)

    def apply_timings(self, timings: list[audit_schedules.ScheduleTiming]) -> None:
        """Make the audit entries match ``timings``: add new, rebuild changed, drop gone or disabled."""
        data: dict[str, ScheduleEntry] = self.data
        wanted = {t.schedule_id: t for t in timings}
        for schedule_id in list(self._timings):
            if schedule_id not in wanted:
                data.pop(ENTRY_PREFIX + schedule_id, None)
                del self._timings[schedule_id]
                log.info("beat: audit schedule %s removed", schedule_id)
        for schedule_id, timing in wanted.items():
            name = ENTRY_PREFIX + schedule_id
            key = (timing.cron, timing.timezone)
            if self._timings.get(schedule_id) == key and name in data:
                continue  # unchanged: keep the entry and its last_run_at
            cron = ZonedCron(timing.cron, timing.timezone, app=self.app)
            # A new entry object (not an in-place update): Scheduler.tick() notices the change and
            # rebuilds its heap, so a changed cron is not waited out at its old time.
            data[name] = self.Entry(
                name=name, task=RUN_TASK, schedule=cron, app=self.app, last_run_at=timing.baseline,
                args=(schedule_id,), kwargs={"slot": BeatLazyFunc(cron.slot)})
            log.info("beat: audit schedule %s %s: %s in %s", schedule_id,
                     "changed" if schedule_id in self._timings else "added", timing.cron, timing.timezone)
            self._timings[schedule_id] = key

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._db is not None:
                self._db.dispose()

    @property
    def info(self) -> str:
        return f"    . audit schedules -> database, re-read every {self.refresh_seconds:g} s"
