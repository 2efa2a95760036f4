"""Retries for cloud API calls: throttling and transient errors only, full-jitter backoff, bounded.

botocore's own retries are switched off on every client (see ``session.py``) so that this module is
the single place that decides: one policy, one count of retries per shard, and a callback so the
caller can report them. Permission and opt-in errors are never retried; waiting does not fix them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
)
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

T = TypeVar("T")

# Error codes AWS services use for "slow down"; spellings differ per service.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "SlowDown",
        "BandwidthLimitExceeded",
        "LimitExceededException",  # Kinesis and others use it for request-rate limits on reads
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)

# Server-side hiccups that usually pass on a second try.
TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "InternalServiceError",
        "InternalServiceException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "Unavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "IDPCommunicationError",
    }
)

# Never retried even when an HTTP status would suggest it: they need a human (IAM, opt-in).
NON_RETRYABLE_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "AuthorizationError",
        "AuthFailure",
        "OptInRequired",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "SubscriptionRequiredException",
        "InvalidAccessKeyId",
    }
)

RETRYABLE_HTTP_STATUS = frozenset({429, 500, 502, 503, 504})

# Exceptions raised before any HTTP answer: the network, not the service, failed.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    EndpointConnectionError,
    ConnectionClosedError,
    ConnectTimeoutError,
    ReadTimeoutError,
    HTTPClientError,
)


def error_code(exc: BaseException) -> str:
    """The cloud's error code of ``exc`` (``ThrottlingException``), else the exception class name."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code")
        if code:
            return str(code)
        status = http_status(exc)
        if status is not None:
            return f"HTTP{status}"
    return type(exc).__name__


def http_status(exc: BaseException) -> int | None:
    """HTTP status code carried by a botocore ``ClientError``, if any."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status is not None else None
    return None


def retry_after_seconds(exc: BaseException) -> float | None:
    """The ``Retry-After`` a service sent with its error (seconds or an HTTP date), if any."""
    if not isinstance(exc, ClientError):
        return None
    headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders") or {}
    value = headers.get("retry-after") or headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class wait_honouring_retry_after(wait_base):  # named like tenacity's own wait strategies
    """The jittered backoff, but never shorter than a ``Retry-After`` the service asked for (capped)."""

    def __init__(self, inner: wait_base, cap: float) -> None:
        self.inner = inner
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        wait = float(self.inner(retry_state))
        exc = retry_state.outcome.exception() if retry_state.outcome is not None else None
        hinted = retry_after_seconds(exc) if exc is not None else None
        return min(self.cap, max(wait, hinted)) if hinted is not None else wait


def is_throttling(exc: BaseException) -> bool:
    """True when the service asked us to slow down."""
    return error_code(exc) in THROTTLING_CODES or http_status(exc) == 429


# Exceptions that stop the whole shard (the task runner's soft time limit): never retried, never recorded as
# one type's failure. The workers register theirs, so the scanner does not import the task runner.
_INTERRUPTS: list[type[BaseException]] = []


def register_interrupt(exc_type: type[BaseException]) -> None:
    """Treat ``exc_type`` (and subclasses) as an interrupt, however deeply botocore wrapped it."""
    if exc_type not in _INTERRUPTS:
        _INTERRUPTS.append(exc_type)


def interrupt_in(exc: BaseException) -> BaseException | None:
    """The registered interrupt inside ``exc``: itself, what botocore wrapped (an HTTPClientError's
    ``error``), or its cause/context chain."""
    stack, seen = [exc], set()
    while stack and _INTERRUPTS:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, tuple(_INTERRUPTS)):
            return current
        wrapped = getattr(current, "kwargs", {}).get("error") if isinstance(current, HTTPClientError) else None
        stack.extend(e for e in (wrapped, current.__cause__, current.__context__) if isinstance(e, BaseException))
    return None


def reraise_interrupt(exc: BaseException) -> None:
    """Raise the interrupt inside ``exc`` (unwrapped, so the task runner recognises it), if any."""
    found = interrupt_in(exc)
    if found is exc:
        raise exc
    if found is not None:
        raise found from exc


def is_retryable(exc: BaseException) -> bool:
    """True for throttling and transient failures; False for permission, opt-in and client errors."""
    if interrupt_in(exc) is not None:
        return False
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in NON_RETRYABLE_CODES:
            return False
        if code in THROTTLING_CODES or code in TRANSIENT_CODES:
            return True
        return http_status(exc) in RETRYABLE_HTTP_STATUS
    return isinstance(exc, _CONNECTION_ERRORS)


# Called before each sleep with (exception, attempt number that failed, seconds about to sleep).
OnRetry = Callable[[BaseException, int, float], None]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to retry one API call.

    ``attempts`` counts the first try. The wait before retry n is uniform in
    ``[0, min(max_wait, base_wait * 2**n)]`` (AWS's "full jitter"), so concurrent workers that were
    throttled together do not come back together. ``max_total`` bounds the whole call, sleeps
    included, so a shard never hangs on one throttled API.
    """

    attempts: int = 5
    base_wait: float = 0.25
    max_wait: float = 20.0
    max_total: float | None = 120.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be >= 1")
        if self.base_wait < 0 or self.max_wait < 0:
            raise ValueError("RetryPolicy waits must be >= 0")


DEFAULT_POLICY = RetryPolicy()


def retrying(
    policy: RetryPolicy = DEFAULT_POLICY,
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Retrying:
    """A tenacity ``Retrying`` applying ``policy``; it re-raises the last error when attempts run out."""
    stop: stop_base = stop_after_attempt(policy.attempts)
    if policy.max_total is not None:
        stop = stop | stop_after_delay(policy.max_total)

    def _before_sleep(state: RetryCallState) -> None:
        if on_retry is None or state.outcome is None:
            return
        exc = state.outcome.exception()
        if exc is not None:
            upcoming = state.next_action.sleep if state.next_action is not None else 0.0
            on_retry(exc, state.attempt_number, float(upcoming))

    return Retrying(
        stop=stop,
        wait=wait_honouring_retry_after(wait_random_exponential(multiplier=policy.base_wait, max=policy.max_wait),
                                        cap=policy.max_wait),
        retry=retry_if_exception(is_retryable),
        before_sleep=_before_sleep,
        sleep=sleep,
        reraise=True,
    )


def call_with_retry(
    fn: Callable[..., T],
    *args: Any,
    attempts: int = DEFAULT_POLICY.attempts,
    base_wait: float = DEFAULT_POLICY.base_wait,
    max_wait: float = DEFAULT_POLICY.max_wait,
    max_total: float | None = DEFAULT_POLICY.max_total,
    on_retry: OnRetry | None = None,
    **kwargs: Any,
) -> T:
    """Call ``fn(*args, **kwargs)``, retrying throttling and transient errors with full-jitter backoff.

    The keyword names above are consumed here; everything else goes to ``fn``. Boto3 parameters
    never collide with them (they are PascalCase or camelCase), but ``retrying()`` with a closure is
    the safer form for arbitrary callables.
    """
    policy = RetryPolicy(attempts=attempts, base_wait=base_wait, max_wait=max_wait, max_total=max_total)
    return retrying(policy, on_retry)(fn, *args, **kwargs)
