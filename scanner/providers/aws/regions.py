"""Which regions of an account to scan: the enabled ones (EC2 DescribeRegions), within an allow-list."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from scanner.providers.aws.session import ClientFactory
from scanner.retry import call_with_retry

log = logging.getLogger(__name__)

# Regions an account can use: enabled by default, or opted into.
ENABLED_OPT_IN_STATUSES = frozenset({"opt-in-not-required", "opted-in"})


class UnknownRegionError(ValueError):
    """Allow-list entries that are not AWS regions; the message names them and the valid ones."""

    def __init__(self, unknown: Iterable[str], valid: Iterable[str]) -> None:
        self.unknown = sorted(unknown)
        self.valid = sorted(valid)
        super().__init__(
            f"unknown region(s): {', '.join(self.unknown)}; valid regions: {', '.join(self.valid)}"
        )


def discover_regions(
    factory: ClientFactory, account_id: str, allow_list: list[str] | None = None
) -> list[str]:
    """Enabled regions of ``account_id``, sorted, limited to ``allow_list`` when given.

    Allow-list entries that are not regions at all raise ``UnknownRegionError``. Real regions the
    account has not opted into are left out without error: one allow-list serves many accounts,
    which differ in their opt-ins.
    """
    ec2 = factory.client(account_id, "ec2", factory.default_region)
    response = call_with_retry(ec2.describe_regions, AllRegions=True)
    all_regions = {r["RegionName"]: r.get("OptInStatus", "opt-in-not-required") for r in response["Regions"]}
    enabled = {name for name, status in all_regions.items() if status in ENABLED_OPT_IN_STATUSES}
    if allow_list is None:
        return sorted(enabled)
    wanted = {r.strip() for r in allow_list if r.strip()}
    unknown = wanted - set(all_regions)
    if unknown:
        raise UnknownRegionError(unknown, all_regions)
    skipped = sorted(wanted - enabled)
    if skipped:
        log.info("account %s has not enabled %s; not scanned there", account_id, ", ".join(skipped))
    return sorted(wanted & enabled)
