"""The bulk tagging tools over MCP stdio (SDK client, ``finops-tags mcp`` against the seeded emulator).

Dry runs only: the seeded emulator is shared by the whole e2e session, so nothing here changes it (the
apply path runs against moto in tests/integration/test_bulk_tagging.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import SeededEmulator, ServerEnv, SyncMcpClient, assert_tool_error, stdio_target, tool_text

pytestmark = pytest.mark.e2e
#: The local stdio user is read-only unless configured; these tests let it request and approve.
WRITER = "tag:read,tag:write,tag:approve"


@pytest.fixture(scope="module")
def client(server_env: ServerEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncMcpClient]:
    home = tmp_path_factory.mktemp("tagging-tools")
    env = {**server_env(home), "FINOPS_STDIO_SCOPES": WRITER}
    with open(home / "stderr.log", "w") as errlog, SyncMcpClient(stdio_target(env, errlog)) as mcp:
        yield mcp


def _ok(result: Any) -> dict[str, Any]:
    assert not result.is_error, tool_text(result)
    assert result.structured_content is not None
    return dict(result.structured_content)


def test_preview_request_approve_dry_run_and_errors(client: SyncMcpClient, seeded_emulator: SeededEmulator) -> None:
    tools = {t.name: t for t in client.list_tools()}
    assert tools["approve_bulk_tagging_request"].annotations.destructive_hint is True
    assert tools["preview_bulk_tagging"].annotations.read_only_hint is True
    volume = next(r for r in seeded_emulator.estate.resources
                  if r.resource_type == "ec2:volume" and "FinopsProbe" not in r.tags)
    args = {"resource_arns": [volume.arn], "tags": {"FinopsProbe": "e2e"}}

    preview = _ok(client.call("preview_bulk_tagging", args))
    assert preview["resources_changing"] == 1 and preview["diffs"][0]["added"] == {"FinopsProbe": "e2e"}
    assert preview["risk"]["level"] == "low"

    request = _ok(client.call("bulk_tag_resources", args))
    assert request["status"] == "pending_approval" and request["dry_run"] is True
    assert request["requested_by"] == "local" and "FinopsProbe=e2e" in request["intent"]
    rid = request["request_id"]
    decided = _ok(client.call("approve_bulk_tagging_request", {"request_id": rid, "approve": True,
                                                               "comment": "looks right"}))
    assert decided["status"] == "approved" and decided["decision"]["comment"] == "looks right"
    assert _ok(client.call("get_tagging_request", {"request_id": rid}))["outcome_counts"] == {}

    assert_tool_error(client.call("approve_bulk_tagging_request", {"request_id": rid, "decision": "approve"}),
                      "request_id", "replayed")
    assert_tool_error(client.call("bulk_tag_resources", {"resource_arns": [volume.arn], "tags": {"aws:x": "1"}}),
                      "tags.aws:x", "reserved")
    assert_tool_error(client.call("get_tagging_request", {"request_id": "nope"}), "request_id")


def test_local_self_approval_above_threshold_needs_the_users_consent(
        server_env: ServerEnv, seeded_emulator: SeededEmulator, tmp_path_factory: pytest.TempPathFactory) -> None:
    from mcp import types

    questions: list[str] = []
    answers = iter([False, True])

    async def consent(_context: Any, params: Any) -> types.ElicitResult:
        questions.append(params.message)
        return types.ElicitResult(action="accept", content={"approve": next(answers)})

    home = tmp_path_factory.mktemp("tagging-consent")
    # One resource is "high" risk here, so the local user's own approval needs their confirmation.
    env = {**server_env(home), "FINOPS_TAGGING_RISK_RESOURCES": "1", "FINOPS_TAGGING_RISK_ACCOUNTS": "1",
           "FINOPS_STDIO_SCOPES": WRITER}
    volumes = [r for r in seeded_emulator.estate.resources if r.resource_type == "ec2:volume"][:2]
    args = {"resource_arns": [v.arn for v in volumes], "tags": {"FinopsProbe": "consent"}}
    with open(home / "stderr.log", "w") as errlog:
        with SyncMcpClient(stdio_target(env, errlog)) as plain:  # no elicitation support: refused
            rid = _ok(plain.call("bulk_tag_resources", args))["request_id"]
            assert_tool_error(plain.call("approve_bulk_tagging_request", {"request_id": rid, "approve": True}),
                              "cannot approve", "elicitation")
        with SyncMcpClient(stdio_target(env, errlog), elicitation_callback=consent) as asking:
            assert_tool_error(asking.call("approve_bulk_tagging_request", {"request_id": rid, "approve": True}),
                              "did not confirm")
            assert _ok(asking.call("get_tagging_request", {"request_id": rid}))["status"] == "pending_approval"
            decided = _ok(asking.call("approve_bulk_tagging_request", {"request_id": rid, "approve": True}))
    assert decided["status"] == "approved" and "elicitation" in decided["decision"]["comment"]
    assert len(questions) == 2 and rid in questions[0] and "Risk high" in questions[0]
    assert "Dry run" in questions[0]


def test_read_only_local_user_cannot_request_or_approve(
        server_env: ServerEnv, seeded_emulator: SeededEmulator, tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("tagging-read-only")
    volume = next(r for r in seeded_emulator.estate.resources if r.resource_type == "ec2:volume")
    with open(home / "stderr.log", "w") as errlog, SyncMcpClient(stdio_target(server_env(home), errlog)) as reader:
        args = {"resource_arns": [volume.arn], "tags": {"FinopsProbe": "read-only"}}
        assert _ok(reader.call("preview_bulk_tagging", args))["resources_changing"] == 1
        assert_tool_error(reader.call("bulk_tag_resources", args), "tag:write")
        assert_tool_error(reader.call("approve_bulk_tagging_request",
                                      {"request_id": "00000000-0000-0000-0000-000000000000", "approve": True}),
                          "tag:approve")
