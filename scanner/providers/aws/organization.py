"""AWS Organizations, read from the management account: accounts, tag policies and where they attach."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class OrgAccount:
    id: str
    name: str
    status: str


def list_organization_accounts(organizations_client: Any) -> tuple[list[OrgAccount], list[OrgAccount]]:
    """Every account of the organization, all pages: (active, skipped) where skipped are suspended or
    pending closure and so cannot be scanned."""
    active: list[OrgAccount] = []
    skipped: list[OrgAccount] = []
    paginator = organizations_client.get_paginator("list_accounts")
    for page in paginator.paginate():
        for item in page.get("Accounts", []):
            status = item.get("Status", "ACTIVE")
            account = OrgAccount(id=item["Id"], name=item.get("Name", ""), status=status)
            (active if account.status == "ACTIVE" else skipped).append(account)
    return active, skipped


def list_accounts_under(organizations_client: Any, parent_id: str) -> tuple[list[OrgAccount], list[OrgAccount]]:
    """Every account under a root (``r-...``) or organizational unit (``ou-...``), nested OUs included,
    all pages: (active, skipped) as for the whole organization."""
    active: list[OrgAccount] = []
    skipped: list[OrgAccount] = []
    parents, seen = [parent_id], set()
    while parents:
        parent = parents.pop()
        if parent in seen:
            continue
        seen.add(parent)
        for item in _pages(organizations_client, "list_accounts_for_parent", "Accounts", ParentId=parent):
            account = OrgAccount(id=item["Id"], name=item.get("Name", ""), status=item.get("Status", "ACTIVE"))
            (active if account.status == "ACTIVE" else skipped).append(account)
        parents.extend(ou["Id"] for ou in _pages(organizations_client, "list_organizational_units_for_parent",
                                                  "OrganizationalUnits", ParentId=parent))
    return active, skipped


@dataclass(frozen=True, slots=True)
class OrgTagPolicy:
    """A TAG_POLICY of the organization: its document and where it is attached."""

    id: str
    name: str
    content: dict[str, Any]
    targets: tuple[tuple[str, str], ...]  # (target id, ROOT | ORGANIZATIONAL_UNIT | ACCOUNT)


@dataclass(frozen=True, slots=True)
class PolicyLevel:
    """One level of an account's inheritance path with the tag policies attached there."""

    target_id: str
    target_type: str  # ROOT | ORGANIZATIONAL_UNIT | ACCOUNT
    policy_ids: tuple[str, ...]


def _pages(client: Any, operation: str, key: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in client.get_paginator(operation).paginate(**params):
        items.extend(page.get(key, []))
    return items


def list_tag_policies(organizations_client: Any) -> list[OrgTagPolicy]:
    """Every tag policy (all pages) with its content and attachments."""
    policies: list[OrgTagPolicy] = []
    for summary in _pages(organizations_client, "list_policies", "Policies", Filter="TAG_POLICY"):
        described = organizations_client.describe_policy(PolicyId=summary["Id"])["Policy"]
        targets = _pages(organizations_client, "list_targets_for_policy", "Targets", PolicyId=summary["Id"])
        policies.append(OrgTagPolicy(
            id=summary["Id"], name=summary.get("Name", summary["Id"]),
            content=json.loads(described["Content"]),
            targets=tuple((t["TargetId"], t["Type"]) for t in targets)))
    return policies


def _path_to_root(organizations_client: Any, account_id: str) -> list[tuple[str, str]]:
    """(id, type) from the root down to the account itself: ROOT, ORGANIZATIONAL_UNIT..., ACCOUNT."""
    path: list[tuple[str, str]] = [(account_id, "ACCOUNT")]
    child = account_id
    while True:
        parents = organizations_client.list_parents(ChildId=child)["Parents"]
        if not parents:
            break
        parent = parents[0]  # an account or OU has exactly one parent
        path.append((parent["Id"], parent["Type"]))
        if parent["Type"] == "ROOT":
            break
        child = parent["Id"]
    return list(reversed(path))


def ou_path_for_account(organizations_client: Any, account_id: str) -> list[str]:
    """The ids of the account's ancestors, root first (``r-...``, then each OU down to its own)."""
    return [target_id for target_id, target_type in _path_to_root(organizations_client, account_id)
            if target_type != "ACCOUNT"]


def policy_path_for_account(organizations_client: Any, account_id: str) -> list[PolicyLevel]:
    """The account's inheritance path root -> OUs -> account, each level with its attached tag
    policies: the input AWS uses to compute the account's effective tag policy."""
    levels: list[PolicyLevel] = []
    for target_id, target_type in _path_to_root(organizations_client, account_id):
        attached = _pages(organizations_client, "list_policies_for_target", "Policies",
                          TargetId=target_id, Filter="TAG_POLICY")
        levels.append(PolicyLevel(target_id=target_id, target_type=target_type,
                                  policy_ids=tuple(sorted(p["Id"] for p in attached))))
    return levels
