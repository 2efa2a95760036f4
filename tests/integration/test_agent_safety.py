"""Agent safety through both front doors: per-principal rate limits and daily quotas (in-process in embedded
mode, shared through a real Redis between two gateway replicas in production), identical-call loop detection
(with polling tools on their higher limit), input size limits (413 for bodies, field-naming errors for lists,
strings and documents), and error answers that never carry paths, hosts, keys, secrets or stack traces."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import SyncMcpClient

pytestmark = pytest.mark.integration

SCAN_ID = "6f1c9a64-3b8e-4f5e-9a51-1d2a7c1e0b11"


class _NoDispatch:
    """These tests never run scans."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"dispatcher.{name} called")


def _runtime(tmp_path: Path, **overrides: Any) -> Any:
    from services.config import Settings
    from services.db.engine import Database
    from services.db.migrate import upgrade
    from services.runtime import Runtime

    settings = Settings(home=tmp_path, policy_source="file", **overrides)
    upgrade(settings.effective_database_url)
    return Runtime(settings=settings, db=Database(settings.effective_database_url), dispatcher=_NoDispatch())


@pytest.fixture()
def rt(tmp_path: Path) -> Iterator[Any]:
    runtime = _runtime(tmp_path, agent_calls_per_minute=8, agent_repeat_limit=3, agent_poll_repeat_limit=6)
    try:
        yield runtime
    finally:
        runtime.db.dispose()


def _error(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    return error


def _audit(rt: Any, **filters: Any) -> list[Any]:
    from services import audit

    return list(audit.query(rt.db, limit=500, **filters).entries)


def test_http_rate_limit_answers_429_with_retry_after_and_the_setting(rt: Any) -> None:
    from api.http.app import create_app

    with TestClient(create_app(lambda: rt, settings=rt.settings)) as client:
        for limit in (5, 10, 15, 20, 25, 30, 35, 40):  # different arguments: no loop, only the rate counts
            assert client.get("/v1/scans", params={"limit": limit}).status_code == 200
        refused = client.get("/v1/scans", params={"limit": 45})
        error = _error(refused, 429)
        assert error["code"] == "rate_limited" and "8 calls per minute" in error["message"]
        assert "FINOPS_AGENT_CALLS_PER_MINUTE" in error["fix"]
        assert 1 <= int(refused.headers["retry-after"]) <= 60 and error["details"]["limit"] == 8
        assert client.get("/health").status_code == 200  # probes are never limited
    assert [r.outcome for r in _audit(rt, action="GET /v1/scans", outcome="429")] == ["429"]


def test_http_loop_detection_polls_and_writes(rt: Any) -> None:
    from api.http.app import create_app

    with TestClient(create_app(lambda: rt, settings=rt.settings)) as client:
        # A GET repeated is a poll: six identical ones pass (FINOPS_AGENT_POLL_REPEAT_LIMIT=6), the seventh not.
        for _ in range(6):
            assert client.get(f"/v1/scans/{SCAN_ID}").status_code == 404
        error = _error(client.get(f"/v1/scans/{SCAN_ID}"), 429)
        assert "loop detected" in error["message"] and "identical arguments" in error["message"]
        assert "wait" in error["fix"] and "FINOPS_AGENT_POLL_REPEAT_LIMIT" in error["fix"]


def test_mcp_loop_detection_and_polling(tmp_path: Path) -> None:
    from api.mcp.server import build_mcp_server

    rt = _runtime(tmp_path, agent_repeat_limit=3, agent_poll_repeat_limit=6)
    with SyncMcpClient(build_mcp_server(lambda: rt)) as mcp:
        for _ in range(3):
            assert not mcp.call("list_scans", {"limit": 5}).is_error
        looping = mcp.call("list_scans", {"limit": 5})
        assert looping.is_error
        text = looping.content[0].text
        assert "loop detected" in text and "list_scans" in text and "change the arguments" in text
        assert "FINOPS_AGENT_REPEAT_LIMIT" in text
        assert not mcp.call("list_scans", {"limit": 6}).is_error  # other arguments: not a loop

        # Polling a scan id repeats the same call by design: up to the poll limit, with advice past it.
        for _ in range(6):
            answer = mcp.call("get_scan_status", {"scan_id": SCAN_ID})
            assert answer.is_error and "does not exist" in answer.content[0].text
        polled = mcp.call("get_scan_status", {"scan_id": SCAN_ID}).content[0].text
        assert "loop detected" in polled and "wait_seconds" in polled
    refused = _audit(rt, channel="mcp", outcome="rate_limited")
    assert {r.action for r in refused} == {"list_scans", "get_scan_status"}


def test_mcp_rate_limit_counts_every_tool(tmp_path: Path) -> None:
    from api.mcp.server import build_mcp_server

    rt = _runtime(tmp_path, agent_calls_per_minute=4)
    with SyncMcpClient(build_mcp_server(lambda: rt)) as mcp:
        for args in ({"limit": 1}, {"limit": 2}, {"limit": 3}):
            assert not mcp.call("list_scans", args).is_error
        assert not mcp.call("get_tagging_policy").is_error
        text = mcp.call("list_scans", {"limit": 4}).content[0].text
        assert "rate limit reached" in text and "4 calls per minute" in text and "resets in" in text


def test_limits_are_shared_by_gateway_replicas_through_redis(tmp_path: Path, redis_url: str) -> None:
    """Two gateways (two apps, two runtimes, one database) with REDIS_URL share the caller's counters."""
    import redis

    from api.http.app import create_app
    from services import agent_safety

    first = _runtime(tmp_path, redis_url=redis_url, agent_calls_per_minute=0, agent_daily_read_calls=5)
    second = _runtime(tmp_path, redis_url=redis_url, agent_calls_per_minute=0, agent_daily_read_calls=5)
    assert isinstance(agent_safety.guard_for(first).store, agent_safety.RedisCounterStore)
    a = TestClient(create_app(lambda: first, settings=first.settings))
    b = TestClient(create_app(lambda: second, settings=second.settings))
    for i, client in enumerate((a, b, a, b, a)):
        assert client.get("/v1/scans", params={"limit": i + 1}).status_code == 200
    error = _error(b.get("/v1/scans", params={"limit": 99}), 429)
    assert "5 read calls per day" in error["message"] and "00:00 UTC" in error["message"]
    assert "FINOPS_AGENT_DAILY_READ_CALLS" in error["fix"]
    keys = [k.decode() for k in redis.Redis.from_url(redis_url).keys("finops:agent:quota:read:*")]
    assert keys == [next(k for k in keys if k.startswith("finops:agent:quota:read:anonymous:"))]
    first.db.dispose()
    second.db.dispose()


def test_redis_outage_lets_calls_through(tmp_path: Path) -> None:
    from api.http.app import create_app
    from tests.conftest import free_port

    rt = _runtime(tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0", agent_calls_per_minute=1)
    client = TestClient(create_app(lambda: rt, settings=rt.settings))
    for i in range(3):
        assert client.get("/v1/scans", params={"limit": i + 1}).status_code == 200


def test_input_size_limits_over_http(tmp_path: Path) -> None:
    from api.http.app import create_app

    rt = _runtime(tmp_path, agent_max_body_bytes=20_000, agent_max_list_items=50, agent_max_string_chars=300,
                  agent_max_document_bytes=2_000)
    with TestClient(create_app(lambda: rt, settings=rt.settings)) as client:
        big = {"resource_arns": [f"arn:aws:ec2:us-east-1:123456789012:volume/vol-{i:017x}" for i in range(600)]}
        error = _error(client.post("/v1/resources/validate", json=big), 413)
        assert error["code"] == "payload_too_large" and error["field"] == "body" and "20,000" in error["message"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
            yield b'{"resource_arns": ['
            for _i in range(2000):
                yield b'"arn:aws:ec2:us-east-1:123456789012:volume/vol-0",'
            yield b'"x"]}'

        streamed = client.post("/v1/resources/validate", content=chunks(),
                               headers={"content-type": "application/json"})
        assert _error(streamed, 413)["code"] == "payload_too_large"

        many = {"resource_arns": ["arn:aws:ec2:us-east-1:123456789012:volume/vol-1"] * 51}
        error = _error(client.post("/v1/resources/validate", json=many), 422)
        assert error["field"] == "resource_arns" and "51 items" in error["message"]
        long_arn = {"resource_arns": ["arn:aws:ec2:us-east-1:123456789012:volume/" + "v" * 400]}
        error = _error(client.post("/v1/resources/validate", json=long_arn), 422)
        assert error["field"] == "resource_arns[0]" and "at most 300" in error["message"]
        policy = {"policy": {"required_tags": [{"name": f"Tag{i}", "allowed_values": ["a"] * 5} for i in range(40)]}}
        error = _error(client.post("/v1/policy/validate", json=policy), 422)
        assert error["field"] == "policy" and "2,000" in error["message"]
        error = _error(client.get("/v1/scans", params={"status": "x" * 400}), 422)
        assert error["field"] == "status"


def test_input_size_limits_over_mcp(tmp_path: Path) -> None:
    from api.mcp.server import build_mcp_server

    rt = _runtime(tmp_path, agent_max_list_items=50, agent_max_document_bytes=2_000)
    with SyncMcpClient(build_mcp_server(lambda: rt)) as mcp:
        arns = [f"arn:aws:ec2:us-east-1:123456789012:volume/vol-{i}" for i in range(51)]
        text = mcp.call("validate_resource_tags", {"resource_arns": arns}).content[0].text
        assert "resource_arns" in text and "51 items" in text and "Fix:" in text
        policy = json.dumps({"required_tags": [{"name": f"Tag{i}", "allowed_values": ["a"] * 9} for i in range(40)]})
        text = mcp.call("validate_tagging_policy", {"policy": policy}).content[0].text
        assert "policy" in text and "at most 2,000" in text


LEAKS = {
    "aws access key": "AKIAIOSFODNN7EXAMPLE",
    "aws secret key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "file path": "/home/alice/.aws/credentials",
    "internal host": "db01.prod.internal",
    "url with credentials": "postgresql://admin:hunter2@10.1.2.3:5432/finops",
    "project api key": "fta_0123456789abcdef_s3cr3tS3cr3tS3cr3t",
    "stack trace": 'Traceback (most recent call last):\n  File "/work/app/x.py", line 3, in <module>',
}
FORBIDDEN = ["AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI", "/home/alice", "db01.prod.internal", "hunter2", "10.1.2.3",
             "s3cr3tS3cr3t", "Traceback", "/work/app"]


@pytest.mark.parametrize("what", sorted(LEAKS))
def test_http_errors_never_leak(tmp_path: Path, what: str) -> None:
    """Each secret is smuggled into an input the error message quotes back; the answer must not carry it."""
    from api.http.app import create_app

    rt = _runtime(tmp_path)
    leak = LEAKS[what]
    with TestClient(create_app(lambda: rt, settings=rt.settings)) as client:
        answers = [client.post("/v1/scans", json={"regions": [leak]}),
                   client.post("/v1/resources/validate", json={"resource_arns": [leak]}),
                   client.get("/v1/audit", params={"cursor": leak}),
                   client.post("/v1/tagging-requests/preview", json={"resource_arns": [leak], "tags": {"a": "b"}})]
        for answer in answers:
            assert 400 <= answer.status_code < 500, answer.text
            for secret in FORBIDDEN:
                assert secret not in answer.text, (what, answer.text)


def test_dependency_failures_are_sanitized(tmp_path: Path) -> None:
    """A real failure whose library error names the host, port and credentials: the database is a PostgreSQL
    URL on a closed port, with a password in it."""
    from api.http.app import create_app
    from api.mcp.server import build_mcp_server
    from services.config import Settings
    from services.db.engine import Database
    from services.runtime import Runtime
    from tests.conftest import free_port

    url = f"postgresql+psycopg://admin:hunter2@127.0.0.1:{free_port()}/finops?connect_timeout=2"
    settings = Settings(home=tmp_path, database_url=url, policy_source="file")
    rt = Runtime(settings=settings, db=Database(url), dispatcher=_NoDispatch())
    with TestClient(create_app(lambda: rt, settings=settings), raise_server_exceptions=False) as client:
        answer = client.get("/v1/scans")
        assert answer.status_code >= 500
        assert "hunter2" not in answer.text and "127.0.0.1" not in answer.text and "Traceback" not in answer.text
    with SyncMcpClient(build_mcp_server(lambda: rt)) as mcp:
        result = mcp.call("list_scans", {"limit": 3})
        text = result.content[0].text
        assert result.is_error and "hunter2" not in text and "127.0.0.1" not in text and "psycopg" not in text


def test_sanitizer_removes_each_kind_of_internal() -> None:
    from services.error_sanitizer import ErrorSanitizer

    clean = ErrorSanitizer(["finops.acme.com"]).text
    assert clean('connection to server at "db.prod.internal" (10.0.3.4), port 5432 failed') == (
        'connection to server at "[host]" ([host]), port 5432 failed')
    assert clean("redis://:s3cret@cache.corp:6379/0 refused") == "redis://[host] refused"
    assert clean("open /var/lib/finops/finops.sqlite") == "open [path]"
    assert clean("key AKIAIOSFODNN7EXAMPLE / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY") == (
        "key [redacted] / [redacted]")
    assert clean("aws_secret_access_key=abc password: 'p w'") == "aws_secret_access_key=[redacted] password: [redacted]"
    assert clean("Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln") == "Bearer [redacted]"
    assert clean('boom\nTraceback (most recent call last):\n  File "/x.py", line 1') == "boom\n[stack trace removed]"
    assert clean("redis:6379 and localhost:5432") == "[host] and [host]"
    # What errors legitimately say stays: field paths, ARNs, API paths, file names, documentation hosts and
    # the operator's own public host.
    for kept in ("filters.regions: unknown region mars-north-1", "arn:aws:iam::123456789012:role/Admin",
                 "see GET /v1/scans/{scan_id}", "policy.json line 3", "https://issuer.example.test",
                 "https://finops.acme.com/v1/reports/latest", "'../../etc/passwd' is not a scan id"):
        assert clean(kept) == kept
