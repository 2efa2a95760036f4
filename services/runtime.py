"""The objects a request or a task needs, built once per process and passed in (no globals at import).

``TaskDispatcher`` is how services enqueue work without importing the workers package: the workers
provide a Celery implementation and the front doors wire it in, keeping imports one-directional.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

from scanner.providers.aws.session import AwsSessionFactory
from scanner.ratelimit import LocalTokenBucketLimiter, RateLimiter, parse_rate_limits
from scanner.shared_credentials import RedisCredentialCache
from scanner.shared_ratelimit import RedisTokenBucketLimiter
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
    # None: built from the settings on first use (shared Redis buckets when Redis is configured).
    _limiter: RateLimiter | None = None
    _aws: AwsSessionFactory | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def aws(self) -> AwsSessionFactory:
        """The AWS session factory, created on first use (it caches sessions and clients)."""
        with self._lock:
            if self._aws is None:
                s = self.settings
                shared = _shared_redis_url(s) if s.share_role_credentials else None
                self._aws = AwsSessionFactory(endpoint_url=s.aws_endpoint_url, default_region=s.aws_default_region,
                                              role_name=s.aws_role_name, external_id=s.aws_external_id,
                                              role_arn_template=s.aws_role_arn_template,
                                              credential_cache=RedisCredentialCache(shared) if shared else None)
            return self._aws

    @property
    def limiter(self) -> RateLimiter:
        """The cloud API rate limiter of this process, created on first use."""
        with self._lock:
            if self._limiter is None:
                self._limiter = build_limiter(self.settings)
            return self._limiter


def _shared_redis_url(settings: Settings) -> str | None:
    """The Redis that worker processes share state through: REDIS_URL, else a Redis broker."""
    broker = settings.celery_broker_url or ""
    return settings.redis_url or (broker if broker.startswith(("redis://", "rediss://")) else None)


def build_limiter(settings: Settings) -> RateLimiter:
    """Shared token buckets in Redis when a Redis broker or REDIS_URL is configured, else per process."""
    overrides = parse_rate_limits(settings.api_rate_limits)
    url = _shared_redis_url(settings)
    if url:
        return RedisTokenBucketLimiter(url, settings.api_rate_per_s, settings.api_burst, overrides=overrides)
    return LocalTokenBucketLimiter(settings.api_rate_per_s, settings.api_burst, overrides=overrides)
