"""get_violation_history and detect_tag_drift through the MCP SDK's stdio client against ``finops-tags mcp``
(embedded mode) on the seeded emulator: two stored scans with a real tag change between them, then the
history and the drift read back, and isError answers that name the field and the fix.

The tag changed here is put back afterwards: the seeded emulator is shared by the session's e2e tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import SeededEmulator, ServerEnv, SyncMcpClient, assert_tool_error, stdio_target, tool_text

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mcp(server_env: ServerEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncMcpClient]:
    home: Path = tmp_path_factory.mktemp("stdio-history-home")
    env = server_env(home)
    with open(home / "server-stderr.log", "w") as errlog, SyncMcpClient(stdio_target(env, errlog)) as client:
        yield client


def _ok(result: Any) -> dict[str, Any]:
    assert not result.is_error, tool_text(result)
    assert result.structured_content is not None
    return dict(result.structured_content)


def test_history_and_drift_over_stdio(mcp: SyncMcpClient, seeded_emulator: SeededEmulator) -> None:
    from scanner.emulator.server import fake_credentials
    from scanner.providers.aws.session import AwsSessionFactory

    account, region = seeded_emulator.accounts[0], seeded_emulator.regions[0]
    wanted = ("ec2:instance", account, region, "compliant")
    target = next(r for r in seeded_emulator.estate.resources
                  if (r.resource_type, r.account_id, r.region, r.profile) == wanted and "CostCenter" in r.tags)
    scan_args = {"resource_types": ["ec2:instance"], "filters": {"accounts": [account], "regions": [region]},
                 "store_snapshot": True}
    first = _ok(mcp.call("check_tag_compliance", scan_args))
    assert first["status"] == "succeeded" and first["in_history"] is True

    ec2 = AwsSessionFactory(endpoint_url=seeded_emulator.endpoint, credentials=fake_credentials()).client(
        account, "ec2", region)
    ec2.delete_tags(Resources=[target.resource_id], Tags=[{"Key": "CostCenter"}])
    try:
        second = _ok(mcp.call("check_tag_compliance", scan_args))
        assert second["status"] == "succeeded"
        # An ad-hoc scan without store_snapshot stays out of the trend.
        adhoc = _ok(mcp.call("check_tag_compliance", {**scan_args, "store_snapshot": False}))
        assert adhoc["in_history"] is False

        history = _ok(mcp.call("get_violation_history", {"days_back": 1, "group_by": "day"}))
        assert history["scans_used"] == 2 and history["excluded"]["not_stored"] == 1
        assert sum(p["scans"] for p in history["series"]) == 2
        # Averaged, never summed: the latest point is at most one scan's worth of resources.
        assert history["series"][-1]["total_resources"] <= second["total_resources"]
        assert history["trend"]["direction"] in {"insufficient_data", "declining"}
        assert "MEAN" in history["method"]

        drift = _ok(mcp.call("detect_tag_drift", {"resource_types": ["ec2:instance"], "lookback_days": 1}))
        assert drift["summary"]["total"] == 1 and drift["summary"]["regressions"] == 1
        [change] = drift["changes"]
        assert (change["resource_arn"], change["tag_key"], change["change"], change["old_value"],
                change["new_value"]) == (target.arn, "CostCenter", "removed", target.tags["CostCenter"], None)
        assert change["impact"] == "regression" and change["compliant_before"] is True
        assert change["scan_id"] == second["scan_id"] and change["previous_scan_id"] == first["scan_id"]
    finally:
        ec2.create_tags(Resources=[target.resource_id],
                        Tags=[{"Key": "CostCenter", "Value": target.tags["CostCenter"]}])


@pytest.mark.parametrize(("tool", "arguments", "needles"), [
    ("get_violation_history", {"days_back": 0}, ("days_back",)),
    ("get_violation_history", {"days_back": 30, "group_by": "year"}, ("group_by",)),
    ("detect_tag_drift", {"lookback_days": 4000}, ("lookback_days",)),
    ("detect_tag_drift", {"resource_types": ["ec2:instanc"]}, ("resource_types", "unknown resource type", "Fix:")),
])
def test_invalid_arguments_are_tool_errors(mcp: SyncMcpClient, tool: str, arguments: dict[str, Any],
                                           needles: tuple[str, ...]) -> None:
    assert_tool_error(mcp.call(tool, arguments), *needles)
