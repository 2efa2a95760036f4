"""Thin named tasks: each takes an id, calls one service function, and maps outcomes to Celery retries.

All of them are idempotent (see services.scans), which is what makes acks_late redelivery safe.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from scanner.retry import register_interrupt
from services import audit_schedules, policy_sources, scans, tagging
from services.config import get_settings
from services.errors import AppError, NotFound, Unavailable
from services.schemas import ScanRequest
from workers.app import app
from workers.runtime import worker_runtime

log = logging.getLogger(__name__)
_settings = get_settings()
# The soft time limit must end a shard: botocore wraps it when it lands inside an HTTP call, and the
# collectors would otherwise retry it as a network error or record it as one type's failure.
register_interrupt(SoftTimeLimitExceeded)


class ShardTask(Task):  # type: ignore[misc]
    """Marks the shard failed when the task dies for good, so the scan can still finish as partial."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        shard_id = args[0] if args else kwargs.get("shard_id")
        if not shard_id:
            return
        rt = worker_runtime()
        if isinstance(exc, TimeLimitExceeded):  # called in the main process after the pool process was killed
            error = f"the shard ran past its hard time limit ({rt.settings.shard_hard_time_limit} s) and was stopped"
        else:
            error = f"the shard task failed: {type(exc).__name__}: {exc}"
        scans.mark_shard_failed(rt, shard_id, error)


@app.task(name="scan.plan", bind=True, max_retries=5, acks_late=True)
def plan_scan(self: Task, scan_id: str) -> None:
    try:
        scans.plan_scan(worker_runtime(), scan_id)
    except NotFound:
        log.warning("scan %s vanished before planning; dropping the task", scan_id)
    except Unavailable as exc:  # database briefly unreachable: try again with backoff
        raise self.retry(exc=exc, countdown=min(60, 2 ** self.request.retries)) from exc


# Time limits apply in the prefork pool (production); the embedded thread pool cannot interrupt a thread,
# so there a hung shard is caught by scans.reconcile instead.
@app.task(name="scan.shard", bind=True, base=ShardTask, max_retries=10, acks_late=True,
          soft_time_limit=_settings.shard_soft_time_limit, time_limit=_settings.shard_hard_time_limit)
def run_shard(self: Task, shard_id: str) -> None:
    rt = worker_runtime()
    try:
        outcome = scans.run_shard(rt, shard_id)
    except NotFound:
        log.warning("shard %s vanished; dropping the task", shard_id)
        return
    except SoftTimeLimitExceeded:
        scans.mark_shard_failed(rt, shard_id, f"the shard exceeded its time limit "
                                              f"({rt.settings.shard_soft_time_limit} s)")
        return
    except Unavailable as exc:
        # The database restarting or failing over: wait it out (1, 2, 4 ... 60 s; max_retries=10 bounds it at
        # about 5 min). Not bounded by shard_max_retries, which counts throttled re-runs: three quick retries
        # gave up after 7 s, and the failure could not be recorded either, leaving the scan running forever.
        raise self.retry(exc=exc, countdown=min(60, 2 ** self.request.retries)) from exc
    if outcome.retry:
        # Throttled past the per-call retries: run the whole shard again later (its rows are replaced).
        # Sent as a new message rather than self.retry(), which the in-memory broker of the embedded
        # mode drops; the shard's own attempts counter bounds the retries.
        rt.dispatcher.run_shard(shard_id, interactive=outcome.interactive, countdown=outcome.countdown)


@app.task(name="scan.finalize", bind=True, max_retries=5, acks_late=True)
def finalize_scan(self: Task, scan_id: str) -> None:
    try:
        scans.finalize_scan(worker_runtime(), scan_id)
    except NotFound:
        log.warning("scan %s vanished before finalizing", scan_id)
    except Unavailable as exc:
        raise self.retry(exc=exc, countdown=min(60, 2 ** self.request.retries)) from exc


@app.task(name="scan.scheduled_snapshot", acks_late=True)
def scheduled_snapshot() -> str:
    """Beat's daily snapshot: a scan of the configured defaults, queued behind interactive work."""
    return scans.submit(worker_runtime(), ScanRequest(trigger="scheduled"), requested_by="beat")



@app.task(name="policy.sync_organization", acks_late=True)
def sync_organization_policies() -> str | None:
    """Beat's re-sync of AWS Organizations tag policies (skipped while the last one is fresh)."""
    attempt = policy_sources.sync_if_due(worker_runtime(), trigger="beat")
    return attempt.status if attempt else None


# Scheduled audits (services.audit_schedules). Beat's DatabaseScheduler sends audit.run_scheduled; the
# notification is a follow-up task that checks the scan and re-sends itself with a countdown until the scan
# is over (a new message, as for shards, since the embedded in-memory broker drops self.retry countdowns).
# Chosen over a hook in scans.finalize_scan: the scan pipeline stays unaware of schedules, and a lost
# finalize (readers reconcile lazily) still ends in a notification because get_scan reconciles.
@app.task(name="audit.run_scheduled", bind=True, max_retries=5, acks_late=True)
def run_scheduled_audit(self: Task, schedule_id: str, slot: str | None = None) -> str | None:
    """Start one firing of a schedule (idempotent per slot), then hand over to audit.notify_run."""
    rt = worker_runtime()
    try:
        start = audit_schedules.start_run(rt, schedule_id, slot=slot)
    except Unavailable as exc:  # database or broker briefly unreachable: the same slot is retried
        raise self.retry(exc=exc, countdown=min(60, 2 ** self.request.retries)) from exc
    except AppError as exc:  # e.g. a scope no longer valid: recorded on the schedule (last_error) by start_run
        log.warning("schedule %s slot %s could not start: %s", schedule_id, slot, exc)
        return None
    log.info("schedule %s slot %s: %s", schedule_id, slot, start.reason)
    if start.scan_id:
        app.send_task("audit.notify_run", args=[schedule_id, start.scan_id], countdown=5)
    return start.scan_id


@app.task(name="audit.notify_run", acks_late=True)
def notify_scheduled_audit(schedule_id: str, scan_id: str) -> str:
    """Notify the schedule's recipients once the run's scan is over (at most once per run: the run is
    claimed before sending, so a worker lost mid-send leaves the rest unsent rather than sent twice)."""
    try:
        outcome = audit_schedules.notify_when_finished(worker_runtime(), schedule_id, scan_id)
    except Unavailable:  # the database blinked: ask again shortly instead of ending the chain
        app.send_task("audit.notify_run", args=[schedule_id, scan_id], countdown=30)
        return "retrying"
    if outcome.wait_seconds is not None:
        app.send_task("audit.notify_run", args=[schedule_id, scan_id], countdown=outcome.wait_seconds)
    return outcome.status


class TaggingTask(Task):  # type: ignore[misc]
    """Marks the group's pending resources failed when the task dies for good (never left "applying")."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if len(args) == 3:
            request_id, account_id, region = (str(a) for a in args)
            tagging.fail_group(worker_runtime(), request_id, account_id, region,
                               f"the apply task failed: {type(exc).__name__}")


@app.task(name="tagging.apply", bind=True, base=TaggingTask, max_retries=5, acks_late=True)
def apply_tagging(self: Task, request_id: str, account_id: str, region: str) -> None:
    """Apply and verify one account and region of an approved tagging request (idempotent: settled
    resources are skipped on redelivery)."""
    try:
        tagging.apply_group(worker_runtime(), request_id, account_id, region)
    except NotFound:
        log.warning("tagging request %s vanished before applying", request_id)
    except Unavailable as exc:
        raise self.retry(exc=exc, countdown=min(60, 2 ** self.request.retries)) from exc
