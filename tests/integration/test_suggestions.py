"""Tag suggestions over a scanned demo organization (moto + embedded worker), through the service and REST."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from policies.engine import compile_policy
from policies.policy import load_policy_file
from services import scans, suggestions
from services.config import DEFAULT_POLICY_PATH
from services.errors import InvalidInput, NotFound
from services.schemas import ScanRequest
from tests.integration.conftest import module_runtime, wait_scan

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scanned(emulator: Any, embedded_worker: Any,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, str]]:
    """One seeded and scanned organization for the whole module: suggestions only read the database."""
    from scanner.emulator.demo_estate import seed_demo_organization

    with module_runtime(emulator, tmp_path_factory.mktemp("suggestions")) as rt:
        org = seed_demo_organization(emulator.endpoint_url, scale=0.34)
        scan_id = scans.submit(rt, ScanRequest(accounts=list(org.member_account_ids), regions=list(org.regions)))
        assert wait_scan(rt, scan_id, timeout=180).status == "succeeded"
        yield rt, org, scan_id


def _valid(tags: dict[str, str], name: str) -> bool:
    rule = next(r for r in compile_policy(load_policy_file(DEFAULT_POLICY_PATH)).rules_for("ec2:instance")
                if r.name == name)
    return name in tags and rule.accepts(tags[name])


def test_an_untagged_root_volume_takes_its_instances_tags(scanned: tuple[Any, Any, str]) -> None:
    rt, org, _ = scanned
    instances = {r.resource_id: r for r in org.resources if r.resource_type == "ec2:instance"}
    volume = next(r for r in org.resources if r.resource_type == "ec2:volume" and not r.tags
                  and r.attributes.get("attached_to") in instances
                  and _valid(dict(instances[r.attributes["attached_to"]].tags), "CostCenter"))
    instance = instances[volume.attributes["attached_to"]]
    answer = suggestions.suggest_tags(rt, volume.arn)
    assert "CostCenter" in answer.broken_tags and answer.tags == {}
    best = {s.tag: s for s in answer.suggestions}["CostCenter"]
    assert best.value == instance.tags["CostCenter"] and best.action == "add"
    assert best.signals[0] == "parent" and best.confidence >= 0.9
    assert instance.arn in best.evidence and instance.resource_id in best.reasoning


def test_a_miscased_key_and_a_typo_are_fixed_from_the_resources_own_tags(scanned: tuple[Any, Any, str]) -> None:
    rt, org, _ = scanned
    miscased = next(r for r in org.resources if r.profile == "key_case" and "CostCenter" not in r.tags
                    and any(k.casefold() == "costcenter" for k in r.tags))
    key = next(k for k in miscased.tags if k.casefold() == "costcenter")
    fix = {s.tag: s for s in suggestions.suggest_tags(rt, miscased.arn).suggestions}["CostCenter"]
    assert fix.action == "rename_key" and fix.current_key == key and fix.signals[0] == "key_case"
    assert fix.value == miscased.tags[key] and fix.confidence >= 0.95

    typo = next(r for r in org.resources if r.profile == "value_typo" and r.tags.get("CostCenter") == "Enginering")
    fix = {s.tag: s for s in suggestions.suggest_tags(rt, typo.arn).suggestions}["CostCenter"]
    assert fix.value == "Engineering" and fix.action == "replace_value" and "did_you_mean" in fix.signals


def test_only_allowed_values_are_suggested_and_global_resources_work(scanned: tuple[Any, Any, str]) -> None:
    rt, org, scan_id = scanned
    bucket = next(r for r in org.resources if r.resource_type == "s3:bucket" and r.profile == "untagged")
    answer = suggestions.suggest_tags(rt, bucket.arn)
    assert answer.region and set(answer.broken_tags) >= {"CostCenter", "Owner", "Environment"}
    compiled = compile_policy(load_policy_file(DEFAULT_POLICY_PATH))
    rules = {r.name: r for r in compiled.rules_for("s3:bucket")}
    batch = suggestions.suggest_tags_batch(rt, scan_id=scan_id, min_confidence=0.0, limit=100)
    every = [s for r in batch.resources for s in (*r.suggestions, *r.alternatives)] + answer.suggestions
    assert len(every) > 100
    for s in every:
        assert rules[s.tag].accepts(s.value), s  # applying a suggestion never creates a new violation
        assert 0.0 <= s.confidence <= 0.99 and s.reasoning


def test_batch_is_bounded_and_counts_everything(scanned: tuple[Any, Any, str]) -> None:
    rt, _org, scan_id = scanned
    full = suggestions.suggest_tags_batch(rt, scan_id=scan_id, min_confidence=0.5, limit=100)
    small = suggestions.suggest_tags_batch(rt, scan_id=scan_id, min_confidence=0.5, limit=3)
    assert small.resources_returned == 3 and small.truncated
    assert small.suggestions_by_tag == full.suggestions_by_tag  # counted over every resource considered
    assert small.resources_considered == scans.get_scan(rt, scan_id).in_scope_resources - \
        scans.get_scan(rt, scan_id).compliant_resources
    assert all(s.confidence >= 0.5 for r in full.resources for s in r.suggestions)
    volumes = suggestions.suggest_tags_batch(rt, scan_id=scan_id, resource_types=["ec2:volume"], limit=100)
    assert volumes.resources and {r.resource_type for r in volumes.resources} == {"ec2:volume"}


def test_bad_input_names_the_field(scanned: tuple[Any, Any, str]) -> None:
    rt, _org, scan_id = scanned
    with pytest.raises(NotFound) as missing:
        suggestions.suggest_tags(rt, "arn:aws:ec2:us-east-1:123456789012:volume/vol-00000000000000000")
    assert missing.value.field == "resource_arn" and "check_tag_compliance" in (missing.value.fix or "")
    with pytest.raises(InvalidInput) as bad:
        suggestions.suggest_tags(rt, "vol-123")
    assert bad.value.field == "resource_arn"
    for kwargs, field in (({"scan_id": scan_id, "min_confidence": 2.0}, "min_confidence"),
                          ({"scan_id": scan_id, "limit": 0}, "limit"),
                          ({}, "resource_arns"),
                          ({"resource_arns": ["arn:aws:s3:::x"], "scan_id": scan_id}, "resource_arns"),
                          ({"resource_arns": ["nope"]}, "resource_arns[0]")):
        with pytest.raises(InvalidInput) as err:
            suggestions.suggest_tags_batch(rt, **kwargs)
        assert err.value.field == field
    unknown = suggestions.suggest_tags_batch(rt, resource_arns=["arn:aws:s3:::never-seen-bucket"])
    assert unknown.not_found == ["arn:aws:s3:::never-seen-bucket"] and unknown.resources == []


def test_rest_endpoints(scanned: tuple[Any, Any, str]) -> None:
    from fastapi.testclient import TestClient

    from api.http.app import create_app

    rt, org, scan_id = scanned
    target = next(r for r in org.resources if r.profile == "untagged")
    with TestClient(create_app(lambda: rt)) as client:
        one = client.get("/v1/suggestions", params={"resource_arn": target.arn})
        assert one.status_code == 200 and one.json()["resource_arn"] == target.arn
        many = client.post("/v1/suggestions", json={"scan_id": scan_id, "limit": 2})
        assert many.status_code == 200 and many.json()["resources_returned"] == 2
        bad = client.post("/v1/suggestions", json={"scan_id": scan_id, "limit": 2, "minconfidence": 1})
        assert bad.status_code == 422 and "minconfidence" in bad.text
        missing = client.get("/v1/suggestions", params={"resource_arn": "arn:aws:s3:::nope-nope"})
        assert missing.status_code == 404 and missing.json()["error"]["field"] == "resource_arn"
