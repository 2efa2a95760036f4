"""Access control through the real gateway: REST and MCP over streamable HTTP with auth on (OAuth JWTs whose
JWKS a local HTTP server publishes, and API keys managed by the CLI), 401/403 answers, RFC 9728 metadata,
key rotation without restart, and the audit rows each case leaves (read back through GET /v1/audit)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

pytestmark = pytest.mark.integration

ISSUER = "https://issuer.example.test"
AUDIENCE = "finops-api"


class _NoDispatch:
    """These tests never run scans; a dispatcher that would be called is a test bug."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"dispatcher.{name} called")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def signing_key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks_url(signing_key: Any) -> Iterator[str]:
    """The issuer's JWKS, served on 127.0.0.1 (nothing is downloaded from outside)."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    jwk.update(kid="test-key", use="sig", alg="RS256")
    body = json.dumps({"keys": [jwk]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def make_token(key: Any, *, sub: str = "alice", scope: str = "tag:read", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 600, "scope": scope, **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": "test-key"})


@pytest.fixture()
def gateway(tmp_path: Path, jwks_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    from api.http.app import create_app
    from services.config import Settings
    from services.db.engine import Database
    from services.db.migrate import upgrade
    from services.runtime import Runtime

    port = _free_port()
    env = {"FINOPS_HOME": str(tmp_path), "FINOPS_POLICY_SOURCE": "file", "FINOPS_AUTH_MODE": "both",
           "FINOPS_OAUTH_ISSUER": ISSUER, "FINOPS_OAUTH_AUDIENCE": AUDIENCE, "FINOPS_OAUTH_JWKS_URL": jwks_url,
           "FINOPS_API_KEY_CACHE_SECONDS": "0.2", "FINOPS_API_KEY_PEPPER": "pepper-for-tests",
           "FINOPS_PUBLIC_URL": f"http://127.0.0.1:{port}", "FINOPS_PORT": str(port)}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = Settings()
    upgrade(settings.effective_database_url)
    rt = Runtime(settings=settings, db=Database(settings.effective_database_url), dispatcher=_NoDispatch())
    app = create_app(lambda: rt, settings=settings)
    try:
        yield {"app": app, "rt": rt, "port": port, "settings": settings}
    finally:
        rt.db.dispose()


def cli(*args: str) -> str:
    from api.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def audit_rows(client: TestClient, key: str, **filters: Any) -> list[dict[str, Any]]:
    page = client.get("/v1/audit", params=filters, headers={"X-API-Key": key})
    assert page.status_code == 200, page.text
    rows: list[dict[str, Any]] = page.json()["entries"]
    return rows


def test_rest_needs_a_valid_token(gateway: dict[str, Any], signing_key: Any) -> None:
    base = f"http://127.0.0.1:{gateway['port']}"
    with TestClient(gateway["app"]) as client:
        # Open: health, docs, the RFC 9728 metadata.
        assert client.get("/health").status_code == 200
        assert client.get("/docs").status_code == 200 and client.get("/openapi.json").status_code == 200
        meta = client.get("/.well-known/oauth-protected-resource/mcp").json()
        assert meta["resource"] == f"{base}/mcp" and meta["authorization_servers"] == [ISSUER]
        assert "tag:approve" in meta["scopes_supported"]
        assert client.get("/.well-known/oauth-protected-resource").json()["resource"].rstrip("/") == base

        missing = client.get("/v1/scans")
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "unauthenticated"
        assert f'resource_metadata="{base}/.well-known/oauth-protected-resource"' in missing.headers["www-authenticate"]

        expired = make_token(signing_key, exp=int(time.time()) - 3600)
        wrong_audience = make_token(signing_key, aud="another-api")
        other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = make_token(other_key)
        good = make_token(signing_key)
        tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
        for bad, words in ((expired, "expired"), (wrong_audience, "audience"), (forged, "not valid"),
                           (tampered, "not valid"), ("garbage", "not valid")):
            answer = client.get("/v1/scans", headers={"Authorization": f"Bearer {bad}"})
            assert answer.status_code == 401, bad
            assert words in answer.json()["error"]["message"]
            assert 'error="invalid_token"' in answer.headers["www-authenticate"]
            assert bad not in answer.text  # never echoed

        ok = client.get("/v1/scans", headers={"Authorization": f"Bearer {good}"})
        assert ok.status_code == 200 and ok.json() == []

        # A valid caller without the scope: 403 naming it.
        writer = make_token(signing_key, sub="bob", scope="tag:write")
        denied = client.get("/v1/scans", headers={"Authorization": f"Bearer {writer}"})
        assert denied.status_code == 403
        error = denied.json()["error"]
        assert error["code"] == "insufficient_scope" and error["scope"] == "tag:read" and "tag:read" in error["fix"]
        assert 'scope="tag:read"' in denied.headers["www-authenticate"]
        no_admin = client.get("/v1/audit", headers={"Authorization": f"Bearer {good}"})
        assert no_admin.status_code == 403 and no_admin.json()["error"]["scope"] == "admin"
        submit = client.post("/v1/scans", json={}, headers={"Authorization": f"Bearer {writer}"})
        assert submit.status_code == 403 and submit.json()["error"]["scope"] == "tag:read"

        # Every case is in the audit log, with who and the outcome; secrets never stored.
        admin_key = cli("apikey", "create", "auditor", "--scopes", "admin")
        unauthenticated = audit_rows(client, admin_key, outcome="401", action="GET /v1/scans")
        assert len(unauthenticated) == 6 and {r["principal"] for r in unauthenticated} == {"anonymous"}
        forbidden = audit_rows(client, admin_key, principal="oauth:bob")
        assert {(r["action"], r["outcome"]) for r in forbidden} == {("GET /v1/scans", "403"), ("POST /v1/scans", "403")}
        allowed = audit_rows(client, admin_key, principal="oauth:alice")
        assert {(r["action"], r["outcome"]) for r in allowed} == {("GET /v1/scans", "200"), ("GET /v1/audit", "403")}
        everything = json.dumps(audit_rows(client, admin_key, limit=500))
        assert admin_key not in everything and good not in everything and admin_key.split("_", 2)[2] not in everything


def test_audit_query_filters_and_pages(gateway: dict[str, Any], signing_key: Any) -> None:
    with TestClient(gateway["app"]) as client:
        admin = {"Authorization": f"Bearer {make_token(signing_key, sub='root', scope='admin tag:read')}"}
        for i in range(5):
            client.get("/v1/scans", headers={**admin, "X-Correlation-ID": f"corr-{i}"})
        tagged = client.get("/v1/scans", headers={**admin, "X-Correlation-ID": "find-me"})
        assert tagged.headers["x-correlation-id"] == "find-me"
        rows = client.get("/v1/audit", params={"correlation_id": "find-me"}, headers=admin).json()["entries"]
        assert len(rows) == 1 and rows[0]["principal"] == "oauth:root" and rows[0]["channel"] == "http"

        seen: list[int] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2, "action": "GET /v1/scans", "channel": "http"}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/v1/audit", params=params, headers=admin).json()
            seen += [r["id"] for r in page["entries"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert len(seen) == 6 and seen == sorted(seen, reverse=True)
        future = client.get("/v1/audit", params={"since": "2999-01-01T00:00:00Z"}, headers=admin).json()
        assert future["entries"] == []
        bad = client.get("/v1/audit", params={"cursor": "nonsense"}, headers=admin)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "cursor"


def test_api_keys_rotate_and_revoke_without_restart(gateway: dict[str, Any]) -> None:
    with TestClient(gateway["app"]) as client:
        key = cli("apikey", "create", "ci", "--scopes", "tag:read,admin")
        key_id = key.split("_")[1]
        assert client.get("/v1/scans", headers={"X-API-Key": key}).status_code == 200
        assert client.get("/v1/scans", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        listed = json.loads(cli("apikey", "list"))
        assert [k["id"] for k in listed] == [key_id] and key.split("_", 2)[2] not in json.dumps(listed)

        new_key = cli("apikey", "rotate", key_id)
        assert new_key != key

        def refused(k: str) -> bool:
            return client.get("/v1/scans", headers={"X-API-Key": k}).status_code == 401

        deadline = time.monotonic() + 5  # the gateway re-reads keys after FINOPS_API_KEY_CACHE_SECONDS
        while not refused(key):
            assert time.monotonic() < deadline, "rotated-out key still accepted"
            time.sleep(0.05)
        assert client.get("/v1/scans", headers={"X-API-Key": new_key}).status_code == 200

        cli("apikey", "revoke", new_key.split("_")[1])
        deadline = time.monotonic() + 5
        while not refused(new_key):
            assert time.monotonic() < deadline, "revoked key still accepted"
            time.sleep(0.05)

        auditor = cli("apikey", "create", "auditor", "--scopes", "admin")
        changes = audit_rows(client, auditor, channel="cli")
        assert [r["action"] for r in changes] == ["apikey.create", "apikey.revoke", "apikey.rotate", "apikey.create"]
        assert len(audit_rows(client, auditor, principal="anonymous", outcome="401")) >= 2  # the refused keys


def test_mcp_over_http_needs_a_token_and_checks_scopes(gateway: dict[str, Any], signing_key: Any) -> None:
    import httpx2
    import uvicorn
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    port = gateway["port"]
    base = f"http://127.0.0.1:{port}"
    with TestClient(gateway["app"]) as client:
        missing = client.post("/mcp/", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert missing.status_code == 401
        assert f'resource_metadata="{base}/.well-known/oauth-protected-resource/mcp"' in missing.headers[
            "www-authenticate"]
        expired = make_token(signing_key, exp=int(time.time()) - 3600)
        assert client.post("/mcp/", json={}, headers={"Authorization": f"Bearer {expired}"}).status_code == 401

    from api.http.app import create_app

    # A fresh app: MCP's session manager runs once per app, and the TestClient above ran this one.
    live = create_app(lambda: gateway["rt"], settings=gateway["settings"])
    server = uvicorn.Server(uvicorn.Config(live, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.05)
        reader = make_token(signing_key, sub="carol", scope="tag:read")
        approver = make_token(signing_key, sub="dave", scope="tag:approve")
        api_key = cli("apikey", "create", "mcp-bot", "--scopes", "tag:read")

        async def call(headers: dict[str, str]) -> Any:
            http = httpx2.AsyncClient(headers=headers, timeout=30)
            async with http, Client(streamable_http_client(f"{base}/mcp/", http_client=http)) as mcp:
                return await mcp.call_tool("list_scans", {"limit": 5})

        ok = anyio.run(call, {"Authorization": f"Bearer {reader}"})
        assert not ok.is_error and ok.structured_content == {"scans": []}
        via_key = anyio.run(call, {"X-API-Key": api_key})
        assert not via_key.is_error
        denied = anyio.run(call, {"Authorization": f"Bearer {approver}"})
        assert denied.is_error and "tag:read" in denied.content[0].text and "dave" in denied.content[0].text
    finally:
        server.should_exit = True
        thread.join(timeout=10)

    client = TestClient(gateway["app"])  # REST only: this app's MCP lifespan already ran
    auditor = cli("apikey", "create", "auditor", "--scopes", "admin")
    rows = audit_rows(client, auditor, channel="mcp", action="list_scans")
    assert {(r["principal"], r["outcome"]) for r in rows} == {
        ("oauth:carol", "ok"), ("apikey:mcp-bot", "ok"), ("oauth:dave", "insufficient_scope")}
    refused = audit_rows(client, auditor, channel="mcp", action="POST /mcp/")
    assert [(r["principal"], r["outcome"]) for r in refused] == [("anonymous", "401")] * 2


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_database_refuses_audit_updates_and_deletes(backend: str, tmp_path: Path,
                                                    request: pytest.FixtureRequest) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from services import audit
    from services.db.engine import Database
    from services.db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'a.sqlite'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    upgrade(url)
    db = Database(url)
    try:
        audit.record(db, principal="oauth:alice", channel="http", action="GET /v1/scans", parameters={},
                     outcome="200")
        for statement in ("UPDATE audit_log SET outcome = 'ok'", "DELETE FROM audit_log"):
            with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
                conn.execute(text(statement))
        assert audit.query(db).entries[0].outcome == "200"
    finally:
        db.dispose()
