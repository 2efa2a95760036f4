"""Exemptions and per-account / per-OU overrides through the real pipeline (moto + embedded worker)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from services import scans
from services.config import DEFAULT_POLICY_PATH
from services.schemas import ScanRequest
from tests.integration.conftest import wait_scan

pytestmark = pytest.mark.integration


@pytest.fixture()
def demo_org(embedded_runtime: Any) -> Any:
    from scanner.emulator.demo_estate import seed_demo_organization

    return seed_demo_organization(embedded_runtime.settings.aws_endpoint_url, scale=0.34)


def _use_policy(rt: Any, tmp_path: Path, extra: dict[str, Any]) -> None:
    policy = {**json.loads(Path(DEFAULT_POLICY_PATH).read_text()), **extra}
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy))
    # The embedded worker runs tasks with this same Runtime object, so it sees the new policy too.
    rt.settings = rt.settings.model_copy(update={"policy_path": path})


def _violations_by(rt: Any, scan_id: str) -> Counter[tuple[str, str]]:
    return Counter((v.account_id, v.tag_name) for v in scans.iter_violations(rt, scan_id))


def test_overrides_and_exemptions_change_what_a_scan_reports(embedded_runtime: Any, demo_org: Any,
                                                             tmp_path: Path) -> None:
    rt, org = embedded_runtime, demo_org
    prod = next(a for a in org.member_account_ids if org.account_ous[a] == "Production")
    other = next(a for a in org.member_account_ids if org.account_ous[a] != "Production")
    request = ScanRequest(accounts=[prod, other], regions=list(org.regions))

    baseline_id = scans.submit(rt, request)
    baseline = wait_scan(rt, baseline_id, timeout=180)
    assert baseline.status == "succeeded" and baseline.exemptions is None
    before = _violations_by(rt, baseline_id)
    # The estate has what the policy below changes, or the test would prove nothing.
    assert before[(prod, "Application")] > 0 and before[(other, "Application")] > 0
    assert before[(other, "Owner")] > 0 and before[(prod, "Owner")] > 0

    _use_policy(rt, tmp_path, {
        "overrides": [
            {"id": "prod-no-app", "organizational_units": [org.ou_ids["Production"]], "remove_tags": ["Application"]},
            {"id": "team-tag", "accounts": [other], "required_tags": [{"name": "Team"}]},
        ],
        "exemptions": [
            {"id": "EXC-OWNER", "reason": "owners are being migrated (FIN-12)", "expires": "2999-12-31",
             "accounts": [other], "tags": ["Owner"]},
            {"id": "EXC-OLD", "reason": "old waiver", "expires": "2000-01-01", "accounts": [prod]},
        ],
    })
    scan_id = scans.submit(rt, request)
    scan = wait_scan(rt, scan_id, timeout=180)
    after = _violations_by(rt, scan_id)

    assert scan.status == "succeeded" and scan.data_quality.status == "complete", scan.data_quality
    # The OU override applies to the Production account only, the account override to the other.
    assert after[(prod, "Application")] == 0
    assert after[(other, "Application")] == before[(other, "Application")]
    assert after[(other, "Team")] > 0
    assert after[(prod, "Team")] == 0
    team = [v for v in scans.iter_violations(rt, scan_id) if v.tag_name == "Team"]
    assert {v.rule_source for v in team} == {"override:team-tag"}
    # Each overridden account is judged by its own stored version; both differ from the default.
    assert scan.policy_by_account is not None and set(scan.policy_by_account) == {prod, other}
    assert len({scan.policy_version, *scan.policy_by_account.values()}) == 3

    # The active exemption waives exactly the Owner findings of the other account; the expired one none.
    assert after[(other, "Owner")] == 0
    assert after[(prod, "Owner")] == before[(prod, "Owner")]
    assert scan.exemptions is not None
    assert scan.exemptions.violations_waived == before[(other, "Owner")]
    assert set(scan.exemptions.by_exemption) == {"EXC-OWNER"}
    assert scan.exemptions.active == 1 and [e.id for e in scan.exemptions.expired] == ["EXC-OLD"]
    assert any("EXC-OLD" in note and "expired on 2000-01-01" in note for note in scan.data_quality.notes)


def test_unreadable_organizational_units_make_the_scan_partial(embedded_runtime: Any, tmp_path: Path) -> None:
    rt = embedded_runtime  # the emulator was reset: no organization, so ListParents fails
    _use_policy(rt, tmp_path, {"overrides": [
        {"id": "by-ou", "organizational_units": ["ou-ab12-cd34ef56"], "remove_tags": ["Application"]}]})
    scan_id = scans.submit(rt, ScanRequest(resource_types=["s3:bucket"], regions=["us-east-1"]))
    scan = wait_scan(rt, scan_id)
    assert scan.status == "succeeded"  # every shard ran...
    assert scan.data_quality.status == "partial"  # ...but the rules of an account are not certain
    assert any("organizational units could not be read" in note for note in scan.data_quality.notes)
