"""Cost of non-compliance: the semantics of services.cost, pinned on small hand-made FOCUS files.

Every test writes a FOCUS CSV (or Parquet, or a folder of parts) and runs the real path: DuckDB reads
the file, the policy engine judges each distinct (type, Tags) combination, DuckDB sums. Expected
figures come from plain Python over the same rows (``model`` below), never from the code under test.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.policy import Policy, load_policy
from services.cost import (
    OVERLAP_NOTE,
    CostAttribution,
    attribution_from_focus,
    judge_tags,
    normalize_metric,
    parse_tags,
)
from services.errors import InvalidInput
from services.focus import RowFilter, open_focus, resource_type_of

COLUMNS = ["BillingAccountId", "BillingCurrency", "BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart",
           "ChargePeriodEnd", "ChargeCategory", "ResourceId", "ResourceType", "ServiceName", "SubAccountId",
           "RegionId", "ProviderName", "EffectiveCost", "BilledCost", "Tags"]

POLICY: dict[str, Any] = {
    "required_tags": [
        {"name": "CostCenter", "allowed_values": ["Engineering", "Sales"]},
        {"name": "Owner", "validation_regex": "[a-z]+@example\\.com"},
        {"name": "Environment", "allowed_values": ["prod", "dev"], "applies_to": ["ec2:instance", "s3:bucket"]},
    ],
    "optional_tags": [{"name": "Project", "validation_regex": "PRJ-[0-9]{4}"}],
    "prohibited_tags": ["temp*"],
    "tag_naming_rules": {"case_sensitivity": True, "allow_special_characters": False},
}
GOOD = {"CostCenter": "Engineering", "Owner": "ana@example.com", "Environment": "prod"}

INSTANCE = "i-0abc123"
BUCKET = "arn:aws:s3:::logs-bucket"
DB = "arn:aws:rds:us-east-1:123456789012:db:orders"
AZURE_VM = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"


@dataclass
class Row:
    """One FOCUS row; ``tags`` None writes NULL, a str is written as given (for broken JSON)."""

    cost: str | Decimal | None = "1"
    resource_id: str | None = INSTANCE
    tags: Mapping[str, Any] | str | None = field(default_factory=lambda: dict(GOOD))
    category: str = "Usage"
    billed: str | Decimal | None = None
    account: str | None = "111111111111"
    region: str | None = "us-east-1"
    service: str = "Amazon Elastic Compute Cloud"
    currency: str = "USD"
    charge_start: str = "2024-09-01 00:00:00"


def write_focus(path: Path, rows: Sequence[Row], *, columns: Sequence[str] = COLUMNS, gz: bool = False) -> Path:
    """Write ``rows`` as a FOCUS CSV the way exports do (NULL for nulls, Tags as JSON text)."""

    def text(value: Any) -> str:
        return "NULL" if value is None else str(value)

    records = []
    for r in rows:
        tags = r.tags if isinstance(r.tags, str) or r.tags is None else json.dumps(dict(r.tags))
        values = {
            "BillingAccountId": "999999999999", "BillingCurrency": r.currency,
            "BillingPeriodStart": "2024-09-01 00:00:00", "BillingPeriodEnd": "2024-10-01 00:00:00",
            "ChargePeriodStart": r.charge_start, "ChargePeriodEnd": "2024-09-01 01:00:00",
            "ChargeCategory": r.category, "ResourceId": text(r.resource_id), "ResourceType": "NULL",
            "ServiceName": r.service, "SubAccountId": text(r.account), "RegionId": text(r.region),
            "ProviderName": "AWS", "EffectiveCost": text(r.cost),
            "BilledCost": text(r.billed if r.billed is not None else r.cost), "Tags": text(tags),
        }
        records.append([values[c] for c in columns])
    opener = gzip.open if gz else open
    with opener(path, "wt", newline="", encoding="utf-8") as fh:  # type: ignore[operator]
        writer = csv.writer(fh, quoting=csv.QUOTE_MINIMAL)
        writer.writerow(columns)
        writer.writerows(records)
    return path


def run(tmp_path: Path, rows: Sequence[Row], policy: Mapping[str, Any] | Policy = POLICY, **kw: Any) -> CostAttribution:
    path = write_focus(tmp_path / "focus.csv", rows)
    pol = policy if isinstance(policy, Policy) else load_policy(dict(policy))
    return attribution_from_focus(path, pol, **kw)


# ------------------------------------------------------------------------------------------ the model

def _type(rid: str | None) -> str:
    if rid is None:
        return ""
    if re.fullmatch(r"i-[0-9a-z]+", rid):
        return "ec2:instance"
    if rid.startswith("arn:aws:s3:::"):
        return "s3:bucket"
    if rid.startswith("arn:aws:rds:"):
        return "rds:db"
    return ""


def _ok(key: str, tags: Mapping[str, str]) -> bool:
    """The default test POLICY's verdict on one required key, written plainly (exact key, non-blank value)."""
    value = tags.get(key)
    if value is None or not value.strip():
        return False
    if key == "CostCenter":
        return value in ("Engineering", "Sales")
    if key == "Owner":
        return re.fullmatch(r"[a-z]+@example\.com", value) is not None
    return value in ("prod", "dev")


def model(rows: Sequence[Row]) -> dict[str, Any]:
    """Expected figures for the test POLICY, by plain Python over the rows."""
    out: dict[str, Any] = {"total": Decimal(0), "taggable": Decimal(0), "untaggable": Decimal(0),
                           "gap": Decimal(0), "attributable": Decimal(0), "gap_rows": 0,
                           "by_key": {}, "by_account": {}}
    for r in rows:
        cost = Decimal(str(r.cost)) if r.cost is not None else Decimal(0)
        out["total"] += cost
        acct = out["by_account"].setdefault(r.account or "(none)", Decimal(0))
        out["by_account"][r.account or "(none)"] = acct + cost
        if r.resource_id is None or r.category.lower() in ("tax", "credit", "adjustment"):
            out["untaggable"] += cost
            continue
        out["taggable"] += cost
        tags = r.tags if isinstance(r.tags, Mapping) else {}
        tags = {k: v for k, v in tags.items() if v is not None}
        keys = ["CostCenter", "Owner"] + (["Environment"] if _type(r.resource_id) in ("ec2:instance", "s3:bucket")
                                          else [])
        failing = [k for k in keys if not _ok(k, tags)]
        if failing:
            out["gap"] += cost
            out["gap_rows"] += 1
            for k in failing:
                out["by_key"][k] = out["by_key"].get(k, Decimal(0)) + cost
        else:
            out["attributable"] += cost
    return out


def close(a: float, b: Decimal | float) -> bool:
    return abs(a - float(b)) <= 1e-9 * max(1.0, abs(float(b)))


# ------------------------------------------------------------------------------------------ untaggable

def test_rows_without_resource_id_or_with_tax_credit_adjustment_are_untaggable_never_gap(tmp_path: Path) -> None:
    rows = [
        Row(cost="10", tags={}),                                  # taggable, untagged: gap
        Row(cost="5", resource_id=None, tags={}),                 # no ResourceId
        Row(cost="2", category="Tax", tags={}),                   # Tax, even with a ResourceId
        Row(cost="-3", category="Credit", resource_id=None, tags=None),
        Row(cost="1", category="adjustment", tags={}),            # compared ignoring case
        Row(cost="4", category="Purchase", tags={}),              # Purchase with a resource: taggable
    ]
    r = run(tmp_path, rows)
    assert close(r.total_cost, 19)
    assert close(r.untaggable_cost, 5 + 2 - 3 + 1)
    assert close(r.taggable_cost, 14)
    assert close(r.attribution_gap, 14)
    assert r.rows.untaggable == 4 and r.rows.taggable == 2
    assert {k: (round(v.cost, 6), v.rows) for k, v in r.untaggable_by_reason.items()} == {
        "no_resource_id": (5.0, 1), "charge_category:Tax": (2.0, 1), "charge_category:Credit": (-3.0, 1),
        "charge_category:adjustment": (1.0, 1)}
    assert any("untaggable" in n and "never as gap" in n for n in r.notes)


# ------------------------------------------------------------------------------------------ attributable / gap

def test_a_row_is_counted_once_in_the_gap_however_many_keys_it_misses(tmp_path: Path) -> None:
    rows = [Row(cost="100", tags={}), Row(cost="7", tags=dict(GOOD))]
    r = run(tmp_path, rows)
    assert close(r.attribution_gap, 100) and close(r.attributable_cost, 7)
    assert r.rows.gap == 1 and r.rows.attributable == 1
    # Three keys fail on the gap row: each per-key figure is the whole row, and they overlap.
    assert {k: v.attribution_gap for k, v in r.by_tag_key.items()} == {
        "CostCenter": 100.0, "Environment": 100.0, "Owner": 100.0}
    assert sum(v.attribution_gap for v in r.by_tag_key.values()) == 300.0
    assert OVERLAP_NOTE in r.notes
    assert r.attribution_gap_percentage == round(100 / 107 * 100, 4)


@pytest.mark.parametrize(("tags", "attributable", "problems"), [
    (GOOD, True, {}),
    ({**GOOD, "CostCenter": ""}, False, {"CostCenter": {"missing_required_tag"}}),
    ({**GOOD, "CostCenter": "   "}, False, {"CostCenter": {"missing_required_tag"}}),
    ({**GOOD, "CostCenter": "Enginering"}, False, {"CostCenter": {"invalid_value"}}),
    ({**GOOD, "Owner": "Ana@example.org"}, False, {"Owner": {"invalid_format"}}),
    # Only the wrong-case key: the key fails (cost allocation compares exact keys).
    ({"costcenter": "Engineering", "Owner": "ana@example.com", "Environment": "prod"}, False,
     {"CostCenter": {"wrong_key_case"}}),
    ({"costcenter": "Marketing", "Owner": "ana@example.com", "Environment": "prod"}, False,
     {"CostCenter": {"wrong_key_case", "invalid_value"}}),
    # The exact key is there and valid: a stray case variant is hygiene, not a gap.
    ({**GOOD, "costcenter": "whatever"}, True, {}),
    # Optional, prohibited and naming findings never make spend unattributable.
    ({**GOOD, "Project": "not-a-project"}, True, {}),
    ({**GOOD, "temp-debug": "1"}, True, {}),
    ({**GOOD, "Na#me": "x", "aws:createdBy": "y"}, True, {}),
])
def test_only_findings_on_required_tags_make_spend_unattributable(
        tmp_path: Path, tags: dict[str, str], attributable: bool, problems: dict[str, set[str]]) -> None:
    r = run(tmp_path, [Row(cost="3", tags=tags)])
    assert (r.rows.attributable == 1) is attributable
    assert {k: set(v.by_problem) for k, v in r.by_tag_key.items() if v.gap_rows} == problems


def test_case_insensitive_policy_lets_a_case_variant_satisfy_the_key(tmp_path: Path) -> None:
    policy = {**POLICY, "tag_naming_rules": {"case_sensitivity": False}}
    tags = {"costcenter": "engineering", "OWNER": "ana@example.com", "environment": "PROD"}
    assert run(tmp_path, [Row(tags=tags)], policy).rows.attributable == 1


def test_keys_are_exact_a_leading_space_is_another_key(tmp_path: Path) -> None:
    r = run(tmp_path, [Row(tags={" CostCenter": "Engineering", "Owner": "ana@example.com", "Environment": "dev"})])
    assert r.rows.gap == 1 and set(r.by_tag_key["CostCenter"].by_problem) == {"missing_required_tag"}


def test_required_tags_apply_by_resource_type(tmp_path: Path) -> None:
    # Environment applies to ec2:instance and s3:bucket only: an RDS database does not need it.
    no_env = {"CostCenter": "Sales", "Owner": "bo@example.com"}
    rows = [Row(cost="1", resource_id=DB, tags=no_env), Row(cost="2", resource_id=BUCKET, tags=no_env),
            Row(cost="4", resource_id=AZURE_VM, tags=no_env)]
    r = run(tmp_path, rows)
    assert close(r.attributable_cost, 5) and close(r.attribution_gap, 2)
    assert set(r.by_resource_type) == {"rds:db", "s3:bucket", "(unknown)"}
    assert r.by_tag_key["Environment"].applicable_rows == 1
    assert r.rows.unknown_resource_type == 1 and any("names no service:resource type" in n for n in r.notes)


def test_types_no_required_tag_applies_to_are_attributable_and_reported_out_of_scope(tmp_path: Path) -> None:
    policy = {"required_tags": [{"name": "CostCenter", "applies_to": ["ec2:instance"]}]}
    rows = [Row(cost="6", resource_id=DB, tags={}), Row(cost="1", resource_id=INSTANCE, tags={})]
    r = run(tmp_path, rows, policy)
    assert close(r.attributable_cost, 6) and close(r.out_of_scope_cost, 6) and close(r.attribution_gap, 1)
    assert r.rows.out_of_scope == 1 and any("out_of_scope_cost" in n for n in r.notes)


def test_required_for_makes_a_key_optional_on_other_types(tmp_path: Path) -> None:
    policy = {"required_tags": [{"name": "CostCenter", "applies_to": [], "required_for": ["ec2:instance"]},
                                {"name": "Owner"}]}
    rows = [Row(cost="1", resource_id=DB, tags={"Owner": "x"}),
            Row(cost="2", resource_id=INSTANCE, tags={"Owner": "x"})]
    r = run(tmp_path, rows, policy)
    assert close(r.attributable_cost, 1) and close(r.attribution_gap, 2)


def test_exemptions_do_not_attribute_spend(tmp_path: Path) -> None:
    policy = {**POLICY, "exemptions": [{"id": "legacy", "reason": "migration", "expires": "2999-01-01",
                                        "resource_types": ["ec2:instance"]}]}
    r = run(tmp_path, [Row(tags={})], policy)
    assert r.rows.gap == 1 and any("exemption" in n for n in r.notes)


def test_overrides_that_name_accounts_apply_per_account(tmp_path: Path) -> None:
    policy = {**POLICY, "overrides": [{"id": "sandbox", "accounts": ["222222222222"],
                                       "remove_tags": ["CostCenter", "Environment"]}]}
    tags = {"Owner": "ana@example.com"}
    rows = [Row(cost="1", account="111111111111", tags=tags), Row(cost="2", account="222222222222", tags=tags)]
    r = run(tmp_path, rows, policy)
    assert close(r.by_account["222222222222"].attributable_cost, 2)
    assert close(r.by_account["111111111111"].attribution_gap, 1)


# ------------------------------------------------------------------------------------------ tags and ids

def test_tags_parsing() -> None:
    assert parse_tags('{"a": "x", " org": "y", "n": 5, "flag": true, "z": null}') == (
        {"a": "x", " org": "y", "n": "5", "flag": "true"}, False)
    assert parse_tags("") == ({}, False)
    assert parse_tags("{broken") == ({}, True)
    assert parse_tags('["a"]') == ({}, True)


def test_unreadable_tags_count_as_untagged_and_are_reported(tmp_path: Path) -> None:
    r = run(tmp_path, [Row(cost="2", tags="{not json"), Row(cost="1", tags=None)])
    assert r.rows.gap == 2 and r.rows.unreadable_tags == 1
    assert any("not a JSON object" in n for n in r.notes)


@pytest.mark.parametrize(("rid", "expected"), [
    ("arn:aws:ec2:us-east-1:123456789012:instance/i-1", "ec2:instance"),
    ("arn:aws:ec2:us-east-1:123456789012:volume/vol-1", "ec2:volume"),
    ("arn:aws:s3:::bucket", "s3:bucket"),
    ("arn:aws:s3:::bucket/key/part", "s3:object"),
    ("arn:aws:sqs:us-east-1:123456789012:queue-name", "sqs:queue"),
    ("arn:aws:lambda:us-east-1:123456789012:function:f:live", "lambda:function"),
    ("arn:aws:rds:us-east-1:123456789012:db:orders", "rds:db"),
    ("arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/x/1", "elasticloadbalancing:loadbalancer"),
    ("i-0123abcd", "ec2:instance"), ("vol-0a1", "ec2:volume"), ("snap-9", "ec2:snapshot"),
    ("vpc-123", ""), (AZURE_VM, ""), ("ocid1.instance.oc1.iad.x", ""), ("", ""),
])
def test_resource_type_from_resource_id_agrees_between_python_and_sql(tmp_path: Path, rid: str, expected: str) -> None:
    assert resource_type_of(rid) == expected
    path = write_focus(tmp_path / "one.csv", [Row(resource_id=rid or None)])
    with open_focus(path) as table:
        table.stage("EffectiveCost", RowFilter(), ["Tax"])
        table.reduce_tags(set())
        probes = [p for p, _, _ in table.combinations()]
    assert [table.type_of_probe(p) for p in probes] == ([expected] if rid else [])


def test_tag_sets_differing_only_in_irrelevant_keys_are_judged_once(tmp_path: Path) -> None:
    rows = [Row(tags={**GOOD, "Name": f"web-{i}", "Team": "x"}) for i in range(50)]
    rows += [Row(tags={**GOOD, "Name": "db", "costcenter": "x"}), Row(tags={"Ünïcode": "1"}),
             Row(tags=DUPLICATE), Row(tags="{broken")]
    path = write_focus(tmp_path / "many.csv", rows)
    with open_focus(path) as table:
        table.stage("EffectiveCost", RowFilter(), ["Tax"])
        table.reduce_tags({"costcenter", "owner", "environment"})
        texts = sorted(t for _, t, _ in table.combinations())
    assert texts == sorted([
        json.dumps(dict(sorted(GOOD.items())), separators=(",", ":")),  # the 50 web-i rows: one combination
        '{"CostCenter":"Engineering","Environment":"prod","Owner":"ana@example.com","costcenter":"x"}',
        '{"Ünïcode":"1"}',  # not plain ASCII: always kept
        DUPLICATE,  # a repeated key: judged whole, the last value wins (as json.loads reads it)
        "{broken",
    ])
    r = attribution_from_focus(path, load_policy(POLICY))
    assert r.rows.attributable == 52 and r.rows.gap == 2 and r.rows.unreadable_tags == 1


DUPLICATE = '{"CostCenter": "Bad", "CostCenter": "Sales", "Owner": "bo@example.com", "Environment": "dev"}'


def test_judge_tags_reports_applicable_keys_in_policy_order() -> None:
    from policies.engine import compile_policy

    verdict = judge_tags(compile_policy(load_policy(POLICY)), "ec2:instance", {"Owner": "x"})
    assert verdict.applicable == ("CostCenter", "Owner", "Environment")
    assert verdict.failing == ("CostCenter", "Environment", "Owner") and not verdict.attributable


# ------------------------------------------------------------------------------------------ metric, filters, files

def test_metric_is_effective_cost_by_default_and_billed_cost_on_request(tmp_path: Path) -> None:
    rows = [Row(cost="10", billed="12", tags={}), Row(cost="1", billed="3")]
    default = run(tmp_path, rows)
    billed = run(tmp_path, rows, metric="BilledCost")
    assert (default.metric, default.total_cost, default.attribution_gap) == ("EffectiveCost", 11.0, 10.0)
    assert (billed.metric, billed.total_cost, billed.attribution_gap) == ("BilledCost", 15.0, 12.0)
    assert normalize_metric("billedcost") == "BilledCost"


def test_unknown_metric_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as exc:
        run(tmp_path, [Row()], metric="UnblendedCost")
    assert exc.value.field == "metric" and "BilledCost" in (exc.value.fix or "")


def test_missing_file_and_missing_columns_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as exc:
        attribution_from_focus(tmp_path / "nope.csv", load_policy(POLICY))
    assert exc.value.field == "focus" and "does not exist" in exc.value.message
    assert str(tmp_path) not in str(exc.value)
    columns = [c for c in COLUMNS if c not in ("Tags", "ResourceId")]
    path = write_focus(tmp_path / "partial.csv", [Row()], columns=columns)
    with pytest.raises(InvalidInput) as exc:
        attribution_from_focus(path, load_policy(POLICY))
    assert exc.value.field == "focus" and "ResourceId, Tags" in exc.value.message
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(InvalidInput, match="is empty"):
        attribution_from_focus(empty, load_policy(POLICY))
    (tmp_path / "nothing").mkdir()
    with pytest.raises(InvalidInput, match=r"holds no \.csv"):
        attribution_from_focus(tmp_path / "nothing", load_policy(POLICY))


def test_a_malformed_csv_line_is_reported_as_such(tmp_path: Path) -> None:
    path = write_focus(tmp_path / "broken.csv", [Row() for _ in range(20)])
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:10], '"unterminated,1,2', *lines[10:]]) + "\n")
    with pytest.raises(InvalidInput) as exc:
        attribution_from_focus(path, load_policy(POLICY))
    assert exc.value.field == "focus" and "cannot be parsed as CSV" in exc.value.message


def test_a_cost_that_is_not_a_number_is_an_error_not_a_zero(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as exc:
        run(tmp_path, [Row(cost="12,5")])
    assert exc.value.field == "focus" and "'12,5'" in exc.value.message


def test_a_missing_cost_counts_as_zero_with_a_note(tmp_path: Path) -> None:
    r = run(tmp_path, [Row(cost=None, tags={}), Row(cost="2", tags={})])
    assert r.total_cost == 2.0 and r.rows.null_cost == 1 and any("no EffectiveCost value" in n for n in r.notes)


def test_several_currencies_need_a_choice(tmp_path: Path) -> None:
    rows = [Row(cost="1", currency="USD", tags={}), Row(cost="5", currency="EUR", tags={})]
    with pytest.raises(InvalidInput) as exc:
        run(tmp_path, rows)
    assert exc.value.field == "currency"
    r = run(tmp_path, rows, row_filter=RowFilter(currency="EUR"))
    assert (r.currency, r.total_cost) == ("EUR", 5.0)
    with pytest.raises(InvalidInput, match="choose one of: EUR, USD"):
        run(tmp_path, rows, row_filter=RowFilter(currency="GBP"))


def test_row_filters_and_resource_types(tmp_path: Path) -> None:
    rows = [Row(cost="1", account="111111111111", tags={}), Row(cost="2", account="222222222222", tags={}),
            Row(cost="4", resource_id=BUCKET, tags={}), Row(cost="8", resource_id=None, tags={}),
            Row(cost="16", charge_start="2024-10-02 00:00:00", tags={})]
    r = run(tmp_path, rows, row_filter=RowFilter(accounts=["222222222222"]))
    assert r.total_cost == 2.0 and r.filters == {"accounts": ["222222222222"]}
    from datetime import datetime
    r = run(tmp_path, rows, row_filter=RowFilter(start=datetime(2024, 9, 1), end=datetime(2024, 10, 1)))
    assert r.total_cost == 15.0
    r = run(tmp_path, rows, resource_types=["s3:*"])
    assert r.total_cost == 4.0 and set(r.by_resource_type) == {"s3:bucket"}
    with pytest.raises(InvalidInput) as exc:
        run(tmp_path, rows, resource_types=["bucket"])
    assert exc.value.field == "resource_types"


def test_gzip_parquet_and_folders_read_the_same(tmp_path: Path) -> None:
    import duckdb

    rows = [Row(cost="1.5", tags={}), Row(cost="2.25", tags=dict(GOOD)), Row(cost="4", resource_id=None)]
    plain = attribution_from_focus(write_focus(tmp_path / "a.csv", rows), load_policy(POLICY))
    gz = attribution_from_focus(write_focus(tmp_path / "b.csv.gz", rows, gz=True), load_policy(POLICY))
    parquet = tmp_path / "c.parquet"
    con = duckdb.connect()
    # AWS writes Tags as MAP(VARCHAR, VARCHAR) in Parquet: convert the JSON text to that.
    con.execute(f"COPY (SELECT * REPLACE (CAST(CAST(Tags AS JSON) AS MAP(VARCHAR, VARCHAR)) AS Tags) "
                f"FROM read_csv('{tmp_path / 'a.csv'}', all_varchar = true, nullstr = 'NULL')) "
                f"TO '{parquet}' (FORMAT parquet)")
    con.close()
    pq = attribution_from_focus(parquet, load_policy(POLICY))
    parts = tmp_path / "parts"
    parts.mkdir()
    write_focus(parts / "part-1.csv", rows[:1])
    write_focus(parts / "part-2.csv", rows[1:])
    folder = attribution_from_focus(parts, load_policy(POLICY))
    for other in (gz, pq, folder):
        assert (other.total_cost, other.attributable_cost, other.attribution_gap, other.untaggable_cost) == (
            plain.total_cost, plain.attributable_cost, plain.attribution_gap, plain.untaggable_cost) == (
            7.75, 2.25, 1.5, 4.0)


def test_s3_objects_and_prefixes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from moto import mock_aws

    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    rows = [Row(cost="1.5", tags={}), Row(cost="2.25", tags=dict(GOOD))]
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="billing")
        s3.upload_file(str(write_focus(tmp_path / "a.csv", rows[:1])), "billing", "focus/2024-09/part-1.csv")
        s3.upload_file(str(write_focus(tmp_path / "b.csv", rows[1:])), "billing", "focus/2024-09/part-2.csv")
        one = attribution_from_focus("s3://billing/focus/2024-09/part-1.csv", load_policy(POLICY), s3_client=s3)
        both = attribution_from_focus("s3://billing/focus/", load_policy(POLICY), s3_client=s3)
        with pytest.raises(InvalidInput) as exc:
            attribution_from_focus("s3://billing/focus/nope.csv", load_policy(POLICY), s3_client=s3)
        assert exc.value.field == "focus" and "not found" in exc.value.message
        with pytest.raises(InvalidInput, match="holds no"):
            attribution_from_focus("s3://billing/other/", load_policy(POLICY), s3_client=s3)
    assert (one.total_cost, one.attribution_gap, one.source_name) == (
        1.5, 1.5, "s3://billing/focus/2024-09/part-1.csv")
    assert (both.total_cost, both.attribution_gap, both.attributable_cost) == (3.75, 1.5, 2.25)


def test_output_states_the_method_and_the_period(tmp_path: Path) -> None:
    r = run(tmp_path, [Row()])
    assert r.method == "measured" and "measured" in r.method_description and r.source == "focus"
    assert r.currency == "USD" and r.billing_period_start is not None and r.billing_period_start.year == 2024
    assert len(r.policy_version) == 12


# ------------------------------------------------------------------------------------------ properties

RESOURCE_IDS = [None, INSTANCE, "i-0def456", BUCKET, DB, AZURE_VM]
CATEGORIES = ["Usage", "Usage", "Usage", "Purchase", "Tax", "Credit", "Adjustment", "usage"]
KEYS = ["CostCenter", "costcenter", "Owner", "Environment", "ENVIRONMENT", " Owner", "Name", "temp-x", "Project"]
VALUES = ["Engineering", "Sales", "Marketing", "", "  ", "ana@example.com", "Ana@example.com", "prod", "dev", "PROD",
          "x#y", None]
ACCOUNTS = ["111111111111", "222222222222", None]
# Case variants and hygiene-only keys next to valid tags: the cases where "fails a required key" and
# "has some finding" differ.
MUTATION_KEYS = ["costcenter", "ENVIRONMENT", " Owner", "Project", "temp-x", "Na#me", "CostCenter", "Environment"]


def _mutate(drop: set[str], changes: dict[str, str | None]) -> dict[str, str | None]:
    tags: dict[str, str | None] = {k: v for k, v in GOOD.items() if k not in drop}
    tags.update(changes)
    return tags


def rows_strategy(*, negative: bool) -> st.SearchStrategy[list[Row]]:
    low = -1000 if negative else 0
    cost = st.decimals(min_value=low, max_value=1000, places=4, allow_nan=False, allow_infinity=False)
    random_tags = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=6)
    # Mostly near-valid tag sets (a valid one, then a few keys dropped or changed), so that attributable,
    # gap and one-key-off rows all occur; plain random sets are almost never attributable.
    near_valid = st.builds(_mutate, st.sets(st.sampled_from(list(GOOD)), max_size=2),
                           st.dictionaries(st.sampled_from(MUTATION_KEYS), st.sampled_from(VALUES), max_size=2))
    tags = st.one_of(st.none(), random_tags, near_valid, near_valid, near_valid)
    row = st.builds(Row, cost=cost, resource_id=st.sampled_from(RESOURCE_IDS), tags=tags,
                    category=st.sampled_from(CATEGORIES), account=st.sampled_from(ACCOUNTS))
    return st.lists(row, min_size=0, max_size=25)


PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _compute(rows: list[Row]) -> CostAttribution:
    with tempfile.TemporaryDirectory() as tmp:
        return attribution_from_focus(write_focus(Path(tmp) / "f.csv", rows), load_policy(POLICY))


@PROPERTY_SETTINGS
@given(rows_strategy(negative=False))
def test_gap_bounds_with_non_negative_costs(rows: list[Row]) -> None:
    r = _compute(rows)
    expected = model(rows)
    # The gap is exactly the rows that fail, each once, and never exceeds taggable spend.
    assert close(r.attribution_gap, expected["gap"]) and r.rows.gap == expected["gap_rows"]
    assert r.attribution_gap <= r.taggable_cost + 1e-9
    # Per-key figures: each bounds the gap from below, their sum from above.
    per_key = [v.attribution_gap for v in r.by_tag_key.values()]
    assert all(k <= r.attribution_gap + 1e-9 for k in per_key)
    assert r.attribution_gap <= sum(per_key) + 1e-9
    assert {k: v.attribution_gap for k, v in r.by_tag_key.items() if v.gap_rows} == pytest.approx(
        {k: float(v) for k, v in expected["by_key"].items()})
    pct = r.attribution_gap_percentage
    assert pct is not None and 0 <= pct <= 100 + 1e-9


@PROPERTY_SETTINGS
@given(rows_strategy(negative=True))
def test_figures_partition_the_spend_with_any_sign(rows: list[Row]) -> None:
    r = _compute(rows)
    expected = model(rows)
    assert close(r.total_cost, expected["total"])
    assert close(r.untaggable_cost, expected["untaggable"]) and close(r.taggable_cost, expected["taggable"])
    assert close(r.attributable_cost, expected["attributable"]) and close(r.attribution_gap, expected["gap"])
    # Nothing is counted twice: the parts add up to the whole.
    assert close(r.taggable_cost + r.untaggable_cost, Decimal(str(r.total_cost)))
    assert close(r.attributable_cost + r.attribution_gap, Decimal(str(r.taggable_cost)))
    assert r.rows.total == len(rows) == r.rows.taggable + r.rows.untaggable
    assert r.rows.taggable == r.rows.attributable + r.rows.gap
    for breakdown in (r.by_account, r.by_service, r.by_region, r.by_resource_type):
        assert close(sum(e.attribution_gap for e in breakdown.values()), Decimal(str(r.attribution_gap)))
        assert close(sum(e.total_cost for e in breakdown.values()), Decimal(str(r.total_cost)))
        assert sum(e.rows for e in breakdown.values()) == r.rows.total
    assert {k: round(v.total_cost, 6) for k, v in r.by_account.items()} == {
        k: round(float(v), 6) for k, v in expected["by_account"].items()}
