"""Policy linting: every code fires where it should, with its documented severity, and nowhere else."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest

import policies.lint as lint_module
from policies.lint import LintFinding, lint_policy
from policies.models import Severity
from policies.policy import NamingRules, Policy, TagRule, load_policy, load_policy_file
from scanner.providers.aws.registry import all_types

EXAMPLES = Path(__file__).resolve().parents[2] / "policies" / "examples"
KNOWN = all_types()


def _documented_codes() -> dict[str, Severity]:
    """code -> severity, read from the table in the module docstring (the published contract)."""
    doc = lint_module.__doc__ or ""
    rows = re.findall(r"^([a-z][a-z0-9-]+)\s+(error|warning)\s", doc, flags=re.MULTILINE)
    return {code: Severity(sev) for code, sev in rows}


DOCUMENTED = _documented_codes()


def run(policy: Policy | dict[str, Any], **kwargs: Any) -> list[LintFinding]:
    if not isinstance(policy, Policy):
        policy = load_policy(policy)
    findings = lint_policy(policy, **kwargs)
    for f in findings:
        # Every finding's severity is the one the docstring table promises for its code.
        assert DOCUMENTED.get(f.code) == f.severity, f"{f.code} is undocumented or has the wrong severity"
        assert f.message and f.location
    return findings


def pairs(findings: list[LintFinding]) -> set[tuple[str, str]]:
    return {(f.location, f.code) for f in findings}


def rule(name: str = "CostCenter", **fields: Any) -> dict[str, Any]:
    return {"name": name, **fields}


def constructed(required: list[TagRule], **fields: Any) -> Policy:
    """A Policy that skips the loader's cross checks (as code building policies directly might)."""
    return Policy.model_construct(required_tags=required, optional_tags=fields.pop("optional_tags", []),
                                  prohibited_tags=fields.pop("prohibited_tags", []),
                                  max_tags=fields.pop("max_tags", 50),
                                  tag_naming_rules=fields.pop("tag_naming_rules", NamingRules()), **fields)


def _tag(name: str, **fields: Any) -> TagRule:
    """A TagRule that skips field validation (for inputs the loader would refuse)."""
    base: dict[str, Any] = {"allowed_values": None, "validation_regex": None, "applies_to": [],
                            "severity": Severity.ERROR, "description": ""}
    return TagRule.model_construct(name=name, **{**base, **fields})


# --- the shipped examples --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["default.json", "minimal.json"])
@pytest.mark.parametrize("target", [None, "aws", "azure"])
def test_shipped_examples_are_clean(name: str, target: Any) -> None:
    policy = load_policy_file(EXAMPLES / name)
    assert run(policy, known_resource_types=KNOWN, target=target) == []


def test_default_example_for_gcp_names_every_label_problem() -> None:
    findings = run(load_policy_file(EXAMPLES / "default.json"), target="gcp")
    got = pairs(findings)
    for i in range(4):
        assert (f"required_tags[{i}].name", "gcp-key-format") in got
    assert ("optional_tags[0].name", "gcp-key-format") in got
    assert ("required_tags[0].allowed_values[0]", "gcp-value-format") in got  # "Engineering"
    assert ("required_tags[1].allowed_values[0]", "gcp-value-format") in got  # "*@example.com": '@' and '.'
    # All CostCenter values are capitalised, so the rule can never hold on GCP.
    assert ("required_tags[0].allowed_values", "rule-unsatisfiable") in got
    # Lowercase values are fine.
    assert not any(loc.startswith("required_tags[2].allowed_values[") for loc, _ in got)
    by_loc = {f.location: f for f in findings if f.code == "gcp-key-format"}
    assert "'data_classification'" in by_loc["optional_tags[0].name"].message  # the suggested rename


# --- one test per code --------------------------------------------------------------------------------


def test_allowed_value_failing_its_own_regex() -> None:
    found = run({"required_tags": [rule("Application", validation_regex="[a-z][a-z0-9-]{2,63}",
                                        allowed_values=["billing-api", "My App", "ok-one"])]})
    assert pairs(found) == {("required_tags[0].allowed_values[1]", "allowed-value-fails-regex")}
    assert "validation_regex" in found[0].message and "fix" in found[0].message


def test_all_values_failing_make_the_rule_unsatisfiable() -> None:
    found = run({"required_tags": [rule(validation_regex="[0-9]+", allowed_values=["abc", "def"])]})
    assert pairs(found) == {
        ("required_tags[0].allowed_values[0]", "allowed-value-fails-regex"),
        ("required_tags[0].allowed_values[1]", "allowed-value-fails-regex"),
        ("required_tags[0].allowed_values", "rule-unsatisfiable"),
    }


def test_wildcard_values_are_probed_against_the_regex() -> None:
    ok = run({"optional_tags": [rule("Project", validation_regex="PRJ-[0-9]{4}", allowed_values=["PRJ-*", "*-0042"])]})
    assert ok == []
    bad = run({"optional_tags": [rule("Project", validation_regex="PRJ-[0-9]{4}", allowed_values=["XYZ-*"])]})
    assert pairs(bad) == {("optional_tags[0].allowed_values[0]", "wildcard-value-fails-regex")}
    # A heuristic is never sure enough to call the rule unsatisfiable.
    assert bad[0].severity is Severity.WARNING


def test_any_value_wildcard_is_not_checked_against_the_regex() -> None:
    assert run({"required_tags": [rule(validation_regex="[0-9]+", allowed_values=["*"])]}) == []


@pytest.mark.parametrize(("regex", "limit", "fragment"), [
    ("a{300}", 256, "at least 300 characters"),
    ("(?:)", 256, "only the empty value"),
    ("x{10}", 8, "at most 8"),
])
def test_regex_that_no_usable_value_can_match(regex: str, limit: int, fragment: str) -> None:
    found = run({"required_tags": [rule(validation_regex=regex)],
                 "tag_naming_rules": {"max_value_length": limit}})
    assert pairs(found) == {("required_tags[0].validation_regex", "regex-unsatisfiable")}
    assert fragment in found[0].message


def test_regex_longer_than_a_gcp_label_value() -> None:
    data = {"required_tags": [rule("app", validation_regex="[a-z]{64,70}")]}
    assert run(data) == []
    found = run(data, target="gcp")
    assert pairs(found) == {("required_tags[0].validation_regex", "regex-unsatisfiable")}
    assert "on gcp" in found[0].message


def test_invalid_regex_in_a_constructed_policy() -> None:
    policy = constructed([_tag("A", validation_regex="(")])
    assert pairs(run(policy)) == {("required_tags[0].validation_regex", "invalid-regex")}


def test_empty_allowed_values_in_a_constructed_policy() -> None:
    # The loader reads [] as "no constraint"; a policy built in code can still carry it.
    policy = constructed([_tag("A", allowed_values=[])])
    assert pairs(run(policy)) == {("required_tags[0].allowed_values", "empty-allowed-values")}


def test_duplicate_redundant_and_blank_values() -> None:
    found = run({"required_tags": [rule(allowed_values=["prod", "prod*", "production", "prod", " "])]})
    assert pairs(found) == {
        ("required_tags[0].allowed_values[0]", "redundant-allowed-value"),  # "prod" is covered by "prod*"
        ("required_tags[0].allowed_values[2]", "redundant-allowed-value"),
        ("required_tags[0].allowed_values[3]", "duplicate-allowed-value"),
        ("required_tags[0].allowed_values[4]", "blank-allowed-value"),
    }


def test_values_equal_ignoring_case_are_duplicates_only_when_case_insensitive() -> None:
    data: dict[str, Any] = {"required_tags": [rule(allowed_values=["Prod", "prod"])]}
    assert run(data) == []
    data["tag_naming_rules"] = {"case_sensitivity": False}
    found = run(data)
    assert pairs(found) == {("required_tags[0].allowed_values[1]", "duplicate-allowed-value")}
    assert "ignoring case" in found[0].message


def test_values_and_names_against_the_naming_rules() -> None:
    found = run({
        "required_tags": [rule("CostCenter", allowed_values=["abc", "toolong", "a#b", "x*toolong"])],
        "optional_tags": [rule("Team#1")],
        "tag_naming_rules": {"max_value_length": 5, "max_key_length": 6, "allow_special_characters": False},
    })
    assert pairs(found) == {
        ("required_tags[0].name", "key-too-long"),
        ("required_tags[0].allowed_values[1]", "allowed-value-too-long"),
        ("required_tags[0].allowed_values[2]", "disallowed-characters"),
        ("required_tags[0].allowed_values[3]", "allowed-value-too-long"),  # 8 fixed characters around '*'
        ("optional_tags[0].name", "disallowed-characters"),
    }


def test_too_many_required_tags_for_max_tags_counts_per_type() -> None:
    data = {
        "required_tags": [rule("A"), rule("B", applies_to=["s3:bucket"]), rule("C", applies_to=["ec2:instance"]),
                          rule("D", applies_to=["ec2:*"])],
        "max_tags": 2,
    }
    found = run(data)
    assert pairs(found) == {("required_tags", "too-many-required-tags")}
    assert "3 required tags apply on ec2:instance" in found[0].message
    assert run({**data, "max_tags": 3}) == []


def test_unknown_resource_types_with_did_you_mean() -> None:
    found = run({"required_tags": [rule(applies_to=["ec2:instances", "ec2:Instance", "ec3:*", "s3:*"])]},
                known_resource_types=KNOWN)
    assert pairs(found) == {("required_tags[0].applies_to[0]", "unknown-resource-type"),
                            ("required_tags[0].applies_to[2]", "unknown-resource-type")}
    assert "did you mean 'ec2:instance'" in found[0].message
    assert re.search(r"did you mean 'ec[2s]:\*'", found[1].message)


def test_resource_types_are_not_checked_without_a_registry() -> None:
    assert run({"required_tags": [rule(applies_to=["made:up"])]}) == []


def test_case_collisions_and_duplicates_in_a_constructed_policy() -> None:
    policy = constructed([TagRule(name="CostCenter"), TagRule(name="costcenter"), TagRule(name="CostCenter")])
    found = run(policy)
    assert pairs(found) == {("required_tags[1].name", "key-case-collision"),
                            ("required_tags[2].name", "duplicate-tag")}
    azure = [f for f in run(policy, target="azure") if f.code == "key-case-collision"]
    assert "Azure tag names are case-insensitive" in azure[0].message
    assert azure[0].severity is Severity.ERROR


def test_prohibited_patterns() -> None:
    policy = constructed([TagRule(name="TempOwner")], optional_tags=[TagRule(name="Scratch")],
                         prohibited_tags=["temp*", "TEMP*", "scratch"])
    found = run(policy)
    assert pairs(found) == {("prohibited_tags[0]", "prohibited-defined-tag"),
                            ("prohibited_tags[1]", "duplicate-prohibited-pattern"),
                            ("prohibited_tags[2]", "prohibited-defined-tag")}
    assert "required tag 'TempOwner'" in found[0].message


def test_aws_limits() -> None:
    long_key = "K" * 129
    policy = constructed([_tag(long_key), _tag("aws:team")],
                         tag_naming_rules=NamingRules(max_key_length=200))
    assert pairs(run(policy, target="aws")) == {("required_tags[0].name", "aws-key-too-long"),
                                                ("required_tags[1].name", "aws-reserved-prefix")}
    assert run(policy) == []  # without a target only the policy's own limits apply

    values = {"required_tags": [rule(allowed_values=["v" * 300])], "tag_naming_rules": {"max_value_length": 1000}}
    assert pairs(run(values, target="aws")) == {("required_tags[0].allowed_values[0]", "aws-value-too-long"),
                                                ("required_tags[0].allowed_values", "rule-unsatisfiable")}


@pytest.mark.parametrize(("target", "limit", "code"), [
    ("aws", 50, "aws-too-many-tags"), ("azure", 50, "azure-too-many-tags"), ("gcp", 64, "gcp-too-many-labels"),
])
def test_cloud_tag_count_limits(target: Any, limit: int, code: str) -> None:
    many = {"required_tags": [rule(f"t{i}") for i in range(limit + 1)], "max_tags": None}
    assert pairs(run(many, target=target)) == {("required_tags", code)}
    fits = {"required_tags": [rule(f"t{i}") for i in range(limit)], "max_tags": None}
    assert run(fits, target=target) == []


def test_azure_limits() -> None:
    policy = constructed([_tag("n" * 513)],
                         tag_naming_rules=NamingRules(max_key_length=600))
    assert pairs(run(policy, target="azure")) == {("required_tags[0].name", "azure-key-too-long")}
    found = run({"required_tags": [rule("Cost/Center", allowed_values=["x" * 257])],
                 "tag_naming_rules": {"max_value_length": 1000}}, target="azure")
    assert pairs(found) == {("required_tags[0].name", "azure-key-characters"),
                            ("required_tags[0].allowed_values[0]", "azure-value-too-long"),
                            ("required_tags[0].allowed_values", "rule-unsatisfiable")}
    assert "'/'" not in found[0].message and "/" in found[0].message


def test_gcp_limits() -> None:
    found = run({"required_tags": [rule("k" * 64, allowed_values=["v" * 64, "ok_value-1", "üñí", "Bad"]),
                                   rule("1st")]}, target="gcp")
    assert pairs(found) == {
        ("required_tags[0].name", "gcp-key-length"),
        ("required_tags[0].allowed_values[0]", "gcp-value-length"),
        ("required_tags[0].allowed_values[3]", "gcp-value-format"),
        ("required_tags[1].name", "gcp-key-format"),
    }
    assert "start with a letter" in next(f.message for f in found if f.location == "required_tags[1].name")


# --- contracts ----------------------------------------------------------------------------------------


def test_finding_text_and_order() -> None:
    found = run({"required_tags": [rule(allowed_values=["a", "a"])], "prohibited_tags": ["x", "X"]})
    assert [f.location for f in found] == ["required_tags[0].allowed_values[1]", "prohibited_tags[1]"]
    assert str(found[0]).startswith("warning: required_tags[0].allowed_values[1]: ")
    assert str(found[0]).endswith("[duplicate-allowed-value]")


def test_lint_character_class_matches_the_engine() -> None:
    from policies import engine

    assert lint_module._BAD_CHARS.pattern == engine._BAD_CHARS.pattern


# The smallest input that raises each code: a code without an example here fails the test below.
_EXEMPTION = {"id": "E-1", "reason": "legacy", "expires": "2020-01-01", "accounts": ["123456789012"]}

MINIMAL: dict[str, tuple[Any, dict[str, Any]]] = {
    "duplicate-tag": (lambda: constructed([TagRule(name="A"), TagRule(name="A")]), {}),
    "key-case-collision": (lambda: constructed([TagRule(name="A"), TagRule(name="a")]), {}),
    "prohibited-defined-tag": (lambda: constructed([TagRule(name="Tmp")], prohibited_tags=["tmp"]), {}),
    "duplicate-prohibited-pattern": ({"prohibited_tags": ["x", "X"]}, {}),
    "key-too-long": ({"required_tags": [rule("ABC")], "tag_naming_rules": {"max_key_length": 2}}, {}),
    "disallowed-characters": ({"required_tags": [rule("A#")],
                               "tag_naming_rules": {"allow_special_characters": False}}, {}),
    "invalid-regex": (lambda: constructed([_tag("A", validation_regex="(")]), {}),
    "regex-unsatisfiable": ({"required_tags": [rule(validation_regex="(?:)")]}, {}),
    "empty-allowed-values": (lambda: constructed([_tag("A", allowed_values=[])]), {}),
    "blank-allowed-value": ({"required_tags": [rule(allowed_values=["", "x"])]}, {}),
    "duplicate-allowed-value": ({"required_tags": [rule(allowed_values=["x", "x"])]}, {}),
    "redundant-allowed-value": ({"required_tags": [rule(allowed_values=["x*", "xy"])]}, {}),
    "allowed-value-too-long": ({"required_tags": [rule(allowed_values=["xyz", "x"])],
                                "tag_naming_rules": {"max_value_length": 2}}, {}),
    "allowed-value-fails-regex": ({"required_tags": [rule(validation_regex="x", allowed_values=["x", "y"])]}, {}),
    "wildcard-value-fails-regex": ({"required_tags": [rule(validation_regex="x+", allowed_values=["y*"])]}, {}),
    "rule-unsatisfiable": ({"required_tags": [rule(validation_regex="x", allowed_values=["y"])]}, {}),
    "too-many-required-tags": ({"required_tags": [rule("A"), rule("B")], "max_tags": 1}, {}),
    "unknown-resource-type": ({"required_tags": [rule(applies_to=["ec2:nope"])]}, {"known_resource_types": KNOWN}),
    "aws-key-too-long": (lambda: constructed([_tag("K" * 129)], tag_naming_rules=NamingRules(max_key_length=200)),
                         {"target": "aws"}),
    "aws-reserved-prefix": (lambda: constructed([_tag("aws:x")]), {"target": "aws"}),
    "aws-value-too-long": ({"required_tags": [rule(allowed_values=["v" * 257])],
                            "tag_naming_rules": {"max_value_length": 999}}, {"target": "aws"}),
    "aws-too-many-tags": ({"required_tags": [rule(f"t{i}") for i in range(51)], "max_tags": None},
                          {"target": "aws"}),
    "azure-key-too-long": (lambda: constructed([_tag("K" * 513)], tag_naming_rules=NamingRules(max_key_length=600)),
                           {"target": "azure"}),
    "azure-key-characters": ({"required_tags": [rule("a?b")]}, {"target": "azure"}),
    "azure-value-too-long": ({"required_tags": [rule(allowed_values=["v" * 257])],
                              "tag_naming_rules": {"max_value_length": 999}}, {"target": "azure"}),
    "azure-too-many-tags": ({"required_tags": [rule(f"t{i}") for i in range(51)], "max_tags": None},
                            {"target": "azure"}),
    "gcp-key-length": ({"required_tags": [rule("k" * 64)]}, {"target": "gcp"}),
    "gcp-key-format": ({"required_tags": [rule("Key")]}, {"target": "gcp"}),
    "gcp-value-length": ({"required_tags": [rule("k", allowed_values=["v" * 64])]}, {"target": "gcp"}),
    "gcp-value-format": ({"required_tags": [rule("k", allowed_values=["V"])]}, {"target": "gcp"}),
    "gcp-too-many-labels": ({"required_tags": [rule(f"t{i}") for i in range(65)], "max_tags": None},
                            {"target": "gcp"}),
    "exemption-expired": ({"required_tags": [rule("A")], "exemptions": [_EXEMPTION]}, {"as_of": date(2021, 1, 1)}),
    "exemption-expiring": ({"required_tags": [rule("A")], "exemptions": [_EXEMPTION]},
                           {"as_of": date(2019, 12, 25)}),
    "exemption-unknown-tag": ({"required_tags": [rule("A")], "exemptions": [{**_EXEMPTION, "tags": ["B"]}]}, {}),
    "alias-unknown-tag": (lambda: constructed([TagRule(name="A")], tag_aliases={"B": ["b"]}), {}),
    "alias-conflict": (lambda: constructed([TagRule(name="A"), TagRule(name="B")], tag_aliases={"A": ["b"]}), {}),
    "override-removes-own-rule": ({"required_tags": [rule("A")], "overrides": [
        {"id": "o", "accounts": ["123456789012"], "required_tags": [rule("A")], "remove_tags": ["A"]}]}, {}),
}


def test_every_documented_code_has_an_example() -> None:
    assert len(DOCUMENTED) == 37
    assert set(MINIMAL) == set(DOCUMENTED)


@pytest.mark.parametrize("code", sorted(MINIMAL))
def test_minimal_example_raises_its_code(code: str) -> None:
    data, kwargs = MINIMAL[code]
    policy = data() if callable(data) else load_policy(data)
    found = run(policy, **kwargs)
    assert code in {f.code for f in found}


# --- per-type rules (required_for) ----------------------------------------------------------------


def test_required_for_counts_only_where_the_key_is_required() -> None:
    data = {"required_tags": [
        rule("A"),
        rule("B", applies_to=["s3:bucket", "ec2:instance"], required_for=["s3:bucket"]),
        rule("C", applies_to=["ec2:instance"], required_for=[]),
    ], "max_tags": 1}
    found = run(data)
    assert pairs(found) == {("required_tags", "too-many-required-tags")}
    assert "2 required tags apply on s3:bucket" in found[0].message  # not ec2:instance: B and C are optional there
    assert run({**data, "max_tags": 2}) == []


def test_required_for_types_are_checked_against_the_registry() -> None:
    found = run({"required_tags": [rule(applies_to=["ec2:*"], required_for=["ec2:instanse"])]},
                known_resource_types=KNOWN)
    assert pairs(found) == {("required_tags[0].required_for[0]", "unknown-resource-type")}
    assert "did you mean 'ec2:instance'" in found[0].message
