"""AWS effective tag policy -> our Policy -> the real engine, and back to AWS JSON, meaning kept.
Also the supported-resource-type data the conversion expands ALL_SUPPORTED from."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.aws import (
    compress_resource_types,
    effective_policy,
    expand_resource_types,
    from_policy,
    is_supported_resource_type,
    parse_tag_policy,
    supported_resource_types,
    to_policy,
)
from policies.aws.resource_types import all_supported_types, data_note
from policies.engine import compile_policy, evaluate, evaluate_resource
from policies.models import Resource, Severity, Violation, ViolationType
from policies.policy import Policy, load_policy, load_policy_file

ROOT = Path(__file__).resolve().parents[2]

ROOT_POLICY = {"tags": {
    "costcenter": {"tag_key": {"@@assign": "CostCenter"},
                   "tag_value": {"@@assign": ["100", "200", "300*"]},
                   "report_required_tag_for": {"@@assign": ["ec2:instance", "s3:bucket", "rds:ALL_SUPPORTED"]},
                   "enforced_for": {"@@assign": ["ec2:instance", "dynamodb:*"]}},
    "owner": {"tag_key": {"@@assign": "Owner"}, "tag_value": {"@@assign": ["*@example.com"]}},
    "project": {"tag_key": {"@@assign": "Project"}},
}}
OU_POLICY = {"tags": {"costcenter": {"tag_value": {"@@append": ["400"]},
                                     "report_required_tag_for": {"@@append": ["lambda:function"]}}}}


def converted(levels: Sequence[Sequence[Mapping[str, Any]]] | None = None) -> Policy:
    levels = levels or [[ROOT_POLICY], [OU_POLICY]]
    targets = ["root", "OU Production", "account 111111111111"]
    docs = [[parse_tag_policy(d, policy_id=f"p-{depth}{i}", target=targets[depth]) for i, d in enumerate(level)]
            for depth, level in enumerate(levels)]
    return to_policy(effective_policy(docs), source_label="account 111111111111")


COMPILED = compile_policy(converted())


def check(resource_type: str, tags: Mapping[str, str]) -> list[Violation]:
    result = evaluate_resource(Resource(f"arn:aws:x:::{resource_type}", "id", resource_type, "111111111111",
                                        "us-east-1", tags), COMPILED)
    assert result.in_scope
    return list(result.violations)


def kinds(violations: Sequence[Violation]) -> list[tuple[str, str, str]]:
    return [(v.violation_type.value, v.tag_name, v.severity.value) for v in violations]


GOOD = {"CostCenter": "300-east", "Owner": "ana@example.com"}


# --- semantics through the real engine ----------------------------------------------------------------------


def test_compliant_resources_pass_on_required_and_other_types() -> None:
    for rtype in ("ec2:instance", "s3:bucket", "rds:db", "lambda:function", "sqs:queue"):
        assert check(rtype, GOOD) == []


def test_a_case_variant_key_is_wrong_key_case_and_its_value_is_still_checked() -> None:
    assert kinds(check("sqs:queue", {"costcenter": "100"})) == [("wrong_key_case", "CostCenter", "warning")]
    assert kinds(check("sqs:queue", {"costcenter": "999"})) == [
        ("wrong_key_case", "CostCenter", "warning"), ("invalid_value", "CostCenter", "warning")]
    # Reported as wrong case, not as missing, on a type where the key is required.
    assert kinds(check("s3:bucket", {"COSTCENTER": "100", "Owner": "a@example.com"})) == [
        ("wrong_key_case", "CostCenter", "warning")]


@pytest.mark.parametrize(("value", "ok"), [
    ("300", True), ("300-anything", True), ("100", True), ("1000", False), ("30", False), ("x300", False),
])
def test_prefix_wildcard_matches_as_aws_does(value: str, ok: bool) -> None:
    assert (check("sqs:queue", {"CostCenter": value}) == []) is ok


@pytest.mark.parametrize(("value", "ok"), [
    ("ana@example.com", True), ("@example.com", True), ("ana@example.org", False), ("ana@example.com ", False),
])
def test_suffix_wildcard_matches_as_aws_does(value: str, ok: bool) -> None:
    assert (check("sqs:queue", {"Owner": value}) == []) is ok


def test_a_key_without_values_accepts_any_value_even_empty() -> None:
    assert check("sqs:queue", {"Project": ""}) == [] and check("sqs:queue", {"Project": "x"}) == []


def test_the_key_is_required_only_for_report_required_types() -> None:
    # report_required_tag_for: ec2:instance, s3:bucket, every rds type (ALL_SUPPORTED), and from the OU
    # lambda:function. Missing there is a violation; elsewhere it is fine.
    for rtype in ("s3:bucket", "rds:db", "rds:cluster", "lambda:function"):
        assert kinds(check(rtype, {})) == [("missing_required_tag", "CostCenter", "warning")], rtype
    assert kinds(check("ec2:instance", {})) == [("missing_required_tag", "CostCenter", "error")]
    for rtype in ("sqs:queue", "ec2:volume", "dynamodb:table", "kms:key"):
        assert check(rtype, {}) == [], rtype


def test_values_are_checked_on_every_supported_type_that_carries_the_key() -> None:
    for rtype in ("sqs:queue", "ec2:volume", "kms:key", "states:stateMachine"):
        assert kinds(check(rtype, {"CostCenter": "999"})) == [("invalid_value", "CostCenter", "warning")]


def test_enforced_types_report_errors_and_others_warnings() -> None:
    assert kinds(check("ec2:instance", {"CostCenter": "999"})) == [("invalid_value", "CostCenter", "error")]
    assert kinds(check("dynamodb:table", {"CostCenter": "999"})) == [("invalid_value", "CostCenter", "error")]
    assert kinds(check("s3:bucket", {"CostCenter": "999"})) == [("invalid_value", "CostCenter", "warning")]


def test_each_violation_names_the_policies_and_levels_its_rule_came_from() -> None:
    [cc] = check("lambda:function", {"CostCenter": "999"})
    assert cc.source == "aws:p-00 (root), aws:p-10 (OU Production)"
    [owner] = check("sqs:queue", {"Owner": "bob"})
    assert owner.source == "aws:p-00 (root)"


def test_source_label_is_used_when_the_effective_policy_names_no_policies() -> None:
    effective = effective_policy([[parse_tag_policy(ROOT_POLICY)]])
    # An unlabelled policy still names itself generically.
    assert {r.source for r in to_policy(effective, source_label="x").required_tags} == {"aws:policy"}
    anonymous = replace(effective, tags={k: replace(t, sources=()) for k, t in effective.tags.items()})
    policy = to_policy(anonymous, source_label="file root.json")
    assert {r.source for r in policy.required_tags} == {"file root.json"}
    assert policy.description == "AWS Organizations effective tag policy for file root.json"


def test_types_tag_policies_do_not_support_are_out_of_scope() -> None:
    result = evaluate_resource(Resource("arn:x", "x", "opensearch:domain", "1", "us-east-1", {"costcenter": "9"}),
                               COMPILED)
    assert not result.in_scope and result.violations == ()


def test_whole_estate_score_counts_unrequired_types_as_compliant() -> None:
    resources = [Resource(f"arn:{i}", str(i), t, "1", "us-east-1", tags) for i, (t, tags) in enumerate([
        ("sqs:queue", {}), ("ec2:instance", GOOD), ("ec2:instance", {}), ("s3:bucket", {"CostCenter": "7"})])]
    result = evaluate(resources, COMPILED)
    assert (result.in_scope, result.compliant) == (4, 2)


def test_unknown_service_wildcards_stay_whole_service_rules() -> None:
    policy = converted([[{"tags": {"cc": {"tag_key": {"@@assign": "CC"},
                                          "report_required_tag_for": {"@@assign": ["newsvc:ALL_SUPPORTED"]}}}}]])
    [rule] = policy.required_tags
    assert rule.required_for == ["newsvc:ALL_SUPPORTED"] and "newsvc:ALL_SUPPORTED" in rule.applies_to
    compiled = compile_policy(policy)
    missing = evaluate_resource(Resource("arn:n", "n", "newsvc:thing", "1", "us-east-1", {}), compiled)
    assert [v.violation_type for v in missing.violations] == [ViolationType.MISSING_REQUIRED_TAG]


def test_the_converted_policy_is_a_valid_policy_of_our_format() -> None:
    policy = converted()
    rule = policy.required_tags[0]
    assert (rule.name, rule.allowed_values, rule.severity) == ("CostCenter", ["100", "200", "300*", "400"],
                                                              Severity.WARNING)
    assert rule.required_for is not None and {"ec2:instance", "s3:bucket", "rds:db", "lambda:function"} <= set(
        rule.required_for)
    assert rule.error_for == ["ec2:instance", "dynamodb:table"]
    assert set(all_supported_types()) <= set(rule.applies_to)
    assert policy.tag_naming_rules.case_sensitivity is True
    # A key without report_required_tag_for is required nowhere, checked wherever present.
    assert policy.required_tags[1].required_for == [] and policy.required_tags[1].error_for is None


# --- back to AWS ----------------------------------------------------------------------------------------------


def _types(entries: Sequence[str]) -> list[str]:
    # service:* and service:ALL_SUPPORTED are one meaning (an unknown service's wildcard stays one).
    return sorted(t.casefold().replace(":*", ":all_supported") for t in expand_resource_types(entries))


def meaning(effective_json: Mapping[str, Any]) -> dict[str, Any]:
    """Effective policy JSON with type lists expanded: two spellings of one meaning compare equal."""
    out: dict[str, Any] = {}
    for key, body in effective_json["tags"].items():
        out[key.lower()] = {
            "tag_key": body["tag_key"],
            "tag_value": body.get("tag_value"),
            "enforced_for": _types(body.get("enforced_for", [])),
            "report_required_tag_for": _types(body.get("report_required_tag_for", [])),
        }
    return out


def round_trip(levels: Sequence[Sequence[Mapping[str, Any]]]) -> tuple[dict[str, Any], dict[str, Any]]:
    original = effective_policy([[parse_tag_policy(d) for d in level] for level in levels])
    exported = from_policy(to_policy(original, source_label="test"))
    again = effective_policy([[parse_tag_policy(exported)]])
    return meaning(original.to_aws_json()), meaning(again.to_aws_json())


def test_round_trip_aws_ours_aws_keeps_keys_case_values_and_type_lists() -> None:
    before, after = round_trip([[ROOT_POLICY], [OU_POLICY]])
    assert before == after
    exported = from_policy(converted())
    assert exported["tags"]["costcenter"]["tag_key"] == {"@@assign": "CostCenter"}
    # Complete services are written back as ALL_SUPPORTED, single types as themselves.
    assert "rds:ALL_SUPPORTED" in exported["tags"]["costcenter"]["report_required_tag_for"]["@@assign"]
    assert "ec2:instance" in exported["tags"]["costcenter"]["enforced_for"]["@@assign"]
    assert "report_required_tag_for" not in exported["tags"]["owner"]


@pytest.mark.parametrize("name", ["example_1", "example_2", "example_4", "syntax"])
def test_round_trip_of_the_documentation_examples(name: str) -> None:
    from tests.unit import test_aws_tag_policy_inheritance as docs

    levels = {
        "example_1": [[docs.POLICY_A], [docs.POLICY_B]],
        "example_2": [[docs.POLICY_A], [docs.POLICY_C]],
        "example_4": [[docs.POLICY_E], [docs.POLICY_F]],
        "syntax": [[docs.SYNTAX_BASIC_CURRENT]],
    }[name]
    before, after = round_trip(levels)
    assert before == after


_TYPE_ENTRIES = st.sampled_from(["ec2:instance", "ec2:volume", "s3:bucket", "rds:ALL_SUPPORTED", "lambda:*",
                                 "dynamodb:table", "kms:key", "newsvc:*"])


@settings(max_examples=75, deadline=None)
@given(st.dictionaries(
    st.sampled_from(["costcenter", "owner", "env"]),
    st.fixed_dictionaries({}, optional={
        "tag_value": st.lists(st.text("abc*", min_size=1, max_size=4).filter(lambda v: v.count("*") <= 1),
                              min_size=1, max_size=3),
        "enforced_for": st.lists(_TYPE_ENTRIES, min_size=1, max_size=3),
        "report_required_tag_for": st.lists(_TYPE_ENTRIES, min_size=1, max_size=3)}),
    min_size=1))
def test_property_round_trip_keeps_meaning(keys: dict[str, dict[str, list[str]]]) -> None:
    doc = {"tags": {k: {"tag_key": {"@@assign": k.title()}, **{f: {"@@assign": v} for f, v in body.items()}}
                    for k, body in keys.items()}}
    before, after = round_trip([[doc]])
    assert before == after


def test_our_shipped_policies_export_to_valid_aws_documents() -> None:
    for path in sorted((ROOT / "policies" / "examples").glob("*.json")):
        policy = load_policy_file(path)
        exported = from_policy(policy)
        doc = parse_tag_policy(exported)
        assert {k.tag_key.assign for k in doc.tags.values() if k.tag_key} == {r.name for r, _ in policy.rules()}
        for rule, required in policy.rules():
            key = doc.tags[rule.name.lower()]
            assert (key.report_required_tag_for is not None) is required, rule.name
            values = key.tag_value.assign if key.tag_value else None
            assert list(values or []) == (rule.allowed_values or [])


def test_native_rules_map_to_report_required_and_enforced_for() -> None:
    policy = load_policy_file(ROOT / "policies" / "examples" / "minimal.json")
    [owner] = from_policy(policy)["tags"].values()
    # A required tag for every type: AWS needs the types named, so every known service is listed.
    assert owner["report_required_tag_for"]["@@assign"] == [f"{s}:ALL_SUPPORTED" for s in supported_resource_types()]
    assert "enforced_for" not in owner
    narrow = load_policy({"required_tags": [
        {"name": "App", "applies_to": ["ec2:instance", "s3:bucket"], "error_for": ["s3:bucket"]},
        {"name": "Team", "applies_to": ["ec2:instance", "s3:bucket"], "required_for": ["s3:bucket"]}],
        "optional_tags": [{"name": "Note", "validation_regex": "[a-z]+"}]})
    assert from_policy(narrow) == {"tags": {
        "app": {"tag_key": {"@@assign": "App"}, "report_required_tag_for": {"@@assign": ["ec2:instance", "s3:bucket"]},
                "enforced_for": {"@@assign": ["s3:bucket"]}},
        "team": {"tag_key": {"@@assign": "Team"}, "report_required_tag_for": {"@@assign": ["s3:bucket"]}},
        "note": {"tag_key": {"@@assign": "Note"}}}}


# --- the resource-type data -------------------------------------------------------------------------------------


def test_the_data_file_is_packaged_documented_and_well_formed() -> None:
    raw = json.loads((ROOT / "policies" / "data" / "aws_tag_policy_resource_types.json").read_text())
    assert "note" in raw and "2026" in raw["compiled"] and data_note() == raw["note"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"data/*.json"' in pyproject
    for service, types in supported_resource_types().items():
        assert types and all(t.startswith(f"{service}:") for t in types), service
        assert len({t.casefold() for t in types}) == len(types)


# Resource types the scanner collects that tag policies name differently or do not list.
SCANNER_TYPES_NOT_IN_TAG_POLICIES = {"opensearch:domain"}


def test_every_scanned_type_that_tag_policies_know_is_in_the_data() -> None:
    source = (ROOT / "scanner" / "providers" / "aws" / "resource_types.py").read_text()
    scanned = set(re.findall(r'resource_type="([^"]+)"', source))
    assert len(scanned) > 20
    missing = {t for t in scanned if not is_supported_resource_type(t)}
    assert missing == SCANNER_TYPES_NOT_IN_TAG_POLICIES


def test_expansion_and_compression() -> None:
    rds = list(supported_resource_types()["rds"])
    assert expand_resource_types(["rds:ALL_SUPPORTED"]) == rds == expand_resource_types(["rds:*"])
    assert expand_resource_types(["s3:bucket", "S3:BUCKET", "newsvc:*"]) == ["s3:bucket", "newsvc:*"]
    assert compress_resource_types([*rds, "s3:bucket"]) == ["rds:ALL_SUPPORTED", "s3:bucket"]
    assert compress_resource_types(["rds:db", "rds:*", "newsvc:*"]) == ["rds:ALL_SUPPORTED", "newsvc:ALL_SUPPORTED"]
    assert compress_resource_types(rds[:1]) == rds[:1]
    assert is_supported_resource_type("STATES:statemachine") and not is_supported_resource_type("ec2:nope")
