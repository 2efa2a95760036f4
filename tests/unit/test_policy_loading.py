"""Loading and validating tagging policies: every load error names its location (and line)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from policies.models import Severity
from policies.policy import (
    NamingRules,
    Policy,
    PolicyError,
    PolicyProblem,
    TagRule,
    load_policy,
    load_policy_file,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "policies" / "examples"


def problems_of(data: Any) -> dict[str, str]:
    """Load ``data`` expecting failure; map location -> message."""
    with pytest.raises(PolicyError) as info:
        load_policy(data)
    return {p.location: p.message for p in info.value.problems}


def one_rule(**fields: Any) -> dict[str, Any]:
    return {"required_tags": [{"name": "CostCenter", **fields}]}


# --- the shipped examples ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["default.json", "minimal.json"])
def test_shipped_examples_load(name: str) -> None:
    policy = load_policy_file(EXAMPLES / name)
    assert policy.required_tags


def test_default_example_keeps_its_demo_tags() -> None:
    policy = load_policy_file(EXAMPLES / "default.json")
    assert [r.name for r in policy.required_tags] == ["CostCenter", "Owner", "Environment", "Application"]
    assert [r.name for r in policy.optional_tags] == ["DataClassification", "Project"]
    assert policy.prohibited_tags == ["temp*", "DeleteMe"]
    assert policy.tag_naming_rules.allow_special_characters is False


def test_every_example_file_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.json")) == ["default.json", "minimal.json"]


# --- accepted input and normalisation ---------------------------------------------------------------


def test_peer_format_loads_and_ignores_peer_only_keys() -> None:
    policy = load_policy({
        "version": "1.0",
        "last_updated": "2025-01-01T00:00:00Z",
        "supported_resource_types": ["ec2:instance"],
        "required_tags": [{"name": "Owner", "description": "who", "allowed_values": None,
                           "validation_regex": "^[a-z]+@example\\.com$", "applies_to": ["ec2:instance"]}],
        "optional_tags": [{"name": "Project", "description": "", "allowed_values": ["a", "b"]}],
        "tag_naming_rules": {"case_sensitivity": False, "allow_special_characters": False,
                             "max_key_length": 128, "max_value_length": 256},
    })
    assert policy.required_tags[0].validation_regex == "^[a-z]+@example\\.com$"
    assert "last_updated" not in policy.model_dump()


def test_severity_defaults_depend_on_the_list() -> None:
    policy = load_policy({"required_tags": [{"name": "A"}], "optional_tags": [{"name": "B"}]})
    assert policy.required_tags[0].severity is Severity.ERROR
    assert policy.optional_tags[0].severity is Severity.WARNING
    explicit = load_policy({"required_tags": [{"name": "A", "severity": "warning"}],
                            "optional_tags": [{"name": "B", "severity": "error"}]})
    assert explicit.required_tags[0].severity is Severity.WARNING
    assert explicit.optional_tags[0].severity is Severity.ERROR


def test_severity_default_also_applies_to_rule_objects() -> None:
    policy = Policy(optional_tags=[TagRule(name="B")], required_tags=[TagRule(name="A")])
    assert policy.optional_tags[0].severity is Severity.WARNING
    assert policy.required_tags[0].severity is Severity.ERROR


def test_nulls_and_empty_constraints_normalise() -> None:
    policy = load_policy({"required_tags": [{"name": "A", "applies_to": None, "allowed_values": [],
                                             "validation_regex": "", "severity": None, "description": None}],
                          "optional_tags": None, "prohibited_tags": None, "tag_naming_rules": None,
                          "version": None, "description": None})
    rule = policy.required_tags[0]
    assert rule.applies_to == [] and rule.allowed_values is None and rule.validation_regex is None
    assert rule.description == "" and policy.description == "" and policy.version == "1.0"
    assert rule.severity is Severity.ERROR
    assert policy.optional_tags == [] and policy.prohibited_tags == []
    assert policy.tag_naming_rules == NamingRules()


def test_defaults() -> None:
    policy = load_policy("{}")
    assert policy.version == "1.0" and policy.max_tags == 50
    rules = policy.tag_naming_rules
    assert (rules.case_sensitivity, rules.allow_special_characters, rules.max_key_length,
            rules.max_value_length) == (True, True, 128, 256)


def test_numeric_version_is_read_as_text() -> None:
    assert load_policy({"version": 2.1}).version == "2.1"


def test_max_tags_may_be_null_to_turn_the_check_off() -> None:
    assert load_policy({"max_tags": None}).max_tags is None


def test_bytes_with_bom_load() -> None:
    raw = "\ufeff" + json.dumps(one_rule())
    assert load_policy(raw.encode("utf-8")).required_tags[0].name == "CostCenter"


def test_content_hash_is_stable_and_canonical() -> None:
    a = load_policy('{"required_tags": [{"name": "A", "allowed_values": ["x", "y"]}], "max_tags": 10}')
    b = load_policy({"max_tags": 10, "required_tags": [{"allowed_values": ["x", "y"], "name": "A",
                                                          "severity": "error", "applies_to": None}],
                     "last_updated": "ignored"})
    assert a.content_hash() == b.content_hash()
    assert len(a.content_hash()) == 64 and int(a.content_hash(), 16) >= 0
    c = load_policy({"max_tags": 10, "required_tags": [{"name": "A", "allowed_values": ["x", "z"]}]})
    assert c.content_hash() != a.content_hash()


def test_model_dump_round_trips() -> None:
    policy = load_policy_file(EXAMPLES / "default.json")
    again = load_policy(policy.model_dump(mode="json"))
    assert again == policy and again.content_hash() == policy.content_hash()


def test_policy_is_immutable() -> None:
    policy = load_policy("{}")
    with pytest.raises(ValueError):
        policy.max_tags = 3  # type: ignore[misc]


def test_rules_iterates_required_first() -> None:
    policy = load_policy({"required_tags": [{"name": "A"}], "optional_tags": [{"name": "B"}]})
    assert [(r.name, req) for r, req in policy.rules()] == [("A", True), ("B", False)]


# --- load errors: one test per check, asserting the location ---------------------------------------


def test_invalid_regex_location_and_message() -> None:
    data = {"required_tags": [{"name": "A"}, {"name": "B"}, {"name": "C", "validation_regex": "ab[c"}]}
    problems = problems_of(data)
    assert problems == {"required_tags[2].validation_regex": "invalid regular expression: unterminated "
                                                             "character set at position 2 — fix the pattern"}


def test_allowed_value_with_two_wildcards() -> None:
    problems = problems_of({"required_tags": [{"name": "A"}, {"name": "B",
                                                              "allowed_values": ["ok*", "*@*.com"]}]})
    assert list(problems) == ["required_tags[1].allowed_values[1]"]
    assert "2 '*' wildcards" in problems["required_tags[1].allowed_values[1]"]


def test_duplicate_tag_names_exact_and_case_insensitive() -> None:
    problems = problems_of({"required_tags": [{"name": "CostCenter"}, {"name": "CostCenter"}],
                            "optional_tags": [{"name": "costcenter"}]})
    assert set(problems) == {"required_tags[1].name", "optional_tags[0].name"}
    assert problems["required_tags[1].name"].startswith(
        "duplicate tag name 'CostCenter' at required_tags[0].name")
    assert "differs only in case" in problems["optional_tags[0].name"]


def test_empty_tag_name() -> None:
    assert problems_of(one_rule(name="")) == {"required_tags[0].name": "tag name must not be empty"}
    assert "required_tags[0].name" in problems_of(one_rule(name="   "))


@pytest.mark.parametrize("bad_name", ["aws:owner", "Cost*", " Owner", "x" * 129])
def test_unusable_tag_names(bad_name: str) -> None:
    assert list(problems_of(one_rule(name=bad_name))) == ["required_tags[0].name"]


@pytest.mark.parametrize("bad_type", ["EC2:instance", "ec2", "ec2:", ":instance", "ec2 :instance",
                                      "ec2:inst ance", "ec2::instance", ""])
def test_applies_to_must_be_service_resource(bad_type: str) -> None:
    problems = problems_of(one_rule(applies_to=["s3:bucket", bad_type]))
    assert list(problems) == ["required_tags[0].applies_to[1]"]
    assert "service:resource" in problems["required_tags[0].applies_to[1]"]


@pytest.mark.parametrize("good_type", ["ec2:instance", "states:stateMachine", "elasticfilesystem:file-system",
                                       "resource-groups:group", "ec2:*", "ec2:ALL_SUPPORTED"])
def test_applies_to_accepts_real_types(good_type: str) -> None:
    assert load_policy(one_rule(applies_to=[good_type])).required_tags[0].applies_to == [good_type]


def test_severity_must_be_error_or_warning() -> None:
    problems = problems_of(one_rule(severity="critical"))
    assert problems == {"required_tags[0].severity": "must be 'error' or 'warning', got 'critical'"}
    assert "optional_tags[0].severity" in problems_of({"optional_tags": [{"name": "A", "severity": "ERROR"}]})


@pytest.mark.parametrize("value", [0, -1, 51, 1000])
def test_max_tags_range(value: int) -> None:
    problems = problems_of({"max_tags": value})
    assert problems == {"max_tags": f"must be between 1 and 50 (the AWS limit per resource), got {value}"}


@pytest.mark.parametrize("value", [1, 50])
def test_max_tags_bounds_are_inclusive(value: int) -> None:
    assert load_policy({"max_tags": value}).max_tags == value


def test_naming_rule_types_and_ranges() -> None:
    problems = problems_of({"tag_naming_rules": {"case_sensitivity": "yes", "allow_special_characters": 1,
                                                 "max_key_length": 0, "max_value_length": "256"}})
    assert problems == {
        "tag_naming_rules.case_sensitivity": "must be true or false, got 'yes'",
        "tag_naming_rules.allow_special_characters": "must be true or false, got 1",
        "tag_naming_rules.max_key_length": "must be at least 1, got 0",
        "tag_naming_rules.max_value_length": "must be a whole number, got '256'",
    }


def test_type_errors_name_the_path() -> None:
    problems = problems_of({"required_tags": [{"name": "A", "allowed_values": ["x", 5]}, "oops",
                                              {"name": 7}], "prohibited_tags": "temp*", "max_tags": 2.5})
    assert problems == {
        "required_tags[0].allowed_values[1]": "must be a string, got 5",
        "required_tags[1]": "must be an object, got 'oops'",
        "required_tags[2].name": "must be a string, got 7",
        "prohibited_tags": "must be a list, got 'temp*'",
        "max_tags": "must be a whole number, got 2.5",
    }


def test_missing_name() -> None:
    assert problems_of({"optional_tags": [{"description": "x"}]}) == {
        "optional_tags[0].name": "required key is missing"}


def test_unknown_keys_are_reported_with_a_guess() -> None:
    problems = problems_of({"required_tag": [], "required_tags": [{"name": "A", "allowed_value": ["x"]}],
                            "tag_naming_rules": {"case_sensitive": True}})
    assert problems == {
        "required_tag": "unknown key; did you mean 'required_tags'?",
        "required_tags[0].allowed_value": "unknown key; did you mean 'allowed_values'?",
        "tag_naming_rules.case_sensitive": "unknown key; did you mean 'case_sensitivity'?",
    }


def test_unknown_key_without_a_guess_lists_known_keys() -> None:
    message = problems_of({"zzz": 1})["zzz"]
    assert message.startswith("unknown key; known keys: version, description, required_tags")


def test_prohibited_patterns_are_checked() -> None:
    problems = problems_of({"prohibited_tags": ["ok", "", "a*b*"]})
    assert set(problems) == {"prohibited_tags[1]", "prohibited_tags[2]"}


def test_prohibited_pattern_may_not_hit_a_policy_tag() -> None:
    problems = problems_of({"required_tags": [{"name": "TempOwner"}], "prohibited_tags": ["temp*"]})
    assert list(problems) == ["prohibited_tags[0]"]
    assert "'TempOwner'" in problems["prohibited_tags[0]"]


def test_document_must_be_an_object() -> None:
    assert problems_of("[1, 2]") == {"$": "must be an object, got a list"}


def test_all_problems_are_collected_in_one_error() -> None:
    problems = problems_of({
        "required_tags": [{"name": "A", "validation_regex": "("}, {"name": "a"}, {"name": "",
                                                                                  "applies_to": ["x"]}],
        "max_tags": 99, "severity": "x"})
    assert set(problems) == {"required_tags[0].validation_regex", "required_tags[1].name",
                             "required_tags[2].name", "required_tags[2].applies_to[0]", "max_tags",
                             "severity"}


def test_cross_checks_run_even_when_types_fail() -> None:
    problems = problems_of({"required_tags": [{"name": "A", "severity": 3}, {"name": "A"}]})
    assert set(problems) == {"required_tags[0].severity", "required_tags[1].name"}


# --- text input: line numbers, JSON syntax, repeated keys --------------------------------------------


def test_malformed_json_reports_line_and_column() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy('{\n  "version": "1.0",\n  "max_tags": 5,\n}\n')
    (problem,) = info.value.problems
    assert problem.location == "$" and problem.message.startswith("invalid JSON: ")
    assert (problem.line, problem.column) == (4, 1)
    assert "(line 4, column 1)" in str(info.value)


def test_empty_text_is_reported() -> None:
    with pytest.raises(PolicyError, match="the policy is empty"):
        load_policy("   ")


def test_invalid_utf8_is_reported() -> None:
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(b'{"version": "\xff"}')


def test_problems_from_text_carry_lines_and_are_in_text_order() -> None:
    text = """{
  "max_tags": 0,
  "required_tags": [
    {"name": "A"},
    {"name": "B", "validation_regex": "[x"}
  ]
}"""
    with pytest.raises(PolicyError) as info:
        load_policy(text)
    got = [(p.location, p.line) for p in info.value.problems]
    assert got == [("max_tags", 2), ("required_tags[1].validation_regex", 5)]


def test_missing_key_points_at_its_object() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy('{"required_tags": [\n  {"description": "no name"}\n]}')
    (problem,) = info.value.problems
    assert (problem.location, problem.line, problem.column) == ("required_tags[0].name", 2, 3)


def test_key_problems_point_at_the_key() -> None:
    text = '{"required_tags": [{"name": "A", "allowed_value":\n ["x"]}]}'
    with pytest.raises(PolicyError) as info:
        load_policy(text)
    (problem,) = info.value.problems
    assert problem.location == "required_tags[0].allowed_value"
    assert (problem.line, problem.column) == (1, text.index('"allowed_value"') + 1)


def test_repeated_json_keys_are_reported() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy('{"max_tags": 5,\n "max_tags": 6}')
    (problem,) = info.value.problems
    assert problem.location == "max_tags" and "more than once" in problem.message and problem.line == 2


def test_problems_from_mappings_have_no_line() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy({"max_tags": 0})
    assert info.value.problems[0].line is None


def test_error_text_lists_every_problem() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy({"required_tags": [{"name": "A", "validation_regex": "[x"}], "max_tags": 0})
    text = str(info.value)
    assert text.splitlines()[0] == "invalid tagging policy (2 problems)"
    assert ("- required_tags[0].validation_regex: invalid regular expression: unterminated character set"
            in text)
    assert "- max_tags: must be between 1 and 50" in text


def test_problem_str() -> None:
    assert str(PolicyProblem("a.b", "bad")) == "a.b: bad"
    assert str(PolicyProblem("$", "bad", 3, 7)) == "$: bad (line 3, column 7)"


# --- files and direct construction ----------------------------------------------------------------


def test_load_policy_file_names_the_file_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"max_tags": 0}', encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy_file(path)
    assert info.value.source == str(path) and str(path) in str(info.value)
    assert info.value.problems[0].line == 1


def test_unreadable_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy_file(tmp_path / "missing.json")
    assert info.value.problems[0].location == "$"
    assert "cannot read the policy file" in info.value.problems[0].message


def test_direct_construction_still_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="differs only in case"):
        Policy(required_tags=[TagRule(name="A"), TagRule(name="a")])


def test_rule_applies_to_type() -> None:
    rule = TagRule(name="A", applies_to=["ec2:instance", "s3:*", "rds:ALL_SUPPORTED"])
    assert rule.applies_to_type("ec2:instance") and rule.applies_to_type("EC2:Instance")
    assert rule.applies_to_type("s3:bucket") and rule.applies_to_type("rds:cluster")
    assert not rule.applies_to_type("ec2:volume") and not rule.applies_to_type("s3control:job")
    assert TagRule(name="B").applies_to_type("anything:at-all")
