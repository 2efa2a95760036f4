"""The scheduled-audit tools through the MCP SDK's client and `finops-tags mcp` over stdio: create (the
existing open-source server's parameters and a cron), list, update, delete, and isError answers that name
the field and the fix."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import SyncMcpClient, assert_tool_error, stdio_target

pytestmark = pytest.mark.e2e

SCHEDULE_TOOLS = {"schedule_compliance_audit", "list_audit_schedules", "update_audit_schedule",
                  "delete_audit_schedule"}
HOOK = "https://hooks.slack.com/services/T0001/B0001/abcdefghijklmnop"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncMcpClient]:
    home = tmp_path_factory.mktemp("schedules-mcp")
    # Embedded mode on a fresh SQLite file; nothing reaches AWS (creating a schedule scans nothing).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "FINOPS_")) and k not in {"DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL"}}
    env |= {"FINOPS_HOME": str(home), "HOME": str(home), "FINOPS_POLICY_SOURCE": "file",
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"}
    with open(Path(home) / "stderr.log", "w") as errlog, SyncMcpClient(stdio_target(env, errlog)) as mcp:
        yield mcp


def _structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    data: dict[str, Any] = result.structured_content
    return data


def test_tools_are_listed_with_annotations(client: SyncMcpClient) -> None:
    tools = {t.name: t for t in client.list_tools() if t.name in SCHEDULE_TOOLS}
    assert set(tools) == SCHEDULE_TOOLS
    assert tools["delete_audit_schedule"].annotations.destructive_hint is True
    assert tools["list_audit_schedules"].annotations.read_only_hint is True
    assert tools["schedule_compliance_audit"].annotations.read_only_hint is False
    # The existing open-source server's parameters, plus the additive ones.
    props = set(tools["schedule_compliance_audit"].input_schema["properties"])
    assert {"schedule", "time", "timezone", "resource_types", "recipients", "notification_format"} <= props
    assert {"cron", "name", "accounts", "regions", "enabled"} <= props


def test_create_list_update_delete(client: SyncMcpClient) -> None:
    peer = _structured(client.call("schedule_compliance_audit", {
        "schedule": "weekly", "time": "08:30", "timezone": "Europe/Paris", "resource_types": ["ec2:instance"],
        "recipients": [HOOK], "notification_format": "slack"}))
    assert peer["status"] == "created"
    s = peer["schedule"]
    assert s["cron_expression"] == "30 8 * * 1" and s["timezone"] == "Europe/Paris" and s["enabled"] is True
    assert s["recipients"] == ["https://hooks.slack.com/…mnop"]  # the secret URL is not echoed back
    assert "+01:00" in s["next_run_local"] or "+02:00" in s["next_run_local"]
    assert "T08:30:00" in s["next_run_local"]
    assert "embedded mode" in peer["message"] and "DatabaseScheduler" in peer["message"]

    custom = _structured(client.call("schedule_compliance_audit", {"cron": "0 7 * * 1-5", "name": "weekday audit",
                                                                   "timezone": "America/New_York"}))
    listed = _structured(client.call("list_audit_schedules", {}))
    assert listed["total"] == 2
    assert [x["schedule_id"] for x in listed["schedules"]] == [peer["schedule_id"], custom["schedule_id"]]

    paused = _structured(client.call("update_audit_schedule", {"schedule_id": custom["schedule_id"],
                                                               "enabled": False}))
    assert paused["schedule"]["enabled"] is False and paused["schedule"]["next_run"] is None
    assert _structured(client.call("list_audit_schedules", {"enabled": True}))["total"] == 1

    for sid in (peer["schedule_id"], custom["schedule_id"]):
        assert _structured(client.call("delete_audit_schedule", {"schedule_id": sid}))["status"] == "deleted"
    assert _structured(client.call("list_audit_schedules", {}))["total"] == 0


def test_errors_name_the_field_and_the_fix(client: SyncMcpClient) -> None:
    assert_tool_error(client.call("schedule_compliance_audit", {"schedule": "daily", "time": "9am"}),
                      "time:", "HH:MM", "Fix:")
    assert_tool_error(client.call("schedule_compliance_audit", {"timezone": "Europe/Pariss"}),
                      "timezone:", "did you mean Europe/Paris", "Fix:")
    assert_tool_error(client.call("schedule_compliance_audit", {"cron": "61 * * * *"}),
                      "cron:", "not a valid cron expression", "Fix:")
    assert_tool_error(client.call("schedule_compliance_audit", {"recipients": ["#finops"]}),
                      "recipients:", "incoming webhook", "Fix:")
    # No SMTP server configured on this server: an email recipient is refused at creation.
    assert_tool_error(client.call("schedule_compliance_audit", {"recipients": ["finops@example.com"]}),
                      "recipients:", "FINOPS_SMTP_HOST")
    assert_tool_error(client.call("delete_audit_schedule", {"schedule_id": "6f1c9a64-3b8e-4f5e-9a51-1d2a7c1e0b11"}),
                      "schedule_id:", "does not exist", "Fix:")
    assert _structured(client.call("list_audit_schedules", {}))["total"] == 0  # nothing half-written


def test_cli_schedule_add_list_rm(tmp_path: Path) -> None:
    import json
    import subprocess

    from tests.e2e.conftest import FINOPS_TAGS

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "FINOPS_")) and k not in {"DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL"}}
    env |= {"FINOPS_HOME": str(tmp_path), "FINOPS_POLICY_SOURCE": "file", "AWS_EC2_METADATA_DISABLED": "true"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([FINOPS_TAGS, "schedule", *args], env=env, capture_output=True, text=True, timeout=120)

    added = cli("add", "--schedule", "daily", "--time", "06:15", "--timezone", "Asia/Tokyo",
                "--recipient", HOOK, "--report-format", "markdown")
    assert added.returncode == 0, added.stderr
    created = json.loads(added.stdout)
    assert created["cron_expression"] == "15 6 * * *" and created["notification_format"] == "markdown"
    assert "embedded mode" in added.stderr
    listed = json.loads(cli("list", "--json").stdout)
    assert [s["schedule_id"] for s in listed] == [created["schedule_id"]]
    bad = cli("add", "--cron", "0 9 * *")
    assert bad.returncode == 2 and "cron" in bad.stderr and "Fix:" in bad.stderr and "Traceback" not in bad.stderr
    assert cli("rm", created["schedule_id"]).returncode == 0
    assert json.loads(cli("list", "--json").stdout) == []
    assert cli("rm", created["schedule_id"]).returncode == 2
