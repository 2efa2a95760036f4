"""The Celery implementation of services.runtime.TaskDispatcher."""

from __future__ import annotations

from celery import Celery

from workers.app import AWS_QUEUE, DEFAULT_QUEUE

# Redis priorities are emulated by Celery (0 = highest with the 'priority' queue order strategy);
# interactive scans go ahead of scheduled ones that share the queue.
INTERACTIVE_PRIORITY = 0
SCHEDULED_PRIORITY = 6


class CeleryDispatcher:
    def __init__(self, app: Celery) -> None:
        self.app = app

    def plan_scan(self, scan_id: str, *, interactive: bool) -> None:
        self.app.send_task("scan.plan", args=[scan_id], queue=DEFAULT_QUEUE,
                           priority=INTERACTIVE_PRIORITY if interactive else SCHEDULED_PRIORITY)

    def run_shard(self, shard_id: str, *, interactive: bool, countdown: float = 0.0) -> None:
        self.app.send_task("scan.shard", args=[shard_id], queue=AWS_QUEUE, countdown=countdown or None,
                           priority=INTERACTIVE_PRIORITY if interactive else SCHEDULED_PRIORITY)

    def finalize_scan(self, scan_id: str) -> None:
        self.app.send_task("scan.finalize", args=[scan_id], queue=DEFAULT_QUEUE)

    def apply_tagging(self, request_id: str, account_id: str, region: str) -> None:
        self.app.send_task("tagging.apply", args=[request_id, account_id, region], queue=AWS_QUEUE,
                           priority=INTERACTIVE_PRIORITY)
