"""Cost sources through the services and tools: Cost Explorer (moto, seeded answers) and a FOCUS export
joined to scanned resources (find_untagged_resources costs, violations' cost_impact_monthly)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from services import cost_gap, findings, scans
from services.errors import InvalidInput, Unavailable
from services.resource_costs import CostTarget, monthly_costs
from services.schemas import ScanRequest
from tests.integration.conftest import wait_scan

pytestmark = pytest.mark.integration

EC2 = "Amazon Elastic Compute Cloud - Compute"
S3 = "Amazon Simple Storage Service"
CONFIG = "AWS Config"  # a service no resource type of the policy maps to
A1, A2 = "111111111111", "222222222222"


def _answer(groups: list[tuple[list[str], float]], metric: str = "AmortizedCost") -> dict[str, Any]:
    return {"ResultsByTime": [{"TimePeriod": {"Start": "2026-11-01", "End": "2026-12-01"}, "Total": {},
                               "Estimated": False,
                               "Groups": [{"Keys": keys, "Metrics": {metric: {"Amount": str(amount), "Unit": "USD"}}}
                                          for keys, amount in groups]}]}


def _seed_cost_explorer(endpoint: str, answers: list[dict[str, Any]]) -> None:
    from scanner.emulator.server import post_moto_api

    post_moto_api(endpoint, "/moto-api/static/ce/cost-and-usage-results",
                  json.dumps({"results": answers, "account_id": "123456789012"}).encode())


# The requests attribution_from_cost_explorer makes, in its fixed order, for the shipped policy
# (required keys Application [some types only], CostCenter, Environment, Owner).
CE_ANSWERS = [
    _answer([(["Usage"], 1000), (["Tax"], 50), (["Credit"], -20)]),                       # RECORD_TYPE
    _answer([([EC2], 600), ([S3], 300), ([CONFIG], 100)]),                                # SERVICE (taggable)
    _answer([([A1], 700), ([A2], 300)]),                                                  # LINKED_ACCOUNT
    _answer([(["Application$", EC2], 100), (["Application$payments-api", EC2], 500),      # Application x SERVICE
             (["Application$", S3], 300), (["Application$", CONFIG], 100)]),
    _answer([(["CostCenter$Engineering", EC2], 400), (["CostCenter$Enginering", EC2], 200),
             (["CostCenter$", S3], 300), (["CostCenter$Finance", CONFIG], 100)]),          # CostCenter x SERVICE
    _answer([(["CostCenter$Engineering", A1], 400), (["CostCenter$Enginering", A1], 200),
             (["CostCenter$", A2], 300), (["CostCenter$Finance", A1], 100)]),              # CostCenter x ACCOUNT
    _answer([(["Environment$production", EC2], 600), (["Environment$prod", S3], 300),
             (["Environment$", CONFIG], 100)]),                                           # Environment x SERVICE
    _answer([(["Environment$production", A1], 600), (["Environment$prod", A2], 300),
             (["Environment$", A1], 100)]),                                               # Environment x ACCOUNT
    _answer([(["Owner$a@example.com", EC2], 600), (["Owner$a@example.com", S3], 300),
             (["Owner$a@example.com", CONFIG], 100)]),                                    # Owner x SERVICE
    _answer([(["Owner$a@example.com", A1], 700), (["Owner$a@example.com", A2], 300)]),    # Owner x ACCOUNT
]


def test_cost_explorer_gap_is_an_estimate_with_bounds_and_cached(embedded_runtime: Any) -> None:
    rt = embedded_runtime
    _seed_cost_explorer(rt.settings.aws_endpoint_url, CE_ANSWERS)
    period = {"Start": "2026-11-01", "End": "2026-12-01"}
    answer = cost_gap.cost_attribution_gap(rt, time_period=period, group_by="service")
    assert answer.source == "cost_explorer" and answer.method == "estimated"
    assert (answer.total_cost, answer.untaggable_cost, answer.taggable_cost) == (1030, 30, 1000)
    gaps = {k: v.attribution_gap for k, v in answer.by_tag_key.items()}
    # Application: S3 (300) and EC2 (100) lack it; AWS Config is outside the rule's types. CostCenter: the typo
    # 'Enginering' (200) and S3 (300). Environment: 'prod' is not an allowed value (300) plus 100 untagged.
    assert gaps == {"Application": 400, "CostCenter": 500, "Environment": 400, "Owner": 0}
    assert answer.by_tag_key["CostCenter"].by_problem == {"invalid_value": 200, "missing_required_tag": 300}
    assert answer.attribution_gap == 500 and answer.attribution_gap_upper_bound == 1000
    assert answer.attributable_cost == 500 and answer.attribution_gap_percentage == 50
    assert [(g.key, g.attribution_gap) for g in answer.groups] == [(S3, 300), (EC2, 200), (CONFIG, 100)]
    by_account = cost_gap.cost_attribution_gap(rt, time_period=period, group_by="account")
    assert [(g.key, g.taggable_cost, g.attribution_gap) for g in by_account.groups] == [(A2, 300, 300), (A1, 700, 200)]
    assert "requests: 10 (10 answered from the cache" in " ".join(by_account.notes)  # no second charge
    assert any("between them" in n for n in answer.notes)


def test_cost_explorer_refuses_what_it_cannot_answer(embedded_runtime: Any) -> None:
    rt = embedded_runtime
    with pytest.raises(InvalidInput) as err:
        cost_gap.cost_attribution_gap(rt, resource_types=["ec2:instance"])
    assert err.value.field == "resource_types" and "FOCUS" in (err.value.fix or "")
    for kwargs, field in (({"group_by": "region"}, "group_by"), ({"group_by": "owner"}, "group_by"),
                          ({"time_period": {"Start": "2026-11-05", "End": "2026-11-01"}}, "time_period.End"),
                          ({"time_period": {"Start": "Nov 1"}}, "time_period.Start"),
                          ({"time_period": {"start": "2026-11-01"}}, "time_period"),
                          ({"resource_types": ["ec2:nope"]}, "resource_types[0]")):
        with pytest.raises(InvalidInput) as err:
            cost_gap.cost_attribution_gap(rt, **kwargs)
        assert err.value.field == field, kwargs
    rt.settings = rt.settings.model_copy(update={"cost_explorer": False})
    with pytest.raises(Unavailable) as missing:
        cost_gap.cost_attribution_gap(rt)
    assert "FINOPS_FOCUS_PATH" in (missing.value.fix or "")


def _write_focus(path: Path, rows: list[dict[str, str]]) -> None:
    columns = ["BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd", "ChargeCategory",
               "ResourceId", "ResourceType", "ServiceName", "SubAccountId", "RegionId", "BillingCurrency",
               "EffectiveCost", "BilledCost", "Tags"]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})


def _row(month: int, resource_id: str, cost: float, tags: dict[str, str], category: str = "Usage") -> dict[str, str]:
    start, end = f"2026-{month:02d}-01T00:00:00Z", f"2026-{month + 1:02d}-01T00:00:00Z"
    return {"BillingPeriodStart": start, "BillingPeriodEnd": end, "ChargePeriodStart": start, "ChargePeriodEnd": end,
            "ChargeCategory": category, "ResourceId": resource_id, "ServiceName": "Amazon EC2",
            "SubAccountId": "123456789012", "RegionId": "us-east-1", "BillingCurrency": "USD",
            "EffectiveCost": str(cost), "BilledCost": str(cost), "Tags": json.dumps(tags)}


def test_focus_prices_untagged_resources_and_violations(embedded_runtime: Any, tmp_path: Path) -> None:
    rt = embedded_runtime
    ec2 = boto3.client("ec2", region_name="us-east-1")
    vol_big = ec2.create_volume(AvailabilityZone="us-east-1a", Size=500)["VolumeId"]
    vol_small = ec2.create_volume(AvailabilityZone="us-east-1a", Size=10)["VolumeId"]
    vol_unpriced = ec2.create_volume(AvailabilityZone="us-east-1a", Size=20)["VolumeId"]
    good = {"CostCenter": "Engineering", "Owner": "a@example.com", "Environment": "production"}
    hygiene_tags = [{"Key": k, "Value": v} for k, v in {**good, "tempfix": "1"}.items()]
    vol_hygiene = ec2.create_volume(AvailabilityZone="us-east-1a", Size=30, TagSpecifications=[
        {"ResourceType": "volume", "Tags": hygiene_tags}])["VolumeId"]
    one_missing = [{"Key": k, "Value": v} for k, v in good.items() if k != "Owner"]
    vol_one = ec2.create_volume(AvailabilityZone="us-east-1a", Size=40, TagSpecifications=[
        {"ResourceType": "volume", "Tags": one_missing}])["VolumeId"]
    arn = "arn:aws:ec2:us-east-1:123456789012:volume/{}".format
    focus = tmp_path / "focus.csv"
    # Two billing periods: monthly cost = total / 2. CUR names EC2 resources by bare id, other rows by ARN.
    _write_focus(focus, [_row(10, vol_big, 300, {}), _row(11, arn(vol_big), 500, {}),
                         _row(10, vol_small, 10, {}), _row(11, vol_small, 14, {}),
                         _row(11, vol_small, 99, {}, category="Tax"),  # untaggable: not the resource's cost
                         _row(11, arn(vol_hygiene), 40, good), _row(11, vol_one, 60, {})])
    rt.settings = rt.settings.model_copy(update={"focus_path": str(focus)})
    scan_id = scans.submit(rt, ScanRequest(resource_types=["ec2:volume"], regions=["us-east-1"]))
    assert wait_scan(rt, scan_id).status == "succeeded"

    untagged = findings.untagged_resources(rt, scan_id, include_costs=True)
    priced = {u.resource_id: u.cost for u in untagged.resources}
    assert untagged.cost_source == "focus"
    assert priced[vol_big] is not None and priced[vol_big].monthly_cost == 400 and priced[vol_big].method == "measured"
    assert priced[vol_small] is not None and priced[vol_small].monthly_cost == 12
    assert priced[vol_unpriced] is None  # unknown, never 0
    assert [u.resource_id for u in untagged.resources][:3] == [vol_big, vol_one, vol_small]  # most expensive first
    assert untagged.monthly_cost_total == 442
    over = findings.untagged_resources(rt, scan_id, min_cost_threshold=100)
    assert [u.resource_id for u in over.resources] == [vol_big] and over.total == 1
    assert any("without cost data" in n for n in over.cost_notes)
    with pytest.raises(InvalidInput) as err:
        findings.untagged_resources(rt, scan_id, min_cost_threshold=-1)
    assert err.value.field == "min_cost_threshold"

    impacts = {(v.resource_id, v.violation_type, v.tag_name): v.cost_impact_monthly
               for v in scans.iter_violations(rt, scan_id)}
    assert impacts[(vol_big, "missing_required_tag", "CostCenter")] == 400
    assert impacts[(vol_hygiene, "prohibited_tag", "tempfix")] == 0  # hygiene: attribution is intact
    assert impacts[(vol_unpriced, "missing_required_tag", "Owner")] is None
    shown = scans.get_scan(rt, scan_id, violations_limit=100).violations
    assert any(v.cost_impact_monthly == 400 for v in shown)

    from services import exports

    spec = exports.prepare(rt, scan_id=scan_id, format="json", columns=["resource_id", "tag_name",
                                                                         "cost_impact_monthly"])
    exported = json.loads(exports.render(rt, spec))["violations"]
    assert {(r["resource_id"], r["tag_name"]): r["cost_impact_monthly"] for r in exported}[(vol_big, "Owner")] == 400

    from services.report_builder import build_report

    report = build_report(rt, scan_id=scan_id)
    assert report.cost is not None and report.cost.currency == "USD"
    # Priced: big 400 + small 12 (missing every required tag), one 30 (missing Owner), hygiene 20 (attributable).
    assert (report.cost.total_cost, report.cost.unattributed_cost) == (462, 442)
    assert "4 of 5 resources priced" in (report.cost_note or "")
    dollars = {r.tag_name: r.estimated_dollars for r in report.recommendations or []
               if r.violation_type == "missing_required_tag"}
    # Only vol_one's spend is attributed by one fix alone (adding Owner); the others miss three keys.
    assert dollars == {"Owner": 30, "CostCenter": 0, "Environment": 0}

    gap = cost_gap.cost_attribution_gap(rt, group_by="resource_type")
    assert gap.source == "focus" and gap.method == "measured"
    assert gap.untaggable_cost == 99 and gap.taggable_cost == 924 and gap.attribution_gap == 884


def test_cost_explorer_estimates_per_resource_costs(embedded_runtime: Any) -> None:
    rt = embedded_runtime
    s3 = boto3.client("s3", region_name="us-east-1")
    for name in ("cost-a", "cost-b", "cost-c", "cost-d"):
        s3.create_bucket(Bucket=name)
    scan_id = scans.submit(rt, ScanRequest(resource_types=["s3:bucket"], regions=["us-east-1"]))
    assert wait_scan(rt, scan_id).status == "succeeded"
    _seed_cost_explorer(rt.settings.aws_endpoint_url,
                        [_answer([(["123456789012", S3], 80.0), (["123456789012", EC2], 999.0)])])
    lookup = monthly_costs(rt, [CostTarget(f"arn:aws:s3:::{n}", n, "s3:bucket", "123456789012")
                                for n in ("cost-a", "cost-b")])
    assert lookup.source == "cost_explorer"
    cost = lookup.costs["arn:aws:s3:::cost-a"]
    assert cost.monthly_cost == 20 and cost.method == "estimated" and "divided evenly" in cost.basis


class _StubbedAws:
    """Stands in for the session factory where the emulator cannot: moto has no resource-level Cost Explorer."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def caller_account(self) -> str:
        return "123456789012"

    def client(self, _account: str, _service: str, _region: str) -> Any:
        return self._client


def test_cost_explorer_resource_level_data_is_measured(embedded_runtime: Any) -> None:
    from dataclasses import replace
    from datetime import date, timedelta

    from botocore.stub import ANY, Stubber

    client = boto3.client("ce", region_name="us-east-1")
    stub = Stubber(client)
    days = [date.today() - timedelta(days=d) for d in (2, 1)]
    stub.add_response("get_cost_and_usage_with_resources", {"ResultsByTime": [
        {"TimePeriod": {"Start": day.isoformat(), "End": (day + timedelta(days=1)).isoformat()}, "Estimated": False,
         "Groups": [{"Keys": ["i-0abc"], "Metrics": {"AmortizedCost": {"Amount": "2.5", "Unit": "USD"}}},
                    {"Keys": ["i-0def"], "Metrics": {"AmortizedCost": {"Amount": "1.0", "Unit": "USD"}}}]}
        for day in days]}, {"TimePeriod": ANY, "Granularity": "DAILY", "Metrics": ["AmortizedCost"],
                            "GroupBy": [{"Type": "DIMENSION", "Key": "RESOURCE_ID"}], "Filter": ANY})
    rt = replace(embedded_runtime, _aws=_StubbedAws(client))
    with stub:
        lookup = monthly_costs(rt, [
            CostTarget("arn:aws:ec2:us-east-1:123456789012:instance/i-0abc", "i-0abc", "ec2:instance", "123456789012"),
        ])
    cost = lookup.costs["arn:aws:ec2:us-east-1:123456789012:instance/i-0abc"]
    assert cost.method == "measured" and cost.source == "cost_explorer"
    assert cost.monthly_cost == 75.0  # 2 days x 2.5 -> 5.0 over 2 days, scaled to 30 days
    stub.assert_no_pending_responses()
