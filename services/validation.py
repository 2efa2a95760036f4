"""Validate specific resources by ARN right now, against the active policy (no scan job needed)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field
from sqlalchemy import select

from policies.engine import evaluate_resource
from scanner.providers.aws.collect import fetch_resources_by_arn, parse_arn
from services.db.models import ResourceRow, utcnow
from services.errors import InvalidInput
from services.policy_store import active_policy
from services.runtime import Runtime
from services.scan_policies import freeze_account_policies, synced_policy_versions
from services.schemas import DataQuality, FailedShard, ViolationOut, violation_out

MAX_ARNS = 100


class ResourceValidation(BaseModel):
    resource_arn: str
    resource_type: str
    account_id: str
    region: str
    in_scope: bool = Field(description="False when no required tag applies to this resource type.")
    compliant: bool
    tags: dict[str, str]
    violations: list[ViolationOut]
    exempted_by: list[str] = Field(default_factory=list,
                                   description="Exemptions that waived violations of this resource (not listed).")


class ValidationResult(BaseModel):
    policy_version: str
    total: int
    compliant: int
    results: list[ResourceValidation]
    data_quality: DataQuality


def validate_arns(arns: Sequence[str]) -> list[str]:
    """Check the list and each ARN's shape before any cloud call."""
    if not arns:
        raise InvalidInput("no ARN given", field="resource_arns", fix="pass 1 to 100 resource ARNs")
    if len(arns) > MAX_ARNS:
        raise InvalidInput(f"{len(arns)} ARNs given; at most {MAX_ARNS} per call", field="resource_arns",
                           fix="split the list, or run a scan (check_tag_compliance) for whole estates")
    for i, arn in enumerate(arns):
        try:
            parse_arn(arn)
        except ValueError as exc:
            raise InvalidInput(
                str(exc), field=f"resource_arns[{i}]",
                fix="pass a full ARN such as arn:aws:ec2:us-east-1:123456789012:instance/i-0abc") from None
    return list(dict.fromkeys(arns))


def _known_accounts(rt: Runtime) -> list[str]:
    """Accounts to search for ARNs that carry none (S3, Route 53): the configured ones and every
    account a scan has seen; without any, the scanner falls back to the organization's accounts."""
    with rt.db.session() as s:
        seen = s.scalars(select(ResourceRow.account_id).distinct().limit(1000)).all()
    return list(dict.fromkeys([*rt.settings.accounts, *seen]))


def validate_resource_tags(rt: Runtime, arns: Sequence[str]) -> ValidationResult:
    """Fetch the resources now and judge each as a scan started today would: by its account's policy
    (AWS Organizations effective policy and overrides) with today's exemptions."""
    unique = validate_arns(arns)
    policy = active_policy(rt.db, rt.settings.policy_path)
    resources, failures = fetch_resources_by_arn(rt.aws, unique, accounts=_known_accounts(rt) or None)
    frozen = freeze_account_policies(rt, policy.id, synced_policy_versions(rt),
                                     sorted({r.account_id for r in resources}))
    today = utcnow().date()
    results = []
    for res in resources:
        ev = evaluate_resource(res, rt.policies.get(rt.db, frozen.by_account.get(res.account_id, policy.id), today))
        results.append(ResourceValidation(
            resource_arn=res.arn, resource_type=res.resource_type, account_id=res.account_id, region=res.region,
            in_scope=ev.in_scope, compliant=ev.compliant, tags=dict(res.tags),
            violations=[violation_out(v) for v in ev.violations], exempted_by=list(ev.exempted_by)))
    dq = DataQuality(status="partial" if failures or frozen.incomplete else "complete",
                     failed_shards=[FailedShard(shard=f.resource_type, error=f"{f.code}: {f.message}")
                                    for f in failures], notes=frozen.notes)
    return ValidationResult(policy_version=policy.id, total=len(results),
                            compliant=sum(r.compliant for r in results), results=results, data_quality=dq)
