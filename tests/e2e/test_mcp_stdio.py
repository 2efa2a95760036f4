"""MCP over stdio, end to end: the SDK's stdio client spawns ``finops-tags mcp`` (embedded mode: SQLite +
in-process Celery worker) against the seeded emulator and checks every tool's answers against what
was seeded. One server process serves the whole module; the full scan runs once."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.e2e.conftest import (
    TOOL_ANNOTATIONS,
    TOOLS,
    SeededEmulator,
    ServerEnv,
    SyncMcpClient,
    assert_tool_error,
    stdio_target,
    tool_text,
)

pytestmark = pytest.mark.e2e

TERMINAL = {"succeeded", "partial", "failed", "cancelled"}
MISSING_SCAN = "6f1c9a64-3b8e-4f5e-9a51-1d2a7c1e0b11"


@dataclass
class StdioServer:
    mcp: SyncMcpClient
    stderr_path: Path
    env: dict[str, str]


@dataclass
class FullScan:
    result: dict[str, Any]
    progress: list[tuple[float, float | None, str | None]]
    seconds: float

    @property
    def scan_id(self) -> str:
        return str(self.result["scan_id"])


@pytest.fixture(scope="module")
def stdio(server_env: ServerEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StdioServer]:
    """One ``finops-tags mcp`` process for the module, connected with the initialize handshake
    (mode='legacy': what today's desktop clients do)."""
    home = tmp_path_factory.mktemp("stdio-home")
    env = server_env(home)
    stderr_path = home / "server-stderr.log"
    with open(stderr_path, "w") as errlog, SyncMcpClient(stdio_target(env, errlog), mode="legacy") as client:
        yield StdioServer(client, stderr_path, env)


@pytest.fixture(scope="module")
def full_scan(stdio: StdioServer) -> FullScan:
    """check_tag_compliance with no filters: the configured scope is every seeded account and region."""
    progress: list[tuple[float, float | None, str | None]] = []
    started = time.monotonic()
    result = stdio.mcp.call("check_tag_compliance", {}, progress=progress)
    seconds = time.monotonic() - started
    assert not result.is_error, tool_text(result)
    assert result.structured_content is not None
    return FullScan(result.structured_content, progress, seconds)


@pytest.fixture(scope="module")
def all_violations(stdio: StdioServer, full_scan: FullScan) -> list[list[dict[str, Any]]]:
    """Every violation of the full scan, as the pages list_violations returned (100 per page)."""
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    for _ in range(100):
        args: dict[str, Any] = {"scan_id": full_scan.scan_id, "limit": 100}
        if cursor:
            args["cursor"] = cursor
        answer = stdio.mcp.call("list_violations", args)
        assert not answer.is_error, tool_text(answer)
        page = answer.structured_content
        assert page["total"] == full_scan.result["violations_total"]
        pages.append(page["violations"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError("list_violations never returned next_cursor=null")


def _scanner_arn(arn: str) -> str:
    """The seeder writes EC2 snapshot ARNs with the account id; the scanner writes them without, as the
    IAM service authorization reference does (arn:aws:ec2:REGION::snapshot/ID)."""
    return re.sub(r"^(arn:aws:ec2:[a-z0-9-]+:)\d{12}(:snapshot/)", r"\1\2", arn)


def _flat(pages: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [v for page in pages for v in page]


# ------------------------------------------------------------------------------------------ handshake

def test_initialize_handshake_identifies_the_server(stdio: StdioServer) -> None:
    client = stdio.mcp.client
    assert client.server_info is not None and client.server_info.name == "finops-tag-compliance"
    assert client.server_capabilities.tools is not None
    assert client.server_capabilities.resources is not None
    # The instructions tell the model how to drive long scans.
    assert client.instructions and "get_scan_status" in client.instructions


def test_modern_discovery_lists_the_same_tools(server_env: ServerEnv, tmp_path: Path) -> None:
    """mode='auto' probes server/discover (protocol 2026-07-28) instead of initialize."""
    env = server_env(tmp_path / "home")
    with open(tmp_path / "stderr.log", "w") as errlog, SyncMcpClient(stdio_target(env, errlog)) as modern:
        assert {t.name for t in modern.list_tools()} == TOOLS
        assert modern.client.server_info is None or modern.client.server_info.name == "finops-tag-compliance"


def test_tools_list_describes_every_tool_for_a_model(stdio: StdioServer) -> None:
    tools = {t.name: t for t in stdio.mcp.list_tools()}
    assert set(tools) == TOOLS
    for name, tool in tools.items():
        assert tool.description and len(tool.description) > 40, name
        assert "\n    " not in tool.description, f"{name}: the description keeps its docstring indentation"
        schema = tool.input_schema
        assert schema["type"] == "object", name
        for param, spec in schema.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{param} has no description"
        assert tool.output_schema and tool.output_schema.get("properties"), f"{name} has no outputSchema"
        ann = tool.annotations
        assert ann is not None, name
        assert (ann.read_only_hint, ann.destructive_hint, ann.idempotent_hint) == TOOL_ANNOTATIONS[name], name
    # Parameter names stay compatible with the existing open-source tag-compliance server.
    props = {name: set(t.input_schema.get("properties", {})) for name, t in tools.items()}
    assert {"resource_types", "filters", "severity", "store_snapshot", "force_refresh"} <= props["check_tag_compliance"]
    assert {"resource_types", "regions", "accounts", "include_costs", "min_cost_threshold"} <= \
        props["find_untagged_resources"]
    assert tools["validate_resource_tags"].input_schema.get("required") == ["resource_arns"]
    assert tools["get_scan_status"].input_schema.get("required") == ["scan_id"]
    for field in ("compliance_score", "violations", "violations_total", "data_quality", "breakdowns"):
        assert field in tools["check_tag_compliance"].output_schema["properties"]


# ----------------------------------------------------------------------------------------------- scan

def test_check_tag_compliance_counts_exactly_what_was_seeded(full_scan: FullScan,
                                                             seeded_emulator: SeededEmulator) -> None:
    r, estate = full_scan.result, seeded_emulator.estate
    assert r["status"] == "succeeded", r["data_quality"]
    assert r["data_quality"]["status"] == "complete" and r["data_quality"]["failed_shards"] == []
    assert r["total_resources"] == estate.expected_resource_count
    by_type = {t: e["total"] for t, e in r["breakdowns"]["by_resource_type"].items()}
    assert by_type == estate.counts_by_type()
    by_account = {a: e["total"] for a, e in r["breakdowns"]["by_account"].items()}
    assert by_account == estate.counts_by_account()
    by_region = {g: e["total"] for g, e in r["breakdowns"]["by_region"].items()}
    assert by_region == {g: seeded_emulator.count(region=g) for g in seeded_emulator.regions}
    # The score is compliant / in scope; the demo's mess keeps it well inside (0, 1).
    assert 0 <= r["compliance_score"] <= 1
    assert r["compliance_score"] == pytest.approx(r["compliant_resources"] / r["in_scope_resources"], abs=1e-6)
    assert 0.1 < r["compliance_score"] < 0.9
    # Bounded answer: the top 25 violations, the rest behind the cursor.
    assert r["violations_returned"] == len(r["violations"]) == 25
    assert r["violations_total"] > 25 and r["next_cursor"]
    assert r["violations_total"] == sum(e["violations"] for e in r["breakdowns"]["by_resource_type"].values())
    assert r["progress"]["shards_done"] == r["progress"]["shards_total"] > 0
    assert r["progress"]["shards_failed"] == 0
    # The sandbox account is built to be the worst.
    scores = {a: e["compliance_score"] for a, e in r["breakdowns"]["by_account"].items()}
    assert min(scores, key=scores.__getitem__) == estate.worst_account_id
    assert full_scan.seconds < 45, "the tool must answer within its wait budget"


def test_text_content_mirrors_the_structured_result(stdio: StdioServer, full_scan: FullScan) -> None:
    answer = stdio.mcp.call("get_scan_status", {"scan_id": full_scan.scan_id})
    assert not answer.is_error
    text = json.loads(tool_text(answer))
    assert text["scan_id"] == full_scan.scan_id
    assert text["compliance_score"] == answer.structured_content["compliance_score"] == \
        full_scan.result["compliance_score"]
    # Bounded for a model's context even on a 640-resource estate.
    assert len(tool_text(answer)) < 60_000


def test_progress_notifications_increase_to_the_shard_total(full_scan: FullScan) -> None:
    progress = full_scan.progress
    assert len(progress) >= 2, progress
    values = [value for value, _total, _message in progress]
    assert values == sorted(values) and len(set(values)) == len(values), f"progress must increase: {values}"
    last_value, last_total, last_message = progress[-1]
    shards = full_scan.result["progress"]["shards_total"]
    assert last_value == last_total == shards
    assert last_message and "shards" in last_message


def test_wait_zero_answers_at_once_then_get_scan_status_polls_to_the_end(
        stdio: StdioServer, seeded_emulator: SeededEmulator) -> None:
    account = seeded_emulator.accounts[0]
    started = time.monotonic()
    first = stdio.mcp.call("check_tag_compliance", {"filters": {"accounts": [account]}, "wait_seconds": 0})
    assert time.monotonic() - started < 10
    assert not first.is_error, tool_text(first)
    r = first.structured_content
    uuid.UUID(r["scan_id"])
    assert r["status"] in ("queued", "running")
    assert r["compliance_score"] is None
    assert r["data_quality"]["status"] == "partial"
    assert any("incomplete" in note for note in r["data_quality"]["notes"])

    progress: list[tuple[float, float | None, str | None]] = []
    deadline = time.monotonic() + 120
    polls = 0
    while True:
        polls += 1
        answer = stdio.mcp.call("get_scan_status", {"scan_id": r["scan_id"], "wait_seconds": 5}, progress=progress)
        assert not answer.is_error, tool_text(answer)
        status = answer.structured_content
        if status["status"] in TERMINAL:
            break
        assert time.monotonic() < deadline, f"scan still {status['status']}: {status['progress']}"
    assert status["status"] == "succeeded", status["data_quality"]
    assert status["total_resources"] == seeded_emulator.count(account=account)
    assert set(status["breakdowns"]["by_account"]) == {account}
    assert status["data_quality"]["status"] == "complete"
    assert progress, "get_scan_status sent no progress notification"


def test_list_violations_pages_are_disjoint_and_add_up(full_scan: FullScan, all_violations: list[list[dict[str, Any]]],
                                                       seeded_emulator: SeededEmulator) -> None:
    total = full_scan.result["violations_total"]
    assert len(all_violations) == -(-total // 100)  # ceil: every page but the last is full
    assert all(len(page) == 100 for page in all_violations[:-1])
    keys = [(v["resource_arn"], v["rule_id"]) for v in _flat(all_violations)]
    assert len(keys) == len(set(keys)) == total
    # Errors first, and the tool's top 25 are the first 25 of the list.
    severities = [v["severity"] for v in _flat(all_violations)]
    assert severities == sorted(severities, key=lambda s: s != "error")
    top = [(v["resource_arn"], v["rule_id"]) for v in full_scan.result["violations"]]
    assert top == keys[:25]
    # Exactly the resources seeded with a tag defect are in violation; every "compliant" one is clean.
    violating = {v["resource_arn"] for v in _flat(all_violations)}
    defective = {_scanner_arn(r.arn) for r in seeded_emulator.estate.resources if r.profile != "compliant"}
    assert violating == defective
    assert full_scan.result["compliant_resources"] == seeded_emulator.estate.counts_by_profile()["compliant"]
    # Per-type counts agree with the breakdowns.
    by_type = Counter(v["resource_type"] for v in _flat(all_violations))
    assert by_type == {t: e["violations"] for t, e in full_scan.result["breakdowns"]["by_resource_type"].items()
                       if e["violations"]}


def test_list_violations_filters(stdio: StdioServer, full_scan: FullScan,
                                 all_violations: list[list[dict[str, Any]]]) -> None:
    flat = _flat(all_violations)
    account = full_scan.result["breakdowns"]["by_account"]
    some_account = sorted(account)[0]
    answer = stdio.mcp.call("list_violations", {"scan_id": full_scan.scan_id, "account_id": some_account,
                                                "resource_type": "ec2:instance", "limit": 100})
    page = answer.structured_content
    expected = [v for v in flat if v["account_id"] == some_account and v["resource_type"] == "ec2:instance"]
    assert page["total"] == len(expected) > 0
    assert {(v["resource_arn"], v["rule_id"]) for v in page["violations"]} <= \
        {(v["resource_arn"], v["rule_id"]) for v in expected}


def test_severity_errors_only_lists_errors_and_keeps_the_score(
        stdio: StdioServer, full_scan: FullScan, all_violations: list[list[dict[str, Any]]]) -> None:
    counts = Counter(v["severity"] for v in _flat(all_violations))
    assert counts["error"] and counts["warning"], counts  # the demo policy has both
    answer = stdio.mcp.call("check_tag_compliance", {"scan_id": full_scan.scan_id, "severity": "errors_only"})
    assert not answer.is_error, tool_text(answer)
    r = answer.structured_content
    assert r["scan_id"] == full_scan.scan_id
    assert r["violations"] and all(v["severity"] == "error" for v in r["violations"])
    assert r["violations_total"] == counts["error"]
    assert r["compliance_score"] == full_scan.result["compliance_score"]
    assert r["compliant_resources"] == full_scan.result["compliant_resources"]

    warnings = stdio.mcp.call("check_tag_compliance", {"scan_id": full_scan.scan_id, "severity": "warnings_only"})
    w = warnings.structured_content
    assert w["violations_total"] == counts["warning"]
    assert all(v["severity"] == "warning" for v in w["violations"])
    assert w["compliance_score"] == full_scan.result["compliance_score"]


def test_find_untagged_resources_lists_never_tagged_first(
        stdio: StdioServer, full_scan: FullScan, all_violations: list[list[dict[str, Any]]],
        seeded_emulator: SeededEmulator) -> None:
    answer = stdio.mcp.call("find_untagged_resources", {"scan_id": full_scan.scan_id, "limit": 100})
    assert not answer.is_error, tool_text(answer)
    u = answer.structured_content
    missing = {v["resource_arn"] for v in _flat(all_violations) if v["violation_type"] == "missing_required_tag"}
    assert u["total"] == len(missing)
    assert u["returned"] == len(u["resources"]) == min(100, len(missing))
    assert sum(u["by_resource_type"].values()) == len(missing)
    never = {_scanner_arn(r.arn) for r in seeded_emulator.estate.resources if not r.tags}
    assert u["never_tagged_total"] == len(never) > 0
    flags = [r["never_tagged"] for r in u["resources"]]
    assert flags == sorted(flags, reverse=True), "never-tagged resources come first"
    assert all(r["tag_count"] == 0 for r in u["resources"] if r["never_tagged"])
    assert {r["resource_arn"] for r in u["resources"] if r["never_tagged"]} <= never
    assert all(r["missing_tags"] for r in u["resources"])
    assert u["data_quality"]["status"] == "complete"

    # Filters narrow the same scan; unknown values are rejected, not silently empty.
    narrowed = stdio.mcp.call("find_untagged_resources", {"scan_id": full_scan.scan_id,
                                                          "resource_types": ["ec2:volume"], "limit": 5})
    n = narrowed.structured_content
    assert n["total"] == u["by_resource_type"]["ec2:volume"]
    assert all(r["resource_type"] == "ec2:volume" for r in n["resources"]) and n["returned"] == 5
    bad = stdio.mcp.call("find_untagged_resources", {"scan_id": full_scan.scan_id, "regions": ["mars-north-1"]})
    assert_tool_error(bad, "regions", "mars-north-1")
    # One account of the scan: only its resources, and they add up per account.
    owners = {v["resource_arn"]: v["account_id"] for v in _flat(all_violations)
              if v["violation_type"] == "missing_required_tag"}
    by_account: dict[str, int] = {}
    for account in owners.values():  # S3 ARNs name no account: the violation does
        by_account[account] = by_account.get(account, 0) + 1
    account, expected = sorted(by_account.items())[0]
    answer = stdio.mcp.call("find_untagged_resources", {"scan_id": full_scan.scan_id, "accounts": [account],
                                                        "limit": 100})
    assert not answer.is_error, tool_text(answer)
    one = answer.structured_content
    assert one["total"] == expected and {r["account_id"] for r in one["resources"]} == {account}
    assert_tool_error(stdio.mcp.call("find_untagged_resources", {"scan_id": full_scan.scan_id,
                                                                 "accounts": ["12"]}), "accounts")


def test_validate_resource_tags_agrees_with_the_scan(stdio: StdioServer, full_scan: FullScan,
                                                     all_violations: list[list[dict[str, Any]]]) -> None:
    by_arn: dict[str, set[tuple[str, str]]] = {}
    types: dict[str, str] = {}
    for v in _flat(all_violations):
        by_arn.setdefault(v["resource_arn"], set()).add((v["tag_name"], v["violation_type"]))
        types[v["resource_arn"]] = v["resource_type"]
    instance = next(a for a, t in sorted(types.items()) if t == "ec2:instance")
    bucket = next(a for a, t in sorted(types.items()) if t == "s3:bucket")
    answer = stdio.mcp.call("validate_resource_tags", {"resource_arns": [instance, bucket]})
    assert not answer.is_error, tool_text(answer)
    v = answer.structured_content
    assert v["total"] == 2 and v["compliant"] == 0
    assert v["policy_version"] == full_scan.result["policy_version"]
    assert v["data_quality"]["status"] == "complete"
    results = {r["resource_arn"]: r for r in v["results"]}
    assert set(results) == {instance, bucket}
    for arn, result in results.items():
        assert result["resource_type"] == types[arn]
        assert result["compliant"] is False and result["in_scope"] is True
        assert {(x["tag_name"], x["violation_type"]) for x in result["violations"]} == by_arn[arn]
        assert all(x["message"] for x in result["violations"])


def test_get_tagging_policy(stdio: StdioServer, full_scan: FullScan) -> None:
    answer = stdio.mcp.call("get_tagging_policy")
    assert not answer.is_error, tool_text(answer)
    p = answer.structured_content
    assert p["version"] == full_scan.result["policy_version"]
    required = {t["name"]: t for t in p["policy"]["required_tags"]}
    assert set(required) == {"CostCenter", "Owner", "Environment", "Application"}
    assert "production" in required["Environment"]["allowed_values"]


def test_list_scans_and_the_summary_resource(stdio: StdioServer, full_scan: FullScan) -> None:
    answer = stdio.mcp.call("list_scans", {"limit": 100})
    scans = {s["scan_id"]: s for s in answer.structured_content["scans"]}
    assert scans[full_scan.scan_id]["status"] == "succeeded"
    assert scans[full_scan.scan_id]["compliance_score"] == full_scan.result["compliance_score"]
    succeeded = stdio.mcp.call("list_scans", {"status": "succeeded"}).structured_content["scans"]
    assert succeeded and all(s["status"] == "succeeded" for s in succeeded)

    resource = stdio.mcp.read_resource(f"scan://{full_scan.scan_id}/summary")
    summary = json.loads(resource.contents[0].text)
    assert summary["compliance_score"] == full_scan.result["compliance_score"]
    assert summary["violations"] == [] and summary["violations_total"] == full_scan.result["violations_total"]


def test_summary_resource_of_an_unknown_scan_names_the_problem(stdio: StdioServer) -> None:
    from mcp import MCPError

    with pytest.raises(MCPError) as info:
        stdio.mcp.read_resource(f"scan://{MISSING_SCAN}/summary")
    assert "does not exist" in str(info.value) and "Traceback" not in str(info.value)


# ----------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize(("tool", "arguments", "needles"), [
    pytest.param("check_tag_compliance", {"filters": {"regions": ["us-east-1", "mars-north-1"]}},
                 ["regions", "mars-north-1", "valid", "eu-west-1", "ap-southeast-2"], id="unknown-region"),
    pytest.param("check_tag_compliance", {"resource_types": ["ec2:instance", "ec2:spaceship"]},
                 ["resource_types", "ec2:spaceship", "s3:bucket"], id="unknown-resource-type"),
    pytest.param("check_tag_compliance", {"filters": {"accounts": ["12345"]}},
                 ["accounts", "12-digit"], id="bad-account"),
    pytest.param("check_tag_compliance", {"resource_types": []}, ["resource_types", "empty"], id="empty-types"),
    pytest.param("check_tag_compliance", {"severity": "critical"}, ["severity", "errors_only"], id="bad-severity"),
    pytest.param("check_tag_compliance", {"wait_seconds": -1}, ["wait_seconds"], id="negative-wait"),
    pytest.param("validate_resource_tags", {"resource_arns": ["not-an-arn"]}, ["resource_arns[0]", "arn:"],
                 id="invalid-arn"),
    pytest.param("validate_resource_tags", {"resource_arns": []}, ["resource_arns"], id="no-arn"),
    pytest.param("get_scan_status", {"scan_id": MISSING_SCAN}, ["scan_id", "does not exist"], id="unknown-scan"),
    pytest.param("get_scan_status", {"scan_id": "../../etc/passwd"}, ["scan_id", "not a scan id"],
                 id="non-uuid-scan"),
    pytest.param("get_scan_status", {}, ["scan_id", "required"], id="missing-scan-id"),
    pytest.param("list_violations", {"scan_id": MISSING_SCAN}, ["does not exist"], id="violations-unknown-scan"),
    pytest.param("list_violations", {"scan_id": MISSING_SCAN, "limit": 1000}, ["limit", "100"],
                 id="page-too-large"),
    pytest.param("find_untagged_resources", {"min_cost_threshold": -10}, ["min_cost_threshold"],
                 id="negative-cost-threshold"),
    pytest.param("list_scans", {"status": "exploded"}, ["status"], id="bad-status"),
    # Arguments a tool does not have would otherwise be dropped, silently widening the scan.
    pytest.param("find_untagged_resources", {"account_ids": ["123456789012"]}, ["account_ids", "accounts"],
                 id="unknown-argument"),
    pytest.param("check_tag_compliance", {"filters": {"region": ["us-east-1"]}}, ["filters.region"],
                 id="misspelt-filter"),
])
def test_bad_input_is_an_error_naming_the_field_and_fix(stdio: StdioServer, tool: str, arguments: dict[str, Any],
                                                        needles: list[str]) -> None:
    text = assert_tool_error(stdio.mcp.call(tool, arguments), *needles)
    assert "Fix:" in text or "should be" in text, text
    # pydantic's internals are not for the model.
    assert "pydantic.dev" not in text and "Arguments" not in text, text


def test_bad_cursor_is_rejected(stdio: StdioServer, full_scan: FullScan) -> None:
    answer = stdio.mcp.call("list_violations", {"scan_id": full_scan.scan_id, "cursor": "bm90LWEtY3Vyc29y"})
    assert_tool_error(answer, "cursor", "next_cursor")


def test_rejected_scans_wrote_nothing(stdio: StdioServer) -> None:
    # Every bad request above was refused before a job row existed: no failed scan litters the history.
    scans = stdio.mcp.call("list_scans", {"limit": 100}).structured_content["scans"]
    assert all(s["status"] == "succeeded" for s in scans), [s["status"] for s in scans]


def test_unreachable_cloud_is_a_failed_scan_not_an_empty_one(server_env: ServerEnv, tmp_path: Path) -> None:
    """A failed fetch is reported in data_quality, never as "no resources"."""
    env = server_env(tmp_path / "home")
    env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with open(tmp_path / "stderr.log", "w") as errlog, \
            SyncMcpClient(stdio_target(env, errlog), mode="legacy") as client:
        answer = client.call("check_tag_compliance", {"filters": {"regions": ["us-east-1"]}, "wait_seconds": 30})
    assert not answer.is_error, tool_text(answer)
    r = answer.structured_content
    assert r["status"] == "failed", r
    assert r["data_quality"]["status"] == "partial"
    failed = r["data_quality"]["failed_shards"]
    assert len(failed) == len(env["FINOPS_ACCOUNTS"].split(","))
    assert all("connect" in f["error"].lower() for f in failed), failed
    assert r["error"] and "Traceback" not in tool_text(answer)


def test_server_logged_no_traceback(stdio: StdioServer) -> None:
    # Runs last in this module: every error above was anticipated, so none may have crashed a tool.
    log = stdio.stderr_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]


def test_import_aws_tag_policy_syncs_the_organization(stdio: StdioServer) -> None:
    # Last in this module: after a sync, the server judges each account by its own effective policy.
    bad = stdio.mcp.call("import_aws_tag_policy", {"policy_id": "../etc/passwd", "save": True})
    assert bad.is_error and "policy_id" in tool_text(bad)
    answer = stdio.mcp.call("import_aws_tag_policy", {})
    assert not answer.is_error, tool_text(answer)
    result = answer.structured_content
    result = result.get("result", result)
    assert result["tag_policies"] == 2
    assert len(result["accounts"]) >= 3
    assert all(a["source"].startswith("aws:") for a in result["accounts"])
