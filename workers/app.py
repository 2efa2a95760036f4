"""The Celery app. ``celery -A workers.app worker|beat|flower`` uses the module-level ``app``.

Building the app reads settings but opens no connection: the broker is contacted only when a task is
sent or a worker starts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import Celery
from kombu.entity import Queue

from services.config import Settings, get_settings
from workers.schedule_db import ZonedCron

DEFAULT_QUEUE = "default"
AWS_QUEUE = "aws"
QUEUES = (DEFAULT_QUEUE, AWS_QUEUE)


def create_app(settings: Settings) -> Celery:
    app = Celery("finops", include=["workers.tasks"])
    app.conf.update(
        broker_url=settings.effective_broker_url,
        # Results live in PostgreSQL/SQLite (scan rows); Celery's own result store is not needed.
        result_backend=settings.celery_result_backend,
        task_ignore_result=True,
        # Only JSON crosses the broker: no pickle, tasks take ids.
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        timezone="UTC",
        enable_utc=True,
        # Ack after the task ran, so a worker killed mid-shard gets the shard redelivered.
        task_acks_late=True,
        # ...and a worker process lost (OOM, SIGKILL) also requeues instead of dropping the task.
        task_reject_on_worker_lost=True,
        # Shards are long and uneven: a worker takes one at a time so idle workers can take the rest.
        worker_prefetch_multiplier=1,
        # A broker not up yet at start-up (compose ordering) is retried instead of crashing the worker.
        broker_connection_retry_on_startup=True,
        # Shard tasks go to the provider's queue so each provider's worker pool scales on its own.
        task_default_queue=DEFAULT_QUEUE,
        task_queues=[Queue(DEFAULT_QUEUE), Queue(AWS_QUEUE)],
        task_routes={"scan.shard": {"queue": AWS_QUEUE}},
        # Lets Flower and `celery events` show task progress in production.
        worker_send_task_events=True,
        task_send_sent_event=True,
        broker_transport_options=_transport_options(settings),
        beat_schedule=_beat_schedule(settings),
    )
    return app


def snapshot_schedule(settings: Settings) -> ZonedCron:
    """Every day at FINOPS_SNAPSHOT_TIME in FINOPS_SNAPSHOT_TIMEZONE (02:00 UTC by default), on that zone's
    wall clock across daylight-saving changes (the same cron reader as the audit schedules)."""
    hour, minute = settings.snapshot_hour_minute
    return ZonedCron(f"{minute} {hour} * * *", settings.snapshot_timezone)


def _beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    # One beat: the daily snapshot (scans flagged "scheduled", the points of history's trends)...
    schedule: dict[str, dict[str, Any]] = {
        "daily-compliance-snapshot": {"task": "scan.scheduled_snapshot", "schedule": snapshot_schedule(settings)},
    }
    # ...and, when organization tag policies govern, a re-sync so policy changes in AWS reach the scans.
    if settings.organization_policies_wanted and settings.policy_sync_minutes > 0:
        schedule["organization-tag-policy-sync"] = {
            "task": "policy.sync_organization",
            "schedule": timedelta(minutes=settings.policy_sync_minutes),
        }
    return schedule


def _transport_options(settings: Settings) -> dict[str, float]:
    if settings.embedded_worker:
        # The in-memory transport polls an empty queue once a second by default, which caps the
        # embedded worker at a few shards per second; polling is a dict lookup, so poll often.
        return {"polling_interval": 0.005}
    # Redis redelivers an unacked message after the visibility timeout: it must exceed the hard time
    # limit, or a long shard would be handed to a second worker while the first still runs.
    return {"visibility_timeout": max(3600, settings.shard_hard_time_limit * 4)}


app = create_app(get_settings())
