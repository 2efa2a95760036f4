"""What one shard's collection returns: resources found, and every failure named, never hidden."""

from __future__ import annotations

from dataclasses import dataclass, field

from policies.models import Resource


@dataclass(frozen=True, slots=True)
class CollectFailure:
    """A resource type that could not be listed completely in one account and region.

    ``code`` is the cloud's error code (``AccessDenied``, ``ThrottlingException``...) or the
    exception class name; ``retryable`` tells the caller whether running the shard again may help.
    """

    resource_type: str
    code: str
    message: str
    retryable: bool


@dataclass(slots=True)
class ShardResult:
    """Outcome of collecting one (account, region, resource-type group) shard."""

    resources: list[Resource] = field(default_factory=list)
    failures: list[CollectFailure] = field(default_factory=list)
    api_calls: int = 0
    retries: int = 0
    throttles: int = 0
    # {"ec2": {"calls": 12, "retries": 1, "throttles": 1}, ...}
    api_by_family: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.failures
