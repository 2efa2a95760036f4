"""The REST gateway over the embedded runtime: contracts, and a clear 4xx for every bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration


@pytest.fixture()
def client(embedded_runtime: Any) -> Any:
    from api.http.app import create_app

    with TestClient(create_app(lambda: embedded_runtime)) as c:
        yield c


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert "Traceback" not in response.text and "/work/" not in response.text
    return body


def test_scan_round_trip(client: Any, embedded_runtime: Any) -> None:
    from scanner.emulator.demo_estate import seed_small_estate

    estate = seed_small_estate(embedded_runtime.settings.aws_endpoint_url)
    body = {"accounts": estate.member_account_ids, "regions": estate.regions,
            "resource_types": sorted(estate.resource_types)}
    submitted = client.post("/v1/scans", json=body)
    assert submitted.status_code == 202
    scan_id = submitted.json()["scan_id"]
    # A long poll answers once the scan ends, with the whole result.
    first = client.get(f"/v1/scans/{scan_id}", params={"wait": 50, "violations_limit": 2}).json()
    assert first["status"] == "succeeded" and first["progress"]["shards_done"] == first["progress"]["shards_total"]
    assert first["violations_returned"] == 2 and first["total_resources"] > 0
    done = client.post("/v1/scans", json=body, params={"wait": 50}).json()
    assert done["status"] == "succeeded" and done["data_quality"]["status"] == "complete"
    assert done["total_resources"] == sum(n for (a, _r, _t), n in estate.counts.items()
                                          if a in estate.member_account_ids)
    listed = client.get("/v1/scans").json()
    assert {s["scan_id"] for s in listed} >= {scan_id, done["scan_id"]}
    page = client.get(f"/v1/scans/{done['scan_id']}/violations",
                      params={"severity": "error", "limit": 3}).json()
    assert page["total"] > 3 and len(page["violations"]) == 3
    assert all(v["severity"] == "error" for v in page["violations"])
    nxt = client.get(f"/v1/scans/{done['scan_id']}/violations",
                     params={"severity": "error", "limit": 3, "cursor": page["next_cursor"]}).json()
    assert not {v["rule_id"] + v["resource_arn"] for v in nxt["violations"]} & \
        {v["rule_id"] + v["resource_arn"] for v in page["violations"]}
    untagged = client.get(f"/v1/scans/{done['scan_id']}/untagged").json()
    assert untagged["total"] >= untagged["never_tagged_total"] > 0
    assert untagged["resources"][0]["never_tagged"] is True
    arns = [r["resource_arn"] for r in untagged["resources"][:2]]
    validated = client.post("/v1/resources/validate", json={"resource_arns": arns}).json()
    assert validated["total"] == 2 and validated["compliant"] == 0, (arns, validated["data_quality"])
    assert all(any(v["violation_type"] == "missing_required_tag" for v in r["violations"])
               for r in validated["results"])
    # The plan and the calls per API family are visible: in the scan's progress and in /metrics.
    progress = done["progress"]
    assert progress["shards_done"] == progress["shards_total"] and progress["shards_failed"] == 0
    assert progress["api_calls"] > 0 and progress["throttles"] == 0
    metrics = client.get("/metrics").text
    ec2_calls = [line for line in metrics.splitlines()
                 if line.startswith('finops_api_family_last_24h{api_family="ec2",kind="calls"}')]
    assert ec2_calls and float(ec2_calls[0].rsplit(" ", 1)[1]) > 0, metrics[-2000:]


@pytest.mark.parametrize(("body", "field", "needle"), [
    ({"regions": ["eu-west-1", "moon-1"]}, "regions", "unknown region"),
    ({"resource_types": ["ec2:nope"]}, "resource_types", "unknown resource type"),
    ({"accounts": ["not-an-account"]}, "accounts", "12-digit"),
    ({"regions": []}, "regions", "empty"),
    ({"regions": ["us-east-1"] * 501}, "regions", "at most 500"),
    ({"colour": "blue"}, "colour", "Extra inputs"),
])
def test_bad_scan_requests_get_422_naming_the_field(client: Any, body: dict[str, Any], field: str,
                                                    needle: str) -> None:
    err = _error(client.post("/v1/scans", json=body), 422)
    assert err["field"] == field, err
    assert needle.lower() in json.dumps(err).lower()
    assert client.get("/v1/scans").json() == []  # nothing half-written


def test_unknown_and_malformed_ids(client: Any) -> None:
    assert _error(client.get("/v1/scans/0b8f1f62-5c1e-4a43-8d7e-3e2f0f7c9a10"), 404)["code"] == "not_found"
    assert _error(client.get("/v1/scans/not-a-scan"), 422)["field"] == "scan_id"
    # A long poll on a scan that does not exist answers at once, not after the wait.
    assert _error(client.get("/v1/scans/0b8f1f62-5c1e-4a43-8d7e-3e2f0f7c9a10", params={"wait": 50}),
                  404)["code"] == "not_found"
    assert _error(client.get("/v1/scans/not-a-scan", params={"wait": 50}), 422)["field"] == "scan_id"
    for wait in ("-1", "56", "soon"):
        assert _error(client.get("/v1/scans/0b8f1f62-5c1e-4a43-8d7e-3e2f0f7c9a10", params={"wait": wait}),
                      422)["field"] == "query.wait"
    err = _error(client.post("/v1/resources/validate", json={"resource_arns": ["arn:aws:s3"]}), 422)
    assert err["field"] == "resource_arns[0]"
    assert _error(client.post("/v1/resources/validate", json={"resource_arns": []}), 422)["field"] == "resource_arns"


def test_invalid_policy_is_reported_not_used(client: Any, embedded_runtime: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"required_tags": [{"name": "Env", "validation_regex": "[unclosed"}]}')
    embedded_runtime.settings.policy_path = bad
    err = _error(client.post("/v1/scans", json={}), 422)
    assert err["code"] == "policy_invalid"
    assert err["details"][0]["location"] == "required_tags[0].validation_regex"
    health = client.get("/health")
    assert health.status_code == 503 and health.json()["policy"]["status"] == "invalid"


def test_operations_endpoints(client: Any) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["database"]["status"] == "ok"
    assert health["policy"]["version"] and health["broker"]["kind"] == "embedded"
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "finops_scans_submitted_total" in metrics.text
    assert client.get("/docs").status_code == 200
    assert "/v1/scans" in client.get("/openapi.json").json()["paths"]
    redirect = client.post("/mcp", follow_redirects=False)
    assert redirect.status_code == 307 and redirect.headers["location"].endswith("/mcp/")


def test_policy_validate_endpoint(client: Any) -> None:
    ok = client.post("/v1/policy/validate", json={"policy": {"required_tags": [{"name": "CostCenter"}]}})
    assert ok.status_code == 200 and ok.json()["valid"] is True and ok.json()["version"]
    bad = client.post("/v1/policy/validate", json={"policy": '{"required_tags": [{"name": ""}]}', "target": "gcp"})
    assert bad.status_code == 200 and bad.json()["valid"] is False
    assert bad.json()["findings"][0]["location"].startswith("required_tags[0]")
    wrong = client.post("/v1/policy/validate", json={"policy": {}, "target": "oracle"})
    assert wrong.status_code == 422 and "target" in wrong.text
