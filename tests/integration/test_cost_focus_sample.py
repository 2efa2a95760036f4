"""Cost of non-compliance on the real FOCUS 1.0 sample (../shared/data/focus/focus_sample_1.0.csv).

The sample (FinOps Foundation, CC BY 4.0) has the mess of real exports: keys ``environment`` and
``env``, ``" org"`` with a leading space, untagged rows, rows without a ResourceId, negative Azure
corrections and a Credit. Expected figures are computed here with Python's csv and json modules
and Decimal arithmetic, independently of DuckDB and of services.cost; the service and the
``finops-tags cost`` command (a real subprocess) must agree with them.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from services.config import DEFAULT_POLICY_PATH
from services.cost import attribution_from_focus

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "focus" / "focus_sample_1.0.csv"
CLI = str(Path(sys.executable).parent / "finops-tags")
UNTAGGABLE = {"tax", "credit", "adjustment"}

# A policy written for the sample's own keys, so that some spend is attributable and some is not.
SAMPLE_POLICY: dict[str, Any] = {
    "required_tags": [
        {"name": "environment", "allowed_values": ["prod", "dev"]},
        {"name": "application"},
        {"name": "business_unit"},
    ],
    "tag_naming_rules": {"case_sensitivity": True},
}


@pytest.fixture(scope="module")
def sample() -> list[dict[str, str]]:
    if not SAMPLE.is_file():
        pytest.fail(f"the shared FOCUS sample is missing: {SAMPLE} (see ../shared/data/SOURCES.md)")
    with open(SAMPLE, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1000
    return rows


def _null(value: str) -> bool:
    return value.strip() in ("", "NULL")


def _tags(row: Mapping[str, str]) -> dict[str, str]:
    if _null(row["Tags"]):
        return {}
    data = json.loads(row["Tags"])
    assert isinstance(data, dict)
    return {k: v for k, v in data.items() if v is not None}


KeyCheck = Callable[[dict[str, str]], bool]


def expected(rows: list[dict[str, str]], checks: Mapping[str, KeyCheck], metric: str) -> dict[str, Any]:
    """The figures by plain Python: untaggable rows apart, a row is gap when any key check fails."""
    out: dict[str, Any] = {"total": Decimal(0), "taggable": Decimal(0), "untaggable": Decimal(0),
                           "attributable": Decimal(0), "gap": Decimal(0), "rows": len(rows), "taggable_rows": 0,
                           "gap_rows": 0, "by_key": {k: Decimal(0) for k in checks},
                           "by_service": {}, "by_account": {}}
    for row in rows:
        cost = Decimal(row[metric])
        out["total"] += cost
        if _null(row["ResourceId"]) or row["ChargeCategory"].strip().lower() in UNTAGGABLE:
            out["untaggable"] += cost
            continue
        out["taggable"] += cost
        out["taggable_rows"] += 1
        tags = _tags(row)
        failing = [k for k, ok in checks.items() if not ok(tags)]
        if not failing:
            out["attributable"] += cost
            continue
        out["gap"] += cost
        out["gap_rows"] += 1
        for k in failing:
            out["by_key"][k] += cost
        for dim, column in (("by_service", "ServiceName"), ("by_account", "SubAccountId")):
            key = "(none)" if _null(row[column]) else row[column]
            out[dim][key] = out[dim].get(key, Decimal(0)) + cost
    return out


def _present(tags: dict[str, str], key: str) -> str | None:
    value = tags.get(key)
    return value if value is not None and value.strip() else None


SAMPLE_CHECKS: dict[str, KeyCheck] = {
    "environment": lambda t: _present(t, "environment") in ("prod", "dev"),
    "application": lambda t: _present(t, "application") is not None,
    "business_unit": lambda t: _present(t, "business_unit") is not None,
}
# The shipped default policy's three keys that apply to every type. (Application applies to some types
# only; no sample row passes the three below, so it cannot change which rows are gap.)
DEFAULT_CHECKS: dict[str, KeyCheck] = {
    "CostCenter": lambda t: _present(t, "CostCenter") in
    ("Engineering", "Marketing", "Sales", "Operations", "Finance", "Data"),
    "Owner": lambda t: fnmatch.fnmatchcase(_present(t, "Owner") or "", "*@example.com"),
    "Environment": lambda t: _present(t, "Environment") in ("production", "staging", "development", "test"),
}


def close(actual: float, wanted: Decimal) -> bool:
    return abs(Decimal(str(actual)) - wanted) <= Decimal("1e-9")


def assert_matches(result: Mapping[str, Any], exp: Mapping[str, Any]) -> None:
    """``result`` is the JSON form of a CostAttribution."""
    for field, key in (("total_cost", "total"), ("taggable_cost", "taggable"), ("untaggable_cost", "untaggable"),
                       ("attributable_cost", "attributable"), ("attribution_gap", "gap")):
        assert close(result[field], exp[key]), (field, result[field], exp[key])
    assert result["rows"]["total"] == exp["rows"]
    assert result["rows"]["taggable"] == exp["taggable_rows"] and result["rows"]["gap"] == exp["gap_rows"]
    pct = exp["gap"] / exp["taggable"] * 100
    assert abs(Decimal(str(result["attribution_gap_percentage"])) - pct) < Decimal("0.0001")
    for key, value in exp["by_key"].items():
        assert close(result["by_tag_key"][key]["attribution_gap"], value), key
    for dim in ("by_service", "by_account"):
        gaps = {k: v["attribution_gap"] for k, v in result[dim].items() if v["gap_rows"]}
        assert set(gaps) == set(exp[dim]), dim
        for key, value in exp[dim].items():
            assert close(gaps[key], value), (dim, key)


def test_the_sample_is_the_documented_mess(sample: list[dict[str, str]]) -> None:
    keys = {k for row in sample for k in _tags(row)}
    assert {"environment", "env", " org", "org"} <= keys
    assert sum(1 for r in sample if _null(r["ResourceId"])) == 75
    assert sum(1 for r in sample if r["ProviderName"] == "AWS" and _null(r["Tags"])) == 289
    assert not any("Owner" in _tags(r) for r in sample)


def test_default_policy_every_taggable_row_is_gap(sample: list[dict[str, str]]) -> None:
    exp = expected(sample, DEFAULT_CHECKS, "EffectiveCost")
    assert exp["attributable"] == 0 and exp["gap"] == exp["taggable"]
    result = attribution_from_focus(SAMPLE).model_dump(mode="json")
    assert_matches(result, exp)
    assert result["method"] == "measured" and result["metric"] == "EffectiveCost" and result["currency"] == "USD"
    assert set(result["untaggable_by_reason"]) == {"no_resource_id", "charge_category:Credit",
                                                   "charge_category:Adjustment"}


@pytest.mark.parametrize("metric", ["EffectiveCost", "BilledCost"])
def test_sample_policy_splits_attributable_and_gap(tmp_path: Path, sample: list[dict[str, str]], metric: str) -> None:
    policy = tmp_path / "sample-policy.json"
    policy.write_text(json.dumps(SAMPLE_POLICY))
    exp = expected(sample, SAMPLE_CHECKS, metric)
    assert exp["attributable"] > 0 and exp["gap"] > 0
    result = attribution_from_focus(SAMPLE, policy, metric=metric).model_dump(mode="json")
    assert_matches(result, exp)
    # 'env' is not 'environment', and '" org"' is no key of this policy: the env rows are gap.
    env_rows = [r for r in sample if "env" in _tags(r) and not _null(r["ResourceId"])]
    assert env_rows and result["by_tag_key"]["environment"]["gap_rows"] >= len(env_rows)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINOPS_")}
    return subprocess.run([CLI, "cost", *args], capture_output=True, text=True, timeout=120, env=env, check=False)


def test_cli_json_agrees_with_the_independent_figures(tmp_path: Path, sample: list[dict[str, str]]) -> None:
    proc = _cli("--focus", str(SAMPLE), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for field in ("total_cost", "taggable_cost", "untaggable_cost", "attributable_cost", "attribution_gap",
                  "attribution_gap_percentage", "by_tag_key", "by_service", "by_account", "by_region",
                  "by_resource_type", "notes", "metric", "currency", "method"):
        assert field in result, field
    assert_matches(result, expected(sample, DEFAULT_CHECKS, "EffectiveCost"))
    assert any("overlap" in n for n in result["notes"])

    policy = tmp_path / "sample-policy.json"
    policy.write_text(json.dumps(SAMPLE_POLICY))
    out = tmp_path / "cost.json"
    proc = _cli("--focus", str(SAMPLE), "--policy", str(policy), "--metric", "BilledCost", "--format", "json",
                "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert_matches(json.loads(out.read_text()), expected(sample, SAMPLE_CHECKS, "BilledCost"))


def test_cli_table_output(sample: list[dict[str, str]]) -> None:
    proc = _cli("--focus", str(SAMPLE))
    assert proc.returncode == 0, proc.stderr
    assert "attribution gap" in proc.stdout and "overlapping" in proc.stdout
    assert f"{float(expected(sample, DEFAULT_CHECKS, 'EffectiveCost')['total']):,.2f}" in proc.stdout


@pytest.mark.parametrize(("args", "field"), [
    (["--focus", "/no/such/focus.csv"], "--focus"),
    (["--focus", str(SAMPLE), "--metric", "UnblendedCost"], "--metric"),
    (["--focus", str(SAMPLE), "--format", "csv"], "--format"),
    (["--focus", str(DEFAULT_POLICY_PATH)], "--focus"),  # a file without the FOCUS columns
])
def test_cli_bad_input_exits_2_naming_the_field(args: list[str], field: str) -> None:
    proc = _cli(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert f"{field}:" in proc.stderr and "Fix:" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
