"""Client-side rate limiting of cloud API calls, one token bucket per ``{account}:{region}:{api_family}``.

AWS throttles per account, per region and per API family (all EC2 Describe* calls share a budget),
so that is the key. Staying under the budget is cheaper than being throttled and backing off. This
module holds the in-process limiter for the embedded mode; a Redis-backed one shares the buckets
between workers in production and implements the same ``RateLimiter`` protocol.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@runtime_checkable
class RateLimiter(Protocol):
    """Blocks until one call under ``key`` may be made."""

    def acquire(self, key: str) -> None:
        """Take one token for ``key`` (``{account}:{region}:{api_family}``), waiting if needed."""
        ...


def limiter_key(account_id: str, region: str, api_family: str) -> str:
    """The bucket key for one API family in one account and region."""
    return f"{account_id}:{region}:{api_family}"


class NullLimiter:
    """A limiter that never waits (tests, one-off lookups)."""

    def acquire(self, key: str) -> None:
        """Return at once."""
        return None


@dataclass(slots=True)
class _Bucket:
    rate: float
    burst: float
    tokens: float
    updated: float


class LocalTokenBucketLimiter:
    """Thread-safe in-process token buckets, created lazily per key.

    Each bucket refills at ``rate_per_s`` up to ``burst`` tokens. ``overrides`` maps an API family
    (the last part of the key, e.g. ``ec2``) to its own ``(rate_per_s, burst)``, because AWS budgets
    differ a lot between services. A caller that finds the bucket empty reserves the next token
    (the balance goes negative) and sleeps outside the lock, so waiters are served in order and no
    thread spins.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        overrides: Mapping[str, tuple[float, int]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        for family, (rate, fam_burst) in (overrides or {}).items():
            if rate <= 0 or fam_burst < 1:
                raise ValueError(f"override for {family!r}: rate must be > 0 and burst >= 1")
        self._rate = float(rate_per_s)
        self._burst = float(burst)
        self._overrides = dict(overrides or {})
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}

    def _new_bucket(self, key: str, now: float) -> _Bucket:
        family = key.rsplit(":", 1)[-1]
        rate, burst = self._overrides.get(family, (self._rate, self._burst))
        return _Bucket(rate=float(rate), burst=float(burst), tokens=float(burst), updated=now)

    def acquire(self, key: str) -> None:
        """Take one token for ``key``, sleeping until it is available."""
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = self._new_bucket(key, now)
            bucket.tokens = min(bucket.burst, bucket.tokens + (now - bucket.updated) * bucket.rate)
            bucket.updated = now
            bucket.tokens -= 1.0
            wait = 0.0 if bucket.tokens >= 0 else -bucket.tokens / bucket.rate
        if wait > 0:
            self._sleep(wait)
