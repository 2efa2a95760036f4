"""AWS Organizations tag policies -> per-account effective policies -> scans judge each account by its own."""

from __future__ import annotations

from typing import Any

import pytest

from services import policy_sources, scans
from services.errors import InvalidInput, NotFound, Unavailable
from services.schemas import ScanRequest
from tests.integration.conftest import wait_scan

pytestmark = pytest.mark.integration


@pytest.fixture()
def demo_org(embedded_runtime: Any) -> Any:
    from scanner.emulator.demo_estate import seed_demo_organization

    return seed_demo_organization(embedded_runtime.settings.aws_endpoint_url, scale=0.34)


def _use_source(rt: Any, source: str) -> Any:
    # The embedded worker runs tasks with this same Runtime object, so the change reaches it too.
    rt.settings = rt.settings.model_copy(update={"policy_source": source})
    return rt


def test_sync_then_scan_uses_each_accounts_effective_policy(embedded_runtime: Any, demo_org: Any) -> None:
    rt, org = _use_source(embedded_runtime, "aws-organizations"), demo_org
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


def test_file_source_ignores_synced_policies(embedded_runtime: Any, demo_org: Any) -> None:
    rt, org = embedded_runtime, demo_org  # policy_source="file"
    policy_sources.sync_organization(rt, imported_by="test")
    scan_id = scans.submit(rt, ScanRequest(accounts=list(org.member_account_ids)[:1], regions=list(org.regions)))
    scan = wait_scan(rt, scan_id, timeout=180)
    assert scan.policy_by_account is None


def test_sync_if_due_syncs_once_then_waits_for_the_interval(embedded_runtime: Any, demo_org: Any) -> None:
    rt = _use_source(embedded_runtime, "auto")
    assert rt.settings.organization_policies_wanted  # no policy file was configured explicitly
    first = policy_sources.sync_if_due(rt, trigger="startup")
    assert first is not None and first.status == "succeeded" and first.trigger == "startup"
    assert first.accounts == len(demo_org.member_account_ids) + 1  # the members and the management account
    assert policy_sources.sync_if_due(rt, trigger="beat") is None  # fresh: nothing to do
    forced = policy_sources.sync_if_due(rt, trigger="manual", force=True)
    assert forced is not None and forced.trigger == "manual" and forced.status == "succeeded"


def test_auto_without_an_organization_keeps_the_policy_file(embedded_runtime: Any) -> None:
    rt = _use_source(embedded_runtime, "auto")  # the emulator was reset: no organization exists
    attempt = policy_sources.sync_if_due(rt, trigger="startup")
    assert attempt is not None and attempt.status == "not_applicable"
    assert "AWSOrganizationsNotInUseException" in (attempt.message or "")
    # A settled "no organization" answer is not retried on every call.
    assert policy_sources.sync_if_due(rt, trigger="cli") is None
    scan_id = scans.submit(rt, ScanRequest(resource_types=["s3:bucket"], regions=["us-east-1"]))
    assert wait_scan(rt, scan_id).policy_by_account is None


def test_aws_organizations_source_refuses_to_fall_back(embedded_runtime: Any) -> None:
    rt = _use_source(embedded_runtime, "aws-organizations")
    attempt = policy_sources.sync_if_due(rt, trigger="startup")  # never raises
    assert attempt is not None and attempt.status == "not_applicable"
    with pytest.raises(Unavailable, match="no AWS Organizations tag policies have been synced") as err:
        scans.submit(rt, ScanRequest(resource_types=["s3:bucket"]))
    assert err.value.field == "policy" and "policy import-aws" in (err.value.fix or "")


def test_health_reports_the_last_sync_attempt(embedded_runtime: Any, demo_org: Any) -> None:
    from fastapi.testclient import TestClient

    from api.http.app import create_app

    rt = _use_source(embedded_runtime, "aws-organizations")
    policy_sources.sync_organization(rt, imported_by="test", trigger="manual")
    with TestClient(create_app(lambda: rt)) as client:
        body = client.get("/health").json()
    org = body["policy"]["organization"]
    assert org["policy_source"] == "aws-organizations" and org["in_use"] is True
    assert org["accounts_with_own_policy"] == len(demo_org.member_account_ids) + 1
    assert org["last_attempt"]["status"] == "succeeded" and org["last_attempt"]["trigger"] == "manual"


def test_beat_resyncs_only_when_organization_policies_govern(tmp_path: Any) -> None:
    from services.config import Settings
    from workers.app import create_app

    wanted = create_app(Settings(home=tmp_path, policy_source="aws-organizations", policy_sync_minutes=90))
    task = wanted.conf.beat_schedule["organization-tag-policy-sync"]
    assert task["task"] == "policy.sync_organization" and task["schedule"].total_seconds() == 90 * 60
    assert "daily-compliance-snapshot" in wanted.conf.beat_schedule
    for settings in (Settings(home=tmp_path, policy_source="file"),
                     Settings(home=tmp_path, policy_source="aws-organizations", policy_sync_minutes=0)):
        assert "organization-tag-policy-sync" not in create_app(settings).conf.beat_schedule
