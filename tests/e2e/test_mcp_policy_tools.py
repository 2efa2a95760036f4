"""validate_tagging_policy over MCP stdio (SDK client): findings with locations, errors as isError."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import ServerEnv, SyncMcpClient, assert_tool_error, stdio_target, tool_text

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def client(server_env: ServerEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncMcpClient]:
    home = tmp_path_factory.mktemp("policy-tools")
    with open(home / "stderr.log", "w") as errlog, SyncMcpClient(stdio_target(server_env(home), errlog)) as mcp:
        yield mcp


def test_validate_tagging_policy(client: SyncMcpClient) -> None:
    policy = json.loads((ROOT / "policies" / "examples" / "default.json").read_text())
    good = client.call("validate_tagging_policy", {"policy": policy})
    assert not good.is_error, tool_text(good)
    assert good.structured_content["valid"] is True
    policy["required_tags"][0]["allowed_values"] = ["a*b*c"]
    bad = client.call("validate_tagging_policy", {"policy": json.dumps(policy, indent=2)})
    assert not bad.is_error and bad.structured_content["valid"] is False
    finding = bad.structured_content["findings"][0]
    assert finding["location"] == "required_tags[0].allowed_values[0]" and "wildcard" in finding["message"]
    assert_tool_error(client.call("validate_tagging_policy", {"policy": {}, "target": "oracle"}), "target")
