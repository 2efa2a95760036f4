"""MCP over streamable HTTP, end to end: ``finops-tags serve`` as a subprocess, the SDK's streamable
HTTP client at /mcp/, and the REST API of the same process reading the same scan (one code path)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import TOOLS, Gateway, SeededEmulator, SyncMcpClient, assert_tool_error, tool_text

pytestmark = pytest.mark.e2e

# Types listed once per account (one "global" shard) whatever regions a scan asks for.
GLOBAL_TYPES = {"s3:bucket", "cloudfront:distribution", "route53:hostedzone"}


@pytest.fixture(scope="module")
def http_mcp(gateway: Gateway) -> Iterator[SyncMcpClient]:
    with SyncMcpClient(gateway.mcp_url) as client:
        yield client


@pytest.fixture(scope="module")
def http_scan(http_mcp: SyncMcpClient, seeded_emulator: SeededEmulator) -> dict[str, Any]:
    """One account, every seeded region: a complete scan through the gateway's MCP endpoint."""
    account = seeded_emulator.accounts[1]
    progress: list[tuple[float, float | None, str | None]] = []
    answer = http_mcp.call("check_tag_compliance", {"filters": {"accounts": [account]}}, progress=progress)
    assert not answer.is_error, tool_text(answer)
    result: dict[str, Any] = answer.structured_content
    result["_account"] = account
    result["_progress"] = progress
    return result


def test_health_answers_before_mcp(gateway: Gateway) -> None:
    health = httpx.get(f"{gateway.base_url}/health", timeout=10)
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["database"]["status"] == "ok"


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_mcp_without_trailing_slash_redirects_keeping_the_method(gateway: Gateway, method: str) -> None:
    response = httpx.request(method, f"{gateway.base_url}/mcp", timeout=10, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"].endswith("/mcp/")


def test_tools_list_over_streamable_http(http_mcp: SyncMcpClient) -> None:
    tools = {t.name: t for t in http_mcp.list_tools()}
    assert set(tools) == TOOLS
    assert all(t.output_schema and t.annotations for t in tools.values())
    assert http_mcp.client.server_info is None or http_mcp.client.server_info.name == "finops-tag-compliance"


def test_scan_over_mcp_counts_what_was_seeded(http_scan: dict[str, Any], seeded_emulator: SeededEmulator) -> None:
    r, account = http_scan, http_scan["_account"]
    assert r["status"] == "succeeded", r["data_quality"]
    assert r["data_quality"]["status"] == "complete"
    assert r["total_resources"] == seeded_emulator.count(account=account)
    assert set(r["breakdowns"]["by_account"]) == {account}
    assert {g: e["total"] for g, e in r["breakdowns"]["by_region"].items()} == \
        {g: seeded_emulator.count(account=account, region=g) for g in seeded_emulator.regions}
    assert 0 <= r["compliance_score"] <= 1
    assert len(r["violations"]) <= 25 < r["violations_total"]
    # Progress notifications travel over the HTTP stream too.
    assert r["_progress"] and r["_progress"][-1][0] == r["progress"]["shards_total"]


def test_rest_reads_the_same_scan(gateway: Gateway, http_scan: dict[str, Any]) -> None:
    response = httpx.get(f"{gateway.base_url}/v1/scans/{http_scan['scan_id']}", timeout=30)
    assert response.status_code == 200, response.text
    rest = response.json()
    for field in ("scan_id", "status", "compliance_score", "total_resources", "in_scope_resources",
                  "compliant_resources", "violations_total", "breakdowns", "data_quality", "policy_version"):
        assert rest[field] == http_scan[field], field
    assert [v["resource_arn"] for v in rest["violations"]] == [v["resource_arn"] for v in http_scan["violations"]]

    page = httpx.get(f"{gateway.base_url}/v1/scans/{http_scan['scan_id']}/violations", params={"limit": 1000},
                     timeout=30).json()
    assert page["total"] == len(page["violations"]) == http_scan["violations_total"]


@pytest.fixture(scope="module")
def rest_scan(gateway: Gateway, http_mcp: SyncMcpClient, seeded_emulator: SeededEmulator) -> dict[str, Any]:
    """A scan of one account and one region submitted over REST, then awaited over MCP."""
    account, region = seeded_emulator.accounts[2], seeded_emulator.regions[0]
    submitted = httpx.post(f"{gateway.base_url}/v1/scans", json={"accounts": [account], "regions": [region]},
                           timeout=30)
    assert submitted.status_code == 202, submitted.text
    answer = http_mcp.call("get_scan_status", {"scan_id": submitted.json()["scan_id"], "wait_seconds": 40})
    assert not answer.is_error, tool_text(answer)
    result: dict[str, Any] = answer.structured_content
    result["_account"], result["_region"] = account, region
    return result


def test_scan_started_over_rest_is_read_over_mcp(http_mcp: SyncMcpClient, rest_scan: dict[str, Any],
                                                 seeded_emulator: SeededEmulator) -> None:
    r, account, region = rest_scan, rest_scan["_account"], rest_scan["_region"]
    assert r["status"] == "succeeded", r["data_quality"]
    regional = {t: e["total"] for t, e in r["breakdowns"]["by_resource_type"].items() if t not in GLOBAL_TYPES}
    assert regional == {t: n for t in seeded_emulator.estate.resource_types if t not in GLOBAL_TYPES
                        and (n := seeded_emulator.count(account=account, region=region, rtype=t))}
    listed = {s["scan_id"] for s in http_mcp.call("list_scans", {}).structured_content["scans"]}
    assert r["scan_id"] in listed


def test_region_filter_also_applies_to_s3_buckets(rest_scan: dict[str, Any], seeded_emulator: SeededEmulator) -> None:
    r, account, region = rest_scan, rest_scan["_account"], rest_scan["_region"]
    assert set(r["breakdowns"]["by_region"]) <= {region, "global"}, r["breakdowns"]["by_region"]
    assert r["total_resources"] == seeded_emulator.count(account=account, region=region)


def test_errors_over_http_name_the_field(http_mcp: SyncMcpClient) -> None:
    assert_tool_error(http_mcp.call("check_tag_compliance", {"filters": {"regions": ["mars-north-1"]}}),
                      "regions", "mars-north-1", "us-east-1")
    assert_tool_error(http_mcp.call("get_scan_status", {"scan_id": "6f1c9a64-3b8e-4f5e-9a51-1d2a7c1e0b11"}),
                      "does not exist")


def test_gateway_logged_no_traceback(gateway: Gateway) -> None:
    assert "Traceback" not in gateway.log_text(), gateway.log_text()[-4000:]
