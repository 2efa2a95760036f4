"""A third-party MCP client: MCP Inspector's CLI (``make tools`` installs it under .tools/inspector)
against the gateway's streamable HTTP endpoint and against ``finops-tags mcp`` over stdio."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, service_missing
from tests.e2e.conftest import FINOPS_TAGS, TOOLS, Gateway, ServerEnv

pytestmark = pytest.mark.e2e

INSPECTOR = ROOT / ".tools" / "inspector" / "node_modules" / ".bin" / "mcp-inspector"


@pytest.fixture(scope="module")
def inspector(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Runs ``mcp-inspector --cli ... --format json`` and returns the parsed ``result``."""
    if not INSPECTOR.exists():
        service_missing(f"MCP Inspector CLI at {INSPECTOR.relative_to(ROOT)} (run `make tools`)")
    if shutil.which("node") is None:
        service_missing("MCP Inspector needs node on PATH")
    work = tmp_path_factory.mktemp("inspector")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FINOPS_"))}
    # The Inspector keeps a server catalog (default ~/.mcp-inspector/mcp.json): keep it out of $HOME.
    env["MCP_CATALOG_PATH"] = str(work / "catalog.json")

    def run(*args: str) -> dict[str, Any]:
        proc = subprocess.run([str(INSPECTOR), "--cli", "--format", "json", *args], cwd=work, env=env,
                              capture_output=True, text=True, timeout=90)
        assert proc.returncode == 0, \
            f"exit {proc.returncode}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}"
        answer = json.loads(proc.stdout)
        assert "result" in answer, answer
        result: dict[str, Any] = answer["result"]
        return result

    return run


def test_inspector_lists_tools_over_http(inspector: Any, gateway: Gateway) -> None:
    result = inspector(gateway.mcp_url, "--transport", "http", "--method", "tools/list")
    tools = {t["name"]: t for t in result["tools"]}
    assert set(tools) == TOOLS
    assert tools["get_tagging_policy"]["annotations"]["readOnlyHint"] is True
    assert tools["check_tag_compliance"]["outputSchema"]["properties"]["compliance_score"]


def test_inspector_calls_a_tool_over_http(inspector: Any, gateway: Gateway) -> None:
    result = inspector(gateway.mcp_url, "--transport", "http", "--method", "tools/call",
                       "--tool-name", "get_tagging_policy")
    assert not result.get("isError"), result
    policy = result["structuredContent"]
    assert {t["name"] for t in policy["policy"]["required_tags"]} == {"CostCenter", "Owner", "Environment",
                                                                       "Application"}
    assert json.loads(result["content"][0]["text"])["version"] == policy["version"]


def test_inspector_lists_tools_over_stdio(inspector: Any, server_env: ServerEnv, tmp_path: Path) -> None:
    env = server_env(tmp_path / "home")
    # The Inspector starts the server with a minimal environment; the project's variables go in with -e.
    passed = [arg for key, value in env.items() if key.startswith(("AWS_", "FINOPS_"))
              for arg in ("-e", f"{key}={value}")]
    result = inspector(*passed, FINOPS_TAGS, "mcp", "--method", "tools/list")
    assert {t["name"] for t in result["tools"]} == TOOLS
