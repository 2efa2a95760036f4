"""The objects a request or a task needs, built once per process and passed in (no globals at import).

``TaskDispatcher`` is how services enqueue work without importing the workers package: the workers
provide a Celery implementation and the front doors wire it in, keeping imports one-directional.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

from scanner.providers.aws.session import AwsSessionFactory
from scanner.ratelimit import NullLimiter, RateLimiter
from services.config import Settings
from services.db.engine import Database
from services.policy_store import CompiledPolicyCache


class TaskDispatcher(Protocol):
    """Enqueues the scan pipeline's tasks by id."""

    def plan_scan(self, scan_id: str, *, interactive: bool) -> None: ...

    def run_shard(self, shard_id: str, *, interactive: bool, countdown: float = 0.0) -> None: ...

    def finalize_scan(self, scan_id: str) -> None: ...

    def apply_tagging(self, request_id: str, account_id: str, region: str) -> None: ...


@dataclass
class Runtime:
    settings: Settings
    db: Database
    dispatcher: TaskDispatcher
    policies: CompiledPolicyCache = field(default_factory=CompiledPolicyCache)
    limiter: RateLimiter = field(default_factory=NullLimiter)
    _aws: AwsSessionFactory | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def aws(self) -> AwsSessionFactory:
        """The AWS session factory, created on first use (it caches sessions and clients)."""
        with self._lock:
            if self._aws is None:
                s = self.settings
                self._aws = AwsSessionFactory(endpoint_url=s.aws_endpoint_url, default_region=s.aws_default_region,
                                              role_name=s.aws_role_name, external_id=s.aws_external_id)
            return self._aws
