"""The additive TagRule fields AWS tag policies need (``required_for``, ``error_for``, ``source``) and
``Violation.source``: validation, serialisation that leaves existing policies untouched, and engine
semantics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from policies.engine import compile_policy, evaluate_resource
from policies.models import Resource, Severity, Violation, ViolationType
from policies.policy import Policy, PolicyError, TagRule, load_policy, load_policy_file

EXAMPLES = Path(__file__).resolve().parents[2] / "policies" / "examples"


def problems(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(PolicyError) as err:
        load_policy(data)
    return {p.location: p.message for p in err.value.problems}


def rule(**fields: Any) -> dict[str, Any]:
    return {"name": "CostCenter", **fields}


# --- validation ------------------------------------------------------------------------------------------------


def test_required_for_and_error_for_must_lie_within_applies_to() -> None:
    found = problems({"required_tags": [rule(applies_to=["ec2:instance", "s3:*"],
                                             required_for=["ec2:volume", "s3:bucket"],
                                             error_for=["rds:*", "ec2:instance"])]})
    assert found == {
        "required_tags[0].required_for": "'ec2:volume' not covered by applies_to; a rule can only be required or "
                                         "escalated where it applies — add it to applies_to",
        "required_tags[0].error_for": "'rds:*' not covered by applies_to; a rule can only be required or escalated "
                                      "where it applies — add it to applies_to",
    }
    # A whole service is covered only by a whole-service entry.
    assert "required_tags[0].required_for" in problems(
        {"required_tags": [rule(applies_to=["s3:bucket"], required_for=["s3:ALL_SUPPORTED"])]})
    load_policy({"required_tags": [rule(applies_to=["s3:ALL_SUPPORTED"], required_for=["s3:*", "s3:Bucket"])]})
    # An empty applies_to covers everything.
    load_policy({"required_tags": [rule(required_for=["lambda:*"], error_for=["ec2:instance"])]})


def test_required_for_belongs_to_required_tags_only() -> None:
    found = problems({"optional_tags": [rule(required_for=[])]})
    assert list(found) == ["optional_tags[0].required_for"]
    assert "move the rule to required_tags" in found["optional_tags[0].required_for"]
    with pytest.raises(ValueError, match="optional tag is never required"):
        Policy(optional_tags=[TagRule(name="A", required_for=["ec2:instance"])])


def test_resource_types_in_the_new_lists_are_checked_like_applies_to() -> None:
    found = problems({"required_tags": [rule(required_for=["EC2:instance"], error_for=["nonsense"])]})
    assert "did you mean 'ec2:instance'?" in found["required_tags[0].required_for[0]"]
    assert "service:resource" in found["required_tags[0].error_for[0]"]


def test_normalisation_of_the_new_fields() -> None:
    policy = load_policy({"required_tags": [rule(required_for=[], error_for=[], source="  ")]})
    [r] = policy.required_tags
    # required_for [] is a meaning of its own (required nowhere); error_for [] and a blank source are none.
    assert (r.required_for, r.error_for, r.source) == ([], None, None)


# --- serialisation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["default.json", "minimal.json"])
def test_policies_without_the_new_fields_dump_and_hash_exactly_as_before(name: str) -> None:
    policy = load_policy_file(EXAMPLES / name)
    dumped = policy.model_dump(mode="json")
    for item in dumped["required_tags"] + dumped["optional_tags"]:
        assert not {"required_for", "error_for", "source"} & set(item)
    canonical = json.dumps(dumped, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert "required_for" not in canonical and len(policy.content_hash()) == 64


def test_the_new_fields_round_trip_and_change_the_hash() -> None:
    data = {"required_tags": [rule(applies_to=["ec2:instance", "s3:bucket"], required_for=["s3:bucket"],
                                   error_for=["ec2:instance"], source="aws:p-1 (root)")]}
    policy = load_policy(data)
    dumped = policy.model_dump(mode="json")
    assert dumped["required_tags"][0]["required_for"] == ["s3:bucket"]
    again = load_policy(dumped)
    assert again == policy and again.content_hash() == policy.content_hash()
    plain = load_policy({"required_tags": [rule(applies_to=["ec2:instance", "s3:bucket"])]})
    assert plain.content_hash() != policy.content_hash()


# --- engine semantics -----------------------------------------------------------------------------------------------

POLICY = load_policy({
    "required_tags": [
        {"name": "CostCenter", "allowed_values": ["100", "200"], "severity": "warning",
         "applies_to": ["ec2:instance", "ec2:volume", "s3:bucket", "sqs:queue"],
         "required_for": ["ec2:instance", "s3:bucket"], "error_for": ["ec2:instance", "sqs:queue"],
         "source": "aws:p-root (root)"},
        {"name": "Checked", "applies_to": ["kms:key"], "required_for": []},
    ],
    "optional_tags": [{"name": "Project", "validation_regex": "PRJ-[0-9]+", "error_for": ["s3:bucket"]}],
})
COMPILED = compile_policy(POLICY)


def run(resource_type: str, tags: dict[str, str]) -> tuple[bool, list[Violation]]:
    result = evaluate_resource(Resource("arn:r", "r", resource_type, "1", "eu-west-1", tags), COMPILED)
    return result.in_scope, list(result.violations)


def summary(violations: list[Violation]) -> list[tuple[ViolationType, Severity]]:
    return [(v.violation_type, v.severity) for v in violations]


def test_required_only_where_required_for_says() -> None:
    assert summary(run("ec2:instance", {})[1]) == [(ViolationType.MISSING_REQUIRED_TAG, Severity.ERROR)]
    assert summary(run("s3:bucket", {})[1]) == [(ViolationType.MISSING_REQUIRED_TAG, Severity.WARNING)]
    assert run("ec2:volume", {}) == (True, [])
    assert run("sqs:queue", {}) == (True, [])


def test_checked_when_present_on_the_other_applies_to_types() -> None:
    assert summary(run("ec2:volume", {"CostCenter": "999"})[1]) == [(ViolationType.INVALID_VALUE, Severity.WARNING)]
    assert summary(run("sqs:queue", {"CostCenter": "999"})[1]) == [(ViolationType.INVALID_VALUE, Severity.ERROR)]
    assert summary(run("sqs:queue", {"costcenter": "100"})[1]) == [(ViolationType.WRONG_KEY_CASE, Severity.ERROR)]


def test_blank_values_are_missing_where_required_and_invalid_where_only_checked() -> None:
    assert summary(run("ec2:instance", {"CostCenter": " "})[1]) == [
        (ViolationType.MISSING_REQUIRED_TAG, Severity.ERROR)]
    # Where the key is optional a blank value is just a value, and "" is not in the allowed list.
    assert summary(run("ec2:volume", {"CostCenter": ""})[1]) == [(ViolationType.INVALID_VALUE, Severity.WARNING)]


def test_a_rule_required_nowhere_still_brings_its_types_into_scope() -> None:
    assert run("kms:key", {}) == (True, [])
    assert run("lambda:function", {}) == (False, [])


def test_error_for_applies_to_optional_rules_too() -> None:
    assert summary(run("s3:bucket", {"CostCenter": "100", "Project": "x"})[1]) == [
        (ViolationType.INVALID_FORMAT, Severity.ERROR)]
    assert summary(run("ec2:instance", {"CostCenter": "100", "Project": "x"})[1]) == [
        (ViolationType.INVALID_FORMAT, Severity.WARNING)]


def test_violations_carry_their_rules_source() -> None:
    _, found = run("ec2:instance", {"Project": "PRJ-1"})
    assert [(v.violation_type, v.source) for v in found] == [(ViolationType.MISSING_REQUIRED_TAG, "aws:p-root (root)")]
    # Rules without a source, and key-only checks, leave it empty.
    _, found = run("s3:bucket", {"CostCenter": "100", "Project": "x", "aws:x": "1"})
    by_type = {v.violation_type: v.source for v in found}
    assert by_type == {ViolationType.INVALID_FORMAT: None, ViolationType.NAMING_RULE: None}


def test_violation_source_defaults_to_none_at_the_end() -> None:
    v = Violation("r", "arn", "id", "t", "a", "r", "k", ViolationType.INVALID_VALUE, Severity.ERROR, "v", None, "m")
    assert v.suggestion is None and v.source is None


def test_the_same_rule_keeps_separate_caches_per_type_variant() -> None:
    # A value accepted where the key is optional must not be taken as accepted where it is required.
    fresh = compile_policy(POLICY)
    for resource_type in ("ec2:volume", "ec2:instance"):
        evaluate_resource(Resource("arn:r", "r", resource_type, "1", "eu-west-1", {"CostCenter": "100"}), fresh)
    blank = evaluate_resource(Resource("arn:b", "b", "ec2:instance", "1", "eu-west-1", {"CostCenter": ""}), fresh)
    assert [v.violation_type for v in blank.violations] == [ViolationType.MISSING_REQUIRED_TAG]
    assert [(r.name, r.required) for r in fresh.rules_for("ec2:volume")] == [("CostCenter", False), ("Project", False)]
    assert [(r.name, r.required, r.severity) for r in fresh.rules_for("ec2:instance")] == [
        ("CostCenter", True, Severity.ERROR), ("Project", False, Severity.WARNING)]
