"""Cost and suggestion tools over MCP stdio (SDK client, ``finops-tags mcp`` against the seeded emulator,
with a FOCUS export of the seeded estate configured the way an operator would)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import SeededEmulator, ServerEnv, SyncMcpClient, assert_tool_error, stdio_target, tool_text

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mcp_with_costs(server_env: ServerEnv, seeded_emulator: SeededEmulator,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SyncMcpClient, Any]]:
    from scanner.emulator.demo_costs import write_demo_focus

    home = tmp_path_factory.mktemp("cost-home")
    focus = write_demo_focus(seeded_emulator.estate.resources, home / "focus.csv",
                             payer_account=seeded_emulator.estate.management_account_id)
    env = {**server_env(home), "FINOPS_FOCUS_PATH": str(focus)}
    with open(home / "stderr.log", "w") as errlog, SyncMcpClient(stdio_target(env, errlog)) as client:
        yield client, seeded_emulator.estate


def _ok(result: Any) -> dict[str, Any]:
    assert not result.is_error, tool_text(result)
    assert result.structured_content is not None
    return dict(result.structured_content)


def test_tools_are_listed_read_only(mcp_with_costs: tuple[SyncMcpClient, Any]) -> None:
    client, _ = mcp_with_costs
    tools = {t.name: t for t in client.list_tools()}
    for name in ("get_cost_attribution_gap", "suggest_tags", "suggest_tags_batch"):
        assert tools[name].annotations.read_only_hint is True and tools[name].output_schema, name


def test_cost_gap_untagged_costs_and_suggestions(mcp_with_costs: tuple[SyncMcpClient, Any]) -> None:
    client, estate = mcp_with_costs
    gap = _ok(client.call("get_cost_attribution_gap", {"group_by": "account"}))
    assert gap["method"] == "measured" and gap["source"] == "focus"
    assert 0 < gap["attribution_gap"] < gap["taggable_cost"] and gap["untaggable_cost"] > 0
    assert {g["key"] for g in gap["groups"]} <= set(estate.member_account_ids)
    assert len(gap["groups"]) == gap["groups_total"] == len(estate.member_account_ids)

    scan = _ok(client.call("check_tag_compliance", {}))
    assert scan["status"] == "succeeded"
    assert any(v["cost_impact_monthly"] for v in scan["violations"])  # priced from the export
    untagged = _ok(client.call("find_untagged_resources", {"scan_id": scan["scan_id"], "include_costs": True,
                                                           "limit": 5}))
    costs = [r["cost"]["monthly_cost"] for r in untagged["resources"]]
    assert costs == sorted(costs, reverse=True) and all(r["cost"]["method"] == "measured"
                                                        for r in untagged["resources"])

    arn = untagged["resources"][0]["resource_arn"]
    one = _ok(client.call("suggest_tags", {"resource_arn": arn}))
    assert one["resource_arn"] == arn and one["broken_tags"]
    batch = _ok(client.call("suggest_tags_batch", {"scan_id": scan["scan_id"], "limit": 3}))
    assert batch["resources_returned"] <= 3 and batch["suggestions_by_tag"]


def test_errors_name_the_field(mcp_with_costs: tuple[SyncMcpClient, Any]) -> None:
    client, _ = mcp_with_costs
    assert_tool_error(client.call("get_cost_attribution_gap", {"group_by": "owner"}), "group_by")
    assert_tool_error(client.call("get_cost_attribution_gap", {"time_period": {"Start": "2026-11-01"}}),
                      "time_period")
    assert_tool_error(client.call("suggest_tags", {"resource_arn": "vol-123"}), "resource_arn")
    assert_tool_error(client.call("suggest_tags_batch", {}), "resource_arns")
    assert_tool_error(client.call("find_untagged_resources", {"min_cost_threshold": -5}), "min_cost_threshold")


def test_server_logged_no_traceback(mcp_with_costs: tuple[SyncMcpClient, Any],
                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    logs = list(tmp_path_factory.getbasetemp().glob("cost-home*/stderr.log"))
    assert logs and all("Traceback" not in log.read_text() for log in logs)
