"""Violation exports, the policy resource and the prompts end to end: ``finops-tags mcp`` over stdio with
the MCP SDK's client against the seeded emulator, and ``finops-tags export`` on the same database."""

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
    ServerEnv,
    SyncMcpClient,
    assert_tool_error,
    stdio_target,
    tool_text,
)

pytestmark = pytest.mark.e2e

INLINE_LIMIT = 50_000
DEFAULT_COLUMNS = ["resource_arn", "resource_id", "resource_type", "account_id", "region", "tag_name",
                   "violation_type", "severity", "current_value", "allowed_values", "message", "suggestion"]


@dataclass
class ExportServer:
    mcp: SyncMcpClient
    stderr_path: Path
    env: dict[str, str]
    scan: dict[str, Any]

    @property
    def scan_id(self) -> str:
        return str(self.scan["scan_id"])


@pytest.fixture(scope="module")
def server(server_env: ServerEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExportServer]:
    """``finops-tags mcp`` with one finished scan of the whole seeded organization (the configured scope)."""
    home = tmp_path_factory.mktemp("export-home")
    env = server_env(home)
    stderr_path = home / "server-stderr.log"
    with open(stderr_path, "w") as errlog, SyncMcpClient(stdio_target(env, errlog), mode="legacy") as client:
        before = client.call("export_violations_csv", {})
        assert_tool_error(before, "scan_id", "no finished scan", "check_tag_compliance")
        answer = client.call("check_tag_compliance", {"wait_seconds": 40})
        assert not answer.is_error, tool_text(answer)
        scan = answer.structured_content
        while scan["status"] not in ("succeeded", "partial", "failed", "cancelled"):
            scan = client.call("get_scan_status", {"scan_id": scan["scan_id"], "wait_seconds": 10}).structured_content
        assert scan["status"] == "succeeded", scan["data_quality"]
        yield ExportServer(client, stderr_path, env, scan)


def _export(server: ExportServer, **arguments: Any) -> dict[str, Any]:
    answer = server.mcp.call("export_violations_csv", arguments)
    assert not answer.is_error, tool_text(answer)
    assert len(tool_text(answer)) < 2 * INLINE_LIMIT + 10_000  # bounded whatever the scan's size
    result: dict[str, Any] = answer.structured_content
    return result


def _read(server: ExportServer, uri: str) -> tuple[str, str | None]:
    contents = server.mcp.read_resource(uri).contents[0]
    return contents.text, contents.mime_type


def test_tool_keeps_the_peer_parameters_and_is_read_only(server: ExportServer) -> None:
    tool = next(t for t in server.mcp.list_tools() if t.name == "export_violations_csv")
    props = tool.input_schema["properties"]
    assert list(props)[:3] == ["resource_types", "severity", "columns"]
    assert {"scan_id", "format", "accounts", "regions", "tag_names"} <= set(props)
    assert all(spec.get("description") for spec in props.values())
    assert "\n    " not in (tool.description or "")
    assert tool.annotations.read_only_hint is True and tool.annotations.destructive_hint is False
    assert tool.annotations.idempotent_hint is True
    assert {"row_count", "columns", "content", "resource_uri", "download_path", "data_quality"} <= set(
        tool.output_schema["properties"])
    templates = {t.uri_template for t in server.mcp.portal.call(server.mcp.client.list_resource_templates)
                 .resource_templates}
    assert "export://{scan_id}/violations.csv{?columns,severity,resource_types,accounts,regions,tag_names}" in templates
    assert "report://{scan_id}/report.md{?resource_types,include_recommendations}" in templates  # latest report


def test_small_export_is_inline(server: ExportServer) -> None:
    account = sorted(server.scan["breakdowns"]["by_account"])[0]
    args: dict[str, Any] = {"resource_types": ["ec2:instance"], "severity": "errors_only", "accounts": [account],
                            "columns": ["resource_arn", "tag_name", "violation_type", "current_value", "suggestion"]}
    r = _export(server, **args)
    assert r["scan_id"] == server.scan_id and r["inline"] is True and r["preview"] is None
    rows = list(csv.DictReader(io.StringIO(r["content"])))
    assert len(rows) == r["row_count"] > 0 and list(rows[0]) == args["columns"]
    assert all(row["resource_arn"].startswith("arn:aws:ec2:") and f":{account}:" in row["resource_arn"]
               and row["tag_name"] for row in rows)
    assert r["size_bytes"] == len(r["content"].encode()) <= INLINE_LIMIT

    as_json = _export(server, format="json", resource_types=["s3:bucket"], columns=["resource_arn", "allowed_values"])
    data = json.loads(as_json["content"])
    expected = server.scan["breakdowns"]["by_resource_type"]["s3:bucket"]["violations"]
    assert data["row_count"] == len(data["violations"]) == as_json["row_count"] == expected


def test_large_export_goes_by_reference_and_the_resource_holds_it_all(server: ExportServer) -> None:
    r = _export(server)  # every violation of the latest finished scan
    total = server.scan["violations_total"]
    assert r["inline"] is False and r["content"] is None and r["row_count"] == total
    assert r["columns"] == DEFAULT_COLUMNS and len(r["preview"]) == 5
    assert r["resource_uri"] == f"export://{server.scan_id}/violations.csv"
    assert r["download_path"] == f"/v1/exports/violations?scan_id={server.scan_id}&format=csv"
    assert r["resource_uri"] in r["note"] and r["download_path"] in r["note"]
    text, mime = _read(server, r["resource_uri"])
    assert mime == "text/csv"
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == total
    assert all(None not in row and row["resource_arn"] and row["message"] for row in rows)
    assert [row["resource_arn"] for row in rows[:5]] == [p["resource_arn"] for p in r["preview"]]

    latest, _ = _read(server, "export://latest/violations.json?severity=errors_only&columns=resource_arn,severity")
    data = json.loads(latest)
    assert data["scan_id"] == server.scan_id and {v["severity"] for v in data["violations"]} == {"error"}
    assert data["row_count"] == sum(1 for row in rows if row["severity"] == "error")


@pytest.mark.parametrize(("arguments", "needles"), [
    pytest.param({"columns": ["resource_arn", "resoruce_id"]}, ["columns", "did you mean 'resource_id'?"],
                 id="column-typo"),
    pytest.param({"severity": "critical"}, ["severity"], id="severity"),
    pytest.param({"format": "xlsx"}, ["format"], id="format"),
    pytest.param({"resource_types": ["ec2:instanse"]}, ["resource_types", "did you mean 'ec2:instance'?"],
                 id="type-typo"),
    pytest.param({"scan_id": "nope"}, ["scan_id", "not a scan id"], id="malformed-scan"),
    pytest.param({"column": ["resource_arn"]}, ["column", "columns"], id="misspelt-argument"),
])
def test_bad_input_is_an_error_naming_the_field_and_fix(server: ExportServer, arguments: dict[str, Any],
                                                        needles: list[str]) -> None:
    text = assert_tool_error(server.mcp.call("export_violations_csv", arguments), *needles)
    assert "Fix:" in text, text


def test_policy_resource_is_the_active_policy(server: ExportServer) -> None:
    listed = {str(r.uri) for r in server.mcp.portal.call(server.mcp.client.list_resources).resources}
    assert "policy://active" in listed
    text, mime = _read(server, "policy://active")
    policy = json.loads(text)
    assert mime == "application/json"
    tool = server.mcp.call("get_tagging_policy", {}).structured_content
    assert policy["version"] == tool["version"] == server.scan["policy_version"]
    assert {t["name"] for t in policy["policy"]["required_tags"]} >= {"CostCenter", "Owner", "Environment"}


def test_prompts_are_listed_and_guide_the_tool_calls(server: ExportServer) -> None:
    from mcp import MCPError

    client = server.mcp.client
    prompts = {p.name: p for p in server.mcp.portal.call(client.list_prompts).prompts}
    assert set(prompts) >= {"monthly_compliance_audit", "find_and_fix", "executive_summary"}
    assert {a.name for a in prompts["monthly_compliance_audit"].arguments} == {"month", "accounts", "resource_types"}
    assert all(a.description for p in prompts.values() for a in p.arguments)

    account = "123456789012"
    audit = server.mcp.portal.call(lambda: client.get_prompt(
        "monthly_compliance_audit", {"month": "2026-10", "accounts": account}))
    text = audit.messages[0].content.text
    assert audit.messages[0].role == "user" and "October 2026" in text
    for tool in ("check_tag_compliance", "get_violation_history", "detect_tag_drift", "generate_compliance_report",
                 "export_violations_csv"):
        assert tool in text, tool
    assert f'"accounts": ["{account}"]' in text and '"store_snapshot": true' in text

    fix = server.mcp.portal.call(lambda: client.get_prompt("find_and_fix", {"resource_types": "ec2:volume",
                                                                             "min_confidence": "0.9"})).messages
    fix_text = fix[0].content.text
    assert "suggest_tags_batch" in fix_text and '"min_confidence": 0.9' in fix_text and "approv" in fix_text

    summary = server.mcp.portal.call(lambda: client.get_prompt("executive_summary", {"days_back": "30"}))
    summary_text = summary.messages[0].content.text
    assert "get_violation_history" in summary_text and '"days_back": 30' in summary_text
    assert "get_cost_attribution_gap" in summary_text and "FOCUS" in summary_text

    with pytest.raises(MCPError) as info:
        server.mcp.portal.call(lambda: client.get_prompt("monthly_compliance_audit", {"month": "October"}))
    assert "month" in str(info.value) and "YYYY-MM" in str(info.value)


def test_server_logged_no_traceback(server: ExportServer) -> None:
    log = server.stderr_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]


# ---------------------------------------------------------------------------------------------- CLI

def _cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FINOPS_TAGS, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_cli_export_matches_the_mcp_resource(server: ExportServer, tmp_path: Path) -> None:
    """``finops-tags export`` on the MCP server's own database writes the same file the resource reads."""
    out = tmp_path / "violations.csv"
    done = _cli(["export", "--output", str(out)], server.env)
    assert done.returncode == 0 and done.stdout == "", done.stderr[-2000:]
    assert f"{server.scan['violations_total']} violations of scan {server.scan_id}" in done.stderr
    assert out.read_text() == _read(server, f"export://{server.scan_id}/violations.csv")[0]

    js = _cli(["export", "--format", "json", "--severity", "errors_only", "--columns", "resource_arn,tag_name",
               "--resource-types", "ec2:instance,s3:bucket"], server.env)
    assert js.returncode == 0, js.stderr[-2000:]
    data = json.loads(js.stdout)
    assert data["columns"] == ["resource_arn", "tag_name"] and data["filters"]["severity"] == "error"
    assert data["row_count"] == len(data["violations"]) > 0

    for args, needle in ((["--columns", "resource_arn,resoruce_id"], "did you mean 'resource_id'?"),
                         (["--format", "xlsx"], "--format"), (["--scan-id", "nope"], "--scan-id"),
                         (["--resource-types", "ec2:warp"], "--resource-types"),
                         (["--output", str(tmp_path / "missing" / "v.csv")], "--output")):
        bad = _cli(["export", *args], server.env)
        assert bad.returncode == 2, (args, bad.stdout, bad.stderr)
        assert needle in bad.stderr and "Fix:" in bad.stderr, (args, bad.stderr)
        assert "Traceback" not in bad.stderr + bad.stdout
