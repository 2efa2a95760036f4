"""Accounts of an AWS Organization, read from the management account."""

from __future__ import annotations

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
