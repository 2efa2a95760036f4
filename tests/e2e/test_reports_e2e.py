"""Compliance reports end to end: ``generate_compliance_report`` and the report resources over stdio
with the MCP SDK's client (``finops-tags mcp``), and ``finops-tags report`` as a user runs it, both
against the seeded emulator."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import (
    FINOPS_TAGS,
    SeededEmulator,
    ServerEnv,
    SyncMcpClient,
    assert_tool_error,
    stdio_target,
    tool_text,
)

pytestmark = pytest.mark.e2e

MISSING_SCAN = "6f1c9a64-3b8e-4f5e-9a51-1d2a7c1e0b11"
INLINE_LIMIT = 50_000


@dataclass
class ReportServer:
    mcp: SyncMcpClient
    stderr_path: Path
    scan: dict[str, Any]

    @property
    def scan_id(self) -> str:
        return str(self.scan["scan_id"])


@pytest.fixture(scope="module")
def server(server_env: ServerEnv, seeded_emulator: SeededEmulator,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReportServer]:
    """``finops-tags mcp`` with one finished scan of the whole seeded organization (the configured scope)."""
    home = tmp_path_factory.mktemp("report-home")
    env = server_env(home)
    stderr_path = home / "server-stderr.log"
    with open(stderr_path, "w") as errlog, SyncMcpClient(stdio_target(env, errlog), mode="legacy") as client:
        before = client.call("generate_compliance_report", {"format": "markdown"})
        assert_tool_error(before, "scan_id", "no finished scan", "check_tag_compliance")
        answer = client.call("check_tag_compliance", {"wait_seconds": 40})
        assert not answer.is_error, tool_text(answer)
        scan = answer.structured_content
        while scan["status"] not in ("succeeded", "partial", "failed", "cancelled"):
            scan = client.call("get_scan_status", {"scan_id": scan["scan_id"], "wait_seconds": 10}).structured_content
        assert scan["status"] == "succeeded", scan["data_quality"]
        yield ReportServer(client, stderr_path, scan)


def _call(server: ReportServer, **arguments: Any) -> dict[str, Any]:
    answer = server.mcp.call("generate_compliance_report", arguments)
    assert not answer.is_error, tool_text(answer)
    # Bounded for a model's context: the inline limit plus the headline, whatever the format.
    assert len(tool_text(answer)) < 2 * INLINE_LIMIT
    result: dict[str, Any] = answer.structured_content
    return result


def _read(server: ReportServer, uri: str) -> tuple[str, str | None]:
    contents = server.mcp.read_resource(uri).contents[0]
    return contents.text, contents.mime_type


def test_tool_is_listed_with_the_compatible_parameters(server: ReportServer) -> None:
    tool = next(t for t in server.mcp.list_tools() if t.name == "generate_compliance_report")
    props = tool.input_schema["properties"]
    assert {"resource_types", "format", "include_recommendations"} <= set(props) and "scan_id" in props
    assert props["format"]["enum"] == ["json", "csv", "markdown", "html"]
    assert all(spec.get("description") for spec in props.values())
    assert tool.annotations.read_only_hint is True and tool.annotations.destructive_hint is False
    assert {"summary", "content", "resource_uri", "size_bytes", "data_quality"} <= set(tool.output_schema["properties"])
    templates = {t.uri_template for t in server.mcp.portal.call(server.mcp.client.list_resource_templates)
                 .resource_templates}
    assert "report://{scan_id}/report.html{?resource_types,include_recommendations}" in templates


def test_markdown_report_inline_matches_the_scan(server: ReportServer) -> None:
    r = _call(server, format="markdown")  # the latest finished scan by default
    scan = server.scan
    assert r["scan_id"] == server.scan_id and r["inline"] is True and r["note"] is None
    assert r["size_bytes"] == len(r["content"].encode()) <= INLINE_LIMIT
    s = r["summary"]
    assert (s["total_resources"], s["compliant_resources"], s["in_scope_resources"], s["violations_total"]) == (
        scan["total_resources"], scan["compliant_resources"], scan["in_scope_resources"], scan["violations_total"])
    assert s["compliance_score"] == pytest.approx(scan["compliance_score"])
    assert r["data_quality"]["status"] == "complete"
    assert r["content"].startswith(f"# Tag compliance report: scan {server.scan_id}")
    assert f"**{scan['compliance_score']:.1%}**" in r["content"]
    assert r["recommendations"] and r["recommendations"][0]["estimated_score_points"] > 0
    assert r["cost_note"] and "finops-tags cost" in r["cost_note"]
    assert r["resource_uri"] == f"report://{server.scan_id}/report.md"
    assert r["download_path"] == f"/v1/reports/{server.scan_id}?format=markdown"
    text, mime = _read(server, r["resource_uri"])
    assert mime == "text/markdown" and text.splitlines()[:5] == r["content"].splitlines()[:5]


def test_large_csv_is_a_resource_reference_not_inline(server: ReportServer) -> None:
    r = _call(server, format="csv")
    assert r["inline"] is False and r["content"] is None
    assert r["size_bytes"] > INLINE_LIMIT
    assert r["resource_uri"] in r["note"] and r["download_path"] in r["note"]
    text, mime = _read(server, r["resource_uri"])
    assert mime == "text/csv" and len(text.encode()) == r["size_bytes"]
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == server.scan["violations_total"]

    # Narrowed to one type: the reference reads exactly the narrowed report.
    types = ["ec2:instance"]
    narrowed = _call(server, format="csv", resource_types=types, include_recommendations=False)
    expected = server.scan["breakdowns"]["by_resource_type"]["ec2:instance"]["violations"]
    assert narrowed["summary"]["violations_total"] == expected and narrowed["recommendations"] is None
    assert narrowed["scope"]["resource_types"] == types
    body = narrowed["content"] if narrowed["inline"] else _read(server, narrowed["resource_uri"])[0]
    assert len(list(csv.DictReader(io.StringIO(body)))) == expected
    uri = narrowed["resource_uri"]
    assert uri.startswith(f"report://{server.scan_id}/report.csv?") and "include_recommendations=false" in uri
    assert len(list(csv.DictReader(io.StringIO(_read(server, uri)[0])))) == expected


def test_html_and_json_reports(server: ReportServer) -> None:
    html = _call(server, format="html", scan_id=server.scan_id)
    page = html["content"] if html["inline"] else _read(server, html["resource_uri"])[0]
    assert page.startswith("<!DOCTYPE html>") and 'id="chart-trend"' in page and "<script" not in page
    assert html["media_type"] == "text/html" and html["filename"].endswith(".html")

    data = _call(server, format="json", resource_types=["s3:bucket"])
    report = json.loads(data["content"])
    assert report["summary"] == data["summary"]
    assert report["summary"]["total_resources"] == server.scan["breakdowns"]["by_resource_type"]["s3:bucket"]["total"]
    latest, mime = _read(server, "report://latest/report.json")
    assert mime == "application/json" and json.loads(latest)["scan_id"] == server.scan_id


@pytest.mark.parametrize(("arguments", "needles"), [
    pytest.param({"format": "pdf"}, ["format", "pdf", "json, csv, markdown, html"], id="unknown-format"),
    pytest.param({"scan_id": MISSING_SCAN}, ["scan_id", "does not exist"], id="unknown-scan"),
    pytest.param({"scan_id": "../../etc/passwd"}, ["scan_id", "not a scan id"], id="malformed-scan"),
    pytest.param({"resource_types": ["ec2:spaceship"]}, ["resource_types", "ec2:spaceship", "ec2:instance"],
                 id="unknown-type"),
    pytest.param({"resource_types": []}, ["resource_types", "empty"], id="empty-types"),
    pytest.param({"include_recommendations": "perhaps"}, ["include_recommendations"], id="bad-bool"),
    pytest.param({"formats": "csv"}, ["formats", "format"], id="misspelt-argument"),
])
def test_bad_input_is_an_error_naming_the_field_and_fix(server: ReportServer, arguments: dict[str, Any],
                                                        needles: list[str]) -> None:
    text = assert_tool_error(server.mcp.call("generate_compliance_report", arguments), *needles)
    assert "Fix:" in text, text


def test_report_resource_of_an_unknown_scan_names_the_problem(server: ReportServer) -> None:
    from mcp import MCPError

    with pytest.raises(MCPError) as info:
        _read(server, f"report://{MISSING_SCAN}/report.html")
    assert "does not exist" in str(info.value) and "Traceback" not in str(info.value)
    with pytest.raises(MCPError) as info:
        _read(server, "report://latest/report.json?resource_types=ec2%3Awarp")
    assert "resource_types" in str(info.value)


def test_server_logged_no_traceback(server: ReportServer) -> None:
    log = server.stderr_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]


# ---------------------------------------------------------------------------------------------- CLI

def _cli(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FINOPS_TAGS, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_cli_report(server_env: ServerEnv, seeded_emulator: SeededEmulator, tmp_path: Path) -> None:
    env = server_env(tmp_path / "home")
    none_yet = _cli(["report"], env, timeout=60)
    assert none_yet.returncode == 2 and "no finished scan" in none_yet.stderr, none_yet.stderr
    account, region = seeded_emulator.accounts[0], seeded_emulator.regions[0]
    scan = _cli(["scan", "--accounts", account, "--regions", region, "--format", "json"], env)
    assert scan.returncode == 0, scan.stderr[-3000:]
    result = json.loads(scan.stdout)

    md = _cli(["report"], env, timeout=60)  # markdown of the latest finished scan, to stdout
    assert md.returncode == 0, md.stderr[-2000:]
    assert md.stdout.startswith(f"# Tag compliance report: scan {result['scan_id']}")
    assert f"report of scan {result['scan_id']}" in md.stderr and "Tag compliance report" not in md.stderr

    out = tmp_path / "report.html"
    html = _cli(["report", "--scan-id", result["scan_id"], "--format", "html", "--output", str(out)], env, 60)
    assert html.returncode == 0 and html.stdout == "", html.stderr[-2000:]
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and 'id="chart-account"' in page and str(out) in html.stderr

    data = _cli(["report", "--format", "json", "--no-recommendations", "--resource-types", "ec2:instance,s3:bucket"],
                env, 60)
    assert data.returncode == 0, data.stderr[-2000:]
    report = json.loads(data.stdout)
    by_type = result["breakdowns"]["by_resource_type"]
    assert report["recommendations"] is None and report["scope"]["resource_types"] == ["ec2:instance", "s3:bucket"]
    assert report["summary"]["total_resources"] == by_type["ec2:instance"]["total"] + by_type["s3:bucket"]["total"]

    rows = _cli(["report", "--format", "csv"], env, 60)
    assert rows.returncode == 0 and len(list(csv.DictReader(io.StringIO(rows.stdout)))) == result["violations_total"]

    for args, needle in ((["--format", "yaml"], "--format"), (["--scan-id", "nope"], "--scan-id"),
                         (["--scan-id", MISSING_SCAN], "does not exist"),
                         (["--resource-types", "ec2:warp-drive"], "--resource-types"),
                         (["--output", str(tmp_path / "missing" / "r.md")], "--output")):
        bad = _cli(["report", *args], env, 60)
        assert bad.returncode == 2, (args, bad.stdout, bad.stderr)
        assert needle in bad.stderr and "Fix:" in bad.stderr, (args, bad.stderr)
        assert "Traceback" not in bad.stderr + bad.stdout
