"""Which policy version judges each account of a scan, and what the policies' exemptions did.

A scan freezes its policies so that a change while it runs cannot mix two rule sets: ``submit`` records
the default version and the AWS Organizations effective policy of each synced account; planning then
resolves our own per-account / per-OU ``overrides`` (:meth:`policies.policy.Policy.for_account`) into one
stored version per account they change. Shards only ever look a version up by id.

Exemptions are judged on the scan's own date (its creation day, UTC), so re-reading or re-running a
shard of an old scan gives the same answer; the summary counts what was waived and lists the exemptions
that had already expired (they waive nothing, and the resources they covered are reported again).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from policies.policy import Policy, load_policy
from scanner.providers.aws.organization import ou_path_for_account
from services.db.models import AccountPolicyRow, PolicyRow, ScanResourceRow, ScanRow
from services.policy_store import register_policy, stored_policy
from services.runtime import Runtime
from services.schemas import ExemptionSummary, ExpiredExemption

log = logging.getLogger(__name__)


@dataclass
class AccountPolicies:
    """The outcome of :func:`freeze_account_policies`."""

    by_account: dict[str, str]
    notes: list[str] = field(default_factory=list)
    # True when an account's OU path could not be read, so OU overrides were not applied to it.
    incomplete: bool = False


def freeze_account_policies(rt: Runtime, default_id: str, by_account: dict[str, str] | None,
                            accounts: Sequence[str]) -> AccountPolicies:
    """Per-account versions with ``overrides`` applied (cloud I/O only when an override names OUs).

    An account no override applies to keeps its version. When an account's organizational units cannot
    be read, overrides naming the account itself still apply and the result says it is incomplete.
    """
    out = AccountPolicies(by_account=dict(by_account or {}))
    bases: dict[str, Policy] = {}
    org_client: Any = None
    for account in accounts:
        base_id = out.by_account.get(account, default_id)
        base = bases.get(base_id)
        if base is None:
            base = bases[base_id] = stored_policy(rt.db, base_id)
        if not base.overrides:
            continue
        ou_path: list[str] = []
        if any(o.organizational_units for o in base.overrides):
            try:
                if org_client is None:
                    org_client = rt.aws.client(rt.aws.caller_account(), "organizations",
                                               rt.settings.aws_default_region)
                ou_path = ou_path_for_account(org_client, account)
            except Exception as exc:  # any cloud failure: the scan goes on, marked partial
                log.warning("OU path of account %s unreadable: %s", account, exc)
                out.notes.append(f"account {account}: its organizational units could not be read "
                                 f"({type(exc).__name__}), so overrides by OU were not applied to it (overrides "
                                 "naming the account were); grant organizations:ListParents to the scanner")
                out.incomplete = True
        if all(o.rank_for(account, ou_path) is None for o in base.overrides):
            continue
        version = register_policy(rt.db, base.for_account(account, ou_path),
                                  source=f"overrides for {account} of {base_id[:12]}")
        out.by_account[account] = version.id
    return out


def synced_policy_versions(rt: Runtime) -> dict[str, str] | None:
    """Account -> its AWS Organizations effective policy version, as last synced (None when the policy
    file governs alone: ``FINOPS_POLICY_SOURCE=file`` or nothing synced)."""
    if rt.settings.policy_source == "file":
        return None
    with rt.db.session() as s:
        return {row.account_id: row.policy_id for row in s.scalars(select(AccountPolicyRow))} or None


def scan_as_of(scan: ScanRow) -> date:
    """The day a scan judges exemptions by: its creation date, UTC (stored naive in SQLite, UTC)."""
    created = scan.created_at
    # PostgreSQL answers in the session's time zone: the day must be UTC's whatever the server says.
    return (created.astimezone(UTC) if created.tzinfo is not None else created).date()


def exemption_summary(s: Session, scan: ScanRow) -> ExemptionSummary | None:
    """What exemptions did in ``scan``; None when none of its policy versions defines any."""
    versions = sorted({scan.policy_id, *(scan.policy_by_account or {}).values()})
    policies: dict[str, Policy] = {}
    for version in versions:
        row = s.get(PolicyRow, version)
        if row is not None:
            policies[version] = load_policy(row.content)
    if not any(p.exemptions for p in policies.values()):
        return None
    as_of = scan_as_of(scan)
    active = {e.id for p in policies.values() for e in p.exemptions if e.active_on(as_of)}
    expired: dict[str, ExpiredExemption] = {}
    for version, policy in policies.items():
        for e in policy.exemptions:
            if not e.active_on(as_of) and e.id not in expired:
                expired[e.id] = ExpiredExemption(id=e.id, expires=e.expires.isoformat(), reason=e.reason,
                                                 policy_version=version)
    sr = ScanResourceRow
    exempted = waived = 0
    by_exemption: dict[str, int] = {}
    rows = s.execute(select(sr.compliant, sr.waived_violations, sr.exempted_by).where(
        sr.scan_id == scan.id, sr.waived_violations > 0))
    for compliant, count, ids in rows:
        waived += int(count)
        exempted += 1 if compliant else 0
        for ident in ids or []:
            by_exemption[ident] = by_exemption.get(ident, 0) + 1
    return ExemptionSummary(as_of=as_of.isoformat(), active=len(active), resources_exempted=exempted,
                            violations_waived=waived, by_exemption=dict(sorted(by_exemption.items())),
                            expired=sorted(expired.values(), key=lambda e: e.id))


def expired_notes(summary: ExemptionSummary | None) -> list[str]:
    """One data-quality note per expired exemption: its resources are reported again."""
    if summary is None:
        return []
    return [f"exemption {e.id!r} expired on {e.expires} and waived nothing; the resources it covered are "
            "reported again (renew it with a new expires date or remove it)" for e in summary.expired]
