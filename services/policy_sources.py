"""Policy sources beyond the policy file: AWS Organizations tag policies.

``sync_organization`` computes every active account's effective tag policy (root -> OUs -> account, as
AWS does), stores each as a versioned policy and records which account it governs; scans submitted
afterwards judge each account by its own rules. Files are written only under the configured policy
folder, under names this service chooses, never a path a caller names.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import delete

from policies.aws.convert import to_policy
from policies.aws.inheritance import effective_policy
from policies.aws.tag_policy import TagPolicyDoc, parse_tag_policy
from policies.policy import Policy, PolicyError
from scanner.providers.aws.organization import list_organization_accounts, list_tag_policies, policy_path_for_account
from services.db.models import AccountPolicyRow, utcnow
from services.errors import InvalidInput, NotFound, Unavailable
from services.policy_store import policy_error_to_app, register_policy
from services.runtime import Runtime

_POLICY_ID = re.compile(r"p-[0-9a-z]{8,128}")


class AccountPolicy(BaseModel):
    account_id: str
    policy_version: str
    source: str = Field(description="The tag policies, root first, that make up this account's effective policy.")
    required_tags: list[str]


class SyncResult(BaseModel):
    tag_policies: int
    accounts: list[AccountPolicy]
    accounts_without_tag_policy: list[str]
    skipped_accounts: list[str]


class ImportedPolicy(BaseModel):
    policy_id: str
    name: str
    policy: dict[str, Any] = Field(description="The tag policy in this project's format.")
    saved_as: str | None = Field(default=None, description="File name inside the policy folder, when saved.")


def effective_from_files(levels: list[list[Path]]) -> dict[str, Any]:
    """The effective tag policy AWS computes from policies attached root -> OU -> account (files)."""
    docs = [[_parse_file(path) for path in level] for level in levels]
    return effective_policy(docs).to_aws_json()


def convert_file(path: Path) -> Policy:
    """One AWS tag policy file in this project's format (as if it were the only policy attached)."""
    doc = _parse_file(path)
    return to_policy(effective_policy([[doc]]), source_label=f"file:{path.name}")


def _parse_file(path: Path) -> TagPolicyDoc:
    if not path.is_file():
        raise InvalidInput(f"file '{path.name}' does not exist", field="files",
                           fix="pass AWS tag policy JSON files ordered root -> OU -> account")
    try:
        return parse_tag_policy(path.read_text(encoding="utf-8"), name=path.name, source=path.name)
    except PolicyError as exc:
        raise policy_error_to_app(exc, path.name) from None


def _org_client(rt: Runtime) -> Any:
    return rt.aws.client(rt.aws.caller_account(), "organizations", rt.settings.aws_default_region)


def import_policy(rt: Runtime, policy_id: str, *, save: bool = False) -> ImportedPolicy:
    """Fetch one tag policy from AWS Organizations and convert it; optionally save it in the policy folder."""
    if not _POLICY_ID.fullmatch(policy_id or ""):
        raise InvalidInput(f"'{policy_id}' is not a policy id", field="policy_id",
                           fix="pass an AWS Organizations policy id such as p-abcd1234 (list them in the console)")
    found = {p.id: p for p in _call(lambda: list_tag_policies(_org_client(rt)))}
    if policy_id not in found:
        raise NotFound(f"tag policy {policy_id} does not exist in this organization", field="policy_id",
                       fix="omit policy_id to sync every account's effective policy, or pass an existing id")
    org_policy = found[policy_id]
    try:
        doc = parse_tag_policy(org_policy.content, policy_id=org_policy.id, name=org_policy.name)
    except PolicyError as exc:
        raise policy_error_to_app(exc, org_policy.id) from None
    policy = to_policy(effective_policy([[doc]]), source_label=f"aws:{org_policy.id}")
    saved = None
    if save:
        folder = rt.settings.effective_policy_dir
        folder.mkdir(parents=True, exist_ok=True)
        saved = f"aws-{org_policy.id}.json"  # our name, inside our folder: callers never choose a path
        tmp = folder / f".{saved}.tmp"
        tmp.write_text(json.dumps(policy.model_dump(mode="json"), indent=2), encoding="utf-8")
        tmp.replace(folder / saved)
    return ImportedPolicy(policy_id=org_policy.id, name=org_policy.name, policy=policy.model_dump(mode="json"),
                          saved_as=saved)


def sync_organization(rt: Runtime, *, imported_by: str = "local") -> SyncResult:
    """Compute and store every active account's effective tag policy; replaces the previous mapping."""
    org = _call(lambda: _org_client(rt))
    org_policies = _call(lambda: list_tag_policies(org))
    docs: dict[str, TagPolicyDoc] = {}
    for p in org_policies:
        try:
            docs[p.id] = parse_tag_policy(p.content, policy_id=p.id, name=p.name)
        except PolicyError as exc:
            raise policy_error_to_app(exc, p.id) from None
    active, skipped = _call(lambda: list_organization_accounts(org))
    rows: list[AccountPolicyRow] = []
    accounts: list[AccountPolicy] = []
    without: list[str] = []
    for account in active:
        path = _call(lambda a=account.id: policy_path_for_account(org, a))
        levels = [[docs[pid] for pid in level.policy_ids if pid in docs] for level in path]
        if not any(levels):
            without.append(account.id)
            continue
        source = " + ".join(f"{docs[pid].label} @ {level.target_type} {level.target_id}"
                            for level in path for pid in level.policy_ids if pid in docs)
        policy = to_policy(effective_policy(levels), source_label=f"aws-organizations:{account.id}")
        version = register_policy(rt.db, policy, source=f"aws-organizations:{account.id}", imported_by=imported_by)
        rows.append(AccountPolicyRow(account_id=account.id, policy_id=version.id, source=source[:4000],
                                     synced_at=utcnow()))
        accounts.append(AccountPolicy(account_id=account.id, policy_version=version.id, source=source,
                                      required_tags=sorted(t.name for t in policy.required_tags)))
    with rt.db.session() as s:  # one transaction: scans never see half a sync
        s.execute(delete(AccountPolicyRow))
        s.add_all(rows)
    return SyncResult(tag_policies=len(org_policies), accounts=accounts, accounts_without_tag_policy=without,
                      skipped_accounts=[a.id for a in skipped])


def _call(fn: Any) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "ClientError")
        if code in ("AccessDeniedException", "AccessDenied", "AWSOrganizationsNotInUseException"):
            raise InvalidInput(f"AWS Organizations answered {code}", field="credentials",
                               fix="run with credentials of the organization's management account "
                                   "(organizations:List*, organizations:Describe*)") from None
        raise Unavailable(f"AWS Organizations call failed: {code}", fix="retry later") from None
    except BotoCoreError as exc:
        raise Unavailable(f"AWS Organizations cannot be reached: {type(exc).__name__}",
                          fix="check network access and AWS_ENDPOINT_URL") from None
