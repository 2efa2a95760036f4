"""One error root with stable codes, mapped at the edges (HTTP status, MCP isError, CLI exit 2).

Every error names the field at fault and the fix, so a person or a model can act on it without a
stack trace. Messages never carry file paths, credentials or host names.
"""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """Root of every error the application reports to a caller."""

    code: str = "internal_error"
    http_status: int = 500
    #: CLI exit code: 2 for bad usage or input, 1 for runtime failures.
    exit_code: int = 1

    def __init__(self, message: str, *, field: str | None = None, fix: str | None = None,
                 details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.fix = fix
        self.details = details

    def __str__(self) -> str:
        parts = [f"{self.field}: {self.message}" if self.field else self.message]
        if self.fix:
            parts.append(f"Fix: {self.fix}")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        if self.fix:
            body["fix"] = self.fix
        if self.details is not None:
            body["details"] = self.details
        return body


class InvalidInput(AppError):
    """The caller sent something unusable; nothing was written."""

    code = "invalid_input"
    http_status = 422
    exit_code = 2


class PolicyInvalid(InvalidInput):
    """A tagging policy failed validation; ``details`` lists every problem with its location."""

    code = "policy_invalid"


class Forbidden(AppError):
    """The caller may not do this (the request itself is well formed)."""

    code = "forbidden"
    http_status = 403
    exit_code = 2


class Conflict(AppError):
    """The request is not in a state that allows the operation (decided, expired, applying)."""

    code = "conflict"
    http_status = 409
    exit_code = 2


class RateLimited(AppError):
    """A per-principal limit (calls per minute, daily quota, or identical calls in a loop) was reached.

    Answers 429 with ``Retry-After``; the message names the limit, when it resets and the setting that
    changes it, so a model can wait or change course instead of retrying blindly."""

    code = "rate_limited"
    http_status = 429
    exit_code = 1

    def __init__(self, message: str, *, retry_after_seconds: float, field: str | None = None,
                 fix: str | None = None, details: Any = None) -> None:
        super().__init__(message, field=field, fix=fix, details=details)
        #: Whole seconds until the limit resets (the HTTP edge sends it as Retry-After).
        self.retry_after_seconds = max(1, int(retry_after_seconds + 0.999))

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "retry_after_seconds": self.retry_after_seconds}


class PayloadTooLarge(InvalidInput):
    """A request body or argument exceeds a size limit; nothing was read past the limit."""

    code = "payload_too_large"
    http_status = 413


class NotFound(AppError):
    code = "not_found"
    http_status = 404
    exit_code = 2


class Unavailable(AppError):
    """A dependency (database, broker, cloud API) cannot be reached; retrying later may work."""

    code = "unavailable"
    http_status = 503
    exit_code = 1


class NotImplementedYet(AppError):
    """A documented capability that this build does not provide yet; says so instead of faking it."""

    code = "not_implemented"
    http_status = 501
    exit_code = 1
