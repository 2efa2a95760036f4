"""Tag policies and inheritance paths read from AWS Organizations (moto server over HTTP)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from scanner.providers.aws.organization import list_organization_accounts, list_tag_policies, policy_path_for_account

pytestmark = pytest.mark.integration


def _policy(key: str, values: list[str]) -> str:
    return json.dumps({"tags": {key.lower(): {"tag_key": {"@@assign": key}, "tag_value": {"@@assign": values}}}})


def test_policies_attachments_and_paths(emulator: Any) -> None:
    from scanner.emulator.server import fake_credentials

    emulator.reset()
    org = boto3.client("organizations", endpoint_url=emulator.endpoint_url, **fake_credentials())
    org.create_organization(FeatureSet="ALL")
    org.enable_policy_type(RootId=(root := org.list_roots()["Roots"][0]["Id"]), PolicyType="TAG_POLICY")
    ou = org.create_organizational_unit(ParentId=root, Name="Production")["OrganizationalUnit"]["Id"]
    child_ou = org.create_organizational_unit(ParentId=ou, Name="Payments")["OrganizationalUnit"]["Id"]
    account = org.create_account(AccountName="payments", Email="p@example.com")["CreateAccountStatus"]["AccountId"]
    org.move_account(AccountId=account, SourceParentId=root, DestinationParentId=child_ou)
    ids = {}
    for name, target, key in (("root", root, "CostCenter"), ("ou", ou, "Environment"), ("acct", account, "Owner")):
        pid = org.create_policy(Name=name, Type="TAG_POLICY", Description=name, Content=_policy(key, ["x"]))[
            "Policy"]["PolicySummary"]["Id"]
        org.attach_policy(PolicyId=pid, TargetId=target)
        ids[name] = pid
    # More policies than one page holds, none attached: listing must still see all of them.
    for i in range(25):
        org.create_policy(Name=f"spare-{i}", Type="TAG_POLICY", Description="", Content=_policy("Spare", ["y"]))

    policies = {p.name: p for p in list_tag_policies(org)}
    assert len(policies) == 28
    assert policies["root"].targets == ((root, "ROOT"),)
    assert policies["ou"].content["tags"]["environment"]["tag_key"]["@@assign"] == "Environment"

    path = policy_path_for_account(org, account)
    assert [(lvl.target_type, lvl.policy_ids) for lvl in path] == [
        ("ROOT", (ids["root"],)), ("ORGANIZATIONAL_UNIT", (ids["ou"],)), ("ORGANIZATIONAL_UNIT", ()),
        ("ACCOUNT", (ids["acct"],))]
    active, skipped = list_organization_accounts(org)
    assert account in {a.id for a in active} and not skipped
