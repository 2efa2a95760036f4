"""The Celery implementation of services.runtime.TaskDispatcher."""

from __future__ import annotations

from typing import Any

from celery import Celery

from workers.app import AWS_QUEUE, DEFAULT_QUEUE

# Redis priorities are emulated by Celery (0 = highest with the 'priority' queue order strategy);
# interactive scans go ahead of scheduled ones that share the queue.
INTERACTIVE_PRIORITY = 0
SCHEDULED_PRIORITY = 6


class CeleryDispatcher:
    """``broker_patience_s`` > 0 makes every send wait that long for an unreachable broker (reconnecting
    and retrying) before it raises. Workers use it: the shards a plan task sends are the scan's only way
    forward, and a Redis restart must not strand them (the scan would stay "running" with its shards
    queued and never sent). The gateway keeps the default (Celery's short retry) so that a request answers
    503 at once instead of hanging."""

    def __init__(self, app: Celery, *, broker_patience_s: float = 0.0) -> None:
        self.app = app
        self._publish: dict[str, Any] = {}
        if broker_patience_s > 0:
            # kombu waits 0, 1, 2, 2, 2... s between attempts: about broker_patience_s in all.
            self._publish = {"retry": True, "retry_policy": {
                "max_retries": max(1, int(broker_patience_s // 2) + 1), "interval_start": 0,
                "interval_step": 1, "interval_max": 2}}

    def _send(self, name: str, args: list[Any], **options: Any) -> None:
        self.app.send_task(name, args=args, **self._publish, **options)

    def plan_scan(self, scan_id: str, *, interactive: bool) -> None:
        self._send("scan.plan", [scan_id], queue=DEFAULT_QUEUE,
                   priority=INTERACTIVE_PRIORITY if interactive else SCHEDULED_PRIORITY)

    def run_shard(self, shard_id: str, *, interactive: bool, countdown: float = 0.0) -> None:
        self._send("scan.shard", [shard_id], queue=AWS_QUEUE, countdown=countdown or None,
                   priority=INTERACTIVE_PRIORITY if interactive else SCHEDULED_PRIORITY)

    def finalize_scan(self, scan_id: str) -> None:
        self._send("scan.finalize", [scan_id], queue=DEFAULT_QUEUE)

    def apply_tagging(self, request_id: str, account_id: str, region: str) -> None:
        self._send("tagging.apply", [request_id, account_id, region], queue=AWS_QUEUE,
                   priority=INTERACTIVE_PRIORITY)
