"""Compliance reports of real scans (embedded runtime + moto server): every format renders, its numbers
are the scan's, resource-type narrowing, escaping of hostile tag values, errors, the REST routes, and
the HTML report in headless Chromium with a screenshot check that its charts render."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from services import report_formats, scans
from services.db.models import ScanResourceRow, ScanRow
from services.errors import InvalidInput, NotFound
from services.report_builder import COST_UNAVAILABLE, ComplianceReport, build_report
from services.schemas import ScanRequest, ScanResult
from tests.conftest import service_missing
from tests.integration.conftest import member_volume, wait_scan

pytestmark = pytest.mark.integration

# Hostile tag values: markup, a spreadsheet formula (CSV injection) and Markdown structure.
SCRIPT = "<script>alert(1)</script>"
FORMULA = "=cmd|' /C calc'!A0"
MARKDOWN = "**x** | [click](javascript:alert(3)) `y`"
HOSTILE_NAME = "<img src=x onerror=alert(2)>"


@dataclass
class Scanned:
    rt: Any
    estate: Any
    result: ScanResult
    hostile_arn: str

    @property
    def scan_id(self) -> str:
        return self.result.scan_id


def _scan(rt: Any, estate: Any, **kw: Any) -> ScanResult:
    request = ScanRequest(accounts=list(estate.member_account_ids), regions=list(estate.regions),
                          resource_types=sorted(estate.resource_types), **kw)
    result = wait_scan(rt, scans.submit(rt, request))
    assert result.status == "succeeded", result.data_quality
    return result


@pytest.fixture()
def scanned(embedded_runtime: Any) -> Scanned:
    from scanner.emulator.demo_estate import seed_small_estate

    rt = embedded_runtime
    estate = seed_small_estate(rt.settings.aws_endpoint_url)
    # An EBS volume in a member account whose tags are attacks on the report formats.
    tags = {"Name": HOSTILE_NAME, "CostCenter": SCRIPT, "Owner": FORMULA, "Environment": MARKDOWN}
    arn = member_volume(rt.settings.aws_endpoint_url, estate.member_account_ids[0], estate.regions[0], tags,
                        session_name="report-test")
    return Scanned(rt, estate, _scan(rt, estate), arn)


def _tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    """Every element of an HTML page with its attributes (what a browser would build)."""
    from html.parser import HTMLParser

    found: list[tuple[str, dict[str, str | None]]] = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, dict(attrs)))

    Collect().feed(page)
    return found


# ------------------------------------------------------------------------------------------ formats

def test_every_format_renders_and_its_numbers_are_the_scans(scanned: Scanned) -> None:
    rt, result = scanned.rt, scanned.result
    violations = list(scans.iter_violations(rt, scanned.scan_id))
    assert len(violations) == result.violations_total > 0
    assert set(report_formats.format_names()) == {"json", "csv", "markdown", "html"}

    # json: the report model, numbers equal to the scan's.
    rendered = report_formats.generate(rt, format="json", scan_id=scanned.scan_id)
    assert rendered.format.media_type == "application/json"
    assert rendered.filename == f"compliance-report-{scanned.scan_id}.json"
    report = ComplianceReport.model_validate_json(rendered.text)
    s = report.summary
    assert report.scan_id == scanned.scan_id and report.scan_status == "succeeded"
    assert (s.total_resources, s.in_scope_resources, s.compliant_resources, s.violations_total) == (
        result.total_resources, result.in_scope_resources, result.compliant_resources, result.violations_total)
    assert s.compliance_score == pytest.approx(result.compliance_score)
    assert s.non_compliant_resources == s.in_scope_resources - s.compliant_resources > 0
    severities = Counter(v.severity for v in violations)
    assert (s.errors, s.warnings) == (severities["error"], severities["warning"])
    assert report.data_quality.status == "complete" and report.data_quality.failed_shards == []
    for groups, breakdown in ((report.by_account, result.breakdowns.by_account),
                              (report.by_region, result.breakdowns.by_region),
                              (report.by_resource_type, result.breakdowns.by_resource_type)):
        assert {g.key: (g.total, g.in_scope, g.compliant, g.violations) for g in groups} == \
            {k: (e.total, e.in_scope, e.compliant, e.violations) for k, e in breakdown.items()}
        scores = [g.compliance_score for g in groups]
        assert scores == sorted(scores), "worst first"
    assert {t.tag_name: (t.violations, t.resources) for t in report.by_tag} == \
        {k: (e.violations, e.resources) for k, e in result.breakdowns.by_tag.items()}
    per_arn = Counter(v.resource_arn for v in violations)
    worst = report.top_offenders.resources
    assert worst and worst[0].violations == max(per_arn.values())
    assert all(o.violations == per_arn[o.resource_arn] == len(o.problems) for o in worst)
    assert [o.violations for o in worst] == sorted((o.violations for o in worst), reverse=True)
    assert report.trend.points[-1].scan_id == scanned.scan_id and len(report.trend.points) == 1
    assert report.trend.note and "only one" in report.trend.note
    assert report.cost is None and report.cost_note == COST_UNAVAILABLE
    assert 0 < len(report.sample_violations) <= 15
    assert report.recommendations

    # csv: every violation, one per row.
    rendered = report_formats.generate(rt, format="csv", scan_id=scanned.scan_id)
    rows = list(csv.DictReader(io.StringIO(rendered.text)))
    assert len(rows) == result.violations_total
    assert {(r["resource_arn"], r["tag_name"], r["violation_type"]) for r in rows} == \
        {(v.resource_arn, v.tag_name, v.violation_type) for v in violations}
    assert rendered.format.media_type == "text/csv" and rendered.format.disposition == "attachment"

    # markdown: the headline numbers and every section.
    md = report_formats.generate(rt, format="markdown", scan_id=scanned.scan_id).text
    assert md.startswith(f"# Tag compliance report: scan {scanned.scan_id}")
    assert f"**{result.compliance_score:.1%}** ({result.compliant_resources} of {result.in_scope_resources}" in md
    assert f"- Violations: {result.violations_total} ({s.errors} errors, {s.warnings} warnings)" in md
    for section in ("## Score trend", "## By account", "## By resource type", "## By region", "## Violations by tag",
                    "## Top offenders", "## Cost gap", "## Recommendations", "## Sample violations"):
        assert section in md, section
    assert COST_UNAVAILABLE.replace("`", "\\`") in md

    # html: one self-contained page with every chart and nothing to load.
    page = report_formats.generate(rt, format="html", scan_id=scanned.scan_id).text
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for chart in ("chart-trend", "chart-account", "chart-type", "chart-offenders"):
        assert f'id="{chart}"' in page, chart
    assert f"{result.compliance_score:.1%}" in page
    assert f"{result.compliant_resources} / {result.in_scope_resources}" in page
    assert "cost data not available" in page
    tags = _tags(page)
    assert not [t for t in tags if t[0] in ("script", "img", "link", "iframe", "object", "embed", "a", "image")]
    assert not [t for t in tags if {"src", "href", "xlink:href", "srcset", "action"} & set(t[1])]
    assert not [t for t in tags if any(name.startswith("on") for name in t[1])], "event handler attribute"
    assert "@import" not in page and "url(" not in page


def test_recommendations_score_impact_is_exact(scanned: Scanned) -> None:
    rt = scanned.rt
    report = build_report(rt, scan_id=scanned.scan_id)
    with rt.db.session() as s:
        rows = s.execute(select(ScanResourceRow.arn, ScanResourceRow.in_scope).where(
            ScanResourceRow.scan_id == scanned.scan_id)).all()
    in_scope = {arn for arn, flag in rows if flag}
    kinds: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for v in scans.iter_violations(rt, scanned.scan_id):
        kinds[v.resource_arn].add((v.violation_type, v.tag_name))
    assert report.recommendations
    points = [rec.estimated_score_points for rec in report.recommendations]
    assert points == sorted(points, reverse=True)
    for rec in report.recommendations:
        key = (rec.violation_type, rec.tag_name)
        fixed = {arn for arn, ks in kinds.items() if ks == {key} and arn in in_scope}
        assert rec.resources_becoming_compliant == len(fixed), rec
        assert rec.resources_affected == sum(1 for ks in kinds.values() if key in ks)
        assert rec.estimated_score_points == pytest.approx(100 * len(fixed) / len(in_scope), abs=0.01)
        assert rec.compliance_score_after == pytest.approx(
            (report.summary.compliant_resources + len(fixed)) / len(in_scope), abs=1e-6)
        assert rec.estimated_dollars is None and rec.dollar_impact_basis == "no cost data"
        assert sum(rec.by_resource_type.values()) == rec.resources_affected
    assert build_report(rt, scan_id=scanned.scan_id, include_recommendations=False).recommendations is None
    md = report_formats.generate(rt, format="markdown", scan_id=scanned.scan_id, include_recommendations=False).text
    assert "## Recommendations" not in md


def test_trend_follows_scans_of_the_same_scope(scanned: Scanned) -> None:
    rt, estate = scanned.rt, scanned.estate
    second = _scan(rt, estate)
    # Another scope (one account) is not comparable: it stays out of the trend.
    other = wait_scan(rt, scans.submit(rt, ScanRequest(accounts=[estate.member_account_ids[0]],
                                                       regions=list(estate.regions),
                                                       resource_types=sorted(estate.resource_types))))
    assert other.status == "succeeded"
    report = build_report(rt, scan_id=second.scan_id)
    assert [p.scan_id for p in report.trend.points] == [scanned.scan_id, second.scan_id]
    assert report.trend.note is None
    # The latest finished scan is the default: here the one-account scan.
    latest = build_report(rt)
    assert latest.scan_id == other.scan_id and latest.trend.other_scope_scans == 2
    assert [p.scan_id for p in latest.trend.points] == [other.scan_id]


def test_resource_types_narrow_every_number(scanned: Scanned) -> None:
    rt, result = scanned.rt, scanned.result
    types = ["ec2:volume", "s3:bucket"]
    report = build_report(rt, scan_id=scanned.scan_id, resource_types=types)
    wanted = {t: result.breakdowns.by_resource_type[t] for t in types}
    s = report.summary
    assert s.total_resources == sum(e.total for e in wanted.values())
    assert s.in_scope_resources == sum(e.in_scope for e in wanted.values())
    assert s.compliant_resources == sum(e.compliant for e in wanted.values())
    assert s.violations_total == sum(e.violations for e in wanted.values())
    assert s.compliance_score == pytest.approx(s.compliant_resources / s.in_scope_resources, abs=1e-6)
    assert {g.key for g in report.by_resource_type} == set(types)
    assert sum(g.total for g in report.by_account) == s.total_resources
    assert report.scope.resource_types == types
    assert any("only the resource types" in n for n in report.data_quality.notes)
    assert all(set(rec.by_resource_type) <= set(types) for rec in report.recommendations or [])
    assert all(o.resource_type in types for o in report.top_offenders.resources)
    assert report.trend.points[-1].compliance_score == pytest.approx(s.compliance_score)

    rows = list(csv.DictReader(io.StringIO(report_formats.generate(
        rt, format="csv", scan_id=scanned.scan_id, resource_types=types).text)))
    assert len(rows) == s.violations_total and {r["resource_type"] for r in rows} <= set(types)
    # "all" (or an empty filter of blanks) is the whole scan.
    assert build_report(rt, scan_id=scanned.scan_id, resource_types=["all"]).summary.total_resources == \
        result.total_resources


def test_hostile_tag_values_are_escaped_in_every_format(scanned: Scanned) -> None:
    rt, arn = scanned.rt, scanned.hostile_arn
    mine = [v for v in scans.iter_violations(rt, scanned.scan_id) if v.resource_arn == arn]
    assert {v.current_value for v in mine} >= {SCRIPT, FORMULA, MARKDOWN}, mine
    # The hostile volume is the worst offender, so its name and values reach every section.
    report = build_report(rt, scan_id=scanned.scan_id, resource_types=["ec2:volume"])
    assert report.top_offenders.resources[0].resource_arn == arn
    assert report.top_offenders.resources[0].name == HOSTILE_NAME

    page = report_formats.generate(rt, format="html", scan_id=scanned.scan_id, resource_types=["ec2:volume"]).text
    for raw in (SCRIPT, HOSTILE_NAME, "<img", "<script"):
        assert raw not in page, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert {t[0] for t in _tags(page)} <= {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2",
                                          "h3", "p", "main", "section", "div", "span", "strong", "br", "ul", "ol",
                                          "li", "svg", "text", "rect", "line", "polyline", "circle", "desc",
                                          "table", "caption", "thead", "tbody", "tr", "th", "td", "footer"}
    assert not [t for t in _tags(page) if any(name.startswith("on") for name in t[1])]

    md = report_formats.generate(rt, format="markdown", scan_id=scanned.scan_id, resource_types=["ec2:volume"]).text
    assert "<script" not in md and "<img" not in md and "**x**" not in md
    assert not re.search(r"(?<!\\)\]\(", md), "an unescaped link"
    assert "&lt;script&gt;" in md and "\\*\\*x\\*\\* \\| \\[click\\](javascript:alert(3)) \\`y\\`" in md
    # Every table row still has its columns: no value added a cell separator.
    for line in md.splitlines():
        if line.startswith("| ") and "ec2:volume" in line:
            assert len(re.findall(r"(?<!\\)\|", line)) == line.count("|") - line.count("\\|")
    table = [line for line in md.splitlines() if line.startswith("| resource | type |")]
    assert table

    text = report_formats.generate(rt, format="csv", scan_id=scanned.scan_id, resource_types=["ec2:volume"]).text
    rows = [r for r in csv.DictReader(io.StringIO(text)) if r["resource_arn"] == arn]
    values = {r["current_value"] for r in rows}
    assert "'" + FORMULA in values and FORMULA not in values
    assert all(not cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r.values())

    data = json.loads(report_formats.generate(rt, format="json", scan_id=scanned.scan_id,
                                              resource_types=["ec2:volume"]).text)
    assert data["top_offenders"]["resources"][0]["name"] == HOSTILE_NAME  # JSON carries data as data


# ------------------------------------------------------------------------------------------- errors

def test_bad_requests_name_the_field_and_the_fix(scanned: Scanned) -> None:
    rt, sid = scanned.rt, scanned.scan_id
    cases: list[tuple[dict[str, Any], type[Exception], str, str]] = [
        ({"format": "yaml", "scan_id": sid}, InvalidInput, "format", "json, csv, markdown, html"),
        ({"format": "pdf"}, InvalidInput, "format", "use one of"),
        ({"format": "json", "scan_id": "6f1c9a64-3b8e-4f5e-9a51-1d2a7c1e0b11"}, NotFound, "scan_id", "list scans"),
        ({"format": "json", "scan_id": "../etc/passwd"}, InvalidInput, "scan_id", "UUID"),
        ({"format": "json", "scan_id": sid, "resource_types": ["ec2:spaceship"]}, InvalidInput, "resource_types",
         "ec2:instance"),
        ({"format": "json", "scan_id": sid, "resource_types": ["rds:db"]}, InvalidInput, "resource_types",
         "did not cover"),
        ({"format": "json", "scan_id": sid, "resource_types": [" "]}, InvalidInput, "resource_types", "empty"),
    ]
    for kwargs, error, field, needle in cases:
        with pytest.raises(error) as info:
            report_formats.generate(rt, **kwargs)
        exc = info.value
        assert exc.field == field, (kwargs, exc)  # type: ignore[attr-defined]
        assert exc.fix and needle in str(exc), (kwargs, str(exc))  # type: ignore[attr-defined]
    assert report_formats.generate(rt, format=" HTML ", scan_id=sid).format.name == "html"


def test_unfinished_and_missing_scans(embedded_runtime: Any) -> None:
    rt = embedded_runtime
    with pytest.raises(NotFound) as info:
        report_formats.generate(rt, format="json")
    assert info.value.field == "scan_id" and "no finished scan" in info.value.message
    assert "check_tag_compliance" in (info.value.fix or "")
    from services.policy_store import active_policy

    policy_id = active_policy(rt.db, rt.settings.policy_path).id
    with rt.db.session() as s:
        s.add(ScanRow(id="0b8f1f62-5c1e-4a43-8d7e-3e2f0f7c9a10", status="running", request={}, policy_id=policy_id))
        s.add(ScanRow(id="1b8f1f62-5c1e-4a43-8d7e-3e2f0f7c9a10", status="failed", request={}, policy_id=policy_id,
                      error="every shard failed"))
    with pytest.raises(InvalidInput, match="still running") as running:
        report_formats.generate(rt, format="json", scan_id="0b8f1f62-5c1e-4a43-8d7e-3e2f0f7c9a10")
    assert "get_scan_status" in (running.value.fix or "")
    with pytest.raises(InvalidInput, match="failed"):
        report_formats.generate(rt, format="json", scan_id="1b8f1f62-5c1e-4a43-8d7e-3e2f0f7c9a10")
    with pytest.raises(NotFound):  # neither is a finished scan
        report_formats.generate(rt, format="json")


# --------------------------------------------------------------------------------------------- REST

def test_rest_reports(scanned: Scanned) -> None:
    from fastapi.testclient import TestClient

    from api.http.app import create_app

    with TestClient(create_app(lambda: scanned.rt)) as client:
        sid = scanned.scan_id
        html = client.get("/v1/reports/latest", params={"format": "html"})
        assert html.status_code == 200, html.text
        assert html.headers["content-type"] == "text/html; charset=utf-8"
        assert html.headers["content-disposition"] == f'inline; filename="compliance-report-{sid}.html"'
        assert "default-src 'none'" in html.headers["content-security-policy"]
        assert html.headers["x-report-scan-id"] == sid and 'id="chart-trend"' in html.text

        data = client.get(f"/v1/reports/{sid}")  # json by default
        assert data.status_code == 200 and data.headers["content-type"] == "application/json"
        assert data.json()["summary"]["violations_total"] == scanned.result.violations_total

        narrowed = client.get(f"/v1/reports/{sid}", params={"format": "csv", "resource_types": "ec2:volume,s3:bucket",
                                                             "download": "true"})
        assert narrowed.status_code == 200 and narrowed.headers["content-type"].startswith("text/csv")
        assert narrowed.headers["content-disposition"] == f'attachment; filename="compliance-report-{sid}.csv"'
        rows = list(csv.DictReader(io.StringIO(narrowed.text)))
        by_type = scanned.result.breakdowns.by_resource_type
        assert len(rows) == by_type["ec2:volume"].violations + by_type["s3:bucket"].violations
        repeated = client.get(f"/v1/reports/{sid}", params=[("format", "markdown"), ("resource_types", "ec2:volume"),
                                                             ("resource_types", "s3:bucket"),
                                                             ("include_recommendations", "false")])
        assert repeated.status_code == 200 and repeated.headers["content-type"] == "text/markdown; charset=utf-8"
        assert "## Recommendations" not in repeated.text and "ec2:volume, s3:bucket" in repeated.text

        for params, path, status, field in (
                ({"format": "yaml"}, f"/v1/reports/{sid}", 422, "format"),
                ({}, "/v1/reports/6f1c9a64-3b8e-4f5e-9a51-1d2a7c1e0b11", 404, "scan_id"),
                ({}, "/v1/reports/not-a-scan", 422, "scan_id"),
                ({"resource_types": "ec2:warp-drive"}, "/v1/reports/latest", 422, "resource_types"),
                ({"include_recommendations": "maybe"}, "/v1/reports/latest", 422, "include_recommendations")):
            response = client.get(path, params=params)
            assert response.status_code == status, (path, params, response.text)
            error = response.json()["error"]
            # Query parameters FastAPI itself rejects are named with their location (query.NAME).
            assert error["field"].removeprefix("query.") == field and error["fix"], error
            assert "Traceback" not in response.text
        assert "/v1/reports/{scan_id}" in client.get("/openapi.json").json()["paths"]


# ------------------------------------------------------------------------------------- HTML in Chromium

def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def read_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """A PNG's width, height and rows of RGB pixels (8-bit RGB or RGBA, non-interlaced: what Chromium
    writes). Small on purpose: the tests need no imaging library."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    width = height = depth = colour = interlace = 0
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _c, _f, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        prev = line
        rows.append(bytes(line) if bpp == 3 else bytes(v for i, v in enumerate(line) if i % 4 != 3))
    return width, height, rows


def _hex(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def test_html_report_renders_its_charts_in_headless_chromium(scanned: Scanned, tmp_path: Path) -> None:
    chromium = _chromium()
    if chromium is None:
        service_missing("chromium (Debian package 'chromium': apt-get install -y chromium) to render the HTML report")
        return
    rt = scanned.rt
    _scan(rt, scanned.estate)  # a second point, so the trend chart draws a line
    rendered = report_formats.generate(rt, format="html")
    page = tmp_path / rendered.filename
    page.write_text(rendered.text, encoding="utf-8")
    shot = tmp_path / "report.png"
    profile = tmp_path / "chromium-profile"
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
         f"--user-data-dir={profile}", "--no-first-run", "--force-device-scale-factor=1",
         f"--screenshot={shot}", "--window-size=1280,1600", page.as_uri()],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(tmp_path)})
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-3000:]
    if os.environ.get("REPORT_SCREENSHOT_DIR"):  # keep it for a person to look at
        shutil.copy(shot, Path(os.environ["REPORT_SCREENSHOT_DIR"]) / "report.png")

    width, height, rows = read_png(shot.read_bytes())
    assert (width, height) == (1280, 1600)
    pixels = Counter(tuple(row[i:i + 3]) for row in rows[::2] for i in range(0, len(row), 6))
    assert len(pixels) > 20, "the page is blank"
    assert pixels.most_common(1)[0][1] < 0.9 * sum(pixels.values()), "one colour fills the page"
    # Each chart draws in its own colour, used nowhere else on the page: enough pixels of each means
    # the SVG charts rendered (trend line and points, compliant / non-compliant bars, offender bars).
    for name in ("trend", "compliant", "non_compliant", "offenders"):
        colour = _hex(report_formats.CHART_COLOURS[name])
        assert pixels[colour] >= 40, f"chart colour {name} {report_formats.CHART_COLOURS[name]}: {pixels[colour]} px"
