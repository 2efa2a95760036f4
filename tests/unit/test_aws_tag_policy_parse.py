"""Parsing AWS Organizations tag policies: valid documents become typed objects, every kind of problem
is reported at its JSON path, all at once."""

from __future__ import annotations

import json
from typing import Any

import pytest

from policies.aws.tag_policy import (
    ALL_OPERATORS,
    ListSetting,
    TagKeyPolicy,
    TagKeySetting,
    TagPolicyDoc,
    parse_tag_policy,
)
from policies.policy import PolicyError

FULL = {
    "@@operators_allowed_for_child_policies": ["@@all"],
    "tags": {
        "@@operators_allowed_for_child_policies": ["@@append", "@@remove"],
        "costcenter": {
            "@@operators_allowed_for_child_policies": ["@@assign", "@@append"],
            "tag_key": {"@@assign": "CostCenter", "@@operators_allowed_for_child_policies": ["@@none"]},
            "tag_value": {"@@assign": ["100", "200", "300*", "*@example.com", "a*z"], "@@append": ["400"],
                          "@@remove": ["200"], "@@operators_allowed_for_child_policies": ["@@append"]},
            "enforced_for": {"@@assign": ["secretsmanager:ALL_SUPPORTED", "ec2:instance", "redshift:*"]},
            "report_required_tag_for": {"@@append": ["s3:bucket", "states:stateMachine"],
                                        "@@remove": ["ec2:volume"]},
        },
        "Owner": {"tag_value": {"@@assign": ["*"]}},
        "empty": {},
    },
}


def problems_of(data: Any) -> dict[str, str]:
    with pytest.raises(PolicyError) as err:
        parse_tag_policy(data)
    return {p.location: p.message for p in err.value.problems}


def one_problem(data: Any) -> tuple[str, str]:
    found = problems_of(data)
    assert len(found) == 1, found
    return next(iter(found.items()))


def with_key(body: Any, key: str = "costcenter") -> dict[str, Any]:
    return {"tags": {key: body}}


# --- valid documents ------------------------------------------------------------------------------------------


def test_every_construct_parses_into_typed_settings() -> None:
    doc = parse_tag_policy(FULL, policy_id="p-123", name="cost", target="OU Production")
    assert isinstance(doc, TagPolicyDoc) and list(doc.tags) == ["costcenter", "owner", "empty"]
    # The document and tags levels both cover every key: their limits combine.
    assert doc.operators_allowed == frozenset({"@@append", "@@remove"})
    cc = doc.tags["costcenter"]
    assert cc.operators_allowed == frozenset({"@@assign", "@@append"})
    assert cc.tag_key == TagKeySetting("CostCenter", frozenset())
    assert cc.tag_value == ListSetting(("100", "200", "300*", "*@example.com", "a*z"), ("400",), ("200",),
                                       frozenset({"@@append"}), ("@@assign", "@@append", "@@remove"))
    assert cc.enforced_for is not None and cc.enforced_for.assign == (
        "secretsmanager:ALL_SUPPORTED", "ec2:instance", "redshift:*")
    assert cc.report_required_tag_for == ListSetting(None, ("s3:bucket", "states:stateMachine"), ("ec2:volume",),
                                                     None, ("@@append", "@@remove"))
    assert doc.tags["owner"] == TagKeyPolicy("Owner", tag_value=ListSetting(("*",), written=("@@assign",)))
    assert doc.tags["empty"] == TagKeyPolicy("empty")
    assert doc.label == "aws:p-123 (OU Production)"
    assert doc.attached_to("root").label == "aws:p-123 (root)"


def test_text_bytes_and_mappings_parse_alike_and_to_json_round_trips() -> None:
    text = json.dumps(FULL, indent=2)
    a = parse_tag_policy(text)
    assert a == parse_tag_policy(text.encode("utf-8")) == parse_tag_policy(FULL)
    assert parse_tag_policy(("\ufeff" + text).encode("utf-8")) == a
    again = parse_tag_policy(a.to_json())
    assert again == a
    # The document-level limit moves into tags (same scope), the rest is written as it was.
    assert a.to_json()["tags"]["costcenter"] == FULL["tags"]["costcenter"]


def test_operator_lists_keep_the_first_of_repeated_values() -> None:
    doc = parse_tag_policy(with_key({"tag_value": {"@@assign": ["a", "b", "a"]}}))
    assert doc.tags["costcenter"].tag_value == ListSetting(("a", "b"), written=("@@assign",))


def test_child_control_spellings() -> None:
    def allowed(ops: list[str]) -> frozenset[str] | None:
        doc = parse_tag_policy(with_key({"tag_value": {"@@operators_allowed_for_child_policies": ops}}))
        setting = doc.tags["costcenter"].tag_value
        assert setting is not None
        return setting.operators_allowed

    assert allowed(["@@all"]) == ALL_OPERATORS
    assert allowed(["@@none"]) == frozenset()
    assert allowed(["@@remove", "@@assign", "@@remove"]) == frozenset({"@@assign", "@@remove"})
    assert allowed(["@@none", "@@none"]) == frozenset()


@pytest.mark.parametrize("value", ["*", "300*", "*@example.com", "a*b", "", "x" * 256])
def test_allowed_values_with_at_most_one_wildcard_are_valid(value: str) -> None:
    doc = parse_tag_policy(with_key({"tag_value": {"@@assign": [value]}}))
    assert doc.tags["costcenter"].tag_value == ListSetting((value,), written=("@@assign",))


@pytest.mark.parametrize("entry", ["ec2:instance", "ec2:ALL_SUPPORTED", "ec2:*", "states:stateMachine",
                                   "appconfig:application/environment", "route53-recovery-control:cluster"])
def test_resource_type_spellings_that_are_valid(entry: str) -> None:
    doc = parse_tag_policy(with_key({"enforced_for": {"@@assign": [entry]},
                                     "report_required_tag_for": {"@@append": [entry]}}))
    assert doc.tags["costcenter"].report_required_tag_for == ListSetting(append=(entry,), written=("@@append",))


def test_mixed_case_policy_keys_are_accepted_and_keyed_lowercase() -> None:
    doc = parse_tag_policy({"tags": {"CostCenter": {"tag_key": {"@@assign": "costCENTER"}}}})
    assert list(doc.tags) == ["costcenter"] and doc.tags["costcenter"].policy_key == "CostCenter"


# --- every problem, at its location ----------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "location", "fragment"), [
    # document level
    ([1], "$", "JSON object with a \"tags\" member"),
    ({}, "$", "missing \"tags\""),
    ({"tags": {}, "tag": {}}, "tag", "did you mean 'tags'?"),
    ({"tags": []}, "tags", "must be an object mapping policy keys"),
    ({"tags": {}, "@@operators_allowed_for_child_policies": "@@none"}, "@@operators_allowed_for_child_policies",
     "non-empty list"),
    # tags level
    ({"tags": {"@@assign": {}}}, "tags.@@assign", "only @@operators_allowed_for_child_policies"),
    ({"tags": {"@@operators_allowed_for_child_policies": []}}, "tags.@@operators_allowed_for_child_policies",
     "non-empty list"),
    ({"tags": {" cc": {}}}, "tags. cc", "leading or trailing spaces"),
    ({"tags": {"": {}}}, "tags.", "must not be empty"),
    ({"tags": {"aws:cc": {}}}, "tags.aws:cc", "reserves"),
    ({"tags": {"c*": {}}}, "tags.c*", "contains '*'"),
    ({"tags": {"k" * 129: {}}}, "tags." + "k" * 129, "at most 128"),
    ({"tags": {"cc": {}, "CC": {}}}, "tags.CC", "repeats 'cc'"),
    (with_key("x"), "tags.costcenter", "must be an object with tag_key"),
    # key level
    (with_key({"tag_values": {}}), "tags.costcenter.tag_values", "did you mean 'tag_value'?"),
    (with_key({"@@assign": "CostCenter"}), "tags.costcenter.@@assign", "put it inside tag_key"),
    (with_key({"@@operators_allowed_for_child_policies": ["@@sometimes"]}),
     "tags.costcenter.@@operators_allowed_for_child_policies[0]", "unknown operator '@@sometimes'"),
    (with_key({"@@operators_allowed_for_child_policies": ["@@all", "@@append"]}),
     "tags.costcenter.@@operators_allowed_for_child_policies", "@@all must stand alone"),
    # tag_key
    (with_key({"tag_key": "CostCenter"}), "tags.costcenter.tag_key", "a plain value is how AWS displays"),
    (with_key({"tag_key": 5}), "tags.costcenter.tag_key", "must be an object"),
    (with_key({"tag_key": {"@@assign": ["CostCenter"]}}), "tags.costcenter.tag_key.@@assign", "must be a string"),
    (with_key({"tag_key": {"@@assign": "Cost_Center"}}), "tags.costcenter.tag_key.@@assign",
     "must match its policy key 'costcenter'"),
    (with_key({"tag_key": {"@@append": "CostCenter"}}), "tags.costcenter.tag_key.@@append", "only @@assign"),
    (with_key({"tag_key": {"@@assing": "CostCenter"}}), "tags.costcenter.tag_key.@@assing",
     "did you mean '@@assign'?"),
    (with_key({"tag_key": {"@@operators_allowed_for_child_policies": "@@none"}}),
     "tags.costcenter.tag_key.@@operators_allowed_for_child_policies", "non-empty list"),
    # tag_value
    (with_key({"tag_value": ["100"]}), "tags.costcenter.tag_value", "a plain list is how AWS displays"),
    (with_key({"tag_value": "100"}), "tags.costcenter.tag_value", "must be an object"),
    (with_key({"tag_value": {"@@assign": "100"}}), "tags.costcenter.tag_value.@@assign", "write [\"100\"]"),
    (with_key({"tag_value": {"@@append": [100]}}), "tags.costcenter.tag_value.@@append[0]", "write \"100\""),
    (with_key({"tag_value": {"@@remove": [None]}}), "tags.costcenter.tag_value.@@remove[0]", "got null"),
    (with_key({"tag_value": {"@@assign": ["100", "200", "*@*.com"]}}), "tags.costcenter.tag_value.@@assign[2]",
     "holds 2 '*' wildcards"),
    (with_key({"tag_value": {"@@assign": ["v" * 257]}}), "tags.costcenter.tag_value.@@assign[0]", "at most 256"),
    (with_key({"tag_value": {"@@replace": []}}), "tags.costcenter.tag_value.@@replace", "allowed: @@assign"),
    (with_key({"tag_value": {"@@operators_allowed_for_child_policies": ["@@append", "@@none"]}}),
     "tags.costcenter.tag_value.@@operators_allowed_for_child_policies", "@@none must stand alone"),
    (with_key({"tag_value": {"enforced_for": {}}}), "tags.costcenter.tag_value.enforced_for",
     "belongs next to tag_value"),
    # enforced_for / report_required_tag_for
    (with_key({"enforced_for": {"@@assign": ["*"]}}), "tags.costcenter.enforced_for.@@assign[0]",
     "must look like 'service:resource'"),
    (with_key({"enforced_for": {"@@assign": ["*:instance"]}}), "tags.costcenter.enforced_for.@@assign[0]",
     "cannot name every service"),
    (with_key({"enforced_for": {"@@assign": ["ec2"]}}), "tags.costcenter.enforced_for.@@assign[0]",
     "must look like 'service:resource'"),
    (with_key({"enforced_for": {"@@append": ["EC2:instance"]}}), "tags.costcenter.enforced_for.@@append[0]",
     "did you mean 'ec2:instance'?"),
    (with_key({"enforced_for": {"@@assign": ["ec2:inst*"]}}), "tags.costcenter.enforced_for.@@assign[0]",
     "only 'service:*' may use a wildcard"),
    (with_key({"report_required_tag_for": {"@@assign": ["ec2:all_supported"]}}),
     "tags.costcenter.report_required_tag_for.@@assign[0]", "ALL_SUPPORTED in capitals"),
    (with_key({"report_required_tag_for": {"@@remove": ["ec2:my instance"]}}),
     "tags.costcenter.report_required_tag_for.@@remove[0]", "must not contain spaces"),
    (with_key({"report_required_tag_for": {"@@assign": [{"type": "ec2:instance"}]}}),
     "tags.costcenter.report_required_tag_for.@@assign[0]", "must be a string, got an object"),
    (with_key({"report_required_tag_for": {"@@assign": "ec2:instance"}}),
     "tags.costcenter.report_required_tag_for.@@assign", "must be a list"),
])
def test_each_problem_is_reported_at_its_json_path(data: Any, location: str, fragment: str) -> None:
    where, message = one_problem(data)
    assert where == location
    assert fragment in message


def test_every_problem_is_reported_at_once_with_lines_in_text_order() -> None:
    text = """{
  "tags": {
    "costcenter": {
      "tag_key": {"@@assign": "Cost-Center"},
      "tag_value": {"@@assign": ["100", "*@*.com"]},
      "enforced_for": {"@@assign": ["*"]}
    },
    "owner": {"tag_valu": {"@@assign": ["x"]}},
    "owner": {}
  }
}"""
    with pytest.raises(PolicyError) as err:
        parse_tag_policy(text, source="root.json")
    found = [(p.location, p.line) for p in err.value.problems]
    assert found == [
        ("tags.costcenter.tag_key.@@assign", 4),
        ("tags.costcenter.tag_value.@@assign[1]", 5),
        ("tags.costcenter.enforced_for.@@assign[0]", 6),
        ("tags.owner", 9),
    ]
    assert "invalid tagging policy root.json (4 problems)" in str(err.value)
    assert "appears more than once" in err.value.problems[-1].message


def test_the_repeated_key_is_found_even_when_json_keeps_only_the_last() -> None:
    with pytest.raises(PolicyError) as err:
        parse_tag_policy('{"tags": {"cc": {"tag_key": {"@@assign": "CC"}}, "cc": {}}}')
    [problem] = err.value.problems
    assert problem.location == "tags.cc" and problem.line == 1 and problem.column == 50


@pytest.mark.parametrize(("data", "fragment"), [
    ("", "the policy is empty"),
    ("{\"tags\": {", "invalid JSON"),
    (b"\xff\xfe", "not UTF-8"),
    ("[" * 100_000, "nested too deeply"),
])
def test_unreadable_documents(data: str | bytes, fragment: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_tag_policy(data, policy_id="p-1")
    [problem] = err.value.problems
    assert problem.location == "$" and fragment in problem.message
    assert "p-1" in str(err.value)
