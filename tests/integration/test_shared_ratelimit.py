"""Token buckets shared through a real Redis: one budget for every process, slowed for all by a throttle,
and a scan that keeps going (per process) while Redis is away."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from scanner.shared_ratelimit import RedisTokenBucketLimiter
from tests.conftest import free_port

pytestmark = pytest.mark.integration


def _take(url: str, key: str, n: int, rate: float, burst: int, start_at: float, out: multiprocessing.Queue) -> None:
    limiter = RedisTokenBucketLimiter(url, rate, burst, prefix="test:shared")
    while time.time() < start_at:  # all processes start together
        time.sleep(0.001)
    t0 = time.monotonic()
    for _ in range(n):
        limiter.acquire(key)
    out.put(time.monotonic() - t0)


def test_processes_share_one_budget(redis_url: str) -> None:
    rate, burst, per_process, processes = 20.0, 5, 15, 3
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = ctx.Queue()
    start_at = time.time() + 3.0  # spawn start-up takes a while
    procs = [ctx.Process(target=_take, args=(redis_url, "111122223333:us-east-1:ec2", per_process, rate, burst,
                                             start_at, out)) for _ in range(processes)]
    for p in procs:
        p.start()
    try:
        elapsed = [out.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(10)
    # 45 calls from one bucket of rate 20/s and burst 5: the last one waits (45 - 5) / 20 = 2 s. Buckets per
    # process would have let every process finish in (15 - 5) / 20 = 0.5 s.
    floor = (per_process * processes - burst) / rate
    assert max(elapsed) >= floor * 0.9, elapsed
    assert max(elapsed) < floor + 2.0, elapsed


def test_keys_are_independent_and_family_overrides_apply(redis_url: str) -> None:
    limiter = RedisTokenBucketLimiter(redis_url, 1.0, 1, overrides={"tagging": (1000.0, 50)}, prefix="test:keys")
    t0 = time.monotonic()
    for key in ("a:us-east-1:ec2", "b:us-east-1:ec2", "a:eu-west-1:ec2", "a:us-east-1:s3"):
        limiter.acquire(key)  # each is a fresh bucket with one token
    for _ in range(40):
        limiter.acquire("a:us-east-1:tagging")  # its own, larger budget
    assert time.monotonic() - t0 < 0.5


def test_a_throttle_slows_the_key_for_every_process(redis_url: str) -> None:
    first = RedisTokenBucketLimiter(redis_url, 10.0, 1, prefix="test:throttle")
    second = RedisTokenBucketLimiter(redis_url, 10.0, 1, prefix="test:throttle")  # another worker
    key = "a:us-east-1:ec2"
    first.acquire(key)
    first.note_throttle(key)  # rate halves to 5/s and the spare tokens are dropped
    first.note_throttle(key)  # again: 2.5/s
    t0 = time.monotonic()
    for _ in range(3):
        second.acquire(key)
    elapsed = time.monotonic() - t0
    # At 10/s three calls take ~0.2-0.3 s; at 2.5/s they take ~1.2 s (0.6: margin for a loaded machine).
    assert elapsed >= 0.6, elapsed
    other = time.monotonic()
    second.acquire("a:us-east-1:s3")  # another family is not slowed
    assert time.monotonic() - other < 0.1


def test_redis_unreachable_falls_back_to_per_process_buckets() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    limiter = RedisTokenBucketLimiter(dead, 10.0, 2, prefix="test:dead")
    t0 = time.monotonic()
    for _ in range(4):
        limiter.acquire("a:us-east-1:ec2")  # never raises: a Redis restart must not fail a scan
    elapsed = time.monotonic() - t0
    assert limiter.degraded
    # Still limited while degraded: burst 2 then 10/s -> the 4th call waits ~0.2 s.
    assert 0.15 <= elapsed < 3.0, elapsed
    limiter.note_throttle("a:us-east-1:ec2")  # no error either
