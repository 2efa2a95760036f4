"""AWS Organizations tag policies -> per-account effective policies -> scans judge each account by its own."""

from __future__ import annotations

from typing import Any

import pytest

from services import policy_sources, scans
from services.errors import InvalidInput, NotFound
from services.schemas import ScanRequest
from tests.integration.conftest import wait_scan

pytestmark = pytest.mark.integration


@pytest.fixture()
def demo_org(embedded_runtime: Any) -> Any:
    from scanner.emulator.demo_estate import seed_demo_organization

    return seed_demo_organization(embedded_runtime.settings.aws_endpoint_url, scale=0.34)


def test_sync_then_scan_uses_each_accounts_effective_policy(embedded_runtime: Any, demo_org: Any) -> None:
    rt, org = embedded_runtime, demo_org
    result = policy_sources.sync_organization(rt, imported_by="test")
    assert result.tag_policies == len(org.tag_policy_ids) == 2
    by_account = {a.account_id: a for a in result.accounts}
    assert set(org.member_account_ids) <= set(by_account)
    production = [a for a in org.member_account_ids if org.account_ous[a] == "Production"]
    others = [a for a in org.member_account_ids if org.account_ous[a] != "Production"]
    assert production and others
    # The Production OU adds a policy on top of the root's: different effective policies.
    assert all(" + " in by_account[a].source for a in production)
    assert all(" + " not in by_account[a].source for a in others)
    assert by_account[production[0]].policy_version != by_account[others[0]].policy_version

    scan_id = scans.submit(rt, ScanRequest(accounts=list(org.member_account_ids), regions=list(org.regions)))
    scan = wait_scan(rt, scan_id, timeout=180)
    assert scan.status == "succeeded", scan.data_quality
    assert scan.policy_by_account == {a: by_account[a].policy_version for a in by_account}
    sourced = [v for v in scans.iter_violations(rt, scan_id) if v.rule_source]
    assert sourced and all(v.rule_source.startswith("aws") for v in sourced)

    # A second sync with nothing changed gives the same versions (content-addressed).
    again = policy_sources.sync_organization(rt, imported_by="test")
    assert {a.account_id: a.policy_version for a in again.accounts} == \
        {a.account_id: a.policy_version for a in result.accounts}


def test_import_one_policy_and_save_only_in_the_policy_folder(embedded_runtime: Any, demo_org: Any) -> None:
    rt, org = embedded_runtime, demo_org
    policy_id = sorted(org.tag_policy_ids.values())[0]
    imported = policy_sources.import_policy(rt, policy_id, save=True)
    assert imported.saved_as == f"aws-{policy_id}.json"
    saved = rt.settings.effective_policy_dir / imported.saved_as
    assert saved.is_file() and [p.name for p in rt.settings.effective_policy_dir.iterdir()] == [saved.name]
    with pytest.raises(InvalidInput, match="not a policy id"):
        policy_sources.import_policy(rt, "../../etc/passwd", save=True)
    with pytest.raises(NotFound):
        policy_sources.import_policy(rt, "p-00000000", save=False)
