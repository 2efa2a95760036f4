"""Retry policy: what is retried, how often, how long it may wait."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from scanner.retry import RetryPolicy, call_with_retry, error_code, is_retryable, is_throttling, retrying


def client_error(code: str | None, status: int = 400) -> ClientError:
    error: dict[str, Any] = {"Message": "m"}
    if code is not None:
        error["Code"] = code
    return ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


@pytest.mark.parametrize(
    "code",
    [
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "SlowDown",
        "RequestThrottled",
        "InternalError",
        "ServiceUnavailable",
    ],
)
def test_throttling_and_transient_codes_are_retryable(code: str) -> None:
    assert is_retryable(client_error(code))


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_retryable_http_status_without_known_code(status: int) -> None:
    assert is_retryable(client_error("SomethingOdd", status))
    assert error_code(client_error(None, status)) == f"HTTP{status}"


@pytest.mark.parametrize(
    "code",
    [
        "AccessDenied",
        "UnauthorizedOperation",
        "AuthorizationError",
        "AccessDeniedException",
        "OptInRequired",
        "UnrecognizedClientException",
        "ValidationException",
        "ResourceNotFoundException",
    ],
)
def test_permission_and_client_errors_are_not_retried(code: str) -> None:
    assert not is_retryable(client_error(code, 403 if "Denied" in code else 400))


def test_access_denied_with_503_is_still_not_retried() -> None:
    assert not is_retryable(client_error("AccessDenied", 503))


def test_connection_errors_are_retryable() -> None:
    assert is_retryable(EndpointConnectionError(endpoint_url="http://x"))
    assert is_retryable(ReadTimeoutError(endpoint_url="http://x"))
    assert not is_retryable(ValueError("bug"))
    assert error_code(ValueError("bug")) == "ValueError"


def test_is_throttling() -> None:
    assert is_throttling(client_error("SlowDown"))
    assert is_throttling(client_error("Whatever", 429))
    assert not is_throttling(client_error("InternalError", 500))


def _flaky(failures: list[BaseException]) -> Any:
    calls: list[tuple[Any, ...]] = []

    def fn(*args: Any, **kwargs: Any) -> str:
        calls.append((args, kwargs))
        if failures:
            raise failures.pop(0)
        return "ok"

    fn.calls = calls  # type: ignore[attr-defined]
    return fn


def test_retries_then_succeeds_and_reports_each_retry() -> None:
    fn = _flaky([client_error("ThrottlingException"), client_error("InternalError", 500)])
    seen: list[tuple[str, int, float]] = []
    result = call_with_retry(
        fn,
        1,
        x=2,
        attempts=5,
        base_wait=0.001,
        max_wait=0.002,
        on_retry=lambda exc, attempt, sleep: seen.append((error_code(exc), attempt, sleep)),
    )
    assert result == "ok"
    assert fn.calls == [((1,), {"x": 2})] * 3
    assert [(code, attempt) for code, attempt, _ in seen] == [
        ("ThrottlingException", 1),
        ("InternalError", 2),
    ]
    assert all(0 <= sleep <= 0.002 for _, _, sleep in seen)


def test_gives_up_after_attempts_and_reraises_the_cloud_error() -> None:
    fn = _flaky([client_error("ThrottlingException")] * 10)
    with pytest.raises(ClientError) as err:
        call_with_retry(fn, attempts=3, base_wait=0.001, max_wait=0.001)
    assert error_code(err.value) == "ThrottlingException"
    assert len(fn.calls) == 3


def test_access_denied_fails_at_once() -> None:
    fn = _flaky([client_error("AccessDenied", 403), client_error("AccessDenied", 403)])
    with pytest.raises(ClientError):
        call_with_retry(fn, attempts=5, base_wait=0.001)
    assert len(fn.calls) == 1


def test_waits_are_full_jitter_and_capped() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(attempts=8, base_wait=1.0, max_wait=3.0, max_total=None)
    fn = _flaky([client_error("Throttling")] * 7)
    assert retrying(policy, sleep=sleeps.append)(fn) == "ok"
    assert len(sleeps) == 7
    assert all(0 <= s <= 3.0 for s in sleeps)


def test_max_total_bounds_the_whole_call() -> None:
    fn = _flaky([client_error("Throttling")] * 100)
    policy = RetryPolicy(attempts=100, base_wait=0.01, max_wait=0.01, max_total=0.05)
    with pytest.raises(ClientError):
        retrying(policy)(fn)
    assert len(fn.calls) < 100


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_wait=-1)


def test_retry_after_is_honoured_but_capped() -> None:
    from botocore.exceptions import ClientError

    from scanner.retry import RetryPolicy, retry_after_seconds, retrying

    def throttled(retry_after: str | None) -> ClientError:
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        return ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "slow down"},
                            "ResponseMetadata": {"HTTPStatusCode": 429, "HTTPHeaders": headers}}, "ListThings")

    assert retry_after_seconds(throttled("3")) == 3.0
    assert retry_after_seconds(throttled(None)) is None
    assert retry_after_seconds(throttled("Wed, 21 Oct 2015 07:28:00 GMT")) == 0.0  # a date in the past
    assert retry_after_seconds(throttled("soon")) is None

    sleeps: list[float] = []
    calls = iter([throttled("3"), throttled("999"), None])

    def call() -> str:
        exc = next(calls)
        if exc is not None:
            raise exc
        return "ok"

    policy = RetryPolicy(attempts=5, base_wait=0.01, max_wait=20.0, max_total=None)
    assert retrying(policy, sleep=sleeps.append)(call) == "ok"
    assert sleeps[0] >= 3.0  # the service's hint beats the 10 ms backoff
    assert sleeps[1] == 20.0  # and is capped by max_wait


def test_a_registered_interrupt_is_never_retried_and_ends_the_shard() -> None:
    from botocore.exceptions import HTTPClientError

    from policies.models import GLOBAL_REGION
    from scanner.providers.aws.collect import collect_shard
    from scanner.retry import RetryPolicy, interrupt_in, is_retryable, register_interrupt, retrying

    class TimeUp(Exception):
        pass

    register_interrupt(TimeUp)
    # botocore wraps an exception raised inside its HTTP send (a signal handler's) as HTTPClientError.
    wrapped = HTTPClientError(error=TimeUp("soft time limit"))
    assert isinstance(interrupt_in(wrapped), TimeUp) and not is_retryable(wrapped)
    assert is_retryable(HTTPClientError(error=OSError("connection reset")))  # a network error still is

    calls: list[int] = []

    def hung() -> None:
        calls.append(1)
        raise wrapped

    with pytest.raises(HTTPClientError):
        retrying(RetryPolicy(attempts=5, base_wait=0, max_total=None), sleep=lambda _s: None)(hung)
    assert calls == [1]

    class Factory:
        default_region = "us-east-1"

        def caller_account(self) -> str:
            return "111122223333"

        def client(self, account_id: str, service: str, region: str) -> object:
            raise wrapped

    # Not recorded as a failed type: the interrupt itself, unwrapped, reaches the task runner.
    with pytest.raises(TimeUp):
        collect_shard(Factory(), "111122223333", GLOBAL_REGION, ["s3:bucket"])  # type: ignore[arg-type]
