"""Fuzz every operation of the gateway's OpenAPI document with schemathesis: no answer may be a 5xx.

The app runs in-process (ASGI) in embedded mode on a temporary FINOPS_HOME, with API-key authentication on
(the fuzzer sends an admin key, so every operation is reached past its scope check) and the agent limits off
(the fuzzer is one principal sending hundreds of calls a minute; the limits have their own tests). Scans
that the fuzzer manages to submit run for real on the embedded worker against the moto server, limited to
one region to keep the run short. A bounded number of examples per operation keeps the module under two
minutes on two CPUs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error

from api.http.app import create_app
from services.auth import ALL_SCOPES, ApiKeyStore
from services.config import Settings
from tests.integration.conftest import module_runtime

pytestmark = pytest.mark.integration

# FUZZ_EXAMPLES raises it for a longer hunt (e.g. 200 before a release).
EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "12"))
_state: dict[str, Any] = {}
# What the gateway's authentication and body limit see; the runtime (built by the fixture) has the rest.
_GATEWAY_SETTINGS = Settings(auth_mode="apikey", home=Path("/nonexistent-fuzz-home"), policy_source="file")


def _runtime() -> Any:
    if "rt" not in _state:
        raise AssertionError("the fuzz runtime fixture did not run")
    return _state["rt"]


# Built at import (schemathesis reads the schema when the module is collected; the pytest 9 node API no longer
# supports its lazy fixture loader); the runtime behind it is the module fixture's, reached lazily.
APP = create_app(_runtime, settings=_GATEWAY_SETTINGS)


async def _rest_only(scope: Any, receive: Any, send: Any) -> None:
    """APP without its lifespan (it would start the MCP session manager and the policy sync; /mcp is not an
    OpenAPI operation): schemathesis's client enters the lifespan on every call."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await APP(scope, receive, send)


schema = schemathesis.openapi.from_asgi("/openapi.json", _rest_only)


@pytest.fixture(scope="module", autouse=True)
def fuzz_runtime(emulator: Any, embedded_worker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Embedded mode on a temporary FINOPS_HOME with API keys on, an admin key for the fuzzer, limits off."""
    home: Path = tmp_path_factory.mktemp("fuzz-home")
    with module_runtime(emulator, home) as rt:
        rt.settings = rt.settings.model_copy(update={
            "auth_mode": "apikey", "regions": ["us-east-1"],
            "agent_calls_per_minute": 0, "agent_daily_read_calls": 0, "agent_daily_write_calls": 0,
            "agent_daily_expensive_calls": 0, "agent_repeat_limit": 0, "agent_poll_repeat_limit": 0})
        _state["rt"] = rt
        _state["key"] = ApiKeyStore(rt.db).create("fuzzer", ALL_SCOPES).key
        try:
            yield rt
        finally:
            _state.clear()


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck), derandomize=os.environ.get("FUZZ_EXAMPLES") is None)
def test_no_operation_answers_5xx(case: Any) -> None:
    if case.query and "wait" in case.query:
        case.query["wait"] = 0  # a submitted scan is followed by polling elsewhere, not by a 55 s wait here
    case.call_and_validate(headers={"X-API-Key": _state["key"]}, checks=[not_a_server_error])


def test_schema_declares_security_and_scopes() -> None:
    from fastapi.testclient import TestClient

    document = TestClient(APP).get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKeyAuth"] == {**schemes["apiKeyAuth"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    paths = document["paths"]
    assert paths["/v1/scans"]["get"]["security"] == [{"bearerAuth": ["tag:read"]}, {"apiKeyAuth": ["tag:read"]}]
    assert paths["/v1/audit"]["get"]["x-required-scopes"] == ["admin"]
    assert paths["/v1/api-keys"]["post"]["x-required-scopes"] == ["admin"]
    assert paths["/v1/tagging-requests"]["post"]["x-required-scopes"] == ["tag:write"]
    assert paths["/v1/tagging-requests/{request_id}/decision"]["post"]["x-required-scopes"] == ["tag:approve"]
    assert "security" not in paths["/health"]["get"]
    # Every other /v1 operation names the scope it needs.
    for path, operations in paths.items():
        if path.startswith("/v1/"):
            for method, operation in operations.items():
                assert operation.get("x-required-scopes"), f"{method.upper()} {path} declares no scope"
