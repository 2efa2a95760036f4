"""Client-side rate limiting of cloud API calls, one token bucket per ``{account}:{region}:{api_family}``.

AWS throttles per account, per region and per API family (all EC2 Describe* calls share a budget),
so that is the key. Staying under the budget is cheaper than being throttled and backing off. This
module holds the in-process limiter for the embedded mode; ``scanner.shared_ratelimit`` shares the
buckets between worker processes through Redis and implements the same ``RateLimiter`` protocol.

When the cloud throttles anyway (another tool shares the account's budget, or the configured rate is
too high), ``note_throttle`` slows the key's bucket down for everyone using it: the rate is halved
(down to an eighth) for ``PENALTY_SECONDS``, and the tokens on hand are dropped so that callers wait
for new ones instead of spending a burst into a service that just said no.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# How long a throttle keeps a bucket slowed down, and how far repeated throttles slow it.
PENALTY_SECONDS = 30.0
MIN_RATE_FACTOR = 0.125


@runtime_checkable
class RateLimiter(Protocol):
    """Blocks until one call under ``key`` may be made; slows the key down when the cloud throttled."""

    def acquire(self, key: str) -> None:
        """Take one token for ``key`` (``{account}:{region}:{api_family}``), waiting if needed."""
        ...

    def note_throttle(self, key: str) -> None:
        """The cloud answered "slow down" for ``key``: lower its rate for a while."""
        ...


def family_of(key: str) -> str:
    """The API family (last part) of a bucket key."""
    return key.rsplit(":", 1)[-1]


def parse_rate_limits(text: str) -> dict[str, tuple[float, int]]:
    """``"ec2=20:40,tagging=5"`` -> ``{"ec2": (20.0, 40), "tagging": (5.0, 5)}`` (burst defaults to the rate).

    Raises ValueError naming the bad entry, so a settings error says exactly what to fix.
    """
    limits: dict[str, tuple[float, int]] = {}
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        family, sep, spec = entry.partition("=")
        rate_text, _, burst_text = spec.partition(":")
        try:
            if not sep or not family.strip():
                raise ValueError
            rate = float(rate_text)
            burst = int(burst_text) if burst_text else max(1, int(rate))
        except ValueError:
            raise ValueError(f"rate limit entry {entry!r} is not FAMILY=RATE[:BURST] (e.g. ec2=20:40)") from None
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate limit entry {entry!r}: the rate must be > 0 and the burst >= 1")
        limits[family.strip()] = (rate, burst)
    return limits


def limiter_key(account_id: str, region: str, api_family: str) -> str:
    """The bucket key for one API family in one account and region."""
    return f"{account_id}:{region}:{api_family}"


class NullLimiter:
    """A limiter that never waits (tests, one-off lookups)."""

    def acquire(self, key: str) -> None:
        """Return at once."""
        return None

    def note_throttle(self, key: str) -> None:
        """Nothing to slow down."""
        return None


@dataclass(slots=True)
class _Bucket:
    rate: float
    burst: float
    tokens: float
    updated: float
    factor: float = 1.0
    penalty_until: float = 0.0


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
        rate, burst = self.limits_for(key)
        return _Bucket(rate=float(rate), burst=float(burst), tokens=float(burst), updated=now)

    def limits_for(self, key: str) -> tuple[float, int]:
        """``(rate_per_s, burst)`` of the key's API family."""
        rate, burst = self._overrides.get(family_of(key), (self._rate, self._burst))
        return float(rate), int(burst)

    def _bucket(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = self._new_bucket(key, now)
        if bucket.factor < 1.0 and now >= bucket.penalty_until:
            bucket.factor = 1.0
        rate = bucket.rate * bucket.factor
        bucket.tokens = min(bucket.burst, bucket.tokens + max(0.0, now - bucket.updated) * rate)
        bucket.updated = now
        return bucket

    def acquire(self, key: str) -> None:
        """Take one token for ``key``, sleeping until it is available."""
        with self._lock:
            bucket = self._bucket(key, self._clock())
            bucket.tokens -= 1.0
            wait = 0.0 if bucket.tokens >= 0 else -bucket.tokens / (bucket.rate * bucket.factor)
        if wait > 0:
            self._sleep(wait)

    def note_throttle(self, key: str) -> None:
        """Halve the key's rate (down to MIN_RATE_FACTOR) for PENALTY_SECONDS and drop its spare tokens."""
        with self._lock:
            now = self._clock()
            bucket = self._bucket(key, now)
            bucket.factor = max(MIN_RATE_FACTOR, bucket.factor * 0.5)
            bucket.penalty_until = now + PENALTY_SECONDS
            bucket.tokens = min(bucket.tokens, 0.0)
