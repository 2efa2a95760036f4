"""Token buckets shared by every worker process through Redis, one per ``{account}:{region}:{api_family}``.

AWS's budget belongs to the account, not to a process: ten workers each keeping their own bucket would
spend ten times the rate and be throttled. Each bucket is a Redis hash updated by one Lua script, so the
refill, the take and the wait are atomic across processes and read Redis's clock (workers' clocks may
differ). Like the local limiter, a caller that finds the bucket empty reserves the next token and sleeps
outside Redis, so waiters are served in order without polling.

A throttle seen by any worker halves the key's rate for everyone (``note_throttle``), down to an eighth,
until PENALTY_SECONDS pass without another one.

Redis is the broker too, so it can restart under a running scan. The limiter must not fail a scan for
that: while Redis cannot be reached it limits in-process (the same rates, per process) and tries Redis
again after ``retry_redis_after`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis

from scanner.ratelimit import MIN_RATE_FACTOR, PENALTY_SECONDS, LocalTokenBucketLimiter

log = logging.getLogger(__name__)

# KEYS: bucket hash, penalty factor. ARGV: rate, burst, idle expiry (s).
# Returns the seconds to wait as a string (Lua numbers become integers in Redis replies).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local burst = tonumber(ARGV[2])
local rate = tonumber(ARGV[1]) * tonumber(redis.call('GET', KEYS[2]) or '1')
local b = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(b[1]) or burst
local updated = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate) - 1
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('EXPIRE', KEYS[1], ARGV[3])
if tokens >= 0 then return '0' end
return tostring(-tokens / rate)
"""

# KEYS: bucket hash, penalty factor. ARGV: minimum factor, penalty seconds.
_THROTTLED = """
local f = math.max(tonumber(ARGV[1]), tonumber(redis.call('GET', KEYS[2]) or '1') * 0.5)
redis.call('SET', KEYS[2], tostring(f), 'PX', math.floor(tonumber(ARGV[2]) * 1000))
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or '0')
if tokens > 0 then redis.call('HSET', KEYS[1], 'tokens', '0') end
return tostring(f)
"""

# A bucket idle this long is dropped (it would be full again anyway).
_IDLE_EXPIRY_S = 3600


class RedisTokenBucketLimiter:
    """Token buckets in Redis shared by every process, with a per-process fallback while Redis is away.

    ``rate_per_s`` and ``burst`` apply to every API family without an entry in ``overrides``
    (``{"ec2": (20.0, 40)}``). ``prefix`` namespaces the keys so two deployments can share one Redis.
    """

    def __init__(
        self,
        url: str,
        rate_per_s: float,
        burst: int,
        *,
        overrides: Mapping[str, tuple[float, int]] | None = None,
        prefix: str = "finops:ratelimit",
        retry_redis_after: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        client: Any | None = None,
    ) -> None:
        # The fallback validates the limits the same way, so both paths refuse the same settings.
        self._fallback = LocalTokenBucketLimiter(rate_per_s, burst, overrides=overrides, sleep=sleep)
        self._client = client or redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=2.0)
        self._acquire = self._client.register_script(_ACQUIRE)
        self._throttled = self._client.register_script(_THROTTLED)
        self._prefix = prefix
        self._retry_after = retry_redis_after
        self._sleep = sleep
        self._lock = threading.Lock()
        self._redis_down_until = 0.0

    def _keys(self, key: str) -> list[str]:
        return [f"{self._prefix}:bucket:{key}", f"{self._prefix}:penalty:{key}"]

    def _use_redis(self) -> bool:
        with self._lock:
            return time.monotonic() >= self._redis_down_until

    def _redis_failed(self, exc: Exception) -> None:
        with self._lock:
            first = time.monotonic() >= self._redis_down_until
            self._redis_down_until = time.monotonic() + self._retry_after
        if first:
            log.warning("rate limiter: Redis unreachable (%s); limiting in this process for %.0f s",
                        type(exc).__name__, self._retry_after)

    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable and buckets are per process."""
        return not self._use_redis()

    def acquire(self, key: str) -> None:
        """Take one token for ``key`` from the shared bucket, sleeping until it is available."""
        if self._use_redis():
            rate, burst = self._fallback.limits_for(key)
            try:
                wait = float(self._acquire(keys=self._keys(key), args=[rate, burst, _IDLE_EXPIRY_S]))
            except redis.RedisError as exc:
                self._redis_failed(exc)
            else:
                if wait > 0:
                    self._sleep(wait)
                return
        self._fallback.acquire(key)

    def note_throttle(self, key: str) -> None:
        """Slow ``key`` down for every process (and for this one's fallback buckets)."""
        self._fallback.note_throttle(key)
        if not self._use_redis():
            return
        try:
            factor = float(self._throttled(keys=self._keys(key), args=[MIN_RATE_FACTOR, PENALTY_SECONDS]))
        except redis.RedisError as exc:
            self._redis_failed(exc)
            return
        log.info("throttled on %s: its shared rate is now x%.3f for %.0f s", key, factor, PENALTY_SECONDS)
