"""API-key management over REST (/v1/api-keys) through the real gateway with API keys on: create (secret shown
once), list (never a secret or hash), rotate and revoke taking effect at once, admin scope required, bad input
named, and every change in the audit log without the key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration


class _NoDispatch:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"dispatcher.{name} called")


@pytest.fixture()
def gateway(tmp_path: Path) -> Iterator[dict[str, Any]]:
    from api.http.app import create_app
    from services.auth import ApiKeyStore
    from services.config import Settings
    from services.db.engine import Database
    from services.db.migrate import upgrade
    from services.runtime import Runtime

    settings = Settings(home=tmp_path, policy_source="file", auth_mode="apikey", api_key_pepper="pepper-for-tests",
                        api_key_cache_seconds=30)  # long cache: changes made here must not wait for it
    upgrade(settings.effective_database_url)
    rt = Runtime(settings=settings, db=Database(settings.effective_database_url), dispatcher=_NoDispatch())
    root = ApiKeyStore(rt.db, pepper="pepper-for-tests").create("root", ["admin"]).key
    try:
        with TestClient(create_app(lambda: rt, settings=settings)) as client:
            yield {"client": client, "root": {"X-API-Key": root}, "rt": rt}
    finally:
        rt.db.dispose()


def test_create_list_rotate_revoke(gateway: dict[str, Any]) -> None:
    client: TestClient = gateway["client"]
    admin = gateway["root"]
    created = client.post("/v1/api-keys", json={"name": "ci-pipeline", "scopes": ["tag:write", "tag:read"],
                                                "expires_days": 30}, headers=admin)
    assert created.status_code == 201, created.text
    body = created.json()
    key, info = body["key"], body["info"]
    assert key.startswith(f"fta_{info['id']}_") and info["scopes"] == ["tag:read", "tag:write"]
    assert info["created_by"] == "apikey:root" and info["expires_at"] is not None
    secret = key.split("_", 2)[2]
    assert client.get("/v1/scans", headers={"X-API-Key": key}).status_code == 200
    assert client.get("/v1/audit", headers={"X-API-Key": key}).status_code == 403  # only the scopes granted

    listed = client.get("/v1/api-keys", headers=admin)
    assert listed.status_code == 200
    rows = {r["name"]: r for r in listed.json()}
    assert set(rows) == {"root", "ci-pipeline"} and rows["ci-pipeline"]["is_active"] is True
    assert secret not in listed.text and "hash" not in listed.text and "salt" not in listed.text

    rotated = client.post(f"/v1/api-keys/{info['id']}/rotate", headers=admin)
    assert rotated.status_code == 201, rotated.text
    new_key = rotated.json()["key"]
    assert rotated.json()["info"]["rotated_from"] == info["id"] and rotated.json()["info"]["scopes"] == info["scopes"]
    # On this replica the old key is refused at once, despite the 30 s key cache.
    assert client.get("/v1/scans", headers={"X-API-Key": key}).status_code == 401
    assert client.get("/v1/scans", headers={"X-API-Key": new_key}).status_code == 200

    new_id = rotated.json()["info"]["id"]
    revoked = client.delete(f"/v1/api-keys/{new_id}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["is_active"] is False
    assert client.get("/v1/scans", headers={"X-API-Key": new_key}).status_code == 401
    again = client.delete(f"/v1/api-keys/{new_id}", headers=admin)
    assert again.status_code == 422 and again.json()["error"]["field"] == "key_id"
    everything = client.get("/v1/api-keys", params={"include_revoked": True}, headers=admin).json()
    assert {r["id"] for r in everything if not r["is_active"]} == {info["id"], new_id}
    assert [r["name"] for r in client.get("/v1/api-keys", headers=admin).json()] == ["root"]

    audit = client.get("/v1/audit", params={"channel": "http", "limit": 500}, headers=admin).json()["entries"]
    changes = [(r["action"], r["principal"]) for r in audit if r["action"].startswith("apikey.")]
    assert changes == [("apikey.revoke", "apikey:root"), ("apikey.rotate", "apikey:root"),
                       ("apikey.create", "apikey:root")]
    text = json.dumps(audit)
    assert secret not in text and new_key.split("_", 2)[2] not in text


def test_only_admins_manage_keys(gateway: dict[str, Any]) -> None:
    client: TestClient = gateway["client"]
    reader = client.post("/v1/api-keys", json={"name": "reader", "scopes": ["tag:read", "tag:approve"]},
                         headers=gateway["root"]).json()["key"]
    attempts = [("POST", "/v1/api-keys", {"name": "x", "scopes": ["admin"]}), ("GET", "/v1/api-keys", None),
                ("POST", "/v1/api-keys/0123456789abcdef/rotate", None),
                ("DELETE", "/v1/api-keys/0123456789abcdef", None)]
    for method, path, body in attempts:
        denied = client.request(method, path, json=body, headers={"X-API-Key": reader})
        assert denied.status_code == 403, (method, path, denied.text)
        error = denied.json()["error"]
        assert error["code"] == "insufficient_scope" and error["scope"] == "admin"
        assert client.request(method, path, json=body).status_code == 401
    names = [r["name"] for r in client.get("/v1/api-keys", headers=gateway["root"]).json()]
    assert names == ["root", "reader"]  # nothing was created by the refused calls


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), [
    ("POST", "/v1/api-keys", {"name": "x", "scopes": ["tag:delete"]}, 422, "scopes"),
    ("POST", "/v1/api-keys", {"name": "x", "scopes": []}, 422, "scopes"),
    ("POST", "/v1/api-keys", {"name": "", "scopes": ["tag:read"]}, 422, "name"),
    ("POST", "/v1/api-keys", {"name": "x" * 129, "scopes": ["tag:read"]}, 422, "name"),
    ("POST", "/v1/api-keys", {"name": "x", "scopes": ["tag:read"], "expires_days": 0}, 422, "expires_days"),
    ("POST", "/v1/api-keys", {"name": "x", "scopes": ["tag:read"], "secret": "mine"}, 422, "secret"),
    ("POST", "/v1/api-keys/not-a-key/rotate", None, 422, "path.key_id"),
    ("POST", "/v1/api-keys/0123456789abcdef/rotate", None, 404, "key_id"),
    ("DELETE", "/v1/api-keys/0123456789abcdef", None, 404, "key_id"),
])
def test_bad_input_names_the_field(gateway: dict[str, Any], method: str, path: str, body: Any, status: int,
                                   field: str) -> None:
    answer = gateway["client"].request(method, path, json=body, headers=gateway["root"])
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["field"] == field and error.get("fix"), error
