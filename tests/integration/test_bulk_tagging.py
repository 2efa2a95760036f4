"""The write path against the moto server through the embedded runtime (real Celery tasks on the embedded
worker): batches of 20 with FailedResourcesMap retries, verification catching drift, rollback, approvals
(self-approval, expiry, replay) and dry runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from services import errors, tagging
from services.auth import ALL_SCOPES, InsufficientScope, Principal
from services.db.models import AuditRow, TaggingRequestRow, utcnow
from services.errors import InvalidInput

REGION = "us-east-1"
RGTA_EVENT = "resource-groups-tagging-api.TagResources"
ALICE = Principal("alice", frozenset(ALL_SCOPES), "apikey")
BOB = Principal("bob", frozenset(ALL_SCOPES), "apikey")


def _ec2(rt: Any) -> Any:
    return rt.aws.client(rt.aws.caller_account(), "ec2", REGION)


def _instances(rt: Any, n: int, tags: dict[str, str]) -> list[str]:
    """``n`` EC2 instances carrying ``tags`` (one API call); returns their ARNs."""
    spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
    got = _ec2(rt).run_instances(ImageId="ami-12345678", MinCount=n, MaxCount=n, TagSpecifications=spec)
    account = rt.aws.caller_account()
    return [f"arn:aws:ec2:{REGION}:{account}:instance/{i['InstanceId']}" for i in got["Instances"]]


def _tags(rt: Any, arns: list[str]) -> dict[str, dict[str, str]]:
    ids = [a.rsplit("/", 1)[1] for a in arns]
    out: dict[str, dict[str, str]] = {}
    for page in _ec2(rt).get_paginator("describe_instances").paginate(InstanceIds=ids):
        for res in page["Reservations"]:
            for inst in res["Instances"]:
                out[inst["InstanceId"]] = {t["Key"]: t.get("Value", "") for t in inst.get("Tags", [])}
    return {a: out[a.rsplit("/", 1)[1]] for a in arns}


def _rgta(rt: Any) -> Any:
    return rt.aws.client(rt.aws.caller_account(), "resourcegroupstaggingapi", REGION)


def _wait(rt: Any, request_id: str, timeout: float = 40.0) -> tagging.TaggingRequestOut:
    deadline = time.monotonic() + timeout
    while True:
        out = tagging.get_request(rt, request_id)
        if out.status != "applying":
            return out
        assert time.monotonic() < deadline, f"request still applying: {out.outcome_counts}"
        time.sleep(0.1)


@pytest.fixture()
def rt(embedded_runtime: Any) -> Any:
    # No cost source in these tests (Cost Explorer would only answer empty from the emulator).
    embedded_runtime.settings = embedded_runtime.settings.model_copy(update={"cost_explorer": False})
    return embedded_runtime


def test_500_resources_in_25_batches_retry_only_failed_arns(rt: Any) -> None:
    arns = _instances(rt, 500, {"Environment": "dev"})
    flaky = set(arns[3:40:4])           # fail once with a retryable error, then succeed
    broken = {arns[101]}                # fails every time with a server error: retried, then failed
    denied = {arns[222]}                # a 4xx: not retried
    calls: list[list[str]] = []
    failed_once: set[str] = set()

    def before(params: dict[str, Any], **_: Any) -> None:
        calls.append(list(params["ResourceARNList"]))

    def after(parsed: dict[str, Any], **kwargs: Any) -> None:
        sent = calls[-1]
        failures = parsed.setdefault("FailedResourcesMap", {})
        for arn in sent:
            if arn in flaky and arn not in failed_once:
                failed_once.add(arn)
                failures[arn] = {"StatusCode": 500, "ErrorCode": "InternalServiceException", "ErrorMessage": "flaky"}
            elif arn in broken:
                failures[arn] = {"StatusCode": 500, "ErrorCode": "InternalServiceException", "ErrorMessage": "down"}
            elif arn in denied:
                failures[arn] = {"StatusCode": 403, "ErrorCode": "InvalidParameterException",
                                 "ErrorMessage": "not allowed"}

    client = _rgta(rt)
    client.meta.events.register(f"before-parameter-build.{RGTA_EVENT}", before)
    client.meta.events.register(f"after-call.{RGTA_EVENT}", after)
    rt.settings = rt.settings.model_copy(update={"tagging_risk_resources": 1000, "tagging_risk_production_resources":
                                                 1000})
    try:
        started = time.monotonic()
        preview = tagging.preview(rt, resource_arns=arns, tags={"CostCenter": "Payments"})
        assert preview.resources_changing == 500 and preview.tags_added == 500 and len(preview.diffs) == 50
        request = tagging.create_request(rt, ALICE, resource_arns=arns, tags={"CostCenter": "Payments"}, dry_run=False)
        assert request.status == "pending_approval" and request.resource_count == 500
        assert not calls  # nothing touched the cloud before approval
        tagging.decide(rt, BOB, request.request_id, "approve", "payments asked for it")
        done = _wait(rt, request.request_id)
        elapsed = time.monotonic() - started
    finally:
        client.meta.events.unregister(f"before-parameter-build.{RGTA_EVENT}", before)
        client.meta.events.unregister(f"after-call.{RGTA_EVENT}", after)

    # Retries (only the ARNs a FailedResourcesMap listed with a retryable error) follow their batch.
    retries = [c for c in calls if set(c) <= flaky | broken]
    first_pass = [c for c in calls if c not in retries]
    assert len(first_pass) == 25 and all(len(c) == 20 for c in first_pass)
    assert sorted(a for c in first_pass for a in c) == sorted(arns)
    assert retries and set(retries[0]) & flaky and len(calls) == 25 + len(retries)
    assert sum(broken <= set(c) for c in calls) == rt.settings.tagging_apply_attempts

    assert done.status == "partially_applied", done.outcome_counts
    assert done.outcome_counts == {"applied": 498, "failed": 2}
    problems = {o.resource_arn: o for o in done.outcomes if o.status != "applied"}
    assert set(problems) == broken | denied
    assert "InternalServiceException" in (problems[arns[101]].error or "")
    assert problems[arns[101]].attempts == rt.settings.tagging_apply_attempts
    assert problems[arns[222]].attempts == 1 and "InvalidParameterException" in (problems[arns[222]].error or "")
    after_tags = _tags(rt, [arns[0], *sorted(flaky)])
    assert all(t.get("CostCenter") == "Payments" for t in after_tags.values())
    assert elapsed < 40


def test_verification_catches_a_tag_changed_behind_the_systems_back(rt: Any) -> None:
    arns = _instances(rt, 5, {"Environment": "dev"})
    sneaky = arns[2]

    def tamper(**_: Any) -> None:
        # Someone changes the tag between the system's TagResources and its read-back.
        _ec2(rt).create_tags(Resources=[sneaky.rsplit("/", 1)[1]], Tags=[{"Key": "CostCenter", "Value": "Other"}])

    client = _rgta(rt)
    client.meta.events.register(f"after-call.{RGTA_EVENT}", tamper)
    try:
        request = tagging.create_request(rt, ALICE, resource_arns=arns, tags={"CostCenter": "Payments"}, dry_run=False)
        tagging.decide(rt, BOB, request.request_id, "approve")
        done = _wait(rt, request.request_id)
    finally:
        client.meta.events.unregister(f"after-call.{RGTA_EVENT}", tamper)
    assert done.status == "partially_applied" and done.outcome_counts == {"applied": 4, "drifted": 1}
    drifted = done.outcomes[0]
    assert drifted.resource_arn == sneaky and drifted.status == "drifted"
    assert drifted.observed == {"CostCenter": {"expected": "Payments", "found": "Other"}}

    # Later drift is caught by verifying again.
    _ec2(rt).delete_tags(Resources=[arns[0].rsplit("/", 1)[1]], Tags=[{"Key": "CostCenter"}])
    again = tagging.verify_request(rt, request.request_id)
    assert again.outcome_counts == {"applied": 3, "drifted": 2}


def test_rollback_restores_previous_values_after_its_own_approval(rt: Any) -> None:
    arns = _instances(rt, 4, {"Environment": "dev", "Owner": "team-a"})
    request = tagging.create_request(rt, ALICE, resource_arns=arns, dry_run=False,
                                     tags={"Environment": "staging", "CostCenter": "Payments", "Owner": "team-a"})
    assert request.resource_count == 4
    tagging.decide(rt, BOB, request.request_id, "approve")
    assert _wait(rt, request.request_id).status == "applied"
    assert all(t == {"Environment": "staging", "CostCenter": "Payments", "Owner": "team-a"}
               for t in _tags(rt, arns).values())

    rollback = tagging.create_rollback(rt, ALICE, request.request_id)
    assert rollback.status == "pending_approval" and rollback.rollback_of == request.request_id
    assert _tags(rt, arns)[arns[0]]["Environment"] == "staging"  # not applied before approval
    tagging.decide(rt, BOB, rollback.request_id, "approve", "undo")
    assert _wait(rt, rollback.request_id).status == "applied"
    assert all(t == {"Environment": "dev", "Owner": "team-a"} for t in _tags(rt, arns).values())
    assert tagging.get_request(rt, request.request_id).status == "rolled_back"
    script = tagging.remediation_script(rt, rollback.request_id)
    assert "untag-resources" in script and "CostCenter" in script


def test_self_approval_refused_above_threshold_and_audited(rt: Any) -> None:
    rt.settings = rt.settings.model_copy(update={"tagging_risk_resources": 4})
    arns = _instances(rt, 5, {"Environment": "dev"})
    big = tagging.create_request(rt, ALICE, resource_arns=arns, tags={"CostCenter": "Payments"})
    assert big.risk.level == "high" and "5 resources change" in big.risk.reasons[0]
    with pytest.raises(errors.Forbidden, match="cannot approve"):
        tagging.decide(rt, ALICE, big.request_id, "approve")
    assert tagging.get_request(rt, big.request_id).status == "pending_approval"
    assert tagging.decide(rt, BOB, big.request_id, "approve").status == "approved"  # dry run: nothing applied

    small = tagging.create_request(rt, ALICE, resource_arns=arns[:1], tags={"CostCenter": "Payments"})
    assert small.risk.level == "low"
    assert tagging.decide(rt, ALICE, small.request_id, "approve").status == "approved"

    with pytest.raises(InsufficientScope, match="tag:approve"):
        tagging.decide(rt, Principal("carol", frozenset({"tag:read", "tag:write"}), "apikey"), small.request_id, "deny")
    with rt.db.session() as s:
        outcomes = [a.outcome for a in s.query(AuditRow).filter(AuditRow.action == "tagging.approve")]
    assert "refused:forbidden" in outcomes and outcomes.count("ok") == 2


def test_expired_and_replayed_approvals_refused_and_dry_run_changes_nothing(rt: Any) -> None:
    arns = _instances(rt, 3, {"Environment": "dev"})
    before = _tags(rt, arns)
    dry = tagging.create_request(rt, ALICE, resource_arns=arns, tags={"CostCenter": "it's $(rm -rf /)"})
    assert dry.dry_run is True
    approved = tagging.decide(rt, BOB, dry.request_id, "approve")
    assert approved.status == "approved" and approved.outcome_counts == {}
    time.sleep(0.3)
    assert _tags(rt, arns) == before  # a dry run never touches the cloud
    with pytest.raises(errors.Conflict, match="already decided"):
        tagging.decide(rt, BOB, dry.request_id, "approve")  # replay
    script = tagging.remediation_script(rt, dry.request_id)
    assert script.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in script
    assert "--tags '{\"CostCenter\": \"it'\"'\"'s $(rm -rf /)\"}'" in script  # quoted, never interpolated

    late = tagging.create_request(rt, ALICE, resource_arns=arns, tags={"CostCenter": "Payments"}, dry_run=False)
    with rt.db.session() as s:
        s.get(TaggingRequestRow, late.request_id).expires_at = utcnow() - timedelta(minutes=1)
    with pytest.raises(errors.Conflict, match="expired"):
        tagging.decide(rt, BOB, late.request_id, "approve")
    assert tagging.get_request(rt, late.request_id).status == "expired"
    with pytest.raises(errors.Conflict):
        tagging.decide(rt, BOB, late.request_id, "approve")
    assert _tags(rt, arns) == before

    denied = tagging.create_request(rt, ALICE, resource_arns=arns, tags={"CostCenter": "Payments"}, dry_run=False)
    assert tagging.decide(rt, BOB, denied.request_id, "deny", "not now").status == "denied"
    with pytest.raises(errors.Conflict, match="replayed"):
        tagging.decide(rt, BOB, denied.request_id, "approve")
    assert _tags(rt, arns) == before


@pytest.mark.parametrize(("tags", "field"), [
    ({"k" * 129: "v"}, "tags." + "k" * 129),
    ({"aws:cloudformation": "v"}, "tags.aws:cloudformation"),
    ({"CostCenter": "v" * 257}, "tags.CostCenter"),
    ({f"k{i}": "v" for i in range(51)}, "tags"),
])
def test_invalid_tags_name_the_field(rt: Any, tags: dict[str, str], field: str) -> None:
    check: Callable[[], Any] = lambda: tagging.preview(  # noqa: E731
        rt, resource_arns=["arn:aws:ec2:us-east-1:123456789012:instance/i-0abc"], tags=tags)
    with pytest.raises(InvalidInput) as err:
        check()
    assert err.value.field == field and err.value.fix


def test_rest_create_decide_get_rollback_and_script(rt: Any) -> None:
    from fastapi.testclient import TestClient

    from api.http.app import create_app

    arns = _instances(rt, 3, {"Environment": "dev"})
    with TestClient(create_app(lambda: rt)) as http:
        bad = http.post("/v1/tagging-requests", json={"resource_arns": arns, "tags": {"aws:x": "1"}})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "tags.aws:x"
        preview = http.post("/v1/tagging-requests/preview", json={"resource_arns": arns, "tags": {"Owner": "x"}})
        assert preview.status_code == 200 and preview.json()["tags_added"] == 3
        created = http.post("/v1/tagging-requests", json={"resource_arns": arns, "tags": {"Owner": "x"},
                                                          "dry_run": False, "intent": "own the dev boxes"})
        assert created.status_code == 201, created.text
        rid = created.json()["request_id"]
        assert http.get("/v1/tagging-requests").json()["requests"][0]["request_id"] == rid
        decided = http.post(f"/v1/tagging-requests/{rid}/decision", json={"decision": "approve"})
        assert decided.status_code == 200 and decided.json()["decision"]["decided_by"] == created.json()["requested_by"]
        assert _wait(rt, rid).status == "applied"
        replay = http.post(f"/v1/tagging-requests/{rid}/approve")
        assert replay.status_code == 409 and replay.json()["error"]["code"] == "conflict"
        script = http.get(f"/v1/tagging-requests/{rid}/script")
        assert script.status_code == 200 and script.text.count("tag-resources") == 1
        rollback = http.post(f"/v1/tagging-requests/{rid}/rollback")
        assert rollback.status_code == 201 and rollback.json()["rollback_of"] == rid
        assert http.get("/v1/tagging-requests/not-an-id").status_code == 422
        assert http.get("/v1/tagging-requests/00000000-0000-0000-0000-000000000000").status_code == 404


def test_scan_filter_projection_and_applied_suggestions(rt: Any) -> None:
    from services import scans
    from services.schemas import ScanRequest
    from tests.integration.conftest import wait_scan

    arns = _instances(rt, 3, {"Environment": "production", "Owner": "web@example.com", "Application": "web-app"})
    scan_id = scans.submit(rt, ScanRequest(accounts=[rt.aws.caller_account()], regions=[REGION],
                                           resource_types=["ec2:instance", "ec2:volume"]))
    assert wait_scan(rt, scan_id).status == "succeeded"

    instances = tagging.preview(rt, scan_id=scan_id, resource_types=["ec2:instance"],
                                tags={"CostCenter": "Engineering"})
    assert instances.resource_count == 3 and {d.resource_arn for d in instances.diffs} == set(arns)
    projection = instances.compliance
    assert projection.resources_evaluated == 6 and projection.resources_becoming_compliant == 3
    assert projection.score_before == 0.0 and projection.score_after == 0.5
    assert instances.risk.level == "high" and any("scanned resources" in r for r in instances.risk.reasons)

    volumes = tagging.preview(rt, scan_id=scan_id, resource_types=["ec2:volume"], apply_suggestions=True,
                              min_confidence=0.8)
    assert volumes.resource_count == 3  # the untagged root volumes take their instances' values
    assert all(d.added.get("Environment") == "production" and d.added.get("Owner") == "web@example.com"
               for d in volumes.diffs)
    with pytest.raises(InvalidInput) as err:
        tagging.preview(rt, scan_id=scan_id, resource_types=["ec2:volume"], apply_suggestions=True,
                        min_confidence=1.0)
    assert err.value.field == "min_confidence"


def test_approval_survives_a_broker_outage_and_resumes(rt: Any) -> None:
    from services.errors import Unavailable

    class DownBroker:
        def apply_tagging(self, *_: Any) -> None:
            raise ConnectionError("broker down")

    arns = _instances(rt, 2, {"Environment": "dev"})
    request = tagging.create_request(rt, ALICE, resource_arns=arns, tags={"Owner": "a@example.com"}, dry_run=False)
    working, rt.dispatcher = rt.dispatcher, DownBroker()
    try:
        with pytest.raises(Unavailable, match="could not be queued"):
            tagging.decide(rt, BOB, request.request_id, "approve")
    finally:
        rt.dispatcher = working
    stuck = tagging.get_request(rt, request.request_id)
    assert stuck.status == "applying" and stuck.outcome_counts == {"pending": 2}
    tagging.resume_apply(rt, BOB, request.request_id)
    assert _wait(rt, request.request_id).status == "applied"
    with pytest.raises(errors.Conflict):
        tagging.resume_apply(rt, BOB, request.request_id)


def test_an_apply_task_that_dies_reports_its_resources_failed(rt: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*_: Any) -> None:
        raise RuntimeError("worker bug")

    arns = _instances(rt, 2, {"Environment": "dev"})
    before = _tags(rt, arns)
    request = tagging.create_request(rt, ALICE, resource_arns=arns, tags={"Owner": "a@example.com"}, dry_run=False)
    monkeypatch.setattr(tagging, "apply_group", crash)
    tagging.decide(rt, BOB, request.request_id, "approve")
    done = _wait(rt, request.request_id)
    assert done.status == "failed" and done.outcome_counts == {"failed": 2}
    assert all("RuntimeError" in (o.error or "") for o in done.outcomes)
    assert _tags(rt, arns) == before
