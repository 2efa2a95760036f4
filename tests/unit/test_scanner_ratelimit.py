"""Token buckets: burst, refill, per-key isolation, per-family overrides, thread safety."""

from __future__ import annotations

import threading

import pytest

from scanner.ratelimit import LocalTokenBucketLimiter, NullLimiter, RateLimiter, limiter_key


class FakeClock:
    """A clock that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)


def make(rate: float, burst: int, **kw: object) -> tuple[LocalTokenBucketLimiter, FakeClock]:
    clock = FakeClock()
    return LocalTokenBucketLimiter(rate, burst, clock=clock.time, sleep=clock.sleep, **kw), clock  # type: ignore[arg-type]


def test_key_format() -> None:
    assert limiter_key("111122223333", "eu-west-1", "ec2") == "111122223333:eu-west-1:ec2"


def test_protocol() -> None:
    assert isinstance(NullLimiter(), RateLimiter)
    assert isinstance(LocalTokenBucketLimiter(1, 1), RateLimiter)
    NullLimiter().acquire("a:b:c")


def test_burst_is_free_then_calls_wait_their_turn() -> None:
    limiter, clock = make(rate=10, burst=3)
    for _ in range(3):
        limiter.acquire("a:r:ec2")
    assert clock.sleeps == []
    limiter.acquire("a:r:ec2")
    limiter.acquire("a:r:ec2")
    # Each waiter reserves the next token: 0.1 s, then 0.2 s.
    assert clock.sleeps == pytest.approx([0.1, 0.2])


def test_refill_over_time_is_capped_at_burst() -> None:
    limiter, clock = make(rate=2, burst=2)
    limiter.acquire("k:r:f")
    limiter.acquire("k:r:f")
    clock.now += 100  # long idle: refills only up to the burst
    limiter.acquire("k:r:f")
    limiter.acquire("k:r:f")
    assert clock.sleeps == []
    limiter.acquire("k:r:f")
    assert clock.sleeps == pytest.approx([0.5])


def test_keys_are_independent() -> None:
    limiter, clock = make(rate=1, burst=1)
    limiter.acquire("a:us-east-1:ec2")
    limiter.acquire("a:eu-west-1:ec2")
    limiter.acquire("b:us-east-1:ec2")
    limiter.acquire("a:us-east-1:s3")
    assert clock.sleeps == []


def test_family_overrides() -> None:
    limiter, clock = make(rate=1, burst=1, overrides={"ec2": (100.0, 5)})
    for _ in range(5):
        limiter.acquire("a:r:ec2")
    assert clock.sleeps == []
    limiter.acquire("a:r:ec2")
    assert clock.sleeps == pytest.approx([0.01])


def test_thread_safe_reservations() -> None:
    limiter, clock = make(rate=10, burst=1)
    threads = [threading.Thread(target=limiter.acquire, args=("a:r:f",)) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # One free token, then 19 reservations 0.1 s apart: no two threads got the same slot.
    assert sorted(clock.sleeps) == pytest.approx([0.1 * i for i in range(1, 20)])


def test_invalid_settings() -> None:
    with pytest.raises(ValueError):
        LocalTokenBucketLimiter(0, 1)
    with pytest.raises(ValueError):
        LocalTokenBucketLimiter(1, 0)
    with pytest.raises(ValueError):
        LocalTokenBucketLimiter(1, 1, overrides={"ec2": (0.0, 1)})


def test_a_throttle_halves_the_rate_for_a_while_then_it_recovers() -> None:
    from scanner.ratelimit import PENALTY_SECONDS

    limiter, clock = make(rate=10, burst=5)
    limiter.acquire("a:r:ec2")
    limiter.note_throttle("a:r:ec2")  # spare tokens dropped, rate 5/s
    limiter.acquire("a:r:ec2")
    assert clock.sleeps == pytest.approx([0.2])
    limiter.note_throttle("a:r:ec2")
    limiter.note_throttle("a:r:ec2")
    limiter.note_throttle("a:r:ec2")
    limiter.note_throttle("a:r:ec2")  # floors at an eighth of the rate
    clock.sleeps.clear()
    clock.now += 0.0
    limiter.acquire("a:r:ec2")
    assert clock.sleeps[-1] >= 1 / (10 * 0.125) - 1e-9
    clock.now += PENALTY_SECONDS + 10  # the penalty expires: full rate and burst again
    clock.sleeps.clear()
    for _ in range(5):
        limiter.acquire("a:r:ec2")
    assert clock.sleeps == []
    limiter.acquire("b:r:ec2")  # other keys were never slowed
    assert clock.sleeps == []


@pytest.mark.parametrize(("text", "expected"), [
    ("", {}),
    ("ec2=20:40", {"ec2": (20.0, 40)}),
    (" ec2=20:40 , tagging=5 ", {"ec2": (20.0, 40), "tagging": (5.0, 5)}),
    ("s3=0.5:1", {"s3": (0.5, 1)}),
])
def test_rate_limit_settings_parse(text: str, expected: dict[str, tuple[float, int]]) -> None:
    from scanner.ratelimit import parse_rate_limits

    assert parse_rate_limits(text) == expected


@pytest.mark.parametrize("text", ["ec2", "ec2=", "=5", "ec2=fast", "ec2=5:many", "ec2=0", "ec2=5:0"])
def test_bad_rate_limit_settings_name_the_entry(text: str) -> None:
    from scanner.ratelimit import parse_rate_limits

    with pytest.raises(ValueError, match="rate limit entry"):
        parse_rate_limits(text)


def test_settings_refuse_bad_limits_and_role_templates() -> None:
    from services.config import Settings

    with pytest.raises(ValueError, match="FINOPS_API_RATE_LIMITS"):
        Settings(api_rate_limits="ec2=fast")
    with pytest.raises(ValueError, match="FINOPS_AWS_ROLE_ARN_TEMPLATE"):
        Settings(aws_role_arn_template="arn:aws:iam::123456789012:role/Fixed")
    with pytest.raises(ValueError, match="FINOPS_AWS_ROLE_ARN_TEMPLATE"):
        Settings(aws_role_arn_template="arn:aws:iam::{account_id}:role/{region}")
    ok = Settings(aws_role_arn_template="arn:aws-us-gov:iam::{account_id}:role/path/Scanner")
    from scanner.providers.aws.session import AwsSessionFactory

    factory = AwsSessionFactory(role_arn_template=ok.aws_role_arn_template, role_name="Ignored")
    assert factory.role_arn("111122223333") == "arn:aws-us-gov:iam::111122223333:role/path/Scanner"
    assert AwsSessionFactory(role_name="R").role_arn("111122223333") == "arn:aws:iam::111122223333:role/R"
